//! Paywire payment gateway: payment attempts, channel calls, channel callbacks, and the
//! outbox of pay results.

pub mod callbacks;
pub mod channels;
pub mod error;
pub mod metrics;
pub mod payments;
pub mod reconcile;
pub mod refunds;
pub mod routes;
pub mod schema;
pub mod sweeper;

use std::time::Duration;

use actix_web::web;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use paywire_domain::IdGenerator;
use paywire_domain::topology::PAY_RESULT_SUBSCRIBERS;
use paywire_messaging::relay::{RelayConfig, run_relay};
use paywire_messaging::topology::{declare_at_startup, declare_pay_result_topology};
use paywire_platform::app::Application;
use paywire_platform::config::expose_for_layering;
use paywire_platform::db::DbPool;
use paywire_platform::http::api;
use paywire_platform::production::{Findings, MIN_SECRET_BYTES};
use paywire_platform::rate_limit::{RateLimitSettings, with_limits};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use channels::ChannelRegistry;
pub use error::GatewayError;

pub const SERVICE_NAME: &str = "payment-gateway";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/payment-gateway");

// The shared sections, then this service's own.
paywire_platform::database_service_settings! {
    pub struct Settings for SERVICE_NAME, port 8083, database "paywire_payment", migrations [paywire_messaging::MIGRATIONS, MIGRATIONS],
        admits [paywire_platform::auth::caller::ORDER, paywire_platform::auth::caller::OPERATOR], presents false, checks channel_findings {
        pub payment: PaymentSettings,
        pub sweeper: SweeperSettings,
        pub reconciliation: reconcile::ReconciliationSettings,
        pub wechat: WechatSettings,
        pub wechat_v2: WechatV2Settings,
        pub alipay: AlipaySettings,
        pub rate_limit: RateLimitSettings,
    }
}

impl Settings {
    /// Production mode, beyond the shared sections: real secrets, no test keys, the
    /// channels' real HTTPS endpoints and public HTTPS notify URLs, merchant identities
    /// other than the sandbox's.
    fn channel_findings(&self, findings: &mut Findings) {
        if self.wechat.enabled {
            let w = &self.wechat;
            findings.secret(
                "wechat.apiv3_key",
                &w.apiv3_key,
                MIN_SECRET_BYTES,
                &[paywire_channels::wechat::DEV_APIV3_KEY],
            );
            findings.key_file(
                "wechat.merchant_private_key_path",
                &w.merchant_private_key_path,
            );
            findings.key_file(
                "wechat.wechatpay_public_key_path",
                &w.wechatpay_public_key_path,
            );
            findings.external_https_url("wechat.api_base", &w.api_base, "WeChat Pay's API");
            findings.external_https_url(
                "wechat.notify_url",
                &w.notify_url,
                "WeChat Pay posts callbacks there",
            );
            findings.not_development_value(
                "wechat.mchid",
                &w.mchid,
                paywire_channels::wechat::DEV_MCHID,
            );
        }
        if self.wechat_v2.enabled {
            use paywire_channels::wechat_v2 as dev;
            let w = &self.wechat_v2;
            findings.secret(
                "wechat_v2.api_key",
                &w.api_key,
                MIN_SECRET_BYTES,
                &[dev::DEV_API_KEY],
            );
            findings.external_https_url("wechat_v2.api_base", &w.api_base, "WeChat Pay's API");
            findings.external_https_url(
                "wechat_v2.secapi_base",
                &w.secapi_base,
                "WeChat Pay's certificate API",
            );
            findings.external_https_url(
                "wechat_v2.notify_url",
                &w.notify_url,
                "WeChat Pay posts callbacks there",
            );
            findings.not_development_value("wechat_v2.mch_id", &w.mch_id, dev::DEV_MCH_ID);
            // The sandbox's PKI: its client certificate, or trusting its CA.
            if w.client_identity_path
                .ends_with(dev::DEV_CLIENT_IDENTITY_PATH)
            {
                findings.push(
                    "wechat_v2.client_identity_path",
                    "is the TEST-ONLY client certificate from deploy/test-keys",
                );
            }
            if !w.extra_root_ca_path.is_empty() {
                findings.push(
                    "wechat_v2.extra_root_ca_path",
                    "trusts an extra CA (the sandbox's); production uses the system roots",
                );
            }
        }
        if self.alipay.enabled {
            use paywire_channels::alipay as dev;
            let a = &self.alipay;
            findings.key_file("alipay.app_private_key_path", &a.app_private_key_path);
            findings.key_file("alipay.alipay_public_key_path", &a.alipay_public_key_path);
            findings.external_https_url("alipay.gateway_url", &a.gateway_url, "Alipay's gateway");
            findings.external_https_url(
                "alipay.notify_url",
                &a.notify_url,
                "Alipay posts callbacks there",
            );
            findings.not_development_value("alipay.app_id", &a.app_id, dev::DEV_APP_ID);
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PaymentSettings {
    /// How long a new attempt can be paid (sent to the channel as its expiry).
    pub attempt_ttl_secs: u32,
    /// An unpaid attempt is shown again only if it lives at least this much longer,
    /// so the student has time to scan it.
    pub reuse_margin_secs: u32,
    /// The student's "I have paid" sync asks the channel about one attempt at most once
    /// per this many seconds, however often it is called and on however many instances (a
    /// guarded `last_synced_at` in the database); in between it answers from the database.
    pub sync_min_interval_secs: u32,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            attempt_ttl_secs: 900,
            reuse_margin_secs: 60,
            sync_min_interval_secs: 5,
        }
    }
}

/// The compensation sweeper (missing callbacks, expired attempts) and the refund worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SweeperSettings {
    /// Run the sweeper and the refund worker in this instance.
    pub enabled: bool,
    /// How long to wait when nothing was due.
    pub poll_interval_ms: u64,
    /// Rows claimed per round.
    pub batch_size: u32,
    /// First query of an unpaid attempt, counted from its creation.
    pub first_check_secs: u32,
    /// The delay between checks doubles up to this.
    pub max_backoff_secs: u32,
    /// The final check (which closes the attempt) comes this long after its expiry.
    pub after_expiry_secs: u32,
    /// First retry of a refund call or query; doubles up to `max_backoff_secs`.
    pub refund_retry_secs: u32,
}

