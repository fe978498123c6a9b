//! Paywire channel sandbox: the outside world for local runs and tests.
//!
//! It plays WeChat Pay API v3 byte for byte (signed requests in, signed responses and
//! encrypted, signed notifications out) and the payer's wallet. State is in memory: it
//! is not our data, and a restart is a fresh world.

pub mod error;
pub mod notify;
pub mod wallet;
pub mod wechat;

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::web;
use paywire_platform::config::{HttpSettings, TelemetrySettings};
use serde::{Deserialize, Serialize};

pub use error::SandboxError;
pub use notify::{NotifySettings, WECHAT_RETRY_SCHEDULE};
pub use wechat::WechatSettings;

pub const SERVICE_NAME: &str = "channel-sandbox";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub wechat: WechatSettings,
    pub notify: NotifySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8090),
            telemetry: TelemetrySettings::default(),
            wechat: WechatSettings::default(),
            notify: NotifySettings::default(),
        }
    }
}

/// A built, not yet running sandbox.
pub struct App {
    server: Server,
    port: u16,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Loads the keys and binds the HTTP port. Must run inside the tokio runtime that will
/// also deliver notifications.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    paywire_platform::telemetry::init(SERVICE_NAME, &settings.telemetry);
    let notifier = Arc::new(notify::Notifier::new(&settings.notify)?);
    let wechat = web::Data::new(wechat::WechatSandbox::from_settings(
        &settings.wechat,
        notifier.clone(),
    )?);
    let notifier = web::Data::from(notifier);
    let listener = paywire_platform::http::bind(&settings.http)?;
    let port = listener.local_addr()?.port();
    let server = paywire_platform::http::serve(listener, settings.http.workers, move |cfg| {
        cfg.app_data(wechat.clone()).app_data(notifier.clone());
        wechat::configure(cfg);
        wallet::configure(cfg);
    })?;
    tracing::info!(port, "channel sandbox listening");
    Ok(App { server, port })
}

impl App {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until Ctrl-C / SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        paywire_platform::http::run_until_stopped(self.server, Vec::new()).await?;
        Ok(())
    }
}
