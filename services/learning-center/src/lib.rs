//! Paywire learning center: the course catalogue, students' course choices, their course
//! tables and learning status. Paid courses are enrolled by pay results from the broker.

pub mod error;
pub mod pay_result;
pub mod routes;
pub mod schema;
pub mod store;

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::web;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use paywire_domain::IdGenerator;
use paywire_domain::topology::LEARNING_PAY_RESULT_QUEUE;
use paywire_messaging::consumer::{ConsumerConfig, run_consumer};
use paywire_messaging::topology::{connect, declare_pay_result_topology};
use paywire_platform::auth::Authenticator;
use paywire_platform::config::{
    AmqpSettings, AuthSettings, DatabaseSettings, HttpSettings, IdSettings, TelemetrySettings,
};
use paywire_platform::db::DbPool;
use paywire_platform::production::{Findings, ProductionChecks};
use serde::{Deserialize, Serialize};

pub use crate::error::LearningError;
use crate::pay_result::{CONSUMER_NAME, PayResultHandler};

pub const SERVICE_NAME: &str = "learning-center";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/learning-center");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
    pub ids: IdSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8081),
            database: DatabaseSettings::local("paywire_learning"),
            amqp: AmqpSettings::default(),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
            ids: IdSettings::default(),
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

/// Shared by every request handler.
pub struct AppState {
    pub pool: DbPool,
    pub ids: IdGenerator,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

/// A built, not yet running learning center.
pub struct App {
    server: Server,
    port: u16,
    pool: DbPool,
    amqp: AmqpSettings,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Prepares the database (messaging tables, then this service's) and the broker topology,
/// and binds the HTTP port.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    let pool = paywire_platform::db::prepare(
        &settings.database,
        vec![paywire_messaging::MIGRATIONS, MIGRATIONS],
    )
    .await?;

    // Declared here too (idempotent), so the queue exists and is bound even if this
    // service starts before the gateway: no pay result is published into the void.
    let amqp = connect(&settings.amqp.url, "learning-center-setup").await?;
    let amqp_channel = amqp.create_channel().await?;
    declare_pay_result_topology(&amqp_channel, &[LEARNING_PAY_RESULT_QUEUE]).await?;
    let _ = amqp_channel.close(200, "topology declared".into()).await;
    let _ = amqp.close(200, "topology declared".into()).await;

    let state = web::Data::new(AppState {
        pool: pool.clone(),
        ids: IdGenerator::new(settings.ids.worker_id)?,
    });
    let auth = web::Data::new(Authenticator::new(&settings.auth));

    let listener = paywire_platform::http::bind(&settings.http)?;
    let port = listener.local_addr()?.port();
    let server = paywire_platform::http::serve(listener, settings.http.workers, move |cfg| {
        routes::configure(cfg, state.clone(), auth.clone())
    })?;
    tracing::info!(port, "learning center listening");
    Ok(App {
        server,
        port,
        pool,
        amqp: settings.amqp,
    })
}

impl App {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves HTTP and consumes pay results until either stops or a signal arrives.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut config = ConsumerConfig::new(LEARNING_PAY_RESULT_QUEUE, CONSUMER_NAME);
        config.prefetch = self.amqp.prefetch;
        let consumer = tokio::spawn(async move {
            if let Err(e) =
                run_consumer(self.pool, self.amqp.url, config, Arc::new(PayResultHandler)).await
            {
                tracing::error!(error = %e, "pay-result consumer stopped");
            }
        });
        paywire_platform::http::run_until_stopped(
            self.server,
            vec![("pay-result-consumer", consumer)],
        )
        .await?;
        Ok(())
    }
}
