//! Layered configuration: compiled-in defaults → optional TOML file → environment.
//!
//! * file: `$PAYWIRE_CONFIG` if set, else `config/<service>.toml` if it exists;
//! * environment: `PAYWIRE__<SECTION>__<KEY>`, e.g. `PAYWIRE__HTTP__PORT=9000`;
//! * secret files: `PAYWIRE__<SECTION>__<KEY>_FILE=/run/secrets/x` sets `<section>.<key>`
//!   to the file's content (one trailing newline dropped), as container secrets are
//!   mounted; it wins over the plain variable.
//!
//! Each service has one settings struct built from the shared sections below; its
//! `Default` is what a developer gets with a bare `cargo run -p <service>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ::config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::PlatformError;

/// Loads `T` for `service`, layering file and environment over `T::default()`.
pub fn load<T>(service: &str) -> Result<T, PlatformError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let defaults = Config::try_from(&T::default())?;
    let mut builder = Config::builder().add_source(defaults);
    let file = std::env::var_os("PAYWIRE_CONFIG")
        .map(PathBuf::from)
        .map(|p| (p, true))
        .unwrap_or_else(|| (PathBuf::from(format!("config/{service}.toml")), false));
    builder = builder.add_source(File::from(file.0).format(FileFormat::Toml).required(file.1));
    builder = builder.add_source(
        Environment::with_prefix("PAYWIRE")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true),
    );
    for (key, value) in secret_files(std::env::vars())? {
        builder = builder.set_override(key, value)?;
    }
    Ok(builder.build()?.try_deserialize()?)
}

/// `(section.key, content)` for every `PAYWIRE__SECTION__KEY_FILE` variable.
fn secret_files(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, PlatformError> {
    let mut out = Vec::new();
    for (var, path) in vars {
        let Some(key) = var
            .strip_prefix("PAYWIRE__")
            .and_then(|rest| rest.strip_suffix("_FILE"))
            .filter(|key| key.contains("__"))
        else {
            continue;
        };
        let content = std::fs::read_to_string(&path).map_err(|e| {
            PlatformError::Config(::config::ConfigError::Message(format!(
                "{var}: reading {path}: {e}"
            )))
        })?;
        let content = content
            .strip_suffix('\n')
            .map(|c| c.strip_suffix('\r').unwrap_or(c))
            .unwrap_or(&content)
            .to_owned();
        out.push((key.to_lowercase().replace("__", "."), content));
    }
    Ok(out)
}

/// The two listeners of every service (issue 9): the public one (`host`, `port`) serves
/// the user API and the channels' callbacks; the internal one (`internal_host`,
/// `internal_port`) serves `/internal/*`, `/metrics`, `/health/*` and the sandbox's admin
/// API, for other services, Prometheus and the orchestrator only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// The internal listener's address; unset: the same as `host`
    /// (`PAYWIRE__HTTP__INTERNAL_HOST`).
    pub internal_host: Option<String>,
    /// The internal listener's port; unset: `port` + [`INTERNAL_PORT_OFFSET`], or a free
    /// port when `port` is 0 (`PAYWIRE__HTTP__INTERNAL_PORT`).
    pub internal_port: Option<u16>,
    /// Actix worker threads per listener; 0 means one per core.
    pub workers: usize,
}

/// The internal port's distance from the public one when `http.internal_port` is unset:
/// order 8082 → 8182.
pub const INTERNAL_PORT_OFFSET: u16 = 100;

