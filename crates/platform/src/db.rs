//! PostgreSQL: database creation, embedded migrations and the async connection pool.

use std::time::Duration;

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use crate::PlatformError;
use crate::config::DatabaseSettings;

pub type DbPool = Pool<AsyncPgConnection>;
pub type PooledConn = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;
/// Why the pool gave no connection (timeout, server unreachable, pool closed).
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

/// What a database failure means for whoever would repeat the work. Classified here once:
/// the HTTP mapping ([`crate::api_error::Reply::database`]) and the consumers' retry-or-park
/// decision both read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFault {
    /// No working connection: the server is down, restarting, failing over, or the pool
    /// timed out. The same work succeeds once it is back.
    Unavailable,
    /// Lost a race inside the database (serialization failure, deadlock, lock timeout):
    /// repeating the transaction may succeed at once.
    Conflict,
    /// The statement itself failed (constraint violation, missing row, undecodable value,
    /// a defect): repeating it changes nothing.
    Permanent,
}

impl DbFault {
    /// Whether repeating the same work later may succeed.
    pub fn is_transient(self) -> bool {
        !matches!(self, DbFault::Permanent)
    }

    pub fn of_query(e: &diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match e {
            Error::DatabaseError(kind, info) => match kind {
                Kind::UniqueViolation
                | Kind::ForeignKeyViolation
                | Kind::NotNullViolation
                | Kind::CheckViolation
                | Kind::RestrictViolation
                | Kind::ExclusionViolation => DbFault::Permanent,
                Kind::SerializationFailure => DbFault::Conflict,
                // No SQLSTATE (diesel-async reports I/O failures so), a closed connection,
                // or a read-only transaction on a server that was just demoted.
                Kind::UnableToSendCommand | Kind::ClosedConnection | Kind::ReadOnlyTransaction => {
                    DbFault::Unavailable
                }
                _ => Self::of_message(info.message()),
            },
            Error::RollbackErrorOnCommit { commit_error, .. } => Self::of_query(commit_error),
            // The connection broke in the middle of a transaction.
            Error::BrokenTransactionManager => DbFault::Unavailable,
            _ => DbFault::Permanent,
        }
    }

    /// SQLSTATEs diesel does not name (deadlock 40P01, lock_not_available 55P03, the
    /// 57P0x shutdown family, 53300 too_many_connections) are known only by their
    /// server message.
    fn of_message(message: &str) -> Self {
        const CONFLICT: &[&str] = &[
            "deadlock detected",
            "could not obtain lock",
            "canceling statement due to lock timeout",
        ];
        const UNAVAILABLE: &[&str] = &[
            "terminating connection",
            "the database system is",
            "server closed the connection",
            "connection to server",
            "sorry, too many clients",
            "remaining connection slots are reserved",
        ];
        let lower = message.to_ascii_lowercase();
        if CONFLICT.iter().any(|m| lower.contains(m)) {
            DbFault::Conflict
        } else if UNAVAILABLE.iter().any(|m| lower.contains(m)) {
            DbFault::Unavailable
        } else {
            DbFault::Permanent
        }
    }

    pub fn of_connection(e: &diesel::ConnectionError) -> Self {
        match e {
            diesel::ConnectionError::InvalidCString(_)
            | diesel::ConnectionError::InvalidConnectionUrl(_) => DbFault::Permanent,
            _ => DbFault::Unavailable,
        }
    }

    pub fn of_pool(e: &PoolError) -> Self {
        match e {
            PoolError::NoRuntimeSpecified => DbFault::Permanent,
            PoolError::Backend(diesel_async::pooled_connection::PoolError::ConnectionError(e)) => {
                Self::of_connection(e)
            }
            // A timeout, a closed pool, a failed health check or hook: no connection now.
            _ => DbFault::Unavailable,
        }
    }
}

/// An error that can say whether the database caused it and whether the same work may
/// succeed later. The one question every place that repeats work asks: consumers (wait,
/// retry or park) and request handlers that repeat safe work.
pub trait Transience: std::fmt::Display {
    /// The database fault behind this error, if the database is what failed.
    fn db_fault(&self) -> Option<DbFault>;

