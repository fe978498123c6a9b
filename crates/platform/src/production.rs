//! Production mode: a service started with `PAYWIRE__ENVIRONMENT=production` refuses to run
//! with anything meant for development, and says in one message every setting at fault.
//!
//! Each service implements [`ProductionChecks`] on its settings (using the reusable checks
//! of [`Findings`]) and calls [`enforce`] once at start-up. The findings name settings and
//! what is wrong with them, never their values: secrets stay out of messages and logs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::{RsaPrivateKey, RsaPublicKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::PlatformError;
use crate::config::{AuthSettings, DEV_JWT_SECRET, DEV_OPERATOR_TOKEN, DEV_SERVICE_TOKEN};

/// Shortest secret accepted in production (HS256 keys and shared tokens).
pub const MIN_SECRET_BYTES: usize = 32;

/// The problem of an empty secret: the one finding that refuses a start in development
/// too (issue 9: a service started with an empty service token let an empty
/// `X-Service-Token:` through).
const EMPTY_SECRET: &str = "is empty";

/// Where a service runs. Read like every other setting: `environment` in the config file,
/// `PAYWIRE__ENVIRONMENT` in the environment; development when unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Development => "development",
            Self::Production => "production",
        })
    }
}

/// One setting unfit for production.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// `section.key`, as in the config file.
    pub setting: String,
    /// What is wrong, without the value.
    pub problem: String,
    /// Refuses the start in development too (an empty or short secret), not only in
    /// production.
    pub everywhere: bool,
}

impl Finding {
    /// The environment variable that sets it: `auth.jwt_secret` → `PAYWIRE__AUTH__JWT_SECRET`.
    pub fn env_var(&self) -> String {
        format!(
            "PAYWIRE__{}",
            self.setting.replace('.', "__").to_ascii_uppercase()
        )
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.setting.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{} ({}): {}", self.setting, self.env_var(), self.problem)
        }
    }
}

/// What a service's checks found, with the checks every service shares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings(Vec<Finding>);

