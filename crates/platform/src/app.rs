//! The service bootstrap, written once for every binary (zero-to-production's
//! `Application`): a service's settings describe it ([`ServiceSettings`]) and build an
//! [`Application`] (HTTP server plus named background tasks); [`main`] does the rest —
//! settings, telemetry, production checks, the `migrate` subcommand, running until stopped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use diesel_migrations::EmbeddedMigrations;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PlatformError;
use crate::config::{DatabaseSettings, HttpSettings, TelemetrySettings};
use crate::db::DbPool;
use crate::http::{ListenerRoutes, Listeners, Routes};
use crate::production::ProductionChecks;

/// A service's settings, which say all the bootstrap needs: the service's name, its
/// telemetry, its database and migrations, and how to build it.
pub trait ServiceSettings: Default + Serialize + DeserializeOwned + ProductionChecks {
    const SERVICE: &'static str;

    fn telemetry(&self) -> &TelemetrySettings;

    /// Where the service listens (`<service> ready` asks the internal listener).
    fn http(&self) -> &HttpSettings;

    /// The database `<service> migrate` creates, with the migration sets applied in order
    /// (messaging's tables before the service's own); `None`: the service has none.
    fn database(&self) -> Option<(&DatabaseSettings, Vec<EmbeddedMigrations>)> {
        None
    }

    /// Prepares everything and binds the port; nothing runs until
    /// [`Application::run_until_stopped`].
    fn build(self) -> impl Future<Output = anyhow::Result<Application>>;
}

/// Implements [`ServiceSettings`] for a settings struct whose sections follow the
/// configuration's names (`telemetry`, and `database` for a service that has one), built
/// by the service's `build(settings)`:
///
/// `paywire_platform::service_settings!(Settings, "order", database: [messaging, own]);`
#[macro_export]
macro_rules! service_settings {
    ($settings:ty, $name:expr $(, database: [$($migrations:expr),+ $(,)?])? $(,)?) => {
        impl $crate::app::ServiceSettings for $settings {
            const SERVICE: &'static str = $name;

            fn telemetry(&self) -> &$crate::config::TelemetrySettings {
                &self.telemetry
            }

            fn http(&self) -> &$crate::config::HttpSettings {
                &self.http
            }
            $(
            fn database(
                &self,
            ) -> Option<(&$crate::config::DatabaseSettings, Vec<$crate::__EmbeddedMigrations>)> {
                Some((&self.database, vec![$($migrations),+]))
            }
            )?
            fn build(
                self,
            ) -> impl ::std::future::Future<Output = $crate::__anyhow::Result<$crate::app::Application>> {
                build(self)
            }
        }
    };
}

/// The whole of every service's `main`: load settings, start telemetry, refuse development
/// values in production, then either `migrate` (create the database, apply migrations,
/// exit) or build and run until stopped. `<service> ready` only asks the running instance
/// whether it is ready (container healthchecks) and exits 0 or 1.
pub async fn main<S: ServiceSettings>() -> anyhow::Result<()> {
    let settings: S = crate::config::load(S::SERVICE)?;
    if crate::health::probe_requested() {
        return crate::health::probe(settings.http()).await;
    }
    crate::telemetry::init(S::SERVICE, settings.telemetry());
    // PAYWIRE__ENVIRONMENT=production: refuse development secrets, test keys, the sandbox.
    crate::production::enforce(S::SERVICE, &settings)?;
    if crate::db::migrate_requested() {
        let Some((database, migrations)) = settings.database() else {
            anyhow::bail!("{} has no database to migrate", S::SERVICE);
        };
        crate::db::create_and_migrate(database, migrations).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    let result = settings.build().await?.run_until_stopped().await;
    // The spans of the last moments, before the exporter's thread goes with the process.
    crate::telemetry::shutdown();
    result
}

/// The service's database at start-up: created and migrated (when `database.migrate`),
/// then its pool.
pub async fn open_database<S: ServiceSettings>(settings: &S) -> anyhow::Result<DbPool> {
    let Some((database, migrations)) = settings.database() else {
        anyhow::bail!("{} has no database", S::SERVICE);
    };
    Ok(crate::db::prepare(database, migrations).await?)
}

/// What `/health/ready` waits for in this service: its migrations, then the parts its
/// build registers (relay, consumers).
pub fn readiness<S: ServiceSettings>(settings: &S) -> crate::health::Readiness {
    let sets = settings
        .database()
        .map(|(_, sets)| sets)
        .unwrap_or_default();
    crate::health::Readiness::with_migrations(&sets)
}

/// How a background task ended: `()` or a `Result` whose error is logged.
pub trait TaskExit: Send + 'static {
    fn failure(self) -> Option<String>;
}