    /// Whether repeating the same work later may succeed: a transient database fault, or a
    /// passing cause the error type knows of (an upstream service that is down).
    fn is_transient(&self) -> bool {
        self.db_fault().is_some_and(DbFault::is_transient)
    }
}

impl Transience for diesel::result::Error {
    fn db_fault(&self) -> Option<DbFault> {
        Some(DbFault::of_query(self))
    }
}

impl Transience for PoolError {
    fn db_fault(&self) -> Option<DbFault> {
        Some(DbFault::of_pool(self))
    }
}

/// A database failure as a service's error type carries it: a failed query or a pool that
/// gave no connection. A service error holds it as one variant (`Db(#[from] DbError)`) and
/// [`db_error!`](crate::db_error!) writes the rest.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] PoolError),
}

impl DbError {
    pub fn fault(&self) -> DbFault {
        match self {
            DbError::Query(e) => DbFault::of_query(e),
            DbError::Pool(e) => DbFault::of_pool(e),
        }
    }
}

impl Transience for DbError {
    fn db_fault(&self) -> Option<DbFault> {
        Some(self.fault())
    }
}

/// For a service error type with a `Db(DbError)` variant: `?` on diesel and pool errors,
/// and [`Transience`] (the database's fault; transient also when the error matches the
/// optional pattern of failures that pass, e.g. an upstream that cannot be reached):
///
/// `paywire_platform::db_error!(OrderError, transient: OrderError::UpstreamUnavailable { .. });`
#[macro_export]
macro_rules! db_error {
    ($ty:ident $(, transient: $pattern:pat)? $(,)?) => {
        impl From<$crate::__diesel::result::Error> for $ty {
            fn from(e: $crate::__diesel::result::Error) -> Self {
                $ty::Db(e.into())
            }
        }

        impl From<$crate::db::PoolError> for $ty {
            fn from(e: $crate::db::PoolError) -> Self {
                $ty::Db(e.into())
            }
        }

        impl $crate::db::Transience for $ty {
            fn db_fault(&self) -> Option<$crate::db::DbFault> {
                match self {
                    $ty::Db(e) => Some(e.fault()),
                    _ => None,
                }
            }

            fn is_transient(&self) -> bool {
                $(matches!(self, $pattern) ||)?
                    self.db_fault().is_some_and($crate::db::DbFault::is_transient)
            }
        }
    };
}

