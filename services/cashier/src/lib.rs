//! Paywire cashier: the pages a student uses (catalogue, checkout, my courses, dev sign-in),
//! served from one origin together with the public APIs, which it reverse-proxies to the
//! learning center and the order service as an API gateway would. The browser therefore
//! never needs CORS, and the services never see another origin.

pub mod api_path;
pub mod error;
pub mod login;
pub mod openapi;
pub mod pages;
pub mod proxy;

use std::time::Duration;

use actix_web::web;
use paywire_platform::app::Application;
use paywire_platform::auth::Authenticator;
use paywire_platform::config::DEV_JWT_SECRET;
use paywire_platform::config::{AuthSettings, HttpSettings, TelemetrySettings};
use paywire_platform::production::{Findings, MIN_SECRET_BYTES, ProductionChecks};
use paywire_platform::rate_limit::{RateLimitSettings, RouteClass, limit, with_limits};
use serde::{Deserialize, Serialize};

pub use crate::error::CashierError;

pub const SERVICE_NAME: &str = "cashier";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    /// Only the JWT secret is used, to sign dev sign-in tokens.
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
    pub upstream: UpstreamSettings,
    pub dev_login: DevLoginSettings,
    pub pages: PageSettings,
    pub rate_limit: RateLimitSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8080),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
            upstream: UpstreamSettings::default(),
            dev_login: DevLoginSettings::default(),
            pages: PageSettings::default(),
            rate_limit: RateLimitSettings::default(),
        }
    }
}

/// Production mode: the JWT secret (it signs nothing else here), no dev sign-in, no link
/// to the sandbox wallet.
impl ProductionChecks for Settings {
    fn production_findings(&self, findings: &mut Findings) {
        // The cashier only signs with the HS256 secret, for dev sign-in; users of a real
        // deployment sign in at the identity provider.
        if self.dev_login.enabled {
            findings.secret(
                "auth.jwt_secret",
                &self.auth.jwt_secret,
                MIN_SECRET_BYTES,
                &[DEV_JWT_SECRET],
            );
        }
        findings.disabled(
            "dev_login.enabled",
            self.dev_login.enabled,
            "anyone could sign in as any student",
        );
        if !self.pages.wallet_url.is_empty() {
            findings.push(
                "pages.wallet_url",
                "links the channel sandbox's wallet; leave it empty in production",
            );
        }
    }
}

/// Where the proxied API prefixes go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamSettings {
    /// `/api/learning/*` is forwarded here, path (once checked, see `api_path`) and query unchanged.
    pub learning_center_url: String,
    /// `/api/orders/*` is forwarded here, path (once checked) and query unchanged.
    pub order_url: String,
    /// Per upstream request, including reading the answer's head.
    pub timeout_ms: u64,
    /// Largest request body forwarded (API bodies are small JSON documents); a larger one
    /// is `413` here. Defaults to what the services themselves read.
    pub max_body_bytes: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            learning_center_url: "http://127.0.0.1:8081".into(),
            order_url: "http://127.0.0.1:8082".into(),
            timeout_ms: 15_000,
            max_body_bytes: paywire_platform::http::MAX_BODY_BYTES,
        }
    }
}

/// `POST /dev/login`: anyone may act as any student. For local development and tests
/// only; production sets `enabled = false` and signs users in through a real identity
/// provider that issues the same kind of JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DevLoginSettings {
    pub enabled: bool,
    pub token_ttl_secs: u64,
}

impl Default for DevLoginSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            token_ttl_secs: 12 * 3600,
        }
    }
}

/// Values the pages show; none of them is a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PageSettings {
    /// The payer's wallet (the channel sandbox) as the browser reaches it; empty hides
    /// the link.
    pub wallet_url: String,
}

impl Default for PageSettings {
    fn default() -> Self {
        Self {
            wallet_url: "http://127.0.0.1:8090/sandbox/wallet".into(),
        }
    }
}

// What the shared bootstrap (`paywire_platform::app::main`) runs.
paywire_platform::service_settings!(Settings, SERVICE_NAME);

/// Renders the pages, prepares the upstream client and binds the HTTP port.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let proxy = web::Data::new(proxy::Proxy::new(
        &settings.upstream,
        Duration::from_millis(settings.upstream.timeout_ms),
    )?);
    let pages = web::Data::new(pages::Pages::render(
        &settings.pages,
        settings.dev_login.enabled,
    ));
    let login = match settings.dev_login.enabled {
        true => Some(web::Data::new(login::DevLogin {
            auth: Authenticator::new(&settings.auth)?,
            ttl: chrono::Duration::seconds(
                i64::try_from(settings.dev_login.token_ttl_secs).unwrap_or(i64::MAX / 1000),
            ),
        })),
        false => None,
    };
    if login.is_some() {
        tracing::warn!("dev login is enabled: anyone can act as any student (development only)");
    }

    let dev_login = login.is_some();
    // Everything the cashier serves is public; its internal listener has only health and
    // metrics.
    Ok(Application::serve(
        SERVICE_NAME,
        &settings.http,
        with_limits(
            &settings.rate_limit,
            paywire_platform::http::public_only(move |cfg: &mut web::ServiceConfig| {
                cfg.app_data(proxy.clone()).app_data(pages.clone());
                if let Some(login) = &login {
                    cfg.app_data(login.clone());
                }
                public(cfg, dev_login);
            }),
        ),
    )?)
}

/// The routes of the public listener: the dev sign-in (when enabled, limited per client
/// address: anyone may call it, and every call signs a token), the API proxy, the pages,
/// and a JSON `404` for anything else.
pub fn public(cfg: &mut web::ServiceConfig, dev_login: bool) {
    if dev_login {
        cfg.service(
            web::resource("/dev/login")
                .wrap(limit(RouteClass::DevLogin))
                .route(web::post().to(login::dev_login)),
        );
    }
    proxy::configure(cfg);
    pages::configure(cfg);
    cfg.default_service(web::to(not_found));
}

async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, CashierError> {
    Err(CashierError::NotFound(req.path().to_owned()))
}
