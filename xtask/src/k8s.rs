//! Tests of `deploy/k8s` (issue 15): both overlays render with kustomize, validate against
//! the Kubernetes schemas (strict) and the vendored operator CRDs, and say only what the
//! services really read, listen on and serve. Nothing here needs a cluster; a missing tool
//! fails the test with how to install it, never skips it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_norway::Value;

use crate::drift::{
    check_setting_var, default_port_in_code, listener_routes, read, routes, service_source,
    settings_source,
};
use crate::layout::{self, SERVICES};
use crate::proto_docs::Listener;

const OVERLAYS: [&str; 2] = ["dev", "production"];
/// The Kubernetes version the manifests are validated against (the pod-index label the
/// worker ids come from is there since 1.28).
const KUBERNETES_VERSION: &str = "1.32.0";
/// The custom resources and the vendored CRDs that define them.
const CUSTOM_KINDS: [(&str, &str); 2] = [
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
];

fn tool_missing(tool: &str, install: &str) -> ! {
    panic!("{tool} is needed to check deploy/k8s and is not installed: {install} (.ci/run does)")
}

/// `kubectl kustomize` of an overlay: the text and its documents.
fn render(overlay: &str) -> &'static (String, Vec<Value>) {
    static RENDERED: OnceLock<BTreeMap<&str, (String, Vec<Value>)>> = OnceLock::new();
    let all = RENDERED.get_or_init(|| {
        OVERLAYS
            .iter()
            .map(|o| {
                let dir = layout::repo_root().join("deploy/k8s/overlays").join(o);
                let out = Command::new("kubectl")
                    .arg("kustomize")
                    .arg(&dir)
                    .output()
                    .unwrap_or_else(|_| {
                        tool_missing("kubectl", "apt-get install kubernetes-client")
                    });
                assert!(
                    out.status.success(),
                    "kubectl kustomize {}: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8(out.stdout).unwrap();
                let docs = serde_norway::Deserializer::from_str(&text)
                    .map(|d| Value::deserialize(d).unwrap())
                    .filter(|d| !d.is_null())
                    .collect();
                (*o, (text, docs))
            })
            .collect()
    });
    &all[overlay]
}

fn docs(overlay: &str) -> &'static [Value] {
    &render(overlay).1
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn seq<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn name(doc: &Value) -> &str {
    s(doc, &["metadata", "name"])
}

fn of_kind<'a>(overlay: &str, kind: &'a str) -> impl Iterator<Item = &'static Value> + 'a {
    docs(overlay)
        .iter()
        .filter(move |d| s(d, &["kind"]) == kind)
}

/// The Paywire services' workloads (StatefulSets and Deployments), by service name.
fn workloads(overlay: &str) -> BTreeMap<&'static str, &'static Value> {
    docs(overlay)
        .iter()
        .filter(|d| ["StatefulSet", "Deployment"].contains(&s(d, &["kind"])))
        .map(|d| {
            let n = name(d);
            assert!(
                SERVICES.iter().any(|svc| svc.name == n),
                "{overlay}: workload {n} is not a Paywire service"
            );
            (n, d)
        })
        .collect()
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

/// Every container of a workload, init containers first.
fn containers(workload: &Value) -> impl Iterator<Item = &Value> {
    let pod = pod_spec(workload);
    seq(pod, &["initContainers"])
        .iter()
        .chain(seq(pod, &["containers"]))
}

fn main_container(workload: &Value) -> &Value {
    let containers = seq(pod_spec(workload), &["containers"]);
    assert_eq!(containers.len(), 1, "{}: one container", name(workload));
    &containers[0]
}

/// A container's plain environment values (`value:`), by name.
fn env_values(container: &Value) -> BTreeMap<&str, &str> {
    seq(container, &["env"])
        .iter()
        .filter(|e| e.get("value").is_some())
        .map(|e| (s(e, &["name"]), s(e, &["value"])))
        .collect()
}

fn env_entry<'a>(container: &'a Value, var: &str) -> Option<&'a Value> {
    seq(container, &["env"])
        .iter()
        .find(|e| s(e, &["name"]) == var)
}