impl Findings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, setting: &str, problem: impl Into<String>) {
        self.0.push(Finding {
            setting: setting.to_owned(),
            problem: problem.into(),
            everywhere: false,
        });
    }

    /// A finding that refuses the start in every environment.
    fn push_everywhere(&mut self, setting: &str, problem: impl Into<String>) {
        self.push(setting, problem);
        if let Some(last) = self.0.last_mut() {
            last.everywhere = true;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Finding> {
        self.0.iter()
    }

    /// The settings named, for tests and summaries.
    pub fn settings(&self) -> BTreeSet<&str> {
        self.0.iter().map(|f| f.setting.as_str()).collect()
    }

    /// A secret must not be empty, shorter than `min_bytes`, or one of the development
    /// values compiled into the binaries. Empty and short refuse the start in development
    /// too (issue 9: a secret anyone can guess protects nothing, wherever it runs); the
    /// development values (all at least 32 bytes) only in production.
    pub fn secret(
        &mut self,
        setting: &str,
        secret: &SecretString,
        min_bytes: usize,
        development_values: &[&str],
    ) {
        let value = secret.expose_secret();
        if value.is_empty() {
            self.push_everywhere(setting, EMPTY_SECRET);
        } else if development_values.contains(&value) {
            self.push(
                setting,
                "is the development value compiled into the binaries",
            );
        } else if value.len() < min_bytes {
            self.push_everywhere(
                setting,
                format!(
                    "is {} bytes long; at least {min_bytes} are required",
                    value.len()
                ),
            );
        }
    }

    /// How user tokens are verified, and the service credentials: this service's own
    /// when it `presents` one (it calls other services), and those of the callers it
    /// `admits` on `/internal/*`, which must differ from each other (a credential names
    /// its caller). Production verifies the identity provider's tokens (`auth.jwks`,
    /// `auth.issuer`, `auth.audience`); the HS256 secret is checked only while it is what
    /// verifies them (development).
    pub fn auth(&mut self, auth: &AuthSettings, presents: bool, admits: &[&str]) {
        if auth.jwks.is_empty() {
            self.push(
                "auth.jwks",
                "is not set: production verifies the identity provider's RS256/EdDSA tokens \
                 against its key set (a JWKS file or https:// URL), never development HS256 tokens",
            );
            self.secret(
                "auth.jwt_secret",
                &auth.jwt_secret,
                MIN_SECRET_BYTES,
                &[DEV_JWT_SECRET],
            );
        } else {
            self.jwks(&auth.jwks);
            for (setting, value) in [
                ("auth.issuer", &auth.issuer),
                ("auth.audience", &auth.audience),
            ] {
                if value.is_empty() {
                    self.push(setting, "is not set (required with auth.jwks)");
                }
            }
        }
        if presents {
            self.secret(
                "auth.service_token",
                &auth.service_token,
                MIN_SECRET_BYTES,
                &[DEV_SERVICE_TOKEN],
            );
        }
        let mut seen: Vec<(&str, &SecretString)> = Vec::new();
        for &name in admits {
            let setting = format!("auth.callers.{name}");
            let Some(credential) = auth.callers.get(name) else {
                self.push(
                    &setting,
                    format!("is not set: this service admits {name} on /internal/*"),
                );
                continue;
            };
            self.secret(
                &setting,
                credential,
                MIN_SECRET_BYTES,
                &[DEV_SERVICE_TOKEN, DEV_OPERATOR_TOKEN],
            );
            let value = credential.expose_secret();
            if let Some((other, _)) = seen
                .iter()
                .find(|(_, c)| !value.is_empty() && c.expose_secret() == value)
            {
                self.push(
                    &setting,
                    format!(
                        "is the same credential as auth.callers.{other}: it must say who calls"
                    ),
                );
            }
            seen.push((name, credential));
        }
    }

    /// An RSA key file (private or public, PEM, PKCS#8 or PKCS#1) whose public half is one
    /// of the test-only keys in `deploy/test-keys/`. A file that cannot be read is left to
    /// the service's own loading, which reports it with its path.
    pub fn key_file(&mut self, setting: &str, path: &str) {
        let Ok(pem) = std::fs::read_to_string(Path::new(path)) else {
            return;
        };
        if let Some(fingerprint) = public_key_fingerprint(&pem)
            && test_key_fingerprints().contains(&fingerprint)
        {
            self.push(
                setting,
                "is a TEST-ONLY key from deploy/test-keys (its public key matches)",
            );
        }
    }

    /// The identity provider's key set: an `https://` URL, or a file that is not the
    /// test-only set in `deploy/test-keys/idp/` (recognised by its key ids).
    pub fn jwks(&mut self, setting_value: &str) {
        const SETTING: &str = "auth.jwks";
        if setting_value.starts_with("http://") {
            self.push(
                SETTING,
                "is not HTTPS (anyone on the path could hand us keys)",
            );
        } else if !setting_value.starts_with("https://")
            && let Ok(text) = std::fs::read_to_string(Path::new(setting_value))
            && TEST_IDP_KEY_IDS.iter().any(|kid| text.contains(kid))
        {
            self.push(
                SETTING,
                "is the TEST-ONLY identity provider key set from deploy/test-keys/idp",
            );
        }
    }

    /// A URL the service calls or publishes must be HTTPS and must not name this machine
    /// (where the channel sandbox and local development run).
    pub fn external_https_url(&mut self, setting: &str, url: &str, what: &str) {
        match url_host(url) {
            None => self.push(setting, format!("is not an absolute URL ({what})")),
            Some((scheme, host)) => {
                if is_local_host(&host) {
                    self.push(
                        setting,
                        format!(
                            "points at this machine ({what}: the channel sandbox or a local development address)"
                        ),
                    );
                } else if scheme != "https" {
                    self.push(setting, format!("is not HTTPS ({what})"));
                }
            }
        }
    }

    /// A flag that must be off in production.
    pub fn disabled(&mut self, setting: &str, enabled: bool, what: &str) {
        if enabled {
            self.push(setting, format!("is enabled ({what}); set it to false"));
        }
    }

    /// A value that must differ from a development identifier.
    pub fn not_development_value(&mut self, setting: &str, value: &str, development: &str) {
        if value == development {
            self.push(setting, "is the channel sandbox's test identity");
        }
    }

    /// RabbitMQ URLs with its built-in `guest` account (which RabbitMQ allows only from
    /// the local machine).
    /// The instance's snowflake worker id must lie in the service's range and in the
    /// snowflake's 10 bits, in every environment: two instances with one worker id would
    /// hand out the same ids.
    pub fn worker_id(&mut self, ids: &crate::config::IdSettings) {
        if let Err((setting, problem)) = ids.effective_worker_id() {
            self.push_everywhere(setting, problem);
        }
    }

    pub fn amqp_url(&mut self, setting: &str, url: &str) {
        let userinfo = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|authority| authority.rsplit_once('@'))
            .map(|(userinfo, _)| userinfo);
        match userinfo {
            Some(u) if u == "guest" || u.starts_with("guest:") => {
                self.push(setting, "uses RabbitMQ's default guest account")
            }
            Some(u) if !u.contains(':') || u.ends_with(':') => {
                self.push(setting, "has no password")
            }
            None => self.push(setting, "has no credentials"),
            Some(_) => {}
        }
    }
}