impl HttpSettings {
    pub fn on_port(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            internal_host: None,
            internal_port: None,
            workers: 0,
        }
    }

    /// Where the internal listener binds: `internal_host`, else `host`.
    pub fn internal_host(&self) -> &str {
        self.internal_host.as_deref().unwrap_or(&self.host)
    }

    /// The internal listener's port: `internal_port`, else `port` + 100 (0 stays 0: a free
    /// port). `None` when `port` + 100 is no port.
    pub fn internal_port(&self) -> Option<u16> {
        match (self.internal_port, self.port) {
            (Some(port), _) => Some(port),
            (None, 0) => Some(0),
            (None, port) => port.checked_add(INTERNAL_PORT_OFFSET),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self::on_port(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/dbname`; the database is created if missing.
    pub url: String,
    pub max_connections: usize,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
    /// How long a new connection keeps being tried while the server refuses (a restart,
    /// a failover) before the request that needed it fails with `503`.
    pub connect_patience_ms: u64,
    /// How long a request that is safe to repeat (a read, a write keyed by its business
    /// record) keeps being repeated inside the service after a database fault that passes
    /// (`db::repeat_while_unavailable`) before it answers `503`.
    pub retry_budget_ms: u64,
}

/// See [`DatabaseSettings::connect_patience_ms`]: covers a restart of a few seconds and
/// stays below the 5 s our own callers wait for an answer.
pub const DEFAULT_CONNECT_PATIENCE_MS: u64 = 4000;

/// See [`DatabaseSettings::retry_budget_ms`]: a new try starts only within it, so with the
/// pool's patience an answer comes within about 5 s, what our own callers wait.
pub const DEFAULT_RETRY_BUDGET_MS: u64 = 1000;

impl DatabaseSettings {
    pub fn local(dbname: &str) -> Self {
        Self {
            url: format!("postgres://postgres@127.0.0.1:5432/{dbname}"),
            max_connections: 10,
            migrate: true,
            connect_patience_ms: DEFAULT_CONNECT_PATIENCE_MS,
            retry_budget_ms: DEFAULT_RETRY_BUDGET_MS,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self::local("paywire")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AmqpSettings {
    /// `amqp://user:pass@host:port/vhost` (vhost `/` is `%2f`), or the nodes of a cluster
    /// as a comma-separated list of such URLs: connections go to the first node that
    /// answers, starting with the one that answered last ([`broker_nodes`]). A comma inside
    /// a password must be percent-encoded (`%2C`).
    pub url: String,
    /// Messages a consumer may hold unacknowledged.
    pub prefetch: u16,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefetch: 20,
        }
    }
}

/// The broker nodes named by [`AmqpSettings::url`]: its comma-separated URLs, trimmed,
/// empty entries skipped. A single URL is a list of one.
pub fn broker_nodes(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .collect()
}

/// Development-only secrets. Real deployments override both through the environment.
pub const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-change-me-in-production";
pub const DEV_SERVICE_TOKEN: &str = "dev-only-service-token-change-me";
/// The operators' tooling's development credential (`auth.callers.operator`).
pub const DEV_OPERATOR_TOKEN: &str = "dev-only-operator-token-change-me";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HS256 key for development user JWTs (dev sign-in, `cargo xtask token`); unused
    /// once [`jwks`](Self::jwks) is set.
    #[serde(serialize_with = "expose_for_layering")]
    pub jwt_secret: SecretString,
    /// The credential this service presents when it calls another (`X-Service-Token`).
    #[serde(serialize_with = "expose_for_layering")]
    pub service_token: SecretString,
    /// The credentials of the callers this service admits on `/internal/*`, by name
    /// (`order`, `operator`; `PAYWIRE__AUTH__CALLERS__ORDER`): a presented credential
    /// names its caller, and each route admits only the callers it names. Development
    /// defaults: the order service's is [`DEV_SERVICE_TOKEN`], the operators'
    /// [`DEV_OPERATOR_TOKEN`].
    #[serde(serialize_with = "expose_map_for_layering")]
    pub callers: BTreeMap<String, SecretString>,
    /// The identity provider's signing keys: a JWKS file path, or an `https://` URL
    /// fetched at start-up and every [`jwks_refresh_secs`](Self::jwks_refresh_secs). Set,
    /// user tokens must be RS256 or EdDSA signed by one of its keys (matched by `kid`) and
    /// carry `iss` = [`issuer`](Self::issuer) and `aud` = [`audience`](Self::audience);
    /// HS256 tokens are refused. Empty: development HS256 tokens. Production requires it.
    pub jwks: String,
    /// Required `iss` of identity-provider tokens.
    pub issuer: String,
    /// Required `aud` of identity-provider tokens (this platform's API).
    pub audience: String,
    /// The longest lifetime (`exp - iat`, seconds) a user token may claim.
    pub max_token_lifetime_secs: u64,
    /// How often a JWKS URL is fetched again, so rotated keys are picked up.
    pub jwks_refresh_secs: u64,
}