fn overlay_services(overlay: &str) -> impl Iterator<Item = &'static layout::Service> + '_ {
    SERVICES
        .iter()
        .filter(move |svc| overlay == "dev" || svc.name != "channel-sandbox")
}

/// Both overlays render; every built-in object passes kubernetes-validate's strict schemas
/// (no unknown field, right types) and every custom resource the vendored CRD's schema.
#[test]
fn k8s_overlays_render_and_validate_against_the_kubernetes_schemas_and_the_crds() {
    let dir = std::env::temp_dir().join(format!("paywire-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for overlay in OVERLAYS {
        let (text, docs) = render(overlay);
        let file = dir.join(format!("{overlay}.yaml"));
        std::fs::write(&file, text).unwrap();
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&file)
            .output()
            .unwrap_or_else(|_| {
                tool_missing(
                    "kubernetes-validate",
                    "python3 -m pip install --break-system-packages kubernetes-validate",
                )
            });
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{overlay}: kubernetes-validate:\n{report}"
        );
        // It only warns about a kind it has no schema for: that must be a custom resource
        // checked below, not a misspelt apiVersion of a built-in kind.
        for line in report
            .lines()
            .filter(|l| l.contains("Couldn't find schema"))
        {
            assert!(
                CUSTOM_KINDS
                    .iter()
                    .any(|(api, kind)| line
                        .contains(&format!("kind {kind} with api version {api} "))),
                "{overlay}: {line}"
            );
        }
        let passed = report.matches(" passed for resource ").count();
        let custom = docs
            .iter()
            .filter(|d| CUSTOM_KINDS.contains(&(s(d, &["apiVersion"]), s(d, &["kind"]))))
            .count();
        assert_eq!(
            passed + custom,
            docs.len(),
            "{overlay}: every object checked\n{report}"
        );

        let mut python = Command::new("python3")
            .arg("-c")
            .arg(include_str!("k8s_custom_resources.py"))
            .arg(layout::repo_root().join("deploy/k8s/crds"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|_| tool_missing("python3", "apt-get install python3"));
        python
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = python.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if report.contains("No module named") {
            tool_missing(
                "python3's jsonschema and yaml modules",
                "python3 -m pip install --break-system-packages kubernetes-validate (it brings both)",
            );
        }
        assert!(
            out.status.success(),
            "{overlay}: custom resources:\n{report}"
        );
        assert!(
            report.contains(&format!("{custom} custom resources checked, 0 failed")),
            "{overlay}: {report}"
        );
        // One CloudNativePG cluster per service database, one RabbitmqCluster.
        let clusters = of_kind(overlay, "Cluster").count();
        let databases = SERVICES.iter().filter(|s| s.database.is_some()).count();
        assert_eq!(clusters, databases, "{overlay}");
        assert_eq!(of_kind(overlay, "RabbitmqCluster").count(), 1, "{overlay}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The vendored CRDs say where they come from.
#[test]
fn k8s_vendored_crds_name_their_source() {
    let readme = read("deploy/k8s/crds/README.md");
    for (file, repo) in [
        (
            "rabbitmq.com_rabbitmqclusters.yaml",
            "github.com/rabbitmq/cluster-operator",
        ),
        (
            "postgresql.cnpg.io_clusters.yaml",
            "github.com/cloudnative-pg/cloudnative-pg",
        ),
    ] {
        assert!(
            Path::new(&layout::repo_root().join("deploy/k8s/crds").join(file)).is_file(),
            "{file}"
        );
        assert!(readme.contains(file) && readme.contains(repo), "{file}");
    }
}

/// Each overlay runs what it should: every service (the sandbox only in dev), in the
/// right environment, production without test keys or the sandbox's URLs.
#[test]
fn k8s_overlays_run_their_services_in_their_environment() {
    for overlay in OVERLAYS {
        let workloads = workloads(overlay);
        let expected: BTreeSet<&str> = overlay_services(overlay).map(|s| s.name).collect();
        assert_eq!(
            workloads.keys().copied().collect::<BTreeSet<_>>(),
            expected,
            "{overlay}"
        );
        let environment = if overlay == "dev" {
            "development"
        } else {
            "production"
        };
        for (service, workload) in &workloads {
            for container in containers(workload) {
                assert_eq!(
                    env_values(container).get("PAYWIRE__ENVIRONMENT").copied(),
                    Some(environment),
                    "{overlay}: {service}"
                );
            }
        }
        if overlay == "production" {
            let (text, _) = render(overlay);
            for word in ["paywire-test-keys", "channel-sandbox", "test-keys"] {
                assert!(!text.contains(word), "production names {word}");
            }
            assert!(!text.contains("/keys/"), "production mounts test keys");
            for d in of_kind(overlay, "StatefulSet").chain(of_kind(overlay, "Deployment")) {
                assert_eq!(d["spec"]["replicas"].as_u64(), Some(3), "{}", name(d));
            }
            for d in of_kind(overlay, "Cluster") {
                assert_eq!(d["spec"]["instances"].as_u64(), Some(3), "{}", name(d));
            }
            for d in of_kind(overlay, "RabbitmqCluster") {
                assert_eq!(d["spec"]["replicas"].as_u64(), Some(3), "{}", name(d));
            }
        }
    }
}

/// Every `PAYWIRE__` variable names a real setting of its service; any other variable
/// only feeds a `$(VAR)` of a `PAYWIRE__` value; the migrate init container sees exactly
/// the service's environment (the production checks run there too).
#[test]
fn k8s_env_vars_name_real_settings() {
    let platform_dir = layout::repo_root().join("crates/platform/src");
    let platform: String = ["config.rs", "rate_limit.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(platform_dir.join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for overlay in OVERLAYS {
        for (service, workload) in workloads(overlay) {
            let lib = settings_source(service);
            let source = format!("{platform}\n{}", service_source(service));
            let main = main_container(workload);
            for container in containers(workload) {
                let env = seq(container, &["env"]);
                assert!(!env.is_empty(), "{overlay}: {service}: no environment");
                assert!(
                    container.get("envFrom").is_none(),
                    "{overlay}: {service}: envFrom hides what is set"
                );
                for entry in env {
                    let var = s(entry, &["name"]);
                    if var.starts_with("PAYWIRE__") {
                        check_setting_var(service, var, &lib, &source);
                    } else {
                        let used = env_values(container).iter().any(|(k, v)| {
                            k.starts_with("PAYWIRE__") && v.contains(&format!("$({var})"))
                        });
                        assert!(used, "{overlay}: {service}: {var} is read by nothing");
                    }
                }
                assert_eq!(
                    container["env"],
                    main["env"],
                    "{overlay}: {service}: {} has another environment than the service",
                    s(container, &["name"])
                );
            }
        }
    }
}

/// The port a container declares as `public` / `internal` is the one the service listens
/// on with that environment; Services and the Ingress name those ports.
#[test]
fn k8s_container_ports_are_the_ports_the_services_listen_on() {
    for overlay in OVERLAYS {
        for (service, workload) in workloads(overlay) {
            let main = main_container(workload);
            let ports = listening_ports(service, main);
            for port in seq(main, &["ports"]) {
                let port_name = s(port, &["name"]);
                let number = port["containerPort"].as_u64().unwrap();
                let listener = ports
                    .iter()
                    .find(|(_, p)| u64::from(*p) == number)
                    .map(|(l, _)| *l)
                    .unwrap_or_else(|| {
                        panic!("{overlay}: {service}: port {number} is not one it listens on ({ports:?})")
                    });
                assert_eq!(
                    port_name,
                    listener_port_name(listener),
                    "{overlay}: {service}: port {number} is its {listener:?} listener"
                );
            }
            assert_eq!(seq(main, &["ports"]).len(), 2, "{overlay}: {service}");
            let svc = of_kind(overlay, "Service")
                .find(|d| name(d) == service)
                .unwrap_or_else(|| panic!("{overlay}: no Service {service}"));
            for port in seq(svc, &["spec", "ports"]) {
                let target = s(port, &["targetPort"]);
                assert!(
                    ["public", "internal"].contains(&target),
                    "{overlay}: Service {service} targets {target}"
                );
                let (listener, number) = ports
                    .iter()
                    .find(|(l, _)| listener_port_name(*l) == target)
                    .unwrap();
                assert_eq!(
                    port["port"].as_u64(),
                    Some(u64::from(*number)),
                    "{overlay}: Service {service}'s {listener:?} port is the container's"
                );
            }
        }
    }
}

fn listener_port_name(listener: Listener) -> &'static str {
    match listener {
        Listener::Public => "public",
        Listener::Internal => "internal",
    }
}

/// The service's public and internal ports with the container's environment (its
/// compiled-in default port, internal = public + 100 unless set).
fn listening_ports(service: &str, container: &Value) -> [(Listener, u16); 2] {
    let env = env_values(container);
    let public = env
        .get("PAYWIRE__HTTP__PORT")
        .map(|p| p.parse().unwrap())
        .unwrap_or_else(|| default_port_in_code(service));
    let internal = env
        .get("PAYWIRE__HTTP__INTERNAL_PORT")
        .map(|p| p.parse().unwrap())
        .unwrap_or(public + 100);
    [(Listener::Public, public), (Listener::Internal, internal)]
}

/// Every probe asks a path its service serves on the listener behind the probed port
/// (the service's real routers are asked), liveness `/health/live`, readiness
/// `/health/ready`.
#[actix_web::test]
async fn k8s_probes_ask_paths_the_services_serve_on_the_probed_listener() {
    for overlay in OVERLAYS {
        for (service, workload) in workloads(overlay) {
            let main = main_container(workload);
            let ports: BTreeMap<&str, u64> = seq(main, &["ports"])
                .iter()
                .map(|p| (s(p, &["name"]), p["containerPort"].as_u64().unwrap()))
                .collect();
            let listening = listening_ports(service, main);
            for (probe, expected) in [
                ("livenessProbe", "/health/live"),
                ("readinessProbe", "/health/ready"),
                ("startupProbe", ""),
            ] {
                let Some(get) = main.get(probe).and_then(|p| p.get("httpGet")) else {
                    assert!(expected.is_empty(), "{overlay}: {service}: no {probe}");
                    continue;
                };
                let path = s(get, &["path"]);
                if !expected.is_empty() {
                    assert_eq!(path, expected, "{overlay}: {service}: {probe}");
                }
                let number = match &get["port"] {
                    Value::String(port_name) => ports[port_name.as_str()],
                    other => other.as_u64().unwrap(),
                };
                let (listener, _) = listening
                    .iter()
                    .find(|(_, p)| u64::from(*p) == number)
                    .unwrap_or_else(|| panic!("{overlay}: {service}: {probe} asks port {number}"));
                let configure = listener_routes(service)
                    .into_iter()
                    .find(|(l, _)| l == listener)
                    .unwrap()
                    .1;
                assert!(
                    routes(*listener, configure, "get", path).await,
                    "{overlay}: {service}: {probe} asks {path} on the {listener:?} listener, which does not serve it"
                );
            }
        }
    }
}

/// Secret-looking settings (secrets, tokens, credentials, URLs with passwords, keys) come
/// from Secrets: a file in a mounted Secret, a `secretKeyRef`, or a `$(VAR)` of one. No
/// ConfigMap holds anything.
#[test]
fn k8s_every_secret_comes_from_a_secret() {
    const SECRET_WORDS: [&str; 8] = [
        "secret",
        "token",
        "callers",
        "apiv3_key",
        "database__url",
        "amqp__url",
        "private_key",
        "password",
    ];
    for overlay in OVERLAYS {
        assert_eq!(of_kind(overlay, "ConfigMap").count(), 0, "{overlay}");
        for (service, workload) in workloads(overlay) {
            let secret_volumes: BTreeSet<&str> = seq(pod_spec(workload), &["volumes"])
                .iter()
                .filter(|v| v.get("secret").is_some())
                .map(|v| s(v, &["name"]))
                .collect();
            for container in containers(workload) {
                let secret_dirs: Vec<&str> = seq(container, &["volumeMounts"])
                    .iter()
                    .filter(|m| secret_volumes.contains(s(m, &["name"])))
                    .map(|m| s(m, &["mountPath"]))
                    .collect();
                let in_secret = |path: &str| {
                    secret_dirs
                        .iter()
                        .any(|dir| path.starts_with(&format!("{dir}/")))
                };
                let from_secret_ref = |var: &str| {
                    env_entry(container, var)
                        .is_some_and(|e| e["valueFrom"].get("secretKeyRef").is_some())
                };
                for entry in seq(container, &["env"]) {
                    let var = s(entry, &["name"]);
                    let lower = var.to_lowercase();
                    let value = s(entry, &["value"]);
                    let what = format!("{overlay}: {service}: {var}");
                    // A file setting, or a key file: a file of a mounted Secret.
                    if lower.ends_with("_file")
                        || (lower.ends_with("_path") && lower.contains("key"))
                    {
                        assert!(
                            in_secret(value),
                            "{what}: {value} is not in a mounted Secret"
                        );
                        continue;
                    }
                    if !SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                        continue;
                    }
                    if from_secret_ref(var) {
                        continue;
                    }
                    let refs: Vec<&str> = value
                        .split("$(")
                        .skip(1)
                        .filter_map(|r| r.split_once(')').map(|(v, _)| v))
                        .collect();
                    assert!(
                        !refs.is_empty() && refs.iter().any(|r| r.contains("PASSWORD")),
                        "{what} is a plain value: it must come from a Secret"
                    );
                    for r in refs {
                        assert!(from_secret_ref(r), "{what}: $({r}) is not from a Secret");
                    }
                }
            }
        }
    }
}

/// Two pods never share a worker id: every id-generating service is a StatefulSet whose
/// pods add their ordinal to the service's base, the services' ranges (from
/// `ids.worker_id`, `ids.ordinals` wide) do not overlap and fit in 10 bits, and neither
/// the replicas nor the autoscaler's maximum exceed the range.
#[test]
fn k8s_worker_id_ranges_never_overlap() {
    for overlay in OVERLAYS {
        let mut ranges: Vec<(&str, u32, u32)> = Vec::new();
        for (service, workload) in workloads(overlay) {
            let generates_ids = settings_source(service).contains("pub ids:");
            let main = main_container(workload);
            let env = env_values(main);
            if !generates_ids {
                assert!(!env.contains_key("PAYWIRE__IDS__WORKER_ID"), "{service}");
                continue;
            }
            assert_eq!(
                s(workload, &["kind"]),
                "StatefulSet",
                "{overlay}: {service} generates ids: its pods need ordinals"
            );
            let base: u32 = env["PAYWIRE__IDS__WORKER_ID"].parse().unwrap();
            let ordinals: u32 = env["PAYWIRE__IDS__ORDINALS"].parse().unwrap();
            let ordinal = env_entry(main, "PAYWIRE__IDS__ORDINAL")
                .unwrap_or_else(|| panic!("{overlay}: {service}: no PAYWIRE__IDS__ORDINAL"));
            assert_eq!(
                s(ordinal, &["valueFrom", "fieldRef", "fieldPath"]),
                "metadata.labels['apps.kubernetes.io/pod-index']",
                "{overlay}: {service}"
            );
            assert!(base + ordinals <= 1024, "{overlay}: {service}: past 1023");
            let replicas = workload["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
            let most = of_kind(overlay, "HorizontalPodAutoscaler")
                .filter(|h| s(h, &["spec", "scaleTargetRef", "name"]) == service)
                .map(|h| h["spec"]["maxReplicas"].as_u64().unwrap() as u32)
                .fold(replicas, u32::max);
            assert!(
                most <= ordinals,
                "{overlay}: {service} may run {most} pods but owns {ordinals} worker ids"
            );
            ranges.push((service, base, base + ordinals));
        }
        assert_eq!(ranges.len(), 3, "{overlay}");
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                assert!(
                    a.2 <= b.1 || b.2 <= a.1,
                    "{overlay}: worker ids of {} ({}..{}) and {} ({}..{}) overlap",
                    a.0,
                    a.1,
                    a.2,
                    b.0,
                    b.1,
                    b.2
                );
            }
        }
    }
}

