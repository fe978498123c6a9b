//! HTTP bootstrap shared by the services: binding, request tracing, request metrics and
//! `/metrics`, JSON errors, health (`/health` and `/health/live`: the process answers) and
//! readiness (`/health/ready`: it can do its work).

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::PlatformError;
use crate::api_error::{ApiError, Reply};
use crate::auth::Authenticator;
use crate::config::{AuthSettings, HttpSettings};
use crate::db::DbPool;

/// The one error body every Paywire API returns; declared with the other contracts.
pub use paywire_contracts::ErrorBody;

/// Binds the configured address; port 0 picks a free port (tests).
pub fn bind(settings: &HttpSettings) -> Result<TcpListener, PlatformError> {
    Ok(TcpListener::bind((settings.host.as_str(), settings.port))?)
}

/// What registers a service's routes: called once per worker, so it is cloned into each.
pub trait Routes: Fn(&mut web::ServiceConfig) + Send + Clone + 'static {}

impl<F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static> Routes for F {}

/// The largest request body a service reads, JSON or raw (a channel's notification): a
/// larger one is refused with `413` before it is parsed (issue 9: 70 KiB of JSON and a
/// 100 KiB callback were parsed and answered `400`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Starts an actix server on `listener` with the routes from `configure`, plus tracing
/// spans per request (with a request id), request metrics, JSON 400s for malformed bodies
/// and 413s for oversized ones ([`MAX_BODY_BYTES`]),
/// `/health`, `/health/live` and `/metrics`.
pub fn serve(
    listener: TcpListener,
    workers: usize,
    configure: impl Routes,
) -> Result<Server, PlatformError> {
    crate::metrics::install();
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(TracingLogger::default())
            .wrap(actix_web::middleware::from_fn(crate::metrics::track))
            .app_data(json_config())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(path_config())
            .app_data(query_config())
            .route("/health", web::get().to(health))
            .route("/health/live", web::get().to(health))
            .route("/metrics", web::get().to(crate::metrics::render))
            .configure(configure.clone())
    })
    .disable_signals()
    .shutdown_timeout(5);
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// What every database service's API is made of, registered once: `/health/ready` over
/// `pool` ([`readiness`]), the service's `state` and an [`Authenticator`] for `auth` (what
/// the credential extractors check against) as app data, then the service's own `routes`.
/// For [`crate::app::Application::serve`].
pub fn api<S: Send + Sync + 'static>(
    pool: DbPool,
    state: web::Data<S>,
    auth: &AuthSettings,
    routes: fn(&mut web::ServiceConfig),
) -> impl Routes {
    let auth = web::Data::new(Authenticator::new(auth));
    move |cfg| {
        readiness(cfg, pool.clone());
        cfg.app_data(state.clone())
            .app_data(auth.clone())
            .configure(routes);
    }
}

/// How long readiness waits for a working database connection.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Registers `GET /health/ready` for a service that needs its database: `200
/// {"status":"ready"}` once the pool hands out a connection that answers (the pool checks
/// it on checkout), else `503 database_unavailable` with `Retry-After`, so a load balancer
/// sends no traffic to an instance whose database is gone and takes it back by itself.
/// `/health` stays a liveness probe: a restart would not bring the database back.
pub fn readiness(cfg: &mut web::ServiceConfig, pool: DbPool) {
    cfg.app_data(web::Data::new(ReadyPool(pool)))
        .route("/health/ready", web::get().to(ready));
}

struct ReadyPool(DbPool);

async fn ready(pool: web::Data<ReadyPool>) -> Result<HttpResponse, NotReady> {
    match tokio::time::timeout(READY_TIMEOUT, pool.0.get()).await {
        Ok(Ok(_conn)) => Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))),
        Ok(Err(e)) => Err(NotReady(Some(e))),
        Err(_) => Err(NotReady(None)),
    }
}

/// The pool gave no working connection (its error, or none within [`READY_TIMEOUT`]);
/// answered through the one mapping: `503 database_unavailable` with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("not ready: {}", .0.as_ref().map_or_else(|| format!("no connection within {READY_TIMEOUT:?}"), ToString::to_string))]
struct NotReady(Option<crate::db::PoolError>);

impl ApiError for NotReady {
    fn reply(&self) -> Reply {
        match &self.0 {
            Some(e) => Reply::pool(e),
            None => Reply::database(crate::db::DbFault::Unavailable),
        }
    }
}
crate::api_error!(NotReady);

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct BadRequest {
    code: &'static str,
    message: String,
}

impl ApiError for BadRequest {
    fn reply(&self) -> Reply {
        Reply::new(StatusCode::BAD_REQUEST, self.code)
    }
}
crate::api_error!(BadRequest);

/// The error handler of an extractor's configuration: what it could not read is a `400`
/// with `code` and the extractor's own message.
fn bad_request<E: std::fmt::Display>(
    code: &'static str,
) -> impl Fn(E, &HttpRequest) -> actix_web::Error + Send + Sync + 'static {
    move |err, _req| {
        BadRequest {
            code,
            message: err.to_string(),
        }
        .into()
    }
}

fn json_config() -> web::JsonConfig {
    use actix_web::error::{JsonPayloadError, PayloadError};
    let invalid = bad_request("invalid_body");
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(move |err, req| match err {
            JsonPayloadError::Overflow { .. }
            | JsonPayloadError::OverflowKnownLength { .. }
            | JsonPayloadError::Payload(PayloadError::Overflow) => TooLarge.into(),
            other => invalid(other, req),
        })
}

/// A body over [`MAX_BODY_BYTES`]: `413 body_too_large`.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {MAX_BODY_BYTES} bytes")]
struct TooLarge;

impl ApiError for TooLarge {
    fn reply(&self) -> Reply {
        Reply::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    }
}
crate::api_error!(TooLarge);

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(bad_request("invalid_path"))
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(bad_request("invalid_query"))
}