impl Default for SweeperSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: 1000,
            batch_size: 20,
            first_check_secs: 60,
            max_backoff_secs: 600,
            after_expiry_secs: 30,
            refund_retry_secs: 10,
        }
    }
}

/// WeChat Pay v3 merchant settings. The defaults are the test-only sandbox identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WechatSettings {
    pub enabled: bool,
    pub api_base: String,
    pub mchid: String,
    pub appid: String,
    pub merchant_serial_no: String,
    pub merchant_private_key_path: String,
    pub wechatpay_public_key_id: String,
    pub wechatpay_public_key_path: String,
    /// 32-byte APIv3 key (AES-256-GCM of notification resources).
    #[serde(serialize_with = "expose_for_layering")]
    pub apiv3_key: SecretString,
    /// Where WeChat Pay posts notifications. Empty: this service's own
    /// `/api/callback/wechat` on the address it actually bound (tests on port 0).
    pub notify_url: String,
    pub timeout_ms: u64,
}

impl Default for WechatSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            api_base: "http://127.0.0.1:8090".into(),
            mchid: "1900009191".into(),
            appid: "wxd678efh567hg6787".into(),
            merchant_serial_no: "7E2A1C3B4D5F60718293A4B5C6D7E8F901234567".into(),
            merchant_private_key_path: "deploy/test-keys/wechat/merchant_private_key.pem".into(),
            wechatpay_public_key_id: "PUB_KEY_ID_0119000091912026112200000000000001".into(),
            wechatpay_public_key_path: "deploy/test-keys/wechat/wechatpay_public_key.pem".into(),
            apiv3_key: SecretString::from("paywire-sandbox-apiv3-key-32byte"),
            notify_url: "http://127.0.0.1:8083/api/callback/wechat".into(),
            timeout_ms: 5000,
        }
    }
}

