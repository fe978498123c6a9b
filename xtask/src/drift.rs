//! Tests that keep `deploy/` and `proto-docs/` in step with the code: Docker is not run
//! here and nobody reads YAML on every change, so these files are checked against the
//! sources they describe.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use paywire_contracts::PayResultV1;
use paywire_domain::PayChannel;
use paywire_domain::topology::{PAY_RESULT_EXCHANGE, PAY_RESULT_SUBSCRIBERS};
use serde_norway::Value;

use crate::compose;
use crate::layout::{self, SERVICES};
use crate::proto_docs::{self, Listener};

pub(crate) fn read(rel: &str) -> String {
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

/// The strings of a YAML sequence, `None` if `v` is not one.
fn seq_strs<'a, B: FromIterator<&'a str>>(v: &'a Value) -> Option<B> {
    Some(v.as_sequence()?.iter().filter_map(Value::as_str).collect())
}

/// The string keys of a YAML mapping, `None` if `v` is not one.
fn key_strs<'a, B: FromIterator<&'a str>>(v: &'a Value) -> Option<B> {
    Some(v.as_mapping()?.keys().filter_map(Value::as_str).collect())
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
pub(crate) fn service_source(name: &str) -> String {
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

/// The first argument of every `.route(` and `web::resource(` call: the path as the
/// service registers it, possibly relative to a `web::scope`.
fn route_literals(source: &str) -> BTreeSet<String> {
    let compact: String = source.split_whitespace().collect::<Vec<_>>().join("");
    [".route(\"", "web::resource(\""]
        .into_iter()
        .flat_map(|call| compact.match_indices(call))
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
            .service(web::resource("/{order_id}/pay-result").wrap(limit(PayResult)))
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
            "/{order_id}/pay".to_owned(),
            "/{order_id}/pay-result".to_owned()
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
        assert_eq!(
            doc["servers"].as_sequence().map(Vec::len),
            Some(1),
            "{rel}: the document's one server is the public listener"
        );
        // Every path of the internal listener names it as its only server; the others
        // inherit the public one.
        for (path, item) in doc["paths"].as_mapping().unwrap() {
            let path = path.as_str().unwrap();
            let servers: Option<Vec<&str>> = item.get("servers").map(|servers| {
                servers
                    .as_sequence()
                    .unwrap_or_else(|| panic!("{rel}: {path}: servers"))
                    .iter()
                    .map(|server| server["url"].as_str().unwrap())
                    .collect()
            });
            match proto_docs::listener(path) {
                Listener::Internal => assert_eq!(
                    servers,
                    Some(vec![s.internal_url().as_str()]),
                    "{rel}: {path} is served by the internal listener"
                ),
                Listener::Public => {
                    assert_eq!(servers, None, "{rel}: {path} is public");
                }
            }
        }
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

/// What registers routes on an actix app.
pub(crate) type Configure = fn(&mut actix_web::web::ServiceConfig);

/// A service's routes by listener, as `paywire_platform::http::serve` assembles them
/// (without app data: a routed request fails in its handler, it is not unrouted).
pub(crate) fn listener_routes(service: &str) -> [(Listener, Configure); 2] {
    let (public, internal): (Configure, Configure) = match service {
        "order" => (order::routes::public, order::routes::internal),
        "learning-center" => (
            learning_center::routes::public,
            learning_center::routes::internal,
        ),
        "payment-gateway" => (
            payment_gateway::routes::public,
            payment_gateway::routes::internal,
        ),
        "cashier" => (|cfg| cashier::public(cfg, true), |_| {}),
        "channel-sandbox" => (channel_sandbox::public, channel_sandbox::internal),
        other => panic!("{other}: unknown service"),
    };
    [(Listener::Public, public), (Listener::Internal, internal)]
}

/// What a router answers when nothing of it matches.
const UNROUTED: u16 = 599;

/// Whether `configure` (plus, for the internal listener, the platform's own routes) routes
/// `method path`, with every `{parameter}` given the value `1`.
pub(crate) async fn routes(
    listener: Listener,
    configure: Configure,
    method: &str,
    path: &str,
) -> bool {
    use actix_web::{App, HttpResponse, http::StatusCode, test, web};
    let mut app = App::new();
    if listener == Listener::Internal {
        app = app.configure(paywire_platform::http::platform_internal);
    }
    let app = test::init_service(app.configure(configure).default_service(web::to(|| async {
        HttpResponse::build(StatusCode::from_u16(UNROUTED).unwrap()).finish()
    })))
    .await;
    let mut uri = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        uri.push_str(&rest[..open]);
        uri.push('1');
        rest = &rest[close + 1..];
    }
    uri.push_str(rest);
    let request = test::TestRequest::default()
        .method(method.to_uppercase().parse().unwrap())
        .uri(&uri)
        .to_request();
    // An error out of a scope's middleware (the sandbox's signing) is an answer too.
    let status = match test::try_call_service(&app, request).await {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    status.as_u16() != UNROUTED
}

/// Issue 9: every documented operation is routed by the listener its document names and
/// not by the other one (the routers themselves are asked, not the source text).
#[actix_web::test]
async fn every_documented_path_is_routed_on_its_listener_only() {
    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];
    for s in SERVICES {
        let doc = yaml(&format!("proto-docs/{}.openapi.yaml", s.name));
        let mut internal_seen = 0;
        for (path, item) in doc["paths"].as_mapping().unwrap() {
            let path = path.as_str().unwrap();
            let documented = proto_docs::listener(path);
            internal_seen += usize::from(documented == Listener::Internal);
            for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                for (listener, configure) in listener_routes(s.name) {
                    let routed = routes(listener, configure, method, path).await;
                    assert_eq!(
                        routed,
                        listener == documented,
                        "{}: {method} {path} on the {listener:?} listener (documented: {documented:?})",
                        s.name
                    );
                }
            }
        }
        assert!(
            internal_seen >= 2,
            "{}: health and metrics are documented",
            s.name
        );
    }
}

#[test]
fn the_listener_naming_knows_every_internal_kind_of_path() {
    for path in [
        "/internal/payments",
        "/metrics",
        "/health",
        "/health/ready",
        "/sandbox/admin/faults",
    ] {
        assert_eq!(proto_docs::listener(path), Listener::Internal, "{path}");
    }
    for path in [
        "/api/orders",
        "/api/callback/{channel}",
        "/healthy",
        "/sandbox/wallet",
        "/",
    ] {
        assert_eq!(proto_docs::listener(path), Listener::Public, "{path}");
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

    // Names, schemas and examples come from the event types (`proto_docs`), so the
    // document cannot describe another shape than the one on the wire.
}

// ---------------------------------------------------------------- deploy

/// The service's `lib.rs`, where its `Settings` are declared, plus the shared sections
/// when it declares them with `paywire_platform::database_service_settings!` (written
/// once in the platform's `lib.rs`).
pub(crate) fn settings_source(service: &str) -> String {
    let lib = read(&format!("services/{service}/src/lib.rs"));
    if lib.contains("database_service_settings!") {
        format!("{lib}\n{}", read("crates/platform/src/lib.rs"))
    } else {
        lib
    }
}

/// The service's default port: `HttpSettings::on_port(N)` in its `Settings::default()`,
/// or `port N` in its `database_service_settings!`.
pub(crate) fn default_port_in_code(service: &str) -> u16 {
    let src = read(&format!("services/{service}/src/lib.rs"));
    let (start, end) = match src.find("HttpSettings::on_port(") {
        Some(at) => (at + "HttpSettings::on_port(".len(), ')'),
        None => (
            src.find(", port ")
                .unwrap_or_else(|| panic!("services/{service}/src/lib.rs: no default port"))
                + ", port ".len(),
            ',',
        ),
    };
    let rest = &src[start..];
    rest[..rest.find(end).unwrap()].trim().parse().unwrap()
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

/// The port of every `http://127.0.0.1:<port>…` value.
fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://127.0.0.1:")?;
    rest.split(['/', '?']).next()?.parse().ok()
}

/// Both compose files: no top-level `name:` (Compose 1.29 rejects it; `-p paywire` works
/// with both versions), only `services`, `volumes`, `secrets` and `x-` extensions.
#[test]
fn compose_files_stay_within_what_compose_1_29_accepts() {
    for file in ["deploy/compose.yaml", "deploy/compose.production.yaml"] {
        let compose = yaml(file);
        for key in compose.as_mapping().unwrap().keys() {
            let key = key.as_str().unwrap();
            assert!(
                ["services", "volumes", "secrets"].contains(&key) || key.starts_with("x-"),
                "{file}: top-level {key:?}"
            );
        }
        for (name, s) in compose["services"].as_mapping().unwrap() {
            assert_eq!(
                str_at(s, &["network_mode"]),
                Some("host"),
                "{file}: {name:?} (no bridge network on this kind of machine)"
            );
            assert!(s.get("ports").is_none(), "{file}: {name:?} publishes ports");
        }
    }
}

#[test]
fn compose_runs_every_service_on_its_own_loopback_port_with_its_database() {
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
        assert_eq!(
            str_at(s, &["image"]),
            Some(format!("paywire/{name}:${{PAYWIRE_IMAGE_TAG:-latest}}").as_str()),
            "{name}: the tag `cargo xtask images` builds"
        );
        let context = layout::repo_root()
            .join("deploy")
            .join(str_at(s, &["build", "context"]).unwrap());
        assert!(context.join("Cargo.toml").is_file() && context.join("services").is_dir());

        // Nothing starts before what it calls is ready (the images' HEALTHCHECK).
        if let Some(deps) = s.get("depends_on").and_then(Value::as_mapping) {
            for (dep, how) in deps {
                assert_eq!(
                    how.get("condition").and_then(Value::as_str),
                    Some("service_healthy"),
                    "{name} must wait until {dep:?} is ready"
                );
            }
        }

        let port = default_port_in_code(name);
        assert_eq!(port, known.port, "xtask's table vs services/{name}");
        let env = compose_env(s);
        assert_eq!(
            env.get("PAYWIRE__HTTP__PORT"),
            Some(&compose::port(known).to_string()),
            "{name}: default port + {}",
            compose::COMPOSE_PORT_OFFSET
        );
        assert_eq!(
            env.get("PAYWIRE__HTTP__INTERNAL_PORT"),
            Some(&compose::internal_port(known).to_string()),
            "{name}: default internal port + {}",
            compose::COMPOSE_PORT_OFFSET
        );
        // Host networking: 0.0.0.0 would publish every API (the sandbox's unauthenticated
        // admin and wallet API included) on all of the machine's interfaces.
        assert_eq!(
            env.get("PAYWIRE__HTTP__HOST").map(String::as_str),
            Some("127.0.0.1"),
            "{name}"
        );
        assert_eq!(
            env.get("PAYWIRE__TELEMETRY__JSON").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            env.get("PAYWIRE__ENVIRONMENT").map(String::as_str),
            Some("development"),
            "{name}: the development stack says so"
        );
        match known.database {
            Some(db) => {
                assert_eq!(
                    env.get("PAYWIRE__DATABASE__URL"),
                    Some(&format!(
                        "postgres://postgres@127.0.0.1:{}/{db}",
                        compose::COMPOSE_PG_PORT
                    )),
                    "{name}"
                );
                assert_eq!(
                    env.get("PAYWIRE__AMQP__URL"),
                    Some(&format!(
                        "amqp://guest:guest@127.0.0.1:{}/%2f",
                        compose::COMPOSE_AMQP_PORT
                    )),
                    "{name}"
                );
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
}

/// Every `http://127.0.0.1:<port>` in a service's environment names the compose port of
/// the service it means, on the listener that serves the path: the channels' APIs are the
/// sandbox's public listener, notify URLs are the gateway's own public callback routes,
/// the order service's upstreams the internal listeners (`/internal/*`), the cashier's the
/// public APIs it proxies.
#[test]
fn compose_urls_point_at_the_containers_they_mean() {
    let compose = yaml("deploy/compose.yaml");
    let expected: &[(&str, &str, &str, &str)] = &[
        (
            "payment-gateway",
            "PAYWIRE__WECHAT__API_BASE",
            "channel-sandbox",
            "",
        ),
        (
            "payment-gateway",
            "PAYWIRE__ALIPAY__GATEWAY_URL",
            "channel-sandbox",
            "/gateway.do",
        ),
        (
            "payment-gateway",
            "PAYWIRE__WECHAT__NOTIFY_URL",
            "payment-gateway",
            "/api/callback/wechat",
        ),
        (
            "payment-gateway",
            "PAYWIRE__ALIPAY__NOTIFY_URL",
            "payment-gateway",
            "/api/callback/alipay",
        ),
        (
            "payment-gateway",
            "PAYWIRE__WECHAT_V2__API_BASE",
            "channel-sandbox",
            "",
        ),
        (
            "payment-gateway",
            "PAYWIRE__WECHAT_V2__NOTIFY_URL",
            "payment-gateway",
            "/api/callback/wechat_v2",
        ),
        (
            "order",
            "PAYWIRE__UPSTREAM__LEARNING_CENTER_URL",
            "learning-center",
            "",
        ),
        (
            "order",
            "PAYWIRE__UPSTREAM__PAYMENT_GATEWAY_URL",
            "payment-gateway",
            "",
        ),
        (
            "cashier",
            "PAYWIRE__UPSTREAM__LEARNING_CENTER_URL",
            "learning-center",
            "",
        ),
        ("cashier", "PAYWIRE__UPSTREAM__ORDER_URL", "order", ""),
        (
            "cashier",
            "PAYWIRE__PAGES__WALLET_URL",
            "channel-sandbox",
            "/sandbox/wallet",
        ),
    ];
    for (service, var, target, path) in expected {
        let env = compose_env(&compose["services"][*service]);
        let target = layout::service(target);
        // The order service calls nothing but `/internal/*`.
        let base = if *service == "order" {
            compose::internal_url(target)
        } else {
            compose::url(target)
        };
        assert_eq!(
            env.get(*var),
            Some(&format!("{base}{path}")),
            "{service}: {var}"
        );
    }
    // The gateway really routes the notify paths it is told to publish.
    let gateway = route_literals(&service_source("payment-gateway"));
    assert!(gateway.contains("/api/callback/{channel}"), "{gateway:?}");
    for channel in ["wechat", "alipay", "wechat_v2"] {
        channel
            .parse::<PayChannel>()
            .unwrap_or_else(|e| panic!("/api/callback/{channel}: {e}"));
    }
    // WeChat Pay v2's `secapi/` goes to the sandbox's own TLS listener.
    let sandbox_tls = compose_env(&compose["services"]["channel-sandbox"])
        .get("PAYWIRE__WECHAT_V2__TLS_PORT")
        .cloned()
        .expect("the sandbox's v2 TLS port");
    let secapi = "PAYWIRE__WECHAT_V2__SECAPI_BASE";
    assert_eq!(
        compose_env(&compose["services"]["payment-gateway"]).get(secapi),
        Some(&format!("https://127.0.0.1:{sandbox_tls}"))
    );
    // No other loopback URL hides anywhere.
    let ports: BTreeSet<u16> = SERVICES
        .iter()
        .flat_map(|s| [compose::port(s), compose::internal_port(s)])
        .collect();
    for s in SERVICES {
        for (var, value) in compose_env(&compose["services"][s.name]) {
            if var == secapi {
                continue;
            }
            if let Some(port) = loopback_port(&value) {
                assert!(ports.contains(&port), "{}: {var} → port {port}", s.name);
                assert!(
                    expected
                        .iter()
                        .any(|(svc, v, _, _)| *svc == s.name && *v == var),
                    "{}: {var} is a loopback URL this test does not know",
                    s.name
                );
            }
        }
    }
}

/// PostgreSQL and RabbitMQ: images made here from Debian's packages, their own ports, and
/// for RabbitMQ its own node name, distribution port and epmd beside the machine's.
#[test]
fn compose_infrastructure_has_ports_of_its_own() {
    let compose = yaml("deploy/compose.yaml");
    let pg = &compose["services"]["postgres"];
    assert_eq!(str_at(pg, &["image"]), Some("paywire/postgres:15"));
    assert_eq!(str_at(pg, &["build", "context"]), Some("images/postgres"));
    let env = compose_env(pg);
    assert_eq!(env["PGPORT"], compose::COMPOSE_PG_PORT.to_string());
    let command: Vec<&str> = seq_strs(&pg["command"]).unwrap();
    assert_eq!(
        command,
        ["postgres", "-c", "listen_addresses=127.0.0.1"],
        "PostgreSQL listens on loopback only"
    );
    let health = format!("{:?}", pg["healthcheck"]["test"]);
    assert!(
        health.contains(&compose::COMPOSE_PG_PORT.to_string()),
        "{health}"
    );

    let mq = &compose["services"]["rabbitmq"];
    assert_eq!(str_at(mq, &["image"]), Some("paywire/rabbitmq:3.10"));
    assert_eq!(str_at(mq, &["build", "context"]), Some("images/rabbitmq"));
    let env = compose_env(mq);
    assert_eq!(
        env["RABBITMQ_NODE_PORT"],
        compose::COMPOSE_AMQP_PORT.to_string()
    );
    assert_eq!(
        env["RABBITMQ_DIST_PORT"],
        compose::COMPOSE_AMQP_DIST_PORT.to_string()
    );
    assert_eq!(env["ERL_EPMD_PORT"], compose::COMPOSE_EPMD_PORT.to_string());
    assert_eq!(env["RABBITMQ_NODE_IP_ADDRESS"], "127.0.0.1");
    assert!(
        !env["RABBITMQ_NODENAME"].starts_with("rabbit@"),
        "the machine's broker is rabbit@…"
    );
    for (name, port) in [
        ("AMQP", compose::COMPOSE_AMQP_PORT),
        ("distribution", compose::COMPOSE_AMQP_DIST_PORT),
        ("epmd", compose::COMPOSE_EPMD_PORT),
        ("PostgreSQL", compose::COMPOSE_PG_PORT),
    ] {
        assert!(
            ![5432, 5672, 25672, 4369].contains(&port)
                && !(8080..=8090).contains(&port)
                && !(8180..=8190).contains(&port),
            "{name} port {port} is taken on a developer's machine"
        );
    }
    for infra in [pg, mq] {
        assert!(infra["healthcheck"]["test"].is_sequence());
    }
}

/// `section.key` of a `PAYWIRE__SECTION__KEY` variable names a settings field: the
/// section is a field of the service's `Settings`, the key a field of a settings struct in
/// the platform or the service. Key files named under `/keys` exist in `deploy/test-keys`.
#[test]
fn compose_environment_names_real_settings_and_existing_keys() {
    let compose = yaml("deploy/compose.yaml");
    let platform = read("crates/platform/src/config.rs");
    for s in SERVICES {
        let lib = settings_source(s.name);
        let source = format!("{platform}\n{}", service_source(s.name));
        for (var, value) in compose_env(&compose["services"][s.name]) {
            check_setting_var(s.name, &var, &lib, &source);
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

/// `PAYWIRE__SECTION__KEY` (optionally `…_FILE`, read from that file) names a real
/// setting of `service`; `PAYWIRE__ENVIRONMENT` is the production-mode switch.
pub(crate) fn check_setting_var(service: &str, var: &str, lib: &str, source: &str) {
    let rest = var
        .strip_prefix("PAYWIRE__")
        .unwrap_or_else(|| panic!("{service}: {var} is not a PAYWIRE__ variable"));
    if rest == "ENVIRONMENT" {
        assert!(
            read("crates/platform/src/production.rs").contains("environment: Environment"),
            "the environment setting moved"
        );
        return;
    }
    let (section, key) = rest
        .split_once("__")
        .unwrap_or_else(|| panic!("{service}: {var} is not SECTION__KEY"));
    let (section, mut key) = (section.to_lowercase(), key.to_lowercase());
    if let Some(k) = key.strip_suffix("_file")
        && !source.contains(&format!("pub {key}:"))
    {
        key = k.to_owned();
    }
    assert!(
        lib.contains(&format!("pub {section}:")),
        "{service}: {var}: Settings has no section {section}"
    );
    // `FIELD__ENTRY` sets one entry of a map field (`auth.callers.order`).
    if let Some((map, _entry)) = key.split_once("__") {
        assert!(
            source.contains(&format!("pub {map}: BTreeMap<")),
            "{service}: {var}: no map settings field {map}"
        );
        return;
    }
    assert!(
        source.contains(&format!("pub {key}:")),
        "{service}: {var}: no settings field {key}"
    );
}

#[test]
fn dockerfile_compiles_every_service_once_into_non_root_images() {
    let dockerfile = read("deploy/Dockerfile");
    for needle in [
        "ARG BUILDER_IMAGE=rust:1.95-bookworm",
        "ARG RUNTIME_IMAGE=debian:bookworm-slim",
        "FROM ${BUILDER_IMAGE} AS builder",
        "FROM ${RUNTIME_IMAGE} AS runtime",
        "cargo build --release --locked",
        "--mount=type=cache,target=/usr/local/cargo/registry",
        "--mount=type=cache,target=/src/target",
        "ARG SERVICE",
        "ca-certificates",
        "COPY --from=binaries /out/${SERVICE} /usr/local/bin/service",
        "ENTRYPOINT [\"/usr/local/bin/service\"]",
        "CMD [\"/usr/local/bin/service\", \"ready\"]",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }
    for s in SERVICES {
        assert!(
            dockerfile.contains(&format!("-p {}", s.name)),
            "the builder stage does not compile {}",
            s.name
        );
    }
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
    // Keys are mounted, never copied into an image.
    assert!(!dockerfile.contains("test-keys"));
}

/// Every Dockerfile: base images are build arguments defaulting to public images, no
/// `# syntax=` line (it pulls a frontend image), and the last stage runs as a non-root user.
#[test]
fn dockerfiles_build_without_a_registry_and_run_as_non_root() {
    for rel in [
        "deploy/Dockerfile",
        "deploy/images/rust-builder/Dockerfile",
        "deploy/images/postgres/Dockerfile",
        "deploy/images/rabbitmq/Dockerfile",
    ] {
        let text = read(rel);
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().to_lowercase().starts_with("# syntax")),
            "{rel}: a syntax directive pulls a frontend image"
        );
        for line in text.lines().filter(|l| l.starts_with("FROM ")) {
            let image = line.split_whitespace().nth(1).unwrap();
            assert!(
                image.starts_with("${")
                    || image == "scratch"
                    || text.contains(&format!("AS {image}")),
                "{rel}: {line:?} names an image instead of a build argument"
            );
        }
        for arg in text.lines().filter_map(|l| l.strip_prefix("ARG ")) {
            if let Some((name, default)) = arg.split_once('=')
                && name.ends_with("_IMAGE")
            {
                assert!(
                    ["rust:1.95-bookworm", "debian:bookworm-slim"].contains(&default),
                    "{rel}: {name} defaults to {default}"
                );
            }
        }
        if rel.contains("rust-builder") {
            continue;
        }
        let user = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{rel}: the runtime stage sets no USER"));
        assert!(
            !user.starts_with("root") && !user.starts_with('0'),
            "{rel}: USER {user}"
        );
    }
}

/// The production-shaped stack: production mode everywhere, no sandbox, no test keys, no
/// dev sign-in, and every secret a mounted file (never a value in the file or environment).
#[test]
fn production_compose_reads_secrets_from_files_and_runs_no_sandbox() {
    let compose = yaml("deploy/compose.production.yaml");
    let services = &compose["services"];
    let declared: BTreeSet<&str> = key_strs(&compose["secrets"]).unwrap();
    let platform = read("crates/platform/src/config.rs");
    assert!(services.get("channel-sandbox").is_none());
    for s in SERVICES.iter().filter(|s| s.name != "channel-sandbox") {
        let svc = &services[s.name];
        let env = compose_env(svc);
        assert_eq!(env["PAYWIRE__ENVIRONMENT"], "production", "{}", s.name);
        assert!(
            svc.get("volumes").is_none(),
            "{}: mounts no test keys",
            s.name
        );
        // The cashier holds none: users sign in at the identity provider.
        let mounted: BTreeSet<&str> = seq_strs(&svc["secrets"]).unwrap_or_default();
        let lib = settings_source(s.name);
        let source = format!("{platform}\n{}", service_source(s.name));
        for (var, value) in &env {
            check_setting_var(s.name, var, &lib, &source);
            let lower = var.to_lowercase();
            if [
                "secret",
                "token",
                "callers",
                "apiv3_key",
                "database__url",
                "amqp__url",
            ]
            .iter()
            .any(|w| lower.contains(w))
            {
                assert!(
                    var.ends_with("_FILE"),
                    "{}: {var} must come from a secret file",
                    s.name
                );
            }
            if let Some(secret) = value.strip_prefix("/run/secrets/") {
                assert!(
                    mounted.contains(secret),
                    "{}: {var}: {secret} not mounted",
                    s.name
                );
                assert!(declared.contains(secret), "{secret} not declared");
            }
            assert!(
                !value.contains("test-keys") && !value.contains("/keys/"),
                "{}: {var} names a test key",
                s.name
            );
            if var.ends_with("__API_BASE") || var.ends_with("__GATEWAY_URL") {
                assert!(value.starts_with("https://"), "{}: {var}", s.name);
            }
        }
    }
    assert_eq!(
        compose_env(&services["cashier"])["PAYWIRE__DEV_LOGIN__ENABLED"],
        "false"
    );
    // The database password is a file too.
    assert_eq!(
        compose_env(&services["postgres"])["POSTGRES_PASSWORD_FILE"],
        "/run/secrets/postgres_password"
    );
    assert!(!compose_env(&services["postgres"]).contains_key("POSTGRES_HOST_AUTH_METHOD"));
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
        let lib = settings_source(s.name);
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
            parsed["http"]["internal_port"].as_i64(),
            Some(i64::from(s.internal_port)),
            "{rel}: the platform's default, public port + 100"
        );
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

/// Diesel records a migration by its version, the directory name before the first `_`;
/// two migrations with one version in a database means one is never applied (79c46ea
/// shipped the payment gateway's traceparent column under abuse_limits' version, and every
/// channel sync answered 500). Each service's database runs the shared messaging
/// migrations and its own, so versions must be unique across both sets.
#[test]
fn migration_versions_are_unique_in_every_database() {
    let root = layout::repo_root().join("migrations");
    let versions = |folder: &str| -> Vec<(String, String)> {
        std::fs::read_dir(root.join(folder))
            .unwrap_or_else(|e| panic!("migrations/{folder}: {e}"))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .map(|name| {
                let version = name.split('_').next().unwrap().replace('-', "");
                (version, format!("migrations/{folder}/{name}"))
            })
            .collect()
    };
    let mut databases = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let folder = entry.unwrap().file_name().to_string_lossy().into_owned();
        if folder == "messaging" {
            continue;
        }
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (version, dir) in versions("messaging").into_iter().chain(versions(&folder)) {
            if let Some(other) = seen.insert(version.clone(), dir.clone()) {
                panic!("{dir} and {other} share version {version}");
            }
        }
        databases += 1;
    }
    assert_eq!(databases, 3, "learning-center, order, payment-gateway");
}

/// The workspace's `rust-version` (and so the README's prerequisite) is at least what
/// every locked dependency built on Linux asks for: a newcomer with that toolchain can
/// build. (It said 1.88 while actix-web 4.18 needs 1.89.)
#[test]
fn rust_version_covers_every_locked_dependency() {
    // `1.89` and `1.89.0` are the same version: compare three parts.
    let version = |text: &str| -> [u32; 3] {
        let mut parts = [0; 3];
        for (slot, part) in parts.iter_mut().zip(text.split('.')) {
            *slot = part.parse().unwrap();
        }
        parts
    };
    let meta =
        layout::cargo_metadata(&["--locked", "--filter-platform", "x86_64-unknown-linux-gnu"]);
    let built: BTreeSet<&str> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let manifest = read("Cargo.toml");
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("Cargo.toml declares rust-version");
    let ours = version(declared);
    for package in meta["packages"].as_array().unwrap() {
        let (Some(id), Some(needs)) = (package["id"].as_str(), package["rust_version"].as_str())
        else {
            continue;
        };
        if built.contains(id) {
            assert!(
                version(needs) <= ours,
                "{} {} needs Rust {needs}; rust-version says {ours:?}",
                package["name"],
                package["version"]
            );
        }
    }
    let readme = read("README.md");
    let shown = format!("Rust ≥ {declared}");
    assert!(
        readme.contains(&shown),
        "README's prerequisite is not {shown}"
    );
}