impl TaskExit for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: fmt::Display + Send + 'static> TaskExit for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A built, not yet running service: its two HTTP servers, public and internal (bound, so
/// the ports are known), and its background tasks (relay, consumers, workers), started
/// together by [`Application::run_until_stopped`].
pub struct Application {
    name: &'static str,
    servers: crate::http::Servers,
    port: u16,
    internal_port: u16,
    tasks: Vec<(&'static str, Task)>,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("internal_port", &self.internal_port)
            .field(
                "tasks",
                &self.tasks.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds both listeners of `settings` (port 0 picks a free port) and serves `routes`
    /// on them.
    pub fn serve(
        name: &'static str,
        settings: &HttpSettings,
        routes: ListenerRoutes<impl Routes, impl Routes>,
    ) -> Result<Self, PlatformError> {
        Self::serve_on(name, crate::http::bind(settings)?, settings.workers, routes)
    }

    /// Serves on listeners bound earlier (a service that must know its own address
    /// before it can build its routes).
    pub fn serve_on(
        name: &'static str,
        listeners: Listeners,
        workers: usize,
        routes: ListenerRoutes<impl Routes, impl Routes>,
    ) -> Result<Self, PlatformError> {
        let port = listeners.public.local_addr()?.port();
        let internal_port = listeners.internal.local_addr()?.port();
        let service = crate::telemetry::ServiceName(name);
        let ListenerRoutes { public, internal } = routes;
        let routes = ListenerRoutes {
            public: move |cfg: &mut actix_web::web::ServiceConfig| {
                cfg.app_data(service);
                public(cfg);
            },
            internal: move |cfg: &mut actix_web::web::ServiceConfig| {
                cfg.app_data(service);
                internal(cfg);
            },
        };
        let servers = crate::http::serve(listeners, workers, routes)?;
        crate::metrics::record_build_info(name);
        tracing::info!(service = name, port, internal_port, "listening");
        Ok(Self {
            name,
            servers,
            port,
            internal_port,
            tasks: Vec::new(),
        })
    }

    /// The public listener's port: user API, callbacks.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The internal listener's port: `/internal/*`, `/metrics`, `/health/*`.
    pub fn internal_port(&self) -> u16 {
        self.internal_port
    }

    /// Adds a background task, started by [`Application::run_until_stopped`]. Its end is
    /// logged under `name`, with its error if it returned one, and stops the service.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future + Send + 'static,
        F::Output: TaskExit,
    {
        self.tasks.push((
            name,
            Box::pin(async move {
                match task.await.failure() {
                    Some(error) => tracing::error!(task = name, %error, "background task failed"),
                    None => tracing::warn!(task = name, "background task ended"),
                }
            }),
        ));
    }

    /// Serves HTTP and runs the background tasks until one of them ends (or Ctrl-C /
    /// SIGTERM arrives), then stops the rest. A task that ended is an error: a crashed
    /// relay must not leave a half-working service behind.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let tasks = self
            .tasks
            .into_iter()
            .map(|(name, task)| (name, tokio::spawn(task)))
            .collect();
        run_until_stopped(self.servers, tasks).await?;
        tracing::info!(service = self.name, "stopped");
        Ok(())
    }
}

/// The HTTP servers and the spawned tasks until one ends or a signal arrives; the one
/// that ended first is reported.
async fn run_until_stopped(
    servers: crate::http::Servers,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
) -> std::io::Result<()> {
    let handles = [servers.public.handle(), servers.internal.handle()];
    let stop = || futures::future::join_all(handles.iter().map(|h| h.stop(true)));
    let (public, internal) = (tokio::spawn(servers.public), tokio::spawn(servers.internal));
    let server_task = async {
        let (res, which, _) = futures::future::select_all([public, internal]).await;
        (res, if which == 0 { "public" } else { "internal" })
    };
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
        (res, listener) = server_task => {
            tracing::warn!(listener, "http server stopped");
            stop().await;
            res.map_err(std::io::Error::other).and_then(|r| r)
        }
        name = background => {
            tracing::error!(task = name, "background task stopped; shutting down");
            stop().await;
            Err(std::io::Error::other(format!("background task {name} stopped")))
        }
        _ = shutdown_signal() => {
            tracing::info!("shutdown signal received");
            stop().await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_http::get;
    use actix_web::web;

    fn app() -> Application {
        let http = HttpSettings::default();
        Application::serve(
            "test",
            &http,
            ListenerRoutes {
                public: |cfg: &mut web::ServiceConfig| {
                    cfg.route("/x", web::get().to(|| async { "x" }));
                },
                internal: |cfg: &mut web::ServiceConfig| {
                    cfg.route("/internal/y", web::get().to(|| async { "y" }));
                },
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_failed_background_task_stops_the_service_with_its_name() {
        let mut app = app();
        assert_ne!(app.port(), 0, "port 0 binds a free port");
        app.spawn("steady", std::future::pending::<()>());
        app.spawn("relay", async { Err::<(), _>("broker gone") });
        assert!(format!("{app:?}").contains("relay"));
        let err = app.run_until_stopped().await.unwrap_err();
        assert!(err.to_string().contains("relay"), "{err}");
    }

    #[tokio::test]
    async fn each_listener_answers_its_own_routes_and_404_for_the_others() {
        let app = app();
        let (public, internal) = (app.port(), app.internal_port());
        assert_ne!(internal, 0, "port 0 binds a free internal port too");
        assert_ne!(public, internal);
        let running = tokio::spawn(app.run_until_stopped());

        let answer = get(public, "/x").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with('x'), "{answer}");
        let answer = get(internal, "/internal/y").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with('y'), "{answer}");
        for path in ["/health", "/health/live", "/health/ready", "/metrics"] {
            let answer = get(internal, path).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        }
        for path in [
            "/internal/y",
            "/health",
            "/health/live",
            "/health/ready",
            "/metrics",
        ] {
            let answer = get(public, path).await;
            assert!(
                answer.starts_with("HTTP/1.1 404"),
                "public {path}: {answer}"
            );
        }
        let answer = get(internal, "/x").await;
        assert!(answer.starts_with("HTTP/1.1 404"), "internal /x: {answer}");
        running.abort();
    }

    #[test]
    fn an_internal_port_beyond_65535_is_refused_at_bind() {
        let err = crate::http::bind(&HttpSettings::on_port(65500)).unwrap_err();
        assert!(err.to_string().contains("http.internal_port"), "{err}");
    }

    #[derive(Default, Serialize, serde::Deserialize)]
    struct NoDatabase {
        telemetry: TelemetrySettings,
        http: HttpSettings,
    }
    impl ProductionChecks for NoDatabase {
        fn production_findings(&self, _: &mut crate::production::Findings) {}
    }
    async fn build(_: NoDatabase) -> anyhow::Result<Application> {
        Ok(app())
    }
    crate::service_settings!(NoDatabase, "no-database");

    #[tokio::test]
    async fn a_service_without_a_database_has_none_to_open() {
        let settings = NoDatabase::default();
        assert!(settings.database().is_none());
        let Err(err) = open_database(&settings).await else {
            panic!("a pool for a service without a database");
        };
        assert!(
            err.to_string().contains("no-database has no database"),
            "{err}"
        );
        let app = settings.build().await.unwrap();
        assert_ne!(app.port(), 0);
    }
}
