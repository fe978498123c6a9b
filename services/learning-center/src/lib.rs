//! Paywire learning center: the course catalogue, students' course choices, their course
//! tables and learning status. Paid courses are enrolled by pay results from the broker
//! and revoked by full refunds (`refund.result.v1`; policy: `paywire_domain::EnrolmentStatus`).

pub mod error;
pub mod pay_result;
pub mod refund_result;
pub mod routes;
pub mod schema;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use paywire_domain::IdGenerator;
use paywire_domain::topology::LEARNING_PAY_RESULT_QUEUE;
use paywire_messaging::consumer::{ConsumerConfig, run_consumer};
use paywire_messaging::topology::{declare_at_startup, declare_pay_result_topology};
use paywire_platform::app::Application;
use paywire_platform::db::{DbPool, repeat_while_unavailable};
use paywire_platform::http::api;

pub use crate::error::LearningError;
use crate::pay_result::{CONSUMER_NAME, PayResultHandler};

pub const SERVICE_NAME: &str = "learning-center";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/learning-center");

// The shared sections, then this service's own.
paywire_platform::database_service_settings! {
    pub struct Settings for SERVICE_NAME, port 8081, database "paywire_learning", migrations [paywire_messaging::MIGRATIONS, MIGRATIONS],
        admits [paywire_platform::auth::caller::ORDER], presents false {
    }
}

/// Shared by every request handler.
pub struct AppState {
    pub pool: DbPool,
    pub ids: IdGenerator,
    /// `database.retry_budget_ms`: see [`AppState::repeat`].
    pub retry_budget: Duration,
}

impl AppState {
    /// Runs a request's database work, repeated while the database is briefly away
    /// (`paywire_platform::db::repeat_while_unavailable`). Every request of this service
    /// is safe to repeat: reads, and choices that are idempotent per student and course.
    pub async fn repeat<T>(
        &self,
        work: impl AsyncFnMut(&mut AsyncPgConnection) -> Result<T, LearningError>,
    ) -> Result<T, LearningError> {
        repeat_while_unavailable(&self.pool, self.retry_budget, work).await
    }
}

paywire_platform::debug_fields!(AppState { ids });

/// Prepares the database (messaging tables, then this service's) and the broker topology,
/// binds the HTTP port, and lines up the pay-result consumer.
pub async fn build(settings: Settings) -> anyhow::Result<Application> {
    let pool = paywire_platform::app::open_database(&settings).await?;

    // Declared here too, so the queue exists and is bound even if this service starts
    // before the gateway: no pay result is published into the void.
    declare_at_startup(&settings.amqp.url, SERVICE_NAME, async |channel| {
        declare_pay_result_topology(channel, &[LEARNING_PAY_RESULT_QUEUE]).await
    })
    .await?;

    let state = web::Data::new(AppState {
        pool: pool.clone(),
        ids: settings.ids.generator()?,
        retry_budget: Duration::from_millis(settings.database.retry_budget_ms),
    });
    let readiness = paywire_platform::app::readiness(&settings);
    let routes = api(
        pool.clone(),
        state,
        &settings.auth,
        &readiness,
        routes::public,
        routes::internal,
    )?;
    let mut app = Application::serve(SERVICE_NAME, &settings.http, routes)?;

    let mut config =
        ConsumerConfig::new(LEARNING_PAY_RESULT_QUEUE, CONSUMER_NAME).reporting_to(&readiness);
    config.prefetch = settings.amqp.prefetch;
    app.spawn(
        "pay-result-consumer",
        run_consumer(pool, settings.amqp.url, config, Arc::new(PayResultHandler)),
    );
    Ok(app)
}
