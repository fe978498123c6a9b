//! Where things are: the services, their default ports and databases, the repository.

use std::path::PathBuf;

/// One of the platform's binaries, as documented in `docs/architecture.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Cargo package and binary name.
    pub name: &'static str,
    /// Default public HTTP port (the service's compiled-in default): user API, callbacks.
    pub port: u16,
    /// Default internal port (`port` + 100, the platform's default): `/internal/*`,
    /// `/metrics`, `/health/*`, the sandbox's admin API.
    pub internal_port: u16,
    /// Its own database, if it has one.
    pub database: Option<&'static str>,
    /// Snowflake worker id (`ids.worker_id`) for services that generate ids; distinct so
    /// ids never collide across services.
    pub worker_id: Option<u16>,
}

/// Started in this order: dependencies before their callers.
pub const SERVICES: &[Service] = &[
    Service {
        name: "channel-sandbox",
        port: 8090,
        internal_port: 8190,
        database: None,
        worker_id: None,
    },
    Service {
        name: "learning-center",
        port: 8081,
        internal_port: 8181,
        database: Some("paywire_learning"),
        worker_id: Some(1),
    },
    Service {
        name: "payment-gateway",
        port: 8083,
        internal_port: 8183,
        database: Some("paywire_payment"),
        worker_id: Some(3),
    },
    Service {
        name: "order",
        port: 8082,
        internal_port: 8182,
        database: Some("paywire_order"),
        worker_id: Some(2),
    },
    // Last: the pages and the proxy in front of the public APIs.
    Service {
        name: "cashier",
        port: 8080,
        internal_port: 8180,
        database: None,
        worker_id: None,
    },
];

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432";

pub fn service(name: &str) -> &'static Service {
    SERVICES
        .iter()
        .find(|s| s.name == name)
        .expect("service names are constants of this crate")
}

impl Service {
    /// The public listener.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The internal listener.
    pub fn internal_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.internal_port)
    }

    /// `<server>/<database>` on the server named by `PAYWIRE_PG` (or the local default).
    pub fn database_url(&self, pg_server: &str) -> Option<String> {
        self.database
            .map(|db| format!("{}/{db}", pg_server.trim_end_matches('/')))
    }
}

/// The PostgreSQL server: `$PAYWIRE_PG` or the local default.
pub fn pg_server() -> String {
    std::env::var("PAYWIRE_PG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_PG.to_owned())
}

/// The broker: `$PAYWIRE__AMQP__URL` (which the services read too) or the local default.
pub fn amqp_url() -> String {
    std::env::var("PAYWIRE__AMQP__URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| paywire_platform::config::AmqpSettings::default().url)
}

/// The commit the services are built from (`paywire_build_info`), `unknown` outside git.
pub fn git_sha() -> String {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| {
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    })
    .clone()
}

/// The workspace root: services load `deploy/test-keys/...` and `config/<service>.toml`
/// relative to it.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `target/debug/<name>` (respecting `CARGO_TARGET_DIR`).
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("debug").join(name)
}

/// `cargo metadata --format-version 1 --offline` of the workspace, with `extra` arguments
/// (for the tests that read the dependency graph).
#[cfg(test)]
pub fn cargo_metadata(extra: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(extra)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_follow_the_server() {
        let order = service("order");
        assert_eq!(
            order.database_url(DEFAULT_PG).as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/paywire_order")
        );
        assert_eq!(
            order.database_url("postgres://u@db:6543/").as_deref(),
            Some("postgres://u@db:6543/paywire_order")
        );
        assert_eq!(service("channel-sandbox").database_url(DEFAULT_PG), None);
        assert_eq!(order.base_url(), "http://127.0.0.1:8082");
        assert_eq!(order.internal_url(), "http://127.0.0.1:8182");
    }

    #[test]
    fn internal_ports_are_the_platforms_default_and_collide_with_nothing() {
        let mut ports = Vec::new();
        for s in SERVICES {
            let http = paywire_platform::config::HttpSettings::on_port(s.port);
            assert_eq!(http.internal_port(), Some(s.internal_port), "{}", s.name);
            ports.extend([s.port, s.internal_port]);
        }
        let n = ports.len();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), n, "two listeners share a port");
    }

    #[test]
    fn worker_ids_are_distinct() {
        let mut ids: Vec<u16> = SERVICES.iter().filter_map(|s| s.worker_id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert!(
            SERVICES
                .iter()
                .all(|s| s.worker_id.is_some() == s.database.is_some())
        );
    }

    /// `(package, dependency)` for every path dependency (any kind: normal, dev, build) of a
    /// workspace package under `from/` on a package under one of `to/`, as `cargo
    /// metadata` resolves them (workspace-inherited paths included).
    fn path_deps(from: &str, to: &[&str]) -> Vec<(String, String)> {
        let meta = cargo_metadata(&["--no-deps"]);
        let root = repo_root();
        let under = |path: &str, dir: &str| std::path::Path::new(path).starts_with(root.join(dir));
        let mut found = Vec::new();
        for package in meta["packages"].as_array().unwrap() {
            if !under(package["manifest_path"].as_str().unwrap(), from) {
                continue;
            }
            for dep in package["dependencies"].as_array().unwrap() {
                if let Some(path) = dep["path"].as_str()
                    && to.iter().any(|dir| under(path, dir))
                {
                    found.push((
                        package["name"].as_str().unwrap().to_owned(),
                        dep["name"].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
        found
    }

    #[test]
    fn libraries_depend_on_no_service_or_harness() {
        assert_eq!(path_deps("crates", &["services", "testing"]), vec![]);
        // The check sees path dependencies: the end-to-end harness does depend on services.
        let e2e = path_deps("testing", &["services"]);
        assert!(
            e2e.contains(&("paywire-e2e".into(), "order".into())),
            "{e2e:?}"
        );
    }

    #[test]
    fn every_service_directory_is_known() {
        let mut on_disk: Vec<String> = std::fs::read_dir(repo_root().join("services"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut known: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
        known.sort();
        assert_eq!(on_disk, known);
        assert!(repo_root().join("Cargo.toml").is_file());
    }
}