/// The ingress reaches public ports only, and only the cashier and the gateway (and the
/// sandbox's wallet in dev); internal ports only the Paywire pods and the monitoring
/// namespace; every pod is isolated by a default deny.
#[test]
fn k8s_network_policies_keep_internal_listeners_internal() {
    for overlay in OVERLAYS {
        let paywire: BTreeSet<&str> = overlay_services(overlay).map(|s| s.name).collect();
        let policies: Vec<&Value> = of_kind(overlay, "NetworkPolicy").collect();
        assert!(
            policies.iter().any(|p| name(p) == "paywire-default-deny"
                && p["spec"]["ingress"].is_null()
                && s(
                    p,
                    &[
                        "spec",
                        "podSelector",
                        "matchLabels",
                        "app.kubernetes.io/part-of"
                    ]
                ) == "paywire"),
            "{overlay}: no default deny"
        );
        for policy in &policies {
            for rule in seq(policy, &["spec", "ingress"]) {
                let ports: BTreeSet<&str> = seq(rule, &["ports"])
                    .iter()
                    .map(|p| s(p, &["port"]))
                    .collect();
                assert!(
                    !ports.is_empty(),
                    "{overlay}: {}: a rule for every port",
                    name(policy)
                );
                for peer in seq(rule, &["from"]) {
                    let namespace = s(
                        peer,
                        &[
                            "namespaceSelector",
                            "matchLabels",
                            "kubernetes.io/metadata.name",
                        ],
                    );
                    let what = format!("{overlay}: {} lets {namespace:?} in", name(policy));
                    match namespace {
                        "ingress-nginx" => {
                            assert_eq!(ports, BTreeSet::from(["public"]), "{what}");
                            let selected = selected_names(&policy["spec"]["podSelector"]);
                            let exposed: BTreeSet<&str> =
                                ["cashier", "payment-gateway", "channel-sandbox"]
                                    .into_iter()
                                    .filter(|n| paywire.contains(n))
                                    .collect();
                            assert_eq!(selected, exposed, "{what}");
                        }
                        "monitoring" => assert_eq!(ports, BTreeSet::from(["internal"]), "{what}"),
                        "" => {
                            assert!(peer.get("namespaceSelector").is_none(), "{what}");
                            let selector = &peer["podSelector"];
                            let from = selected_names(selector);
                            assert!(
                                all_paywire_pods(selector)
                                    || (!from.is_empty()
                                        && from.iter().all(|n| paywire.contains(n))),
                                "{overlay}: {} lets in {selector:?}",
                                name(policy)
                            );
                        }
                        other => panic!("{overlay}: {} lets namespace {other} in", name(policy)),
                    }
                }
            }
        }
        // The label the policies select is the services' alone: the operators copy a
        // custom resource's labels to their pods, which the default deny would isolate.
        for doc in docs(overlay) {
            let kind = s(doc, &["kind"]);
            let labelled =
                s(doc, &["metadata", "labels", "app.kubernetes.io/part-of"]) == "paywire";
            let service_object = [
                "StatefulSet",
                "Deployment",
                "Service",
                "PodDisruptionBudget",
            ]
            .contains(&kind)
                && paywire.contains(name(doc));
            assert!(
                !labelled || service_object,
                "{overlay}: {kind} {} is labelled part-of paywire",
                name(doc)
            );
        }
        // The Ingress forwards to public ports of the exposed services only.
        for ingress in of_kind(overlay, "Ingress") {
            for rule in seq(ingress, &["spec", "rules"]) {
                for path in seq(rule, &["http", "paths"]) {
                    let backend = &path["backend"]["service"];
                    assert_eq!(s(backend, &["port", "name"]), "public", "{overlay}");
                    let target = s(backend, &["name"]);
                    assert!(
                        ["cashier", "payment-gateway", "channel-sandbox"].contains(&target),
                        "{overlay}: the ingress reaches {target}"
                    );
                }
            }
        }
    }
}

