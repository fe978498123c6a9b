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

use actix_web::web;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use paywire_domain::IdGenerator;
use paywire_domain::topology::ORDER_PAY_RESULT_QUEUE;
use paywire_messaging::consumer::{ConsumerConfig, run_consumer};
use paywire_messaging::relay::{RelayConfig, run_relay};
use paywire_messaging::topology::{declare_at_startup, declare_pay_result_topology};
use paywire_platform::app::Application;
use paywire_platform::db::DbPool;
use paywire_platform::http::api;
use paywire_platform::rate_limit::{RateLimitSettings, with_limits};
use serde::{Deserialize, Serialize};

use crate::clients::{LearningCenterClient, PaymentGatewayClient, Upstream};
pub use crate::error::OrderError;
use crate::pay_result::{CONSUMER_NAME, PayResultHandler};
use crate::timeout::TimeoutHandler;
pub use crate::timeout::TimeoutSettings;

pub const SERVICE_NAME: &str = "order";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/order");

// The shared sections, then this service's own.
paywire_platform::database_service_settings! {
    pub struct Settings for SERVICE_NAME, port 8082, database "paywire_order", migrations [paywire_messaging::MIGRATIONS, MIGRATIONS],
        admits [paywire_platform::auth::caller::OPERATOR], presents true {
        pub upstream: UpstreamSettings,
        pub timeout: TimeoutSettings,
        pub rate_limit: RateLimitSettings,
    }
}

/// Where the services this one calls live: their internal listeners (`/internal/*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamSettings {
    /// The learning center's internal listener.
    pub learning_center_url: String,
    /// The payment gateway's internal listener.
    pub payment_gateway_url: String,
    /// Per request (connect and total); a slow upstream becomes a 503, not a hung request.
    pub timeout_ms: u64,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            learning_center_url: "http://127.0.0.1:8181".into(),
            payment_gateway_url: "http://127.0.0.1:8183".into(),
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

paywire_platform::debug_fields!(AppState {
    learning_center,
    payment_gateway
});

/// Prepares the database and the broker topology, binds the HTTP port, and lines up the
/// outbox relay (order timeouts) and the pay-result and order-timeout consumers.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    settings
        .timeout
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    let pool = paywire_platform::app::open_database(&settings).await?;

    declare_at_startup(&settings.amqp.url, SERVICE_NAME, async |channel| {
        // Declared here too, so the queue exists and is bound even if this service starts
        // before the gateway: no pay result is published into the void.
        declare_pay_result_topology(channel, &[ORDER_PAY_RESULT_QUEUE]).await?;
        // Before the first order: the relay publishes timeouts with `mandatory`, so a
        // missing delay queue would only delay them, but declaring first avoids even that.
        settings.timeout.declare(channel).await
    })
    .await?;

    let timeout = Duration::from_millis(settings.upstream.timeout_ms.max(1));
    let upstream = |url: &str| Upstream::new(url, &settings.auth.service_token, timeout);
    let payment_gateway =
        PaymentGatewayClient::new(upstream(&settings.upstream.payment_gateway_url)?);
    let state = web::Data::new(AppState {
        pool: pool.clone(),
        ids: settings.ids.generator()?,
        learning_center: LearningCenterClient::new(upstream(
            &settings.upstream.learning_center_url,
        )?),
        payment_gateway: payment_gateway.clone(),
        delay_queue: settings.timeout.delay_queue_name(),
    });
    let readiness = paywire_platform::app::readiness(&settings);
    let routes = with_limits(
        &settings.rate_limit,
        api(
            pool.clone(),
            state,
            &settings.auth,
            &readiness,
            routes::public,
            routes::internal,
        )?,
    );
    let mut app = Application::serve(SERVICE_NAME, &settings.http, routes)?;

    let amqp_url = &settings.amqp.url;
    app.spawn(
        "outbox-relay",
        run_relay(
            pool.clone(),
            settings.database.url.clone(),
            amqp_url.clone(),
            RelayConfig::default().reporting_to(&readiness),
        ),
    );
    let mut pay_results =
        ConsumerConfig::new(ORDER_PAY_RESULT_QUEUE, CONSUMER_NAME).reporting_to(&readiness);
    pay_results.prefetch = settings.amqp.prefetch;
    app.spawn(
        "pay-result-consumer",
        run_consumer(
            pool.clone(),
            amqp_url.clone(),
            pay_results,
            Arc::new(PayResultHandler),
        ),
    );
    let mut timeouts = ConsumerConfig::new(settings.timeout.queue.clone(), timeout::CONSUMER_NAME)
        .reporting_to(&readiness);
    timeouts.prefetch = settings.amqp.prefetch;
    timeouts.retry = settings.timeout.retry_policy();
    let handler = Arc::new(TimeoutHandler {
        gateway: payment_gateway,
    });
    app.spawn(
        "order-timeout-consumer",
        run_consumer(pool, amqp_url.clone(), timeouts, handler),
    );
    Ok(app)
}
