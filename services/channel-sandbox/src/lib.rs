//! Paywire channel sandbox: the outside world for local runs and tests.
//!
//! It plays WeChat Pay API v3 and Alipay OpenAPI (`gateway.do`, RSA2) byte for byte
//! (signed requests in, signed responses and signed notifications out, on each channel's
//! retry schedule), the payer's wallet (API and page), and injects faults on demand
//! (`/sandbox/admin/faults`). State is in memory: it is not our data, and a restart is a
//! fresh world.

pub mod admin;
pub mod alipay;
pub mod error;
pub mod faults;
pub mod notify;
pub mod wallet;
pub mod wechat;

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

pub const SERVICE_NAME: &str = "channel-sandbox";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub wechat: WechatSettings,
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
    let notifier = web::Data::from(notifier);
    let faults = web::Data::from(faults);
    let data = move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(wechat.clone())
            .app_data(alipay.clone())
            .app_data(notifier.clone())
            .app_data(faults.clone());
    };
    let internal_data = data.clone();
    Ok(Application::serve(
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
    )?)
}

/// The public listener: the channels' APIs as the gateway calls them, and the payer's
/// wallet.
pub fn public(cfg: &mut web::ServiceConfig) {
    wechat::configure(cfg);
    alipay::configure(cfg);
    wallet::configure(cfg);
}

/// The internal listener: fault injection (`/sandbox/admin/faults`), for tests and
/// operators only.
pub fn internal(cfg: &mut web::ServiceConfig) {
    admin::configure(cfg);
}
