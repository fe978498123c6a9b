//! Readiness: whether an instance can do its work, for `/health/ready` (load balancers,
//! compose's healthchecks, Kubernetes' readiness probes). Liveness (`/health/live`) only
//! says the process answers: restarting an instance whose broker is away would not bring
//! the broker back, so only readiness looks at dependencies.
//!
//! An instance is ready when its database hands out a working connection, every migration
//! it was built with is applied (a deployment whose `migrate` step has not run yet must
//! not take traffic), and every background part that reports here — the outbox relay and
//! each consumer — holds a live broker session.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_migrations::EmbeddedMigrations;

/// The parts of one instance that must be running for it to be ready. Cheap to clone:
/// clones share the same parts.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    parts: Mutex<Vec<Component>>,
    /// Versions of every migration this build carries.
    migrations: Vec<String>,
    /// Set once all of them were seen applied: migrations are never rolled back under a
    /// running instance, so the check is not repeated.
    migrated: AtomicBool,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("parts", &self.report())
            .field("migrations", &self.inner.migrations.len())
            .finish()
    }
}

impl Readiness {
    /// Readiness of a service whose database must carry `sets` (in the order they apply).
    pub fn with_migrations(sets: &[EmbeddedMigrations]) -> Self {
        let migrations = sets
            .iter()
            .flat_map(|set| MigrationSource::<Pg>::migrations(set).unwrap_or_default())
            .map(|m| m.name().version().to_string())
            .collect();
        Self {
            inner: Arc::new(Inner {
                migrations,
                ..Inner::default()
            }),
        }
    }

    /// Registers a part named `name`; the instance is not ready until it says
    /// [`Component::up`].
    pub fn component(&self, name: impl Into<String>) -> Component {
        let component = Component {
            name: Arc::from(name.into()),
            state: Arc::new(Mutex::new(State::Starting)),
        };
        lock(&self.inner.parts).push(component.clone());
        component
    }

    /// Every registered part with its state, by name.
    pub fn report(&self) -> BTreeMap<String, &'static str> {
        lock(&self.inner.parts)
            .iter()
            .map(|c| (c.name.to_string(), c.state().word()))
            .collect()
    }

    /// Whether every migration of this build is applied on `conn`'s database. Asks the
    /// database until the answer is yes once.
    pub async fn migrations_applied(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
    ) -> Result<bool, diesel::result::Error> {
        if AtomicBool::load(&self.inner.migrated, Ordering::Acquire)
            || self.inner.migrations.is_empty()
        {
            return Ok(true);
        }
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Applied {
            #[diesel(sql_type = diesel::sql_types::Text)]
            version: String,
        }
        // No table yet: nothing was ever migrated.
        let exists: Vec<Applied> = diesel::sql_query(
            "SELECT to_regclass('__diesel_schema_migrations')::text AS version \
             WHERE to_regclass('__diesel_schema_migrations') IS NOT NULL",
        )
        .load(conn)
        .await?;
        if exists.is_empty() {
            return Ok(false);
        }
        let applied: Vec<Applied> =
            diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
                .load(conn)
                .await?;
        let applied: std::collections::HashSet<String> =
            applied.into_iter().map(|a| a.version).collect();
        let all = self.inner.migrations.iter().all(|v| applied.contains(v));
        if all {
            self.inner.migrated.store(true, Ordering::Release);
        }
        Ok(all)
    }
}

/// One part's handle: its owner says when it is up and when it went down.
#[derive(Clone)]
pub struct Component {
    name: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl Default for Component {
    /// A part no [`Readiness`] watches (tests that run a relay or consumer on its own).
    fn default() -> Self {
        Self {
            name: Arc::from("unwatched"),
            state: Arc::new(Mutex::new(State::Starting)),
        }
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.state().word())
    }
}

impl Component {
    pub fn up(&self) {
        *lock(&self.state) = State::Up;
    }

    /// Gone down; the reason stays in the log (it may name internal addresses), the
    /// probe's answer says only which part is down.
    pub fn down(&self) {
        *lock(&self.state) = State::Down;
    }

    pub fn is_up(&self) -> bool {
        self.state() == State::Up
    }

    fn state(&self) -> State {
        *lock(&self.state)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Up,
    Down,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// Whether the process was started as `<service> ready`: a readiness probe for container
/// engines (the images carry no HTTP client; the binary asks itself).
pub fn probe_requested() -> bool {
    std::env::args().nth(1).as_deref() == Some("ready")
}

/// `<service> ready`: asks the instance configured by `http` for `/health/ready` on its
/// internal listener (on the loopback address when that listens on every address); `Ok`
/// only on `200`.
pub async fn probe(http: &crate::config::HttpSettings) -> anyhow::Result<()> {
    let port = http
        .internal_port()
        .ok_or_else(|| anyhow::anyhow!("http.port + 100 is no port: set http.internal_port"))?;
    let host = match http.internal_host() {
        "0.0.0.0" | "" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_owned(),
    };
    let url = format!("http://{host}:{port}/health/ready");
    let resp = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "not ready: {status} {body}");
    Ok(())
}

/// A poisoned lock still holds a valid state (every write is a single assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_start_not_up_and_report_their_state() {
        let readiness = Readiness::default();
        let relay = readiness.component("outbox-relay");
        let consumer = readiness.component("consumer:order.pay-result");
        assert!(!relay.is_up());
        assert_eq!(readiness.report()["outbox-relay"], "starting");

        relay.up();
        consumer.up();
        consumer.down();
        let report = readiness.report();
        assert_eq!(report["outbox-relay"], "up");
        assert_eq!(report["consumer:order.pay-result"], "down");

        // Clones share the same parts.
        let clone = readiness.clone();
        consumer.up();
        assert_eq!(clone.report()["consumer:order.pay-result"], "up");
    }

    #[test]
    fn an_unwatched_component_reports_nowhere() {
        let readiness = Readiness::default();
        Component::default().up();
        assert!(readiness.report().is_empty());
    }
}
