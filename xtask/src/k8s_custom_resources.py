"""Validates the custom resources of rendered manifests (stdin) against the CRDs vendored
in the directory given as the first argument (their openAPIV3Schema), as strictly as the
API server's field validation: a field the schema does not declare is an error unless the
schema preserves unknown fields. Prints one line per resource; exits 1 on any failure,
including a resource of an API group no vendored CRD defines."""

import copy
import pathlib
import sys

import jsonschema
import yaml


def strict(schema):
    """Forbids undeclared properties where Kubernetes would prune or reject them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
                and "additionalProperties" not in node
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


schemas = {}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema

failed = 0
checked = 0
for doc in yaml.safe_load_all(sys.stdin):
    if not doc:
        continue
    api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    name = doc.get("metadata", {}).get("name", "?")
    group = api.split("/")[0] if "/" in api else ""
    if "." not in group or group.endswith(".k8s.io"):
        continue  # a built-in kind: kubernetes-validate checks it
    schema = schemas.get((api, kind))
    if schema is None:
        print(f"FAILED {kind}/{name}: no vendored CRD defines {kind} in {api}")
        failed += 1
        continue
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path)
    )
    for error in errors:
        where = ".".join(str(p) for p in error.path) or "(root)"
        print(f"FAILED {kind}/{name}: {where}: {error.message}")
    failed += bool(errors)
    checked += 1
    if not errors:
        print(f"valid {kind}/{name} ({api})")
print(f"{checked} custom resources checked, {failed} failed")
sys.exit(1 if failed else 0)