/// Whether a pod selector picks exactly the Paywire services' pods.
fn all_paywire_pods(selector: &Value) -> bool {
    selector.get("matchExpressions").is_none()
        && selector["matchLabels"]
            .as_mapping()
            .is_some_and(|m| m.len() == 1)
        && s(selector, &["matchLabels", "app.kubernetes.io/part-of"]) == "paywire"
}

/// The names a pod selector picks by `app.kubernetes.io/name` (`In` expressions).
fn selected_names(selector: &Value) -> BTreeSet<&str> {
    seq(selector, &["matchExpressions"])
        .iter()
        .filter(|e| s(e, &["key"]) == "app.kubernetes.io/name" && s(e, &["operator"]) == "In")
        .flat_map(|e| seq(e, &["values"]).iter().filter_map(Value::as_str))
        .collect()
}

/// Non-root, read-only root filesystem, no capabilities, the runtime's seccomp profile,
/// requests and limits, a PodDisruptionBudget per workload, migrations in an init
/// container for the services with a database.
#[test]
fn k8s_pods_are_locked_down_and_migrate_before_they_start() {
    for overlay in OVERLAYS {
        for (service, workload) in workloads(overlay) {
            let pod = pod_spec(workload);
            let what = format!("{overlay}: {service}");
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{what}"
            );
            assert_ne!(
                pod["securityContext"]["runAsUser"].as_u64(),
                Some(0),
                "{what}"
            );
            assert_eq!(
                s(pod, &["securityContext", "seccompProfile", "type"]),
                "RuntimeDefault",
                "{what}"
            );
            assert_eq!(
                pod["automountServiceAccountToken"].as_bool(),
                Some(false),
                "{what}"
            );
            for container in containers(workload) {
                let sc = &container["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{what}");
                assert_eq!(
                    sc["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{what}"
                );
                assert_eq!(
                    seq(sc, &["capabilities", "drop"]),
                    [Value::from("ALL")],
                    "{what}"
                );
                for kind in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            container["resources"][kind].get(resource).is_some(),
                            "{what}: {kind}.{resource}"
                        );
                    }
                }
            }
            let has_database = layout::service(service).database.is_some();
            let init = seq(pod, &["initContainers"]);
            if has_database {
                assert_eq!(init.len(), 1, "{what}: one migrate init container");
                assert_eq!(seq(&init[0], &["args"]), [Value::from("migrate")], "{what}");
                assert_eq!(
                    init[0]["image"],
                    main_container(workload)["image"],
                    "{what}"
                );
                assert_eq!(
                    env_values(main_container(workload)).get("PAYWIRE__DATABASE__MIGRATE"),
                    Some(&"false"),
                    "{what}: replicas do not race to migrate"
                );
            } else {
                assert!(init.is_empty(), "{what}");
            }
            if overlay == "production" {
                assert!(
                    of_kind(overlay, "HorizontalPodAutoscaler")
                        .any(|h| s(h, &["spec", "scaleTargetRef", "name"]) == service),
                    "{what}: no autoscaler"
                );
            }
            let labels = &workload["spec"]["selector"]["matchLabels"];
            assert!(
                of_kind(overlay, "PodDisruptionBudget")
                    .any(|p| p["spec"]["selector"]["matchLabels"] == *labels),
                "{what}: no PodDisruptionBudget"
            );
        }
    }
}

