//! Paywire channel sandbox: the outside world for local runs and tests.
//!
//! It plays WeChat Pay API v3, WeChat Pay API v2 (XML; `secapi/` over mutual TLS) and
//! Alipay OpenAPI (`gateway.do`, RSA2) byte for byte
//! (signed requests in, signed responses and signed notifications out, on each channel's
//! retry schedule), the payer's wallet (API and page), and injects faults on demand
//! (`/sandbox/admin/faults`). State is in memory: it is not our data, and a restart is a
//! fresh world.

pub mod admin;
pub mod alipay;
pub mod error;
pub mod faults;
pub mod notify;
pub mod statements;
pub mod wallet;
pub mod wechat;
pub mod wechat_v2;

use std::sync::Arc;

use actix_web::web;
use paywire_platform::app::Application;
use paywire_platform::config::{HttpSettings, TelemetrySettings};
use paywire_platform::production::{Findings, ProductionChecks};
use serde::{Deserialize, Serialize};

pub use alipay::AlipaySettings;
pub use error::SandboxError;
pub use faults::FaultSettings;
pub use notify::{ALIPAY_RETRY_SCHEDULE, NotifySettings, WECHAT_RETRY_SCHEDULE};
pub use wechat::WechatSettings;
pub use wechat_v2::WechatV2Settings;

pub const SERVICE_NAME: &str = "channel-sandbox";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub wechat: WechatSettings,
    pub wechat_v2: WechatV2Settings,
    pub alipay: AlipaySettings,
    pub notify: NotifySettings,
    pub faults: FaultSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8090),
            telemetry: TelemetrySettings::default(),
            wechat: WechatSettings::default(),
            wechat_v2: WechatV2Settings::default(),
            alipay: AlipaySettings::default(),
            notify: NotifySettings::default(),
            faults: FaultSettings::default(),
        }
    }
}

/// The sandbox imitates the channels with test keys and an unauthenticated wallet and
/// admin API: it never runs in production, whatever its settings.
impl ProductionChecks for Settings {
    fn production_findings(&self, findings: &mut Findings) {
        findings.push(
            "",
            "the channel sandbox imitates WeChat Pay and Alipay (test keys, unauthenticated \
             wallet and fault injection) and never runs in production",
        );
    }
}

// What the shared bootstrap (`paywire_platform::app::main`) runs.
paywire_platform::service_settings!(Settings, SERVICE_NAME);

/// Loads the keys and binds the HTTP port. Must run inside the tokio runtime that will
/// also deliver notifications.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    Ok(build_with_ports(settings).await?.0)
}

/// The ports a started sandbox listens on beyond the application's two.
#[derive(Debug, Clone, Copy)]
pub struct ExtraPorts {
    /// WeChat Pay v2's TLS listener (`secapi/`, client certificate required).
    pub wechat_v2_tls: u16,
}

/// [`build`], also telling the extra ports (tests bind them to port 0).
pub async fn build_with_ports(settings: Settings) -> anyhow::Result<(Application, ExtraPorts)> {
    let faults = Arc::new(faults::Faults::new(&settings.faults));
    let notifier = Arc::new(notify::Notifier::new(
        &settings.notify,
        faults.reorder_hold,
    )?);
    let wechat = web::Data::new(wechat::WechatSandbox::from_settings(
        &settings.wechat,
        notifier.clone(),
        faults.clone(),
    )?);
    let alipay = web::Data::new(alipay::AlipaySandbox::from_settings(
        &settings.alipay,
        notifier.clone(),
        faults.clone(),
    )?);
    let wechat_v2 = web::Data::new(wechat_v2::WechatV2Sandbox::from_settings(
        &settings.wechat_v2,
        notifier.clone(),
        faults.clone(),
    )?);
    let (tls_server, tls_port) =
        wechat_v2::tls::serve(&settings.http.host, &settings.wechat_v2, wechat_v2.clone())?;
    let notifier = web::Data::from(notifier);
    let faults = web::Data::from(faults);
    let data = move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(wechat.clone())
            .app_data(wechat_v2.clone())
            .app_data(alipay.clone())
            .app_data(notifier.clone())
            .app_data(faults.clone());
    };
    let internal_data = data.clone();
    let mut app = Application::serve(
        SERVICE_NAME,
        &settings.http,
        paywire_platform::http::ListenerRoutes {
            public: move |cfg: &mut web::ServiceConfig| {
                data(cfg);
                public(cfg);
            },
            internal: move |cfg: &mut web::ServiceConfig| {
                internal_data(cfg);
                internal(cfg);
            },
        },
    )?;
    tracing::info!(
        port = tls_port,
        "WeChat Pay v2 secapi (mutual TLS) listening"
    );
    app.spawn("wechat-v2-tls", tls_server);
    Ok((
        app,
        ExtraPorts {
            wechat_v2_tls: tls_port,
        },
    ))
}

/// The public listener: the channels' APIs as the gateway calls them, and the payer's
/// wallet.
pub fn public(cfg: &mut web::ServiceConfig) {
    wechat::configure(cfg);
    wechat_v2::configure(cfg);
    alipay::configure(cfg);
    wallet::configure(cfg);
}

/// The internal listener: fault injection (`/sandbox/admin/faults`), for tests and
/// operators only.
pub fn internal(cfg: &mut web::ServiceConfig) {
    admin::configure(cfg);
}