/// Runs `work` on a connection from `pool` and, while it fails with a database fault that
/// passes (its connection cut by a restart, no connection within the pool's patience, a
/// lost race), runs it again on a fresh connection, pausing 100 ms doubling up to 1 s. A
/// new try starts only within `budget`, counted from the first; then the last error is
/// returned (a `503` for an API). Only for work that is safe to repeat: reads, writes keyed
/// by the business record, and transactions (a failed one changed nothing).
pub async fn repeat_while_unavailable<T, E, F>(
    pool: &DbPool,
    budget: Duration,
    mut work: F,
) -> Result<T, E>
where
    E: From<PoolError> + Transience,
    F: AsyncFnMut(&mut AsyncPgConnection) -> Result<T, E>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut pause = Duration::from_millis(100);
    loop {
        let result = match pool.get().await {
            Ok(mut conn) => work(&mut *conn).await,
            Err(e) => Err(E::from(e)),
        };
        match result {
            Err(e)
                if e.db_fault().is_some_and(DbFault::is_transient)
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "database fault; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// The first row `query` selects, if any, read into its domain type: the one shape of every
/// store's `find…`. No row is `None`; a row the domain type refuses is its `TryFrom` error
/// (the store's corrupt-row error); a failed query is `E`'s database error.
///
/// A combinator rather than an `async fn`, so the future stays `Send` for callers inside
/// transactions whatever the query borrows.
pub fn first_parsed<'conn, 'q, Q, Row, T, E>(
    conn: &'conn mut AsyncPgConnection,
    query: Q,
) -> impl Future<Output = Result<Option<T>, E>> + Send
where
    Q: diesel::query_dsl::methods::LimitDsl,
    diesel::dsl::Limit<Q>: diesel_async::methods::LoadQuery<'q, AsyncPgConnection, Row> + Send + 'q,
    Row: Send + 'conn,
    T: TryFrom<Row, Error = E>,
    E: From<diesel::result::Error>,
{
    use diesel::OptionalExtension;
    use futures::FutureExt;
    query
        .first::<Row>(conn)
        .map(|first| first.optional()?.map(T::try_from).transpose())
}

/// Every row `query` selects, read into its domain type (see [`first_parsed`]).
pub fn load_parsed<'conn, 'q, Q, Row, T, E>(
    conn: &'conn mut AsyncPgConnection,
    query: Q,
) -> impl Future<Output = Result<Vec<T>, E>> + Send
where
    Q: diesel_async::methods::LoadQuery<'q, AsyncPgConnection, Row> + Send + 'q,
    Row: Send + 'conn,
    T: TryFrom<Row, Error = E>,
    E: From<diesel::result::Error>,
{
    use futures::FutureExt;
    query
        .load::<Row>(conn)
        .map(|rows| rows?.into_iter().map(T::try_from).collect())
}

fn db_err(action: &'static str) -> impl Fn(String) -> PlatformError {
    move |message| PlatformError::Database { action, message }
}

/// Splits `postgres://…/dbname?params` into the server URL (pointing at the `postgres`
/// maintenance database) and the database name.
pub fn split_database_url(url: &str) -> Result<(String, String), PlatformError> {
    let (base, rest) = url
        .rsplit_once('/')
        .ok_or_else(|| db_err("url")(format!("no database name in {url}")))?;
    let (name, query) = match rest.split_once('?') {
        Some((n, q)) => (n, format!("?{q}")),
        None => (rest, String::new()),
    };
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(db_err("url")(format!("unsupported database name {name:?}")));
    }
    Ok((format!("{base}/postgres{query}"), name.to_owned()))
}

/// Creates the database named in `url` if it does not exist yet.
pub async fn ensure_database(url: &str) -> Result<(), PlatformError> {
    let (admin_url, name) = split_database_url(url)?;
    let mut conn = AsyncPgConnection::establish(&admin_url)
        .await
        .map_err(|e| db_err("connect")(e.to_string()))?;
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut conn)
            .await
            .map_err(|e| db_err("lookup")(e.to_string()))?;
    if !found.exists {
        // The name was validated above; identifiers cannot be bound as parameters.
        match diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "database created"),
            // Another instance created it concurrently: fine.
            Err(e) if e.to_string().contains("already exists") => {}
            Err(e) => return Err(db_err("create")(e.to_string())),
        }
    }
    Ok(())
}

/// Drops a database (tests, `cargo xtask reset`).
pub async fn drop_database(url: &str) -> Result<(), PlatformError> {
    let (admin_url, name) = split_database_url(url)?;
    let mut conn = AsyncPgConnection::establish(&admin_url)
        .await
        .map_err(|e| db_err("connect")(e.to_string()))?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .map_err(|e| db_err("drop")(e.to_string()))?;
    Ok(())
}