/// `(scheme, host)` of an absolute URL, host lower-cased and without brackets.
fn url_host(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?.to_owned()
    } else {
        host_port.split(':').next()?.to_owned()
    };
    (!scheme.is_empty() && !host.is_empty())
        .then(|| (scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

fn is_local_host(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "0.0.0.0"
        || host == "::"
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        // The compose service name of the sandbox.
        || host == "channel-sandbox"
}

/// The test-only public keys, compiled in (their private halves match them).
const TEST_PUBLIC_KEYS: &[&str] = &[
    include_str!("../../../deploy/test-keys/wechat/merchant_public_key.pem"),
    include_str!("../../../deploy/test-keys/wechat/wechatpay_public_key.pem"),
    include_str!("../../../deploy/test-keys/alipay/app_public_key.pem"),
    include_str!("../../../deploy/test-keys/alipay/alipay_public_key.pem"),
];

/// Key ids of the test-only identity provider (`deploy/test-keys/idp/jwks.json`).
const TEST_IDP_KEY_IDS: [&str; 2] = ["paywire-test-idp-rsa", "paywire-test-idp-ed25519"];

fn test_key_fingerprints() -> &'static BTreeSet<String> {
    static FINGERPRINTS: OnceLock<BTreeSet<String>> = OnceLock::new();
    FINGERPRINTS.get_or_init(|| {
        TEST_PUBLIC_KEYS
            .iter()
            .filter_map(|pem| public_key_fingerprint(pem))
            .collect()
    })
}

/// SHA-256 (hex) of the DER SubjectPublicKeyInfo of the key's public half, whatever PEM
/// form it comes in; `None` for anything that is not an RSA key.
pub fn public_key_fingerprint(pem: &str) -> Option<String> {
    let public = RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .ok()
        .or_else(|| {
            RsaPrivateKey::from_pkcs8_pem(pem)
                .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
                .ok()
                .map(|k| k.to_public_key())
        })?;
    let der = public.to_public_key_der().ok()?;
    Some(
        Sha256::digest(der.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Implemented by each service's settings: push every setting unfit for production.
pub trait ProductionChecks {
    fn production_findings(&self, findings: &mut Findings);
}

/// Why a start was refused: every finding, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub service: String,
    pub environment: Environment,
    pub findings: Findings,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, s) = (
            self.findings.len(),
            if self.findings.len() == 1 {
                " is"
            } else {
                "s are"
            },
        );
        match self.environment {
            Environment::Production => write!(
                f,
                "{} refuses to start with PAYWIRE__ENVIRONMENT=production: {n} setting{s} not fit for production",
                self.service
            )?,
            Environment::Development => write!(
                f,
                "{} refuses to start: {n} setting{s} unusable in any environment",
                self.service
            )?,
        }
        for finding in self.findings.iter() {
            write!(f, "\n  - {finding}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refusal {}

/// Pure decision: in production, any finding refuses the start; in development, only an
/// empty or short secret does.
pub fn check(
    service: &str,
    environment: Environment,
    settings: &impl ProductionChecks,
) -> Result<Environment, Refusal> {
    let mut findings = Findings::new();
    settings.production_findings(&mut findings);
    if environment == Environment::Development {
        findings.0.retain(|f| f.everywhere);
    }
    if findings.is_empty() {
        Ok(environment)
    } else {
        Err(Refusal {
            service: service.to_owned(),
            environment,
            findings,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct EnvironmentOnly {
    environment: Environment,
}

/// The environment `service` runs in, from the same layers as its settings.
pub fn environment(service: &str) -> Result<Environment, PlatformError> {
    Ok(crate::config::load::<EnvironmentOnly>(service)?.environment)
}

/// Call once at start-up, after telemetry is set up: in production, refuses to start
/// (returns the [`Refusal`]) on any finding; in development, says loudly that it is.
pub fn enforce(service: &str, settings: &impl ProductionChecks) -> anyhow::Result<Environment> {
    let environment = environment(service)?;
    match check(service, environment, settings)? {
        Environment::Production => {
            tracing::info!(environment = "production", "production settings checked");
        }
        Environment::Development => {
            tracing::warn!(
                environment = "development",
                "DEVELOPMENT MODE: development secrets, test keys and the channel sandbox are \
                 accepted; set PAYWIRE__ENVIRONMENT=production in any real deployment"
            );
        }
    }
    Ok(environment)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys");

    struct Sample(Vec<(&'static str, &'static str)>);

    impl ProductionChecks for Sample {
        fn production_findings(&self, findings: &mut Findings) {
            for (setting, problem) in &self.0 {
                findings.push(setting, *problem);
            }
        }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    const STRONG: &str = "f3c1b2a49d8e7f60a1b2c3d4e5f60718293a4b5c";

    #[test]
    fn development_accepts_anything_and_production_refuses_any_finding() {
        let bad = Sample(vec![
            (
                "auth.jwt_secret",
                "is the development value compiled into the binaries",
            ),
            ("wechat.api_base", "points at this machine"),
        ]);
        assert_eq!(
            check("order", Environment::Development, &bad),
            Ok(Environment::Development)
        );
        let refusal = check("order", Environment::Production, &bad).unwrap_err();
        assert_eq!(refusal.findings.len(), 2);
        assert_eq!(
            check("order", Environment::Production, &Sample(vec![])),
            Ok(Environment::Production)
        );
    }

    /// A service's auth settings as the services check them: its own credential and
    /// both callers' credentials.
    struct Auth(AuthSettings);

    impl ProductionChecks for Auth {
        fn production_findings(&self, findings: &mut Findings) {
            findings.auth(&self.0, true, &["order", "operator"]);
        }
    }

    /// Issue 9: a short secret refuses the start in development too; the development
    /// values themselves (32 bytes or more) do not.
    #[test]
    fn a_short_secret_is_refused_in_development_too() {
        let short = AuthSettings {
            service_token: secret("hunter2-hunter2"),
            ..AuthSettings::default()
        };
        let refusal = check("order", Environment::Development, &Auth(short)).unwrap_err();
        assert_eq!(
            refusal.findings.settings(),
            BTreeSet::from(["auth.service_token"])
        );
        assert!(
            refusal.to_string().contains("is 15 bytes long"),
            "{refusal}"
        );
        assert!(!refusal.to_string().contains("hunter2"), "{refusal}");
        assert_eq!(
            check(
                "order",
                Environment::Development,
                &Auth(AuthSettings::default())
            ),
            Ok(Environment::Development)
        );
    }

    /// Issue 9: an empty secret refuses the start in every environment.
    #[test]
    fn an_empty_secret_is_refused_in_development_too() {
        let auth = AuthSettings {
            service_token: secret(""),
            ..AuthSettings::default()
        };
        let refusal = check("order", Environment::Development, &Auth(auth)).unwrap_err();
        assert_eq!(
            refusal.findings.settings(),
            BTreeSet::from(["auth.service_token"])
        );
        let text = refusal.to_string();
        assert!(
            text.starts_with("order refuses to start: 1 setting is unusable in any environment"),
            "{text}"
        );
        assert!(
            text.contains("auth.service_token (PAYWIRE__AUTH__SERVICE_TOKEN): is empty"),
            "{text}"
        );
        assert_eq!(
            check(
                "order",
                Environment::Development,
                &Auth(AuthSettings::default())
            ),
            Ok(Environment::Development)
        );
    }

    struct Ids(crate::config::IdSettings);

    impl ProductionChecks for Ids {
        fn production_findings(&self, findings: &mut Findings) {
            findings.worker_id(&self.0);
        }
    }

    /// A pod whose ordinal leaves its service's range refuses to start, in development too.
    #[test]
    fn a_worker_id_outside_the_services_range_refuses_the_start_everywhere() {
        let ids = |ordinal| {
            Ids(crate::config::IdSettings {
                worker_id: 200,
                ordinal,
                ordinals: 100,
            })
        };
        assert_eq!(
            check("order", Environment::Production, &ids(99)),
            Ok(Environment::Production)
        );
        for environment in [Environment::Development, Environment::Production] {
            let refusal = check("order", environment, &ids(100)).unwrap_err();
            assert!(
                refusal
                    .to_string()
                    .contains("ids.ordinal (PAYWIRE__IDS__ORDINAL): 100 is outside"),
                "{refusal}"
            );
        }
    }

    #[test]
    fn the_refusal_names_every_setting_and_its_variable() {
        let refusal = check(
            "payment-gateway",
            Environment::Production,
            &Sample(vec![
                ("auth.jwt_secret", "is empty"),
                ("wechat.api_base", "points at this machine"),
            ]),
        )
        .unwrap_err();
        let text = refusal.to_string();
        assert!(
            text.starts_with(
                "payment-gateway refuses to start with PAYWIRE__ENVIRONMENT=production: 2 settings are"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n  - auth.jwt_secret (PAYWIRE__AUTH__JWT_SECRET): is empty"),
            "{text}"
        );
        assert!(
            text.contains(
                "\n  - wechat.api_base (PAYWIRE__WECHAT__API_BASE): points at this machine"
            ),
            "{text}"
        );
    }

    #[test]
    fn development_secrets_are_refused_and_never_shown() {
        let mut f = Findings::new();
        f.auth(&AuthSettings::default(), true, &["order", "operator"]);
        assert_eq!(
            f.settings(),
            BTreeSet::from([
                "auth.jwks",
                "auth.jwt_secret",
                "auth.service_token",
                "auth.callers.order",
                "auth.callers.operator"
            ])
        );
        let text = f
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("development value"), "{text}");
        assert!(!text.contains(DEV_JWT_SECRET) && !text.contains(DEV_SERVICE_TOKEN));
        assert!(!text.contains(DEV_OPERATOR_TOKEN));
    }

    /// A service checks the credentials of the callers it admits, and only those: each
    /// must be set, strong, and its own (two callers with one credential could not be
    /// told apart). Its own credential is checked only when it calls other services.
    #[test]
    fn admitted_callers_need_their_own_strong_credentials() {
        let with = |callers: &[(&str, &str)]| AuthSettings {
            jwks: "https://idp.example.com/.well-known/jwks.json".into(),
            issuer: "https://idp.example.com/".into(),
            audience: "paywire".into(),
            callers: callers
                .iter()
                .map(|(n, c)| ((*n).to_owned(), secret(c)))
                .collect(),
            ..AuthSettings::default()
        };
        let findings = |auth: &AuthSettings, admits: &[&str]| {
            let mut f = Findings::new();
            f.auth(auth, false, admits);
            f
        };
        let strong = with(&[("order", STRONG), ("operator", &STRONG.repeat(2))]);
        assert!(findings(&strong, &["order", "operator"]).is_empty());
        // Not admitted, not checked: the default (development) operator credential.
        let gateway = with(&[("order", STRONG), ("operator", DEV_OPERATOR_TOKEN)]);
        assert!(findings(&gateway, &["order"]).is_empty());
        assert_eq!(
            findings(&gateway, &["order", "operator"]).settings(),
            BTreeSet::from(["auth.callers.operator"])
        );
        let shared = with(&[("order", STRONG), ("operator", STRONG)]);
        let f = findings(&shared, &["order", "operator"]);
        assert_eq!(f.settings(), BTreeSet::from(["auth.callers.operator"]));
        assert!(format!("{f:?}").contains("same credential as auth.callers.order"));
        assert!(!format!("{f:?}").contains(STRONG));
        let missing = with(&[("order", STRONG)]);
        assert_eq!(
            findings(&missing, &["order", "operator"]).settings(),
            BTreeSet::from(["auth.callers.operator"])
        );
    }

    #[test]
    fn empty_and_short_secrets_are_refused_without_their_value() {
        let mut f = Findings::new();
        f.secret("a.empty", &secret(""), MIN_SECRET_BYTES, &[]);
        f.secret("a.short", &secret("hunter2-hunter2"), MIN_SECRET_BYTES, &[]);
        f.secret("a.ok", &secret(STRONG), MIN_SECRET_BYTES, &[]);
        f.secret(
            "a.exactly_32",
            &secret("0123456789abcdef0123456789abcdef"),
            MIN_SECRET_BYTES,
            &[],
        );
        assert_eq!(f.settings(), BTreeSet::from(["a.empty", "a.short"]));
        let text = format!("{f:?}");
        assert!(text.contains("is empty"), "{text}");
        assert!(text.contains("is 15 bytes long; at least 32"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn an_identity_provider_and_a_strong_service_token_pass() {
        let mut f = Findings::new();
        f.auth(
            &AuthSettings {
                service_token: secret(&STRONG.repeat(2)),
                jwks: "https://idp.example.com/.well-known/jwks.json".into(),
                issuer: "https://idp.example.com/".into(),
                audience: "paywire".into(),
                ..AuthSettings::default()
            },
            true,
            &[],
        );
        // The development HS256 secret is left alone: nothing verifies with it any more.
        assert!(f.is_empty(), "{f:?}");
    }

    /// Production refuses HS256 user tokens, a JWKS over plain HTTP, the test-only key
    /// set (wherever it was copied) and a provider without `iss`/`aud`.
    #[test]
    fn the_identity_provider_settings_are_checked() {
        let findings = |jwks: &str, issuer: &str| {
            let mut f = Findings::new();
            f.auth(
                &AuthSettings {
                    service_token: secret(STRONG),
                    jwt_secret: secret(STRONG),
                    jwks: jwks.into(),
                    issuer: issuer.into(),
                    audience: "paywire".into(),
                    ..AuthSettings::default()
                },
                true,
                &[],
            );
            f
        };
        let idp = "https://idp.example.com/";
        assert_eq!(findings("", idp).settings(), BTreeSet::from(["auth.jwks"]));
        assert_eq!(
            findings("http://idp.example.com/jwks", idp).settings(),
            BTreeSet::from(["auth.jwks"])
        );
        assert_eq!(
            findings("https://idp.example.com/jwks", "").settings(),
            BTreeSet::from(["auth.issuer"])
        );
        let copy = std::env::temp_dir().join(format!("paywire-jwks-{}.json", std::process::id()));
        std::fs::copy(Path::new(TEST_KEYS).join("idp/jwks.json"), &copy).unwrap();
        let f = findings(copy.to_str().unwrap(), idp);
        std::fs::remove_file(&copy).unwrap();
        assert_eq!(f.settings(), BTreeSet::from(["auth.jwks"]));
        assert!(format!("{f:?}").contains("TEST-ONLY"), "{f:?}");
    }

    /// Every key in deploy/test-keys — private or public — is recognised, so adding a
    /// test key without listing its public half fails here.
    #[test]
    fn every_test_key_is_recognised() {
        let mut seen = 0;
        for channel in ["wechat", "alipay"] {
            for entry in std::fs::read_dir(Path::new(TEST_KEYS).join(channel)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|e| e != "pem") {
                    continue;
                }
                let mut f = Findings::new();
                f.key_file("k.path", path.to_str().unwrap());
                assert_eq!(f.len(), 1, "{} not recognised", path.display());
                assert!(f.iter().all(|x| x.problem.contains("TEST-ONLY")));
                seen += 1;
            }
        }
        assert_eq!(seen, 8);
        assert_eq!(test_key_fingerprints().len(), 4);
    }

    #[test]
    fn a_test_key_in_another_form_or_place_is_still_recognised() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::LineEnding;
        let pem =
            std::fs::read_to_string(Path::new(TEST_KEYS).join("wechat/merchant_private_key.pem"))
                .unwrap();
        let key = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        let pkcs1 = key.to_pkcs1_pem(LineEnding::CRLF).unwrap();
        let dir = tempdir("pkcs1");
        let path = dir.join("renamed.pem");
        std::fs::write(&path, pkcs1.as_bytes()).unwrap();
        let mut f = Findings::new();
        f.key_file("wechat.merchant_private_key_path", path.to_str().unwrap());
        assert_eq!(
            f.settings(),
            BTreeSet::from(["wechat.merchant_private_key_path"])
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_freshly_generated_key_passes() {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let dir = tempdir("fresh");
        let private = dir.join("private.pem");
        let public = dir.join("public.pem");
        std::fs::write(
            &private,
            key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::write(
            &public,
            key.to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
        let mut f = Findings::new();
        f.key_file("a", private.to_str().unwrap());
        f.key_file("b", public.to_str().unwrap());
        // Unreadable or non-key files are the loader's business, not a finding.
        f.key_file("c", dir.join("missing.pem").to_str().unwrap());
        assert!(f.is_empty(), "{f:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn channel_urls_must_be_external_https() {
        let mut f = Findings::new();
        for (setting, url) in [
            ("sandbox_default", "http://127.0.0.1:8090"),
            ("localhost", "https://localhost/gateway.do"),
            ("v6", "http://[::1]:8090/"),
            ("compose_name", "http://channel-sandbox:8090"),
            ("plain_http", "http://openapi.alipay.com/gateway.do"),
            ("relative", "/gateway.do"),
            ("empty", ""),
        ] {
            f.external_https_url(setting, url, "the channel API");
        }
        for ok in [
            "https://api.mch.weixin.qq.com",
            "https://openapi.alipay.com/gateway.do",
            "https://user:pw@pay.example.com:8443/x",
        ] {
            f.external_https_url("ok", ok, "the channel API");
        }
        assert_eq!(
            f.settings(),
            BTreeSet::from([
                "sandbox_default",
                "localhost",
                "v6",
                "compose_name",
                "plain_http",
                "relative",
                "empty"
            ])
        );
    }

    #[test]
    fn amqp_urls_need_a_real_account() {
        let mut f = Findings::new();
        f.amqp_url("guest", "amqp://guest:guest@127.0.0.1:5672/%2f");
        f.amqp_url("no_password", "amqp://paywire@mq:5672/%2f");
        f.amqp_url("empty_password", "amqp://paywire:@mq:5672/%2f");
        f.amqp_url("anonymous", "amqp://mq:5672/%2f");
        f.amqp_url("ok", "amqps://paywire:s3cr3t-long-password@mq:5671/paywire");
        assert_eq!(
            f.settings(),
            BTreeSet::from(["guest", "no_password", "empty_password", "anonymous"])
        );
        assert!(!format!("{f:?}").contains("s3cr3t"));
    }

    #[test]
    fn flags_and_identities() {
        let mut f = Findings::new();
        f.disabled("dev_login.enabled", true, "the dev sign-in");
        f.disabled("other.enabled", false, "x");
        f.not_development_value("wechat.mchid", "1900009191", "1900009191");
        f.not_development_value("alipay.app_id", "2021004100000000", "2021000000000001");
        assert_eq!(
            f.settings(),
            BTreeSet::from(["dev_login.enabled", "wechat.mchid"])
        );
    }

    #[test]
    fn the_environment_defaults_to_development_and_parses() {
        assert_eq!(Environment::default(), Environment::Development);
        let parsed: EnvironmentOnly =
            serde_json::from_str(r#"{"environment":"production"}"#).unwrap();
        assert_eq!(parsed.environment, Environment::Production);
        assert!(serde_json::from_str::<EnvironmentOnly>(r#"{"environment":"prod"}"#).is_err());
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "paywire-production-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