/// WeChat Pay API v2 (XML) merchant settings. The defaults are the test-only sandbox
/// identity (`paywire_channels::wechat_v2::DEV_*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WechatV2Settings {
    pub enabled: bool,
    /// `pay/*` calls (`https://api.mch.weixin.qq.com`).
    pub api_base: String,
    /// `secapi/*` calls over mutual TLS (the same host in production).
    pub secapi_base: String,
    pub appid: String,
    pub mch_id: String,
    /// The API key (32 characters): signs requests, verifies answers and notifications,
    /// decrypts refund notifications.
    #[serde(serialize_with = "expose_for_layering")]
    pub api_key: SecretString,
    /// `MD5` or `HMAC-SHA256`.
    pub sign_type: paywire_channels::wechat_v2::SignType,
    /// The merchant API certificate and its PKCS#8 key in one PEM file (certificate
    /// first): only the path is configured, the key never appears in settings or logs.
    pub client_identity_path: String,
    /// A CA to trust beyond the system roots (the sandbox's test CA); empty: none.
    pub extra_root_ca_path: String,
    /// `spbill_create_ip`: this machine's address as WeChat Pay should see it.
    pub client_ip: String,
    /// Where WeChat Pay posts notifications. Empty: this service's own
    /// `/api/callback/wechat_v2` on the address it actually bound (tests on port 0).
    pub notify_url: String,
    pub timeout_ms: u64,
}

impl Default for WechatV2Settings {
    fn default() -> Self {
        use paywire_channels::wechat_v2 as dev;
        Self {
            enabled: true,
            api_base: dev::DEV_API_BASE.into(),
            secapi_base: dev::DEV_SECAPI_BASE.into(),
            appid: dev::DEV_APPID.into(),
            mch_id: dev::DEV_MCH_ID.into(),
            api_key: SecretString::from(dev::DEV_API_KEY),
            sign_type: paywire_channels::wechat_v2::SignType::HmacSha256,
            client_identity_path: dev::DEV_CLIENT_IDENTITY_PATH.into(),
            extra_root_ca_path: dev::DEV_CA_PATH.into(),
            client_ip: "127.0.0.1".into(),
            notify_url: dev::DEV_NOTIFY_URL.into(),
            timeout_ms: 5000,
        }
    }
}

impl WechatV2Settings {
    /// Points the channel at a sandbox (`api_base`, its TLS port for `secapi/`) with the
    /// test-only PKI in `test_keys_dir` (absolute `deploy/test-keys/wechat_v2`): for tests.
    pub fn use_sandbox(&mut self, api_base: &str, tls_port: u16, test_keys_dir: &str) {
        self.api_base = api_base.to_owned();
        self.secapi_base = format!("https://127.0.0.1:{tls_port}");
        self.client_identity_path = format!("{test_keys_dir}/client_identity.pem");
        self.extra_root_ca_path = format!("{test_keys_dir}/ca.pem");
    }
}

/// Alipay (OpenAPI `gateway.do`, RSA2) merchant settings. The defaults are the test-only
/// sandbox identity (`paywire_channels::alipay::DEV_*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AlipaySettings {
    pub enabled: bool,
    /// The full `gateway.do` URL.
    pub gateway_url: String,
    pub app_id: String,
    /// The merchant PID (`2088…`); notifications for another seller are refused.
    pub seller_id: String,
    /// The app private key (signs our requests). Only the path is configured: the key
    /// itself never appears in settings or logs.
    pub app_private_key_path: String,
    /// Alipay's public key (verifies responses and notifications).
    pub alipay_public_key_path: String,
    /// Where Alipay posts notifications. Empty: this service's own
    /// `/api/callback/alipay` on the address it actually bound (tests on port 0).
    pub notify_url: String,
    pub timeout_ms: u64,
}

impl Default for AlipaySettings {
    fn default() -> Self {
        use paywire_channels::alipay as dev;
        Self {
            enabled: true,
            gateway_url: dev::DEV_GATEWAY_URL.into(),
            app_id: dev::DEV_APP_ID.into(),
            seller_id: dev::DEV_SELLER_ID.into(),
            app_private_key_path: dev::DEV_APP_PRIVATE_KEY_PATH.into(),
            alipay_public_key_path: dev::DEV_ALIPAY_PUBLIC_KEY_PATH.into(),
            notify_url: dev::DEV_NOTIFY_URL.into(),
            timeout_ms: 5000,
        }
    }
}

