//! Paywire order service: one order per business record, priced by the learning center,
//! paid through the payment gateway, marked paid by pay results from the broker.

pub mod clients;
pub mod error;
pub mod pay_result;
pub mod routes;
pub mod schema;
pub mod store;
pub mod timeout;

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use paywire_domain::IdGenerator;
use paywire_domain::topology::ORDER_PAY_RESULT_QUEUE;
use paywire_messaging::consumer::{ConsumerConfig, run_consumer};
use paywire_messaging::relay::{RelayConfig, run_relay};
use paywire_messaging::topology::{connect, declare_pay_result_topology};
use paywire_platform::auth::Authenticator;
use paywire_platform::config::{
    AmqpSettings, AuthSettings, DatabaseSettings, HttpSettings, IdSettings, TelemetrySettings,
};
use paywire_platform::db::DbPool;
use paywire_platform::production::{Findings, ProductionChecks};
use serde::{Deserialize, Serialize};

use crate::clients::{LearningCenterClient, PaymentGatewayClient};
pub use crate::error::OrderError;
use crate::pay_result::{CONSUMER_NAME, PayResultHandler};
use crate::timeout::TimeoutHandler;
pub use crate::timeout::TimeoutSettings;

pub const SERVICE_NAME: &str = "order";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/order");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
    pub ids: IdSettings,
    pub upstream: UpstreamSettings,
    pub timeout: TimeoutSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8082),
            database: DatabaseSettings::local("paywire_order"),
            amqp: AmqpSettings::default(),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
            ids: IdSettings::default(),
            upstream: UpstreamSettings::default(),
            timeout: TimeoutSettings::default(),
        }
    }
}

/// Production mode: development secrets and the broker's guest account are refused.
impl ProductionChecks for Settings {
    fn production_findings(&self, findings: &mut Findings) {
        findings.auth(&self.auth);
        findings.amqp_url("amqp.url", &self.amqp.url);
    }
}

/// Where the services this one calls live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamSettings {
    pub learning_center_url: String,
    pub payment_gateway_url: String,
    /// Per request (connect and total); a slow upstream becomes a 503, not a hung request.
    pub timeout_ms: u64,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            learning_center_url: "http://127.0.0.1:8081".into(),
            payment_gateway_url: "http://127.0.0.1:8083".into(),
            timeout_ms: 5000,
        }
    }
}

/// Shared by every request handler.
pub struct AppState {
    pub pool: DbPool,
    pub ids: IdGenerator,
    pub learning_center: LearningCenterClient,
    pub payment_gateway: PaymentGatewayClient,
    /// Where new orders' timeout messages go (the TTL-derived delay queue name).
    pub delay_queue: String,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("learning_center", &self.learning_center)
            .field("payment_gateway", &self.payment_gateway)
            .finish_non_exhaustive()
    }
}

/// A built, not yet running order service.
pub struct App {
    server: Server,
    port: u16,
    pool: DbPool,
    database_url: String,
    amqp: AmqpSettings,
    timeout: TimeoutSettings,
    payment_gateway: PaymentGatewayClient,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Prepares the database and the broker topology, and binds the HTTP port.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    settings
        .timeout
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    let pool = paywire_platform::db::prepare(
        &settings.database,
        vec![paywire_messaging::MIGRATIONS, MIGRATIONS],
    )
    .await?;

    // Declared here too (idempotent), so the queue exists and is bound even if this
    // service starts before the gateway: no pay result is published into the void.
    let amqp = connect(&settings.amqp.url, "order-setup").await?;
    let amqp_channel = amqp.create_channel().await?;
    declare_pay_result_topology(&amqp_channel, &[ORDER_PAY_RESULT_QUEUE]).await?;
    // Before the first order: the relay publishes timeouts with `mandatory`, so a missing
    // delay queue would only delay them, but declaring first avoids even that.
    settings.timeout.declare(&amqp_channel).await?;
    let _ = amqp_channel.close(200, "topology declared".into()).await;
    let _ = amqp.close(200, "topology declared".into()).await;

    let timeout = Duration::from_millis(settings.upstream.timeout_ms.max(1));
    let payment_gateway = PaymentGatewayClient::new(
        &settings.upstream.payment_gateway_url,
        &settings.auth.service_token,
        timeout,
    )?;
    let state = web::Data::new(AppState {
        pool: pool.clone(),
        ids: IdGenerator::new(settings.ids.worker_id)?,
        learning_center: LearningCenterClient::new(
            &settings.upstream.learning_center_url,
            &settings.auth.service_token,
            timeout,
        )?,
        payment_gateway: payment_gateway.clone(),
        delay_queue: settings.timeout.delay_queue_name(),
    });
    let auth = web::Data::new(Authenticator::new(&settings.auth));

    let listener = paywire_platform::http::bind(&settings.http)?;
    let port = listener.local_addr()?.port();
    let server = paywire_platform::http::serve(listener, settings.http.workers, move |cfg| {
        routes::configure(cfg, state.clone(), auth.clone())
    })?;
    tracing::info!(port, "order service listening");
    Ok(App {
        server,
        port,
        pool,
        database_url: settings.database.url,
        amqp: settings.amqp,
        timeout: settings.timeout,
        payment_gateway,
    })
}

impl App {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves HTTP, relays the outbox (order timeouts), consumes pay results and order
    /// timeouts, until any of them stops or a signal arrives.
    pub async fn run(self) -> anyhow::Result<()> {
        let relay = {
            let (pool, db_url, amqp_url) =
                (self.pool.clone(), self.database_url, self.amqp.url.clone());
            tokio::spawn(async move {
                if let Err(e) = run_relay(pool, db_url, amqp_url, RelayConfig::default()).await {
                    tracing::error!(error = %e, "outbox relay stopped");
                }
            })
        };
        let pay_results = {
            let mut config = ConsumerConfig::new(ORDER_PAY_RESULT_QUEUE, CONSUMER_NAME);
            config.prefetch = self.amqp.prefetch;
            let (pool, amqp_url) = (self.pool.clone(), self.amqp.url.clone());
            tokio::spawn(async move {
                if let Err(e) =
                    run_consumer(pool, amqp_url, config, Arc::new(PayResultHandler)).await
                {
                    tracing::error!(error = %e, "pay-result consumer stopped");
                }
            })
        };
        let timeouts = {
            let mut config =
                ConsumerConfig::new(self.timeout.queue.clone(), timeout::CONSUMER_NAME);
            config.prefetch = self.amqp.prefetch;
            config.retry = self.timeout.retry_policy();
            let handler = Arc::new(TimeoutHandler {
                gateway: self.payment_gateway,
            });
            let (pool, amqp_url) = (self.pool, self.amqp.url);
            tokio::spawn(async move {
                if let Err(e) = run_consumer(pool, amqp_url, config, handler).await {
                    tracing::error!(error = %e, "order-timeout consumer stopped");
                }
            })
        };
        paywire_platform::http::run_until_stopped(
            self.server,
            vec![
                ("outbox-relay", relay),
                ("pay-result-consumer", pay_results),
                ("order-timeout-consumer", timeouts),
            ],
        )
        .await?;
        Ok(())
    }
}
