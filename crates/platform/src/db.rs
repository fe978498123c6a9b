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
