//! HTTP bootstrap shared by the services: two listeners per service (public: user API
//! and callbacks; internal: `/internal/*`, health, metrics), request tracing, request
//! metrics and `/metrics`, JSON errors, health (`/health` and `/health/live`: the process
//! answers) and readiness (`/health/ready`: it can do its work).

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
use crate::health::Readiness;

/// The one error body every Paywire API returns; declared with the other contracts.
pub use paywire_contracts::ErrorBody;

/// A service's two bound sockets (issue 9: the internal API must not be reachable where
/// the user API and the callbacks are exposed).
#[derive(Debug)]
pub struct Listeners {
    /// The user API and the channels' callbacks (`http.host`, `http.port`).
    pub public: TcpListener,
    /// `/internal/*`, `/metrics`, `/health/*` and the sandbox's admin API
    /// (`http.internal_host`, `http.internal_port`).
    pub internal: TcpListener,
}

/// Binds both configured addresses; port 0 picks a free port (tests).
pub fn bind(settings: &HttpSettings) -> Result<Listeners, PlatformError> {
    let internal_port = settings.internal_port().ok_or_else(|| {
        PlatformError::Config(::config::ConfigError::Message(format!(
            "http.port {} + {} is no port: set http.internal_port",
            settings.port,
            crate::config::INTERNAL_PORT_OFFSET
        )))
    })?;
    Ok(Listeners {
        public: TcpListener::bind((settings.host.as_str(), settings.port))?,
        internal: TcpListener::bind((settings.internal_host(), internal_port))?,
    })
}

/// What registers a service's routes: called once per worker, so it is cloned into each.
pub trait Routes: Fn(&mut web::ServiceConfig) + Send + Clone + 'static {}

impl<F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static> Routes for F {}

/// A service's routes by listener. A route registered on one listener does not exist on
/// the other: it answers `404` there.
#[derive(Debug, Clone)]
pub struct ListenerRoutes<P, I> {
    /// The user API, callbacks, pages.
    pub public: P,
    /// `/internal/*` and the like; the platform adds `/health*` and `/metrics` here.
    pub internal: I,
}

/// Routes with nothing of the service's own on the internal listener (which still serves
/// health and metrics).
pub fn public_only(public: impl Routes) -> ListenerRoutes<impl Routes, impl Routes> {
    ListenerRoutes {
        public,
        internal: |_: &mut web::ServiceConfig| {},
    }
}

/// The largest request body a service reads, JSON or raw (a channel's notification): a
/// larger one is refused with `413` before it is parsed (issue 9: 70 KiB of JSON and a
/// 100 KiB callback were parsed and answered `400`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Two running actix servers, one per listener.
pub struct Servers {
    pub public: Server,
    pub internal: Server,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers").finish_non_exhaustive()
    }
}

/// Starts one actix server per listener with the routes of `routes`, both with tracing
/// spans per request (with a request id), request metrics, JSON 400s for malformed bodies
/// and 413s for oversized ones ([`MAX_BODY_BYTES`]); the internal one also answers
/// `/health`, `/health/live`, `/health/ready` and `/metrics`.
pub fn serve(
    listeners: Listeners,
    workers: usize,
    routes: ListenerRoutes<impl Routes, impl Routes>,
) -> Result<Servers, PlatformError> {
    crate::metrics::install();
    let ListenerRoutes { public, internal } = routes;
    let public = server(listeners.public, workers, move |cfg| public(cfg))?;
    let internal = server(listeners.internal, workers, move |cfg| {
        cfg.configure(platform_internal).configure(internal.clone());
    })?;
    Ok(Servers { public, internal })
}

/// What the platform serves on every internal listener: `/health`, `/health/live`,
/// `/health/ready` and `/metrics`.
pub fn platform_internal(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/health/live", web::get().to(health))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(crate::metrics::render));
}

