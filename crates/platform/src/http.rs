//! HTTP bootstrap shared by the services: binding, request tracing, JSON errors, health.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};
use tracing_actix_web::TracingLogger;

use crate::PlatformError;
use crate::api_error::{ApiError, Reply};
use crate::config::HttpSettings;

/// The one error body every Paywire API returns: a stable machine code and a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
        }
    }
}

/// Binds the configured address; port 0 picks a free port (tests).
pub fn bind(settings: &HttpSettings) -> Result<TcpListener, PlatformError> {
    Ok(TcpListener::bind((settings.host.as_str(), settings.port))?)
}

/// Starts an actix server on `listener` with the routes from `configure`, plus tracing
/// spans per request (with a request id), JSON 400s for malformed bodies and `/health`.
pub fn serve<F>(
    listener: TcpListener,
    workers: usize,
    configure: F,
) -> Result<Server, PlatformError>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(TracingLogger::default())
            .app_data(json_config())
            .app_data(path_config())
            .app_data(query_config())
            .route("/health", web::get().to(health))
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

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|err, _req: &HttpRequest| {
            BadRequest {
                code: "invalid_body",
                message: err.to_string(),
            }
            .into()
        })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        BadRequest {
            code: "invalid_path",
            message: err.to_string(),
        }
        .into()
    })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        BadRequest {
            code: "invalid_query",
            message: err.to_string(),
        }
        .into()
    })
}

/// Runs a service's HTTP server and its background tasks until one of them ends (or
/// Ctrl-C / SIGTERM arrives), then stops the rest. The one that ended first is reported,
/// so a crashed relay does not leave a half-working service behind.
pub async fn run_until_stopped(
    server: Server,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
) -> std::io::Result<()> {
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    let mut tasks = tasks;
    let background = async {
        if tasks.is_empty() {
            return std::future::pending::<&'static str>().await;
        }
        let futures = tasks.iter_mut().map(|(name, h)| {
            let name = *name;
            Box::pin(async move {
                let _ = h.await;
                name
            })
        });
        futures::future::select_all(futures).await.0
    };
    let result = tokio::select! {
        res = server_task => {
            tracing::warn!("http server stopped");
            res.map_err(std::io::Error::other).and_then(|r| r)
        }
        name = background => {
            tracing::error!(task = name, "background task stopped; shutting down");
            handle.stop(true).await;
            Err(std::io::Error::other(format!("background task {name} stopped")))
        }
        _ = shutdown_signal() => {
            tracing::info!("shutdown signal received");
            handle.stop(true).await;
            Ok(())
        }
    };
    for (_, t) in &tasks {
        t.abort();
    }
    result
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
