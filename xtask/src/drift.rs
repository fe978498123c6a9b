//! Tests that keep `deploy/` and `proto-docs/` in step with the code: Docker is not run
//! here and nobody reads YAML on every change, so these files are checked against the
//! sources they describe.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use paywire_domain::topology::{PAY_RESULT_EXCHANGE, PAY_RESULT_SUBSCRIBERS};
use paywire_domain::{BizType, EventId, Fen, OrderId, PayChannel, PayNo, PayResultV1, UserId};
use serde_norway::Value;

use crate::layout::{self, SERVICES};

fn read(rel: &str) -> String {
    let path = layout::repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(rel: &str) -> Value {
    let mut v: Value =
        serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: merge keys: {e}"));
    v
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// All the Rust source of `services/<name>/src`, concatenated.
fn service_source(name: &str) -> String {
    let mut files = Vec::new();
    rust_files(
        &layout::repo_root().join("services").join(name).join("src"),
        &mut files,
    );
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every string literal that looks like a path (`"/…"` or the empty scope-root `""`),
/// ignoring comment lines.
fn path_literals(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(start) = rest.find('"') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('"') else { break };
            let lit = &after[..end];
            if lit.is_empty() || (lit.starts_with('/') && !lit.contains(' ')) {
                found.insert(lit.to_owned());
            }
            rest = &after[end + 1..];
        }
    }
    found
}

/// The first argument of every `.route(` call: the path as the service registers it,
/// possibly relative to a `web::scope`.
fn route_literals(source: &str) -> BTreeSet<String> {
    let compact: String = source.split_whitespace().collect::<Vec<_>>().join("");
    compact
        .match_indices(".route(\"")
        .filter_map(|(i, m)| {
            let rest = &compact[i + m.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

/// Whether `path` is one literal or the concatenation of up to three (scope + route,
/// nested scopes), as actix composes them.
fn composable(path: &str, literals: &BTreeSet<String>) -> bool {
    fn go(rest: &str, literals: &BTreeSet<String>, depth: usize) -> bool {
        if rest.is_empty() {
            return true;
        }
        depth > 0
            && literals.iter().filter(|l| !l.is_empty()).any(|l| {
                rest.strip_prefix(l.as_str())
                    .is_some_and(|r| go(r, literals, depth - 1))
            })
    }
    go(path, literals, 3)
}

fn openapi_paths(service: &str) -> Vec<String> {
    let doc = yaml(&format!("proto-docs/{service}.openapi.yaml"));
    doc["paths"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{service}: no paths"))
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// Follows every local `$ref` of `doc` and returns those that do not resolve.
fn dangling_refs(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, refs: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    if k.as_str() == Some("$ref")
                        && let Some(r) = v.as_str()
                    {
                        refs.push(r.to_owned());
                    }
                    walk(v, refs);
                }
            }
            Value::Sequence(s) => s.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(doc, &mut refs);
    refs.into_iter()
        .filter(|r| {
            let Some(pointer) = r.strip_prefix("#/") else {
                return true;
            };
            pointer
                .split('/')
                .map(|seg| seg.replace("~1", "/").replace("~0", "~"))
                .try_fold(doc, |v, seg| v.get(seg.as_str()))
                .is_none()
        })
        .collect()
}

// ---------------------------------------------------------------- helper self-checks

#[test]
fn the_route_helpers_find_what_actix_composes() {
    let src = r#"
        // .route("/commented-out", web::get())
        web::scope("/api/orders")
            .route("", web::post().to(create))
            .route(
                "/{order_id}/pay",
                web::post().to(pay),
            )
    "#;
    let lits = path_literals(src);
    assert!(!lits.contains("/commented-out"));
    assert!(composable("/api/orders", &lits));
    assert!(composable("/api/orders/{order_id}/pay", &lits));
    assert!(!composable("/api/orders/{order_id}", &lits));
    assert!(!composable("/api/refunds", &lits));
    assert_eq!(
        route_literals(src),
        BTreeSet::from([
            "".to_owned(),
            "/commented-out".to_owned(),
            "/{order_id}/pay".to_owned()
        ])
    );
}

#[test]
fn dangling_refs_are_detected() {
    let doc: Value = serde_norway::from_str(
        "a: {$ref: '#/components/schemas/X'}\nb: {$ref: '#/components/schemas/Y'}\ncomponents: {schemas: {X: {}}}",
    )
    .unwrap();
    assert_eq!(dangling_refs(&doc), vec!["#/components/schemas/Y"]);
}

// ---------------------------------------------------------------- proto-docs

#[test]
fn every_openapi_document_parses_resolves_and_declares_both_security_schemes() {
    for s in SERVICES {
        let rel = format!("proto-docs/{}.openapi.yaml", s.name);
        let doc = yaml(&rel);
        assert!(
            str_at(&doc, &["openapi"]).is_some_and(|v| v.starts_with("3.1")),
            "{rel}: not OpenAPI 3.1"
        );
        assert_eq!(
            doc["servers"][0]["url"].as_str(),
            Some(s.base_url().as_str()),
            "{rel}: server URL"
        );
        assert_eq!(dangling_refs(&doc), Vec::<String>::new(), "{rel}");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(
            str_at(schemes, &["bearerAuth", "scheme"]),
            Some("bearer"),
            "{rel}"
        );
        assert_eq!(
            str_at(schemes, &["serviceToken", "name"]),
            Some(paywire_platform::auth::SERVICE_TOKEN_HEADER),
            "{rel}"
        );
        let error = &doc["components"]["schemas"]["Error"]["properties"];
        assert!(
            error.get("error").is_some() && error.get("message").is_some(),
            "{rel}: error schema must be {{error, message}}"
        );
    }
}

#[test]
fn every_documented_path_is_routed_by_its_service() {
    let platform = read("crates/platform/src/http.rs");
    for s in SERVICES {
        let mut literals = path_literals(&service_source(s.name));
        // `/health` is mounted by the shared bootstrap.
        literals.extend(path_literals(&platform));
        for path in openapi_paths(s.name) {
            assert!(
                composable(&path, &literals),
                "proto-docs/{}.openapi.yaml documents {path}, which services/{}/src does not route",
                s.name,
                s.name
            );
        }
    }
}

#[test]
fn every_route_of_a_service_is_documented() {
    for s in SERVICES {
        let documented = openapi_paths(s.name);
        for route in route_literals(&service_source(s.name)) {
            if route.is_empty() {
                continue; // a scope's own root; its full path is checked the other way
            }
            assert!(
                documented.iter().any(|p| p.ends_with(&route)),
                "services/{} routes {route}, which proto-docs/{}.openapi.yaml does not document",
                s.name,
                s.name
            );
        }
    }
}

#[test]
fn asyncapi_matches_the_broker_topology_and_the_event_schema() {
    let rel = "proto-docs/pay-result.asyncapi.yaml";
    let doc = yaml(rel);
    assert!(str_at(&doc, &["asyncapi"]).is_some_and(|v| v.starts_with("3.")));
    assert_eq!(dangling_refs(&doc), Vec::<String>::new(), "{rel}");
    assert_eq!(
        str_at(&doc, &["servers", "local", "host"]),
        Some("127.0.0.1:5672")
    );

    let channels = doc["channels"].as_mapping().unwrap();
    let exchange: Vec<&Value> = channels
        .values()
        .filter(|c| str_at(c, &["bindings", "amqp", "is"]) == Some("routingKey"))
        .collect();
    assert_eq!(exchange.len(), 1, "exactly one exchange channel");
    let ex = &exchange[0]["bindings"]["amqp"]["exchange"];
    assert_eq!(str_at(exchange[0], &["address"]), Some(PAY_RESULT_EXCHANGE));
    assert_eq!(ex["name"].as_str(), Some(PAY_RESULT_EXCHANGE));
    assert_eq!(ex["type"].as_str(), Some("fanout"));
    assert_eq!(ex["durable"].as_bool(), Some(true));

    let mut queues: Vec<&str> = channels
        .values()
        .filter(|c| str_at(c, &["bindings", "amqp", "is"]) == Some("queue"))
        .map(|c| {
            assert_eq!(
                c["bindings"]["amqp"]["queue"]["durable"].as_bool(),
                Some(true)
            );
            assert_eq!(
                str_at(c, &["x-queue-arguments", "x-queue-type"]),
                Some("quorum")
            );
            str_at(c, &["address"]).unwrap()
        })
        .collect();
    queues.sort();
    let mut expected = PAY_RESULT_SUBSCRIBERS.to_vec();
    expected.sort();
    assert_eq!(queues, expected, "{rel}: subscriber queues");

    let publish = &doc["operations"]["publishPayResult"];
    assert_eq!(publish["action"].as_str(), Some("send"));
    assert_eq!(
        publish["bindings"]["amqp"]["deliveryMode"].as_i64(),
        Some(2)
    );

    let message = &doc["components"]["messages"]["payResultV1"];
    assert_eq!(message["name"].as_str(), Some(PayResultV1::EVENT_TYPE));
    assert_eq!(message["contentType"].as_str(), Some("application/json"));

    // The documented properties are exactly what the Rust types serialise.
    let sample = PayResultV1 {
        pay_no: PayNo::from(7),
        order_id: OrderId::from(8),
        user_id: UserId::parse("s1").unwrap(),
        biz_type: BizType::Course,
        biz_id: "9".into(),
        channel: PayChannel::Wechat,
        amount_fen: Fen::new(100).unwrap(),
        channel_trade_no: "42".into(),
        paid_at: chrono::Utc::now(),
    }
    .into_envelope(EventId::from(1), chrono::Utc::now());
    let json = serde_json::to_value(&sample).unwrap();
    let keys = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    let doc_keys = |schema: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{rel}: schema {schema}"))
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(doc_keys("PayResultEnvelope"), keys(&json));
    assert_eq!(doc_keys("PayResultV1"), keys(&json["data"]));

    // The documented example is a real event: it deserialises into the Rust type.
    let example = &message["examples"][0]["payload"];
    let example: serde_json::Value =
        serde_json::to_value(example).expect("example converts to JSON");
    let parsed: paywire_domain::EventEnvelope<PayResultV1> =
        serde_json::from_value(example).expect("the example is a valid pay.result.v1");
    assert_eq!(parsed.event_type, PayResultV1::EVENT_TYPE);
}

// ---------------------------------------------------------------- deploy

/// `HttpSettings::on_port(N)` in the service's `Settings::default()`.
fn default_port_in_code(service: &str) -> u16 {
    let src = read(&format!("services/{service}/src/lib.rs"));
    let start = src
        .find("HttpSettings::on_port(")
        .unwrap_or_else(|| panic!("services/{service}/src/lib.rs: no default port"));
    let rest = &src[start + "HttpSettings::on_port(".len()..];
    rest[..rest.find(')').unwrap()].trim().parse().unwrap()
}

fn compose_env(service: &Value) -> BTreeMap<String, String> {
    let env = service["environment"]
        .as_mapping()
        .expect("environment is a mapping");
    env.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => panic!("env {k:?} must be a quoted string, got {other:?}"),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect()
}

#[test]
fn compose_runs_every_service_with_its_documented_port_and_database() {
    let compose = yaml("deploy/compose.yaml");
    let services = &compose["services"];
    let mut on_disk: Vec<String> = std::fs::read_dir(layout::repo_root().join("services"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut worker_ids = BTreeSet::new();
    for name in &on_disk {
        let s = services
            .get(name.as_str())
            .unwrap_or_else(|| panic!("compose has no service {name}"));
        let known = layout::service(name);
        assert_eq!(
            str_at(s, &["build", "args", "SERVICE"]),
            Some(name.as_str())
        );
        assert_eq!(
            str_at(s, &["build", "dockerfile"]),
            Some("deploy/Dockerfile")
        );
        let context = layout::repo_root()
            .join("deploy")
            .join(str_at(s, &["build", "context"]).unwrap());
        assert!(context.join("Cargo.toml").is_file() && context.join("services").is_dir());

        let port = default_port_in_code(name);
        assert_eq!(port, known.port, "xtask's table vs services/{name}");
        let ports: Vec<&str> = s["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            ports,
            vec![format!("{port}:{port}")],
            "{name}: published ports"
        );

        let env = compose_env(s);
        assert_eq!(
            env.get("PAYWIRE__HTTP__PORT"),
            Some(&port.to_string()),
            "{name}"
        );
        assert_eq!(
            env.get("PAYWIRE__HTTP__HOST").map(String::as_str),
            Some("0.0.0.0")
        );
        assert_eq!(
            env.get("PAYWIRE__TELEMETRY__JSON").map(String::as_str),
            Some("true")
        );
        match known.database {
            Some(db) => {
                assert_eq!(
                    env.get("PAYWIRE__DATABASE__URL"),
                    Some(&format!("postgres://postgres@postgres:5432/{db}")),
                    "{name}"
                );
                assert!(env.contains_key("PAYWIRE__AMQP__URL"), "{name}");
                for dep in ["postgres", "rabbitmq"] {
                    assert_eq!(
                        str_at(s, &["depends_on", dep, "condition"]),
                        Some("service_healthy"),
                        "{name} must wait for {dep}"
                    );
                }
                let id = env
                    .get("PAYWIRE__IDS__WORKER_ID")
                    .unwrap_or_else(|| panic!("{name}: no worker id"));
                assert!(
                    worker_ids.insert(id.clone()),
                    "{name}: worker id {id} reused"
                );
                assert_eq!(
                    Some(id.clone()),
                    known.worker_id.map(|w| w.to_string()),
                    "{name}: same worker id as `cargo xtask up`"
                );
            }
            None => assert!(!env.contains_key("PAYWIRE__DATABASE__URL")),
        }
        assert!(
            s["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|v| v.as_str() == Some("./test-keys:/keys:ro")),
            "{name}: keys mounted read-only"
        );
    }
    for infra in ["postgres", "rabbitmq"] {
        assert!(
            services[infra]["healthcheck"]["test"].is_sequence(),
            "{infra}"
        );
    }
    assert_eq!(
        str_at(services, &["postgres", "image"]),
        Some("postgres:15")
    );
    assert_eq!(
        str_at(services, &["rabbitmq", "image"]),
        Some("rabbitmq:3.10")
    );
}

/// `section.key` of a `PAYWIRE__SECTION__KEY` variable names a settings field: the
/// section is a field of the service's `Settings`, the key a field of a settings struct in
/// the platform or the service. Key files named under `/keys` exist in `deploy/test-keys`.
#[test]
fn compose_environment_names_real_settings_and_existing_keys() {
    let compose = yaml("deploy/compose.yaml");
    let platform = read("crates/platform/src/config.rs");
    for s in SERVICES {
        let lib = read(&format!("services/{}/src/lib.rs", s.name));
        let source = format!("{platform}\n{}", service_source(s.name));
        for (var, value) in compose_env(&compose["services"][s.name]) {
            let rest = var
                .strip_prefix("PAYWIRE__")
                .unwrap_or_else(|| panic!("{}: {var} is not a PAYWIRE__ variable", s.name));
            let (section, key) = rest
                .split_once("__")
                .unwrap_or_else(|| panic!("{}: {var} is not SECTION__KEY", s.name));
            let (section, key) = (section.to_lowercase(), key.to_lowercase());
            assert!(
                lib.contains(&format!("pub {section}:")),
                "{}: {var}: Settings has no section {section}",
                s.name
            );
            assert!(
                source.contains(&format!("pub {key}:")),
                "{}: {var}: no settings field {key}",
                s.name
            );
            if let Some(file) = value.strip_prefix("/keys/") {
                let path = layout::repo_root().join("deploy/test-keys").join(file);
                assert!(
                    path.is_file(),
                    "{}: {var}: {} missing",
                    s.name,
                    path.display()
                );
            }
        }
    }
}

#[test]
fn dockerfile_builds_one_locked_service_into_a_non_root_image() {
    let dockerfile = read("deploy/Dockerfile");
    for needle in [
        "FROM rust:1.95-bookworm AS builder",
        "ARG SERVICE",
        "cargo build --release --locked -p \"${SERVICE}\"",
        "FROM debian:bookworm-slim",
        "ca-certificates",
        "/usr/local/bin/service",
        "ENTRYPOINT [\"/usr/local/bin/service\"]",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

/// `deploy/config/<service>.example.toml`: sections and keys are real settings, the port,
/// database and worker id agree with the code and xtask, and key files exist.
#[test]
fn example_config_files_name_real_settings() {
    let platform = read("crates/platform/src/config.rs");
    for s in SERVICES {
        let rel = format!("deploy/config/{}.example.toml", s.name);
        let path = layout::repo_root().join(&rel);
        let parsed: serde_json::Value = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .unwrap_or_else(|e| panic!("{rel}: {e}"));
        let lib = read(&format!("services/{}/src/lib.rs", s.name));
        let source = format!("{platform}\n{}", service_source(s.name));
        for (section, table) in parsed.as_object().unwrap() {
            assert!(
                lib.contains(&format!("pub {section}:")),
                "{rel}: Settings has no section {section}"
            );
            for (key, value) in table.as_object().unwrap() {
                assert!(
                    source.contains(&format!("pub {key}:")),
                    "{rel}: no settings field {section}.{key}"
                );
                if key.ends_with("_path") {
                    let file = layout::repo_root().join(value.as_str().unwrap());
                    assert!(
                        file.is_file(),
                        "{rel}: {section}.{key}: {} missing",
                        file.display()
                    );
                }
            }
        }
        let port = parsed["http"]["port"].as_i64();
        assert_eq!(port, Some(i64::from(default_port_in_code(s.name))), "{rel}");
        assert_eq!(
            parsed["database"]["url"].as_str().map(str::to_owned),
            s.database_url(layout::DEFAULT_PG),
            "{rel}"
        );
        assert_eq!(
            parsed["ids"]["worker_id"].as_i64(),
            s.worker_id.map(i64::from),
            "{rel}"
        );
        // Secrets belong in the environment, never in a file that may be committed.
        let text = read(&rel);
        for secret in ["jwt_secret", "service_token", "apiv3_key"] {
            assert!(
                !text.lines().any(|l| l.trim_start().starts_with(secret)),
                "{rel} sets {secret}"
            );
        }
    }
}