/// Shared by every request handler.
pub struct AppState {
    pub pool: DbPool,
    pub channels: ChannelRegistry,
    pub ids: IdGenerator,
    pub payment: PaymentSettings,
    pub sweeper: SweeperSettings,
    pub reconciliation: reconcile::ReconciliationSettings,
    /// `database.retry_budget_ms`: how long reads are repeated while the database is
    /// briefly away. Internal writes are not repeated here: the order service repeats
    /// them on `503 database_*`, and a create may already have reached the channel.
    pub retry_budget: Duration,
}

paywire_platform::debug_fields!(AppState {
    channels,
    payment,
    sweeper
});

/// Prepares the database, the channels and the broker topology, binds the HTTP port, and
/// lines up the outbox relay, the compensation sweeper and the refund worker.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let pool = paywire_platform::app::open_database(&settings).await?;

    let listeners = paywire_platform::http::bind(&settings.http)?;
    // The channels call back on the public listener.
    let addr = listeners.public.local_addr()?;
    let own_callback_base = format!("http://{}:{}/api/callback", addr.ip(), addr.port());
    let channels = ChannelRegistry::from_settings(&settings, &own_callback_base)?;

    // Declared before anything is published, so pay results are routable even when no
    // subscriber has started yet.
    declare_at_startup(&settings.amqp.url, SERVICE_NAME, async |channel| {
        declare_pay_result_topology(channel, PAY_RESULT_SUBSCRIBERS).await
    })
    .await?;

    let state = web::Data::new(AppState {
        pool: pool.clone(),
        channels,
        ids: settings.ids.generator()?,
        payment: settings.payment.clone(),
        sweeper: settings.sweeper.clone(),
        reconciliation: settings.reconciliation.clone(),
        retry_budget: Duration::from_millis(settings.database.retry_budget_ms),
    });
    let readiness = paywire_platform::app::readiness(&settings);
    let routes = with_limits(
        &settings.rate_limit,
        api(
            pool.clone(),
            state.clone(),
            &settings.auth,
            &readiness,
            routes::public,
            routes::internal,
        )?,
    );
    let mut app = Application::serve_on(SERVICE_NAME, listeners, settings.http.workers, routes)?;

    app.spawn(
        "outbox-relay",
        run_relay(
            pool,
            settings.database.url,
            settings.amqp.url,
            RelayConfig::default().reporting_to(&readiness),
        ),
    );
    if settings.reconciliation.enabled {
        app.spawn("reconciliation", reconcile::run_scheduler(state.clone()));
    }
    if settings.sweeper.enabled {
        app.spawn("payment-sweeper", sweeper::run_sweeper(state.clone()));
        app.spawn("refund-worker", refunds::worker::run_refund_worker(state));
    }
    Ok(app)
}

pub(crate) fn timeout(ms: u64) -> Duration {
    Duration::from_millis(ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_local_dev_and_hide_the_apiv3_key() {
        let s = Settings::default();
        assert_eq!(s.http.port, 8083);
        assert!(s.database.url.ends_with("/paywire_payment"));
        assert_eq!(s.payment.attempt_ttl_secs, 900);
        assert_eq!(s.payment.reuse_margin_secs, 60);
        assert!(s.wechat.enabled);
        assert!(s.alipay.enabled);
        assert_eq!(s.alipay.gateway_url, "http://127.0.0.1:8090/gateway.do");
        assert_eq!(s.alipay.app_id, "2021000000000001");
        assert_eq!(s.alipay.seller_id, "2088000000000001");
        assert_eq!(
            s.alipay.notify_url,
            "http://127.0.0.1:8083/api/callback/alipay"
        );
        assert_eq!(s.sweeper.first_check_secs, 60);
        assert_eq!(s.sweeper.max_backoff_secs, 600);
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("paywire-sandbox-apiv3-key-32byte"),
            "{debug}"
        );
        assert!(
            !debug.contains(paywire_channels::wechat_v2::DEV_API_KEY),
            "{debug}"
        );
        // Layering (defaults → file → env) still sees the real value.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["wechat"]["apiv3_key"],
            "paywire-sandbox-apiv3-key-32byte"
        );
    }
}