/// The services' own URLs of each other point at a Service port of the listener they mean.
#[test]
fn k8s_service_urls_name_services_and_their_ports() {
    for overlay in OVERLAYS {
        let services: BTreeMap<&str, BTreeMap<u64, &str>> = of_kind(overlay, "Service")
            .map(|d| {
                (
                    name(d),
                    seq(d, &["spec", "ports"])
                        .iter()
                        .map(|p| (p["port"].as_u64().unwrap(), s(p, &["targetPort"])))
                        .collect(),
                )
            })
            .collect();
        for (service, workload) in workloads(overlay) {
            for (var, value) in env_values(main_container(workload)) {
                let Some(rest) = value.strip_prefix("http://") else {
                    continue;
                };
                let authority = rest.split('/').next().unwrap();
                let (host, port) = authority
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{overlay}: {service}: {var}: no port"));
                let port: u64 = port.parse().unwrap();
                let target = services
                    .get(host)
                    .and_then(|ports| ports.get(&port))
                    .unwrap_or_else(|| {
                        panic!("{overlay}: {service}: {var}: no Service {host}:{port}")
                    });
                // Order calls /internal/*; the cashier proxies the public APIs; the gateway's
                // channels and notify URLs are public.
                let internal = var.starts_with("PAYWIRE__UPSTREAM__") && service == "order";
                assert_eq!(
                    *target,
                    if internal { "internal" } else { "public" },
                    "{overlay}: {service}: {var}"
                );
            }
        }
    }
}