fn server(
    listener: TcpListener,
    workers: usize,
    configure: impl Routes,
) -> Result<Server, PlatformError> {
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
            .wrap(actix_web::middleware::from_fn(crate::metrics::track))
            .app_data(json_config())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(path_config())
            .app_data(query_config())
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

/// What every database service's API is made of, registered once: readiness over `pool`
/// and `readiness` (`/health/ready`, internal listener), the service's `state` and an
/// [`Authenticator`] for `auth` (what the credential extractors check against) as app data
/// on both listeners, then the service's own routes: `public` on the public listener,
/// `internal` on the internal one. For [`crate::app::Application::serve`].
pub fn api<S: Send + Sync + 'static>(
    pool: DbPool,
    state: web::Data<S>,
    auth: &AuthSettings,
    readiness: &Readiness,
    public: fn(&mut web::ServiceConfig),
    internal: fn(&mut web::ServiceConfig),
) -> Result<ListenerRoutes<impl Routes, impl Routes>, crate::auth::AuthError> {
    let refresh = std::time::Duration::from_secs(auth.jwks_refresh_secs.max(1));
    let auth = web::Data::new(Authenticator::new(auth)?);
    if let Some(task) = auth.key_refresh(refresh, readiness) {
        tokio::spawn(task);
    }
    let ready = web::Data::new(ReadyState {
        pool,
        readiness: readiness.clone(),
    });
    let (public_state, public_auth) = (state.clone(), auth.clone());
    Ok(ListenerRoutes {
        public: move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(public_state.clone())
                .app_data(public_auth.clone())
                .configure(public);
        },
        internal: move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(ready.clone())
                .app_data(state.clone())
                .app_data(auth.clone())
                .configure(internal);
        },
    })
}

/// How long readiness waits for a working database connection.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What `/health/ready` checks in a service that has a database ([`api`]).
struct ReadyState {
    pool: DbPool,
    readiness: Readiness,
}

/// `GET /health/ready`: `200 {"status":"ready","checks":{…}}` once the pool hands out a
/// connection that answers (the pool checks it on checkout), every migration of this build
/// is applied, and every part registered with the service's [`Readiness`] (outbox relay,
/// consumers) is up; otherwise `503` with `Retry-After` and a stable code
/// (`database_unavailable`, `migrations_pending`, `not_ready`), so a load balancer sends
/// no traffic to the instance and takes it back by itself. A service without a database
/// has nothing to wait for. `/health/live` stays a liveness probe: a restart would not
/// bring a dependency back.
async fn ready(state: Option<web::Data<ReadyState>>) -> Result<HttpResponse, NotReady> {
    let Some(state) = state else {
        return Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready", "checks": {}})));
    };
    let mut conn = match tokio::time::timeout(READY_TIMEOUT, state.pool.get()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(NotReady::Pool(Some(e))),
        Err(_) => return Err(NotReady::Pool(None)),
    };
    if !state.readiness.migrations_applied(&mut conn).await? {
        return Err(NotReady::Migrations);
    }
    let parts = state.readiness.report();
    let waiting: Vec<String> = parts
        .iter()
        .filter(|(_, state)| **state != "up")
        .map(|(name, state)| format!("{name} is {state}"))
        .collect();
    if !waiting.is_empty() {
        return Err(NotReady::Parts(waiting.join(", ")));
    }
    let mut checks = serde_json::Map::new();
    checks.insert("database".into(), "up".into());
    checks.insert("migrations".into(), "up".into());
    for (name, state) in parts {
        checks.insert(name, state.into());
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready", "checks": checks})))
}

/// Why an instance is not ready; answered through the one mapping with `503` and
/// `Retry-After`.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    /// The pool gave no working connection (its error, or none within [`READY_TIMEOUT`]).
    #[error("not ready: {}", .0.as_ref().map_or_else(|| format!("no connection within {READY_TIMEOUT:?}"), ToString::to_string))]
    Pool(Option<crate::db::PoolError>),
    #[error("not ready: reading the applied migrations failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("not ready: migrations of this build are not applied yet (run `migrate`)")]
    Migrations,
    /// Names and states only: what brought a part down is in the log.
    #[error("not ready: {0}")]
    Parts(String),
}

impl ApiError for NotReady {
    fn reply(&self) -> Reply {
        match self {
            NotReady::Pool(Some(e)) => Reply::pool(e),
            NotReady::Pool(None) => Reply::database(crate::db::DbFault::Unavailable),
            NotReady::Query(e) => Reply::query(e),
            NotReady::Migrations => {
                Reply::new(StatusCode::SERVICE_UNAVAILABLE, "migrations_pending").detail()
            }
            NotReady::Parts(_) => Reply::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready").detail(),
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