/// A day: the development tokens' lifetime, and the default cap on any token's.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: SecretString::from(DEV_JWT_SECRET),
            service_token: SecretString::from(DEV_SERVICE_TOKEN),
            callers: [
                (crate::auth::caller::ORDER, DEV_SERVICE_TOKEN),
                (crate::auth::caller::OPERATOR, DEV_OPERATOR_TOKEN),
            ]
            .into_iter()
            .map(|(name, token)| (name.to_owned(), SecretString::from(token)))
            .collect(),
            jwks: String::new(),
            issuer: String::new(),
            audience: String::new(),
            max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            jwks_refresh_secs: 300,
        }
    }
}

/// [`expose_for_layering`] for a map of secrets.
pub fn expose_map_for_layering<S: serde::Serializer>(
    secrets: &BTreeMap<String, SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    s.collect_map(secrets.iter().map(|(k, v)| (k, v.expose_secret())))
}

/// `config` layers by serialising the defaults; secrets are exposed only to that step.
/// They never reach logs: `SecretString`'s `Debug` prints `[REDACTED]`.
pub fn expose_for_layering<S: serde::Serializer>(
    secret: &SecretString,
    s: S,
) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    s.serialize_str(secret.expose_secret())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `tracing` filter, e.g. `info,paywire=debug`.
    pub filter: String,
    /// Emit JSON lines (containers) instead of human-readable text.
    pub json: bool,
    /// Base URL of an OTLP/HTTP receiver (a collector's `http://host:4318`); spans are sent
    /// to `<otlp_endpoint>/v1/traces` as protobuf. Empty (the default): no export; trace
    /// context is still continued and passed on, and logs still carry `trace_id`.
    pub otlp_endpoint: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            json: false,
            otlp_endpoint: String::new(),
        }
    }
}

/// Where an instance's snowflake worker id comes from: `worker_id` + `ordinal`. One
/// process per service (development, compose): `ordinal` stays 0 and `worker_id` is the
/// id. Several replicas (Kubernetes): `worker_id` is the service's base and `ordinal` the
/// pod's StatefulSet ordinal, so the service owns the ids `worker_id ..
/// worker_id + ordinals` and two pods never share one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IdSettings {
    /// Snowflake worker id (0–1023) or, with `ordinal`, the first of the service's range.
    pub worker_id: u16,
    /// This instance's place in the service's range (`PAYWIRE__IDS__ORDINAL`, from the
    /// pod's `apps.kubernetes.io/pod-index` label); 0 by default.
    pub ordinal: u16,
    /// How many ids the service's range holds: an `ordinal` at or past it would take an
    /// id of the next service's range.
    pub ordinals: u16,
}

impl Default for IdSettings {
    fn default() -> Self {
        Self {
            worker_id: 1,
            ordinal: 0,
            ordinals: 100,
        }
    }
}

impl IdSettings {
    /// This instance's snowflake worker id, or the setting at fault and why: the ordinal
    /// is outside the service's range, or the sum outside the snowflake's 10 bits.
    pub fn effective_worker_id(&self) -> Result<u16, (&'static str, String)> {
        let max = paywire_domain::id::MAX_WORKER_ID;
        if self.ordinal >= self.ordinals {
            return Err((
                "ids.ordinal",
                format!(
                    "{} is outside the service's {} ids (ids.ordinals): the worker id would \
                     belong to another service's range",
                    self.ordinal, self.ordinals
                ),
            ));
        }
        match self.worker_id.checked_add(self.ordinal) {
            Some(id) if id <= max => Ok(id),
            _ => Err((
                if self.ordinal == 0 {
                    "ids.worker_id"
                } else {
                    "ids.ordinal"
                },
                format!(
                    "ids.worker_id {} + ids.ordinal {} exceeds the largest worker id {max}",
                    self.worker_id, self.ordinal
                ),
            )),
        }
    }