/// Applies every pending migration of each set, in order (pass the `const` sets by value). Runs on a blocking thread:
/// diesel's harness is synchronous.
pub async fn migrate(url: &str, sets: Vec<EmbeddedMigrations>) -> Result<(), PlatformError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(), PlatformError> {
        let handle = tokio::runtime::Handle::current();
        let mut conn = handle
            .block_on(AsyncPgConnection::establish(&url))
            .map_err(|e| db_err("connect")(e.to_string()))?;
        // Several instances may start at once; a session advisory lock serialises them.
        // It is released when this connection closes at the end of the block.
        handle
            .block_on(diesel::sql_query("SELECT pg_advisory_lock(7262637)").execute(&mut conn))
            .map_err(|e| db_err("lock")(e.to_string()))?;
        let mut harness = AsyncMigrationHarness::new(conn);
        for set in sets {
            let applied = harness
                .run_pending_migrations(set)
                .map_err(|e| PlatformError::Migration(e.to_string()))?;
            for v in applied {
                tracing::info!(version = %v, "migration applied");
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| PlatformError::Migration(e.to_string()))?
}

/// Builds the pool; connections are opened lazily and checked (a test query) on every
/// checkout, so connections the server dropped are replaced, never handed out. A new
/// connection the server refuses is tried again for up to `connect_patience_ms`
/// ([`establish_patiently`]): during a restart of a few seconds every checkout waits for
/// the server instead of failing at once.
pub fn pool(settings: &DatabaseSettings) -> Result<DbPool, PlatformError> {
    let patience = Duration::from_millis(settings.connect_patience_ms);
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        Box::pin(async move { establish_patiently(&url, patience).await })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.clone(),
        config,
    );
    Pool::builder(manager)
        .max_size(settings.max_connections.max(1))
        .build()
        .map_err(|e| db_err("pool")(e.to_string()))
}

/// Opens a connection; while the server cannot be reached or refuses (shutting down,
/// starting up, recovering), tries again with a pause of 50 ms doubling up to 500 ms,
/// until `patience` has passed. A URL that can never work fails at once.
pub async fn establish_patiently(
    url: &str,
    patience: Duration,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = Duration::from_millis(50);
    loop {
        match AsyncPgConnection::establish(url).await {
            Ok(conn) => return Ok(conn),
            Err(e) if worth_waiting_for(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, "database refuses connections, waiting");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a failed connect may succeed later (the server is away, not the URL wrong).
fn worth_waiting_for(e: &diesel::ConnectionError) -> bool {
    !matches!(
        e,
        diesel::ConnectionError::InvalidCString(_)
            | diesel::ConnectionError::InvalidConnectionUrl(_)
    )
}

/// `<service> migrate`: create the database if needed and apply every pending migration,
/// without starting anything else (deploy pipelines, `cargo xtask migrate`).
pub async fn create_and_migrate(
    settings: &DatabaseSettings,
    migrations: Vec<EmbeddedMigrations>,
) -> Result<(), PlatformError> {
    ensure_database(&settings.url).await?;
    migrate(&settings.url, migrations).await
}

/// Whether the process was started as `<service> migrate`.
pub fn migrate_requested() -> bool {
    std::env::args().nth(1).as_deref() == Some("migrate")
}

/// Everything a service does with its database at start-up: create, migrate, pool.
pub async fn prepare(
    settings: &DatabaseSettings,
    migrations: Vec<EmbeddedMigrations>,
) -> Result<DbPool, PlatformError> {
    if settings.migrate {
        ensure_database(&settings.url).await?;
        migrate(&settings.url, migrations).await?;
    }
    pool(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind as Kind, Error};

    fn db(kind: Kind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    /// A service error as `db_error!` completes it.
    #[derive(Debug, thiserror::Error)]
    enum ServiceError {
        #[error("upstream down")]
        Upstream,
        #[error("bad input")]
        Invalid,
        #[error(transparent)]
        Db(#[from] DbError),
    }
    crate::db_error!(ServiceError, transient: ServiceError::Upstream);

    #[test]
    fn a_service_error_carries_the_database_fault_and_its_own_passing_causes() {
        let query = ServiceError::from(Error::NotFound);
        assert_eq!(query.to_string(), "database: Record not found");
        assert_eq!(query.db_fault(), Some(DbFault::Permanent));
        assert!(!query.is_transient());
        let closed = ServiceError::from(db(Kind::ClosedConnection, "server closed"));
        assert_eq!(closed.db_fault(), Some(DbFault::Unavailable));
        assert!(closed.is_transient());
        let pool = ServiceError::from(PoolError::Closed);
        assert!(pool.to_string().starts_with("database pool: "), "{pool}");
        assert!(pool.is_transient());
        assert!(std::error::Error::source(&pool).is_some());
        assert!(ServiceError::Upstream.is_transient());
        assert_eq!(ServiceError::Upstream.db_fault(), None);
        assert!(!ServiceError::Invalid.is_transient());
    }

    #[test]
    fn constraint_violations_and_missing_rows_are_permanent() {
        for kind in [
            Kind::UniqueViolation,
            Kind::ForeignKeyViolation,
            Kind::NotNullViolation,
            Kind::CheckViolation,
            Kind::RestrictViolation,
            Kind::ExclusionViolation,
        ] {
            let e = db(kind, "violates constraint");
            assert_eq!(DbFault::of_query(&e), DbFault::Permanent, "{kind:?}");
            assert!(!DbFault::of_query(&e).is_transient());
        }
        assert_eq!(DbFault::of_query(&Error::NotFound), DbFault::Permanent);
        assert_eq!(
            DbFault::of_query(&Error::DeserializationError("bad".into())),
            DbFault::Permanent
        );
        assert_eq!(
            DbFault::of_query(&db(Kind::Unknown, "column \"x\" does not exist")),
            DbFault::Permanent
        );
    }

    #[test]
    fn lost_connections_and_restarts_are_unavailable() {
        for e in [
            db(Kind::ClosedConnection, "server closed the connection"),
            db(Kind::UnableToSendCommand, "connection closed"),
            db(
                Kind::ReadOnlyTransaction,
                "cannot execute UPDATE in a read-only transaction",
            ),
            db(
                Kind::Unknown,
                "terminating connection due to administrator command",
            ),
            db(Kind::Unknown, "the database system is shutting down"),
            db(Kind::Unknown, "the database system is starting up"),
            db(Kind::Unknown, "sorry, too many clients already"),
            Error::BrokenTransactionManager,
        ] {
            assert_eq!(DbFault::of_query(&e), DbFault::Unavailable, "{e}");
            assert!(DbFault::of_query(&e).is_transient());
        }
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_conflicts() {
        for e in [
            db(Kind::SerializationFailure, "could not serialize access"),
            db(Kind::Unknown, "deadlock detected"),
            db(
                Kind::Unknown,
                "could not obtain lock on row in relation \"payments\"",
            ),
        ] {
            assert_eq!(DbFault::of_query(&e), DbFault::Conflict, "{e}");
            assert!(DbFault::of_query(&e).is_transient());
        }
        // A failed commit is judged by the commit's error, not the rollback's.
        let e = Error::RollbackErrorOnCommit {
            rollback_error: Box::new(Error::NotFound),
            commit_error: Box::new(db(Kind::SerializationFailure, "x")),
        };
        assert_eq!(DbFault::of_query(&e), DbFault::Conflict);
    }

    #[test]
    fn pool_timeouts_and_refused_connections_are_unavailable() {
        use deadpool::managed::TimeoutType;
        use diesel_async::pooled_connection::PoolError as Backend;
        for e in [
            PoolError::Timeout(TimeoutType::Wait),
            PoolError::Timeout(TimeoutType::Create),
            PoolError::Closed,
            PoolError::Backend(Backend::ConnectionError(
                diesel::ConnectionError::BadConnection("connection refused".into()),
            )),
            PoolError::Backend(Backend::QueryError(Error::BrokenTransactionManager)),
        ] {
            assert_eq!(DbFault::of_pool(&e), DbFault::Unavailable, "{e}");
        }
        let bad_url = PoolError::Backend(Backend::ConnectionError(
            diesel::ConnectionError::InvalidConnectionUrl("nope".into()),
        ));
        assert_eq!(DbFault::of_pool(&bad_url), DbFault::Permanent);
    }

    #[test]
    fn database_urls_split_into_admin_url_and_name() {
        let (admin, name) =
            split_database_url("postgres://postgres@127.0.0.1:5432/paywire_order").unwrap();
        assert_eq!(admin, "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(name, "paywire_order");
        let (admin, name) = split_database_url("postgres://u@h/db1?sslmode=disable").unwrap();
        assert_eq!(admin, "postgres://u@h/postgres?sslmode=disable");
        assert_eq!(name, "db1");
        assert!(split_database_url("postgres://u@h/bad\"name").is_err());
    }
}