    /// The instance's id generator.
    pub fn generator(&self) -> anyhow::Result<paywire_domain::IdGenerator> {
        let id = self
            .effective_worker_id()
            .map_err(|(setting, problem)| anyhow::anyhow!("{setting}: {problem}"))?;
        Ok(paywire_domain::IdGenerator::new(id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_nodes_split_a_cluster_list() {
        assert_eq!(
            broker_nodes("amqp://u:p@127.0.0.1:5672/%2f"),
            ["amqp://u:p@127.0.0.1:5672/%2f"]
        );
        assert_eq!(
            broker_nodes(" amqp://u:p@a:5672/v , amqp://u:p@b:5672/v,,amqp://u:p@c:5672/v, "),
            [
                "amqp://u:p@a:5672/v",
                "amqp://u:p@b:5672/v",
                "amqp://u:p@c:5672/v"
            ]
        );
        assert!(broker_nodes(" , ").is_empty());
    }
    use secrecy::ExposeSecret;

    fn ids(worker_id: u16, ordinal: u16, ordinals: u16) -> IdSettings {
        IdSettings {
            worker_id,
            ordinal,
            ordinals,
        }
    }

    /// Kubernetes: the service's base plus the pod's ordinal, never past the service's
    /// range or the snowflake's 10 bits.
    #[test]
    fn the_worker_id_is_the_base_plus_the_ordinal_within_its_ranges() {
        assert_eq!(IdSettings::default().effective_worker_id(), Ok(1));
        assert_eq!(ids(200, 0, 100).effective_worker_id(), Ok(200));
        assert_eq!(ids(200, 99, 100).effective_worker_id(), Ok(299));
        assert_eq!(ids(923, 100, 101).effective_worker_id(), Ok(1023));
        let (setting, problem) = ids(200, 100, 100).effective_worker_id().unwrap_err();
        assert_eq!(setting, "ids.ordinal");
        assert!(
            problem.contains("outside the service's 100 ids"),
            "{problem}"
        );
        let (setting, problem) = ids(1000, 24, 100).effective_worker_id().unwrap_err();
        assert_eq!(setting, "ids.ordinal");
        assert!(
            problem.contains("exceeds the largest worker id 1023"),
            "{problem}"
        );
        assert_eq!(
            ids(1024, 0, 100).effective_worker_id().unwrap_err().0,
            "ids.worker_id"
        );
        assert!(ids(u16::MAX, 1, 100).effective_worker_id().is_err());
        assert!(
            ids(300, 5, 10)
                .generator()
                .is_ok_and(|g| g.worker_id() == 305)
        );
        assert!(ids(300, 10, 10).generator().is_err());
    }

    /// `PAYWIRE__IDS__ORDINAL` (the downward API's pod index, a string) reaches the setting.
    #[test]
    fn the_ordinal_comes_from_the_environment() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(default)]
        struct Ids {
            ids: IdSettings,
        }
        let vars = [
            ("PAYWIRE__IDS__WORKER_ID".to_owned(), "200".to_owned()),
            ("PAYWIRE__IDS__ORDINAL".to_owned(), "7".to_owned()),
        ];
        let cfg: Ids = Config::builder()
            .add_source(Config::try_from(&Ids::default()).unwrap())
            .add_source(
                Environment::with_prefix("PAYWIRE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(vars.into())),
            )
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(cfg.ids.effective_worker_id(), Ok(207));
    }

    #[test]
    fn secret_files_set_their_setting_and_missing_ones_are_errors() {
        let dir = std::env::temp_dir().join(format!("paywire-secret-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwt");
        std::fs::write(&file, "s3cret-from-a-file\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let vars = vec![
            ("PAYWIRE__AUTH__JWT_SECRET_FILE".to_owned(), path.clone()),
            // A map entry: the order service's credential as a caller.
            (
                "PAYWIRE__AUTH__CALLERS__ORDER_FILE".to_owned(),
                path.clone(),
            ),
            ("PAYWIRE__HTTP__PORT".to_owned(), "1".to_owned()),
            ("OTHER__X_FILE".to_owned(), "/nonexistent".to_owned()),
            // Not SECTION__KEY: ignored rather than guessed.
            ("PAYWIRE__CONFIG_FILE".to_owned(), "/nonexistent".to_owned()),
        ];
        assert_eq!(
            secret_files(vars.into_iter()).unwrap(),
            vec![
                (
                    "auth.jwt_secret".to_owned(),
                    "s3cret-from-a-file".to_owned()
                ),
                (
                    "auth.callers.order".to_owned(),
                    "s3cret-from-a-file".to_owned()
                )
            ]
        );
        let missing = vec![(
            "PAYWIRE__AUTH__SERVICE_TOKEN_FILE".to_owned(),
            dir.join("absent").to_string_lossy().into_owned(),
        )];
        let err = secret_files(missing.into_iter()).unwrap_err().to_string();
        assert!(err.contains("PAYWIRE__AUTH__SERVICE_TOKEN_FILE"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Sample {
        http: HttpSettings,
        auth: AuthSettings,
    }

    #[test]
    fn file_overrides_defaults_and_secrets_stay_hidden() {
        let dir = std::env::temp_dir().join(format!("paywire-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sample.toml");
        std::fs::write(
            &file,
            "[http]\nport = 9123\n[auth]\nservice_token = \"from-file\"\n\
             [auth.callers]\norder = \"order-from-file\"\n",
        )
        .unwrap();
        let cfg: Sample = Config::builder()
            .add_source(Config::try_from(&Sample::default()).unwrap())
            .add_source(File::from(file).format(FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(cfg.http.port, 9123);
        assert_eq!(cfg.http.host, "127.0.0.1");
        assert_eq!(cfg.http.internal_port(), Some(9223), "public + 100");
        assert_eq!(cfg.http.internal_host(), "127.0.0.1", "the public host");
        assert_eq!(cfg.auth.service_token.expose_secret(), "from-file");
        assert_eq!(cfg.auth.jwt_secret.expose_secret(), DEV_JWT_SECRET);
        // One caller's credential replaced; the other keeps its default.
        assert_eq!(cfg.auth.callers["order"].expose_secret(), "order-from-file");
        assert_eq!(
            cfg.auth.callers["operator"].expose_secret(),
            DEV_OPERATOR_TOKEN
        );
        assert!(
            !format!("{cfg:?}").contains("from-file"),
            "secrets leak into Debug"
        );
    }

    #[test]
    fn the_internal_listener_defaults_to_the_public_port_plus_100_and_follows_the_operator() {
        let mut http = HttpSettings::on_port(8082);
        assert_eq!(http.internal_port(), Some(8182));
        assert_eq!(
            HttpSettings::default().internal_port(),
            Some(0),
            "free port"
        );
        http.port = 65500;
        assert_eq!(http.internal_port(), None, "no port + 100");
        let cfg: Sample = Config::builder()
            .add_source(Config::try_from(&Sample::default()).unwrap())
            .add_source(File::from_str(
                "[http]\nport = 9000\ninternal_host = \"10.0.0.7\"\ninternal_port = 7000\n",
                FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(cfg.http.internal_port(), Some(7000));
        assert_eq!(cfg.http.internal_host(), "10.0.0.7");
        assert_eq!(cfg.http.host, "127.0.0.1");
        // The environment names them like every other setting.
        let cfg: Sample = Config::builder()
            .add_source(Config::try_from(&Sample::default()).unwrap())
            .add_source(
                Environment::with_prefix("PAYWIRE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(
                        [("PAYWIRE__HTTP__INTERNAL_PORT".to_owned(), "9182".to_owned())].into(),
                    )),
            )
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(cfg.http.internal_port(), Some(9182));
        assert_eq!(cfg.http.internal_host(), "127.0.0.1");
    }
}
