//! Test isolation against the real servers: every test gets its own PostgreSQL database
//! and its own RabbitMQ vhost, so tests run in parallel and leave nothing behind.
//!
//! Server locations come from `PAYWIRE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`)
//! and `PAYWIRE_TEST_AMQP` (default `amqp://guest:guest@127.0.0.1:5672`); vhosts are
//! managed with `rabbitmqctl` ([`rabbitmq`]), which needs no management plugin.

use std::path::{Path, PathBuf};

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rand::Rng;

pub mod api;
pub mod events;
pub mod idp;
pub mod listeners;
pub mod otlp;
pub mod postgres;
pub mod production;
pub mod rabbitmq;
pub mod raw_http;

use rabbitmq::rabbitmqctl;

pub fn pg_server() -> String {
    std::env::var("PAYWIRE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn amqp_server() -> String {
    std::env::var("PAYWIRE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".into())
}

/// The repository root. Tests run in their own package's directory, so a path relative to
/// the working directory means something else in every crate; resolve from here instead.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the test kit lives two levels below the repository root")
        .to_path_buf()
}

/// `deploy/test-keys/<rel>` (e.g. `wechat/merchant_private_key.pem`) as an absolute path.
pub fn test_key(rel: &str) -> String {
    repo_root()
        .join("deploy/test-keys")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// The one row of a counting query: `SELECT count(*) AS n …`.
#[derive(Debug, diesel::QueryableByName)]
pub struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

/// Runs a counting query (`SELECT count(*) AS n …`) and answers `n`.
pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> diesel::QueryResult<i64> {
    Ok(diesel::sql_query(sql).get_result::<Count>(conn).await?.n)
}

/// A short random suffix for database, vhost and queue names.
pub fn unique_suffix() -> String {
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
        .collect()
}

/// A fresh directory under the system temp dir (`<prefix>-<random>`), removed with
/// everything in it on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", unique_suffix()));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// Keeps the directory (for inspection after a failure) and returns its path.
    pub fn keep(self) -> std::path::PathBuf {
        let this = std::mem::ManuallyDrop::new(self);
        this.path.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fresh, empty database; dropped (with `FORCE`) when the value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
}

impl TestDatabase {
    /// On the shared server ([`pg_server`]).
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        Self::create_on(&pg_server(), prefix).await
    }

    /// On `server` (`postgres://user@host:port`, e.g. a [`postgres::PrivatePostgres`]).
    pub async fn create_on(server: &str, prefix: &str) -> anyhow::Result<Self> {
        let url = format!(
            "{}/t_{}_{}",
            server.trim_end_matches('/'),
            prefix.replace('-', "_"),
            unique_suffix()
        );
        paywire_platform::db::ensure_database(&url).await?;
        Ok(Self { url })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        // Drop runs outside async context in general; a helper thread with its own runtime
        // keeps teardown independent of the test's runtime state.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(paywire_platform::db::drop_database(&url));
            }
        })
        .join();
    }
}

/// A fresh RabbitMQ vhost with full permissions for the default user; deleted on drop.
#[derive(Debug)]
pub struct TestVhost {
    pub name: String,
    pub amqp_url: String,
}

impl TestVhost {
    pub fn create() -> anyhow::Result<Self> {
        let name = format!("t_{}", unique_suffix());
        rabbitmqctl(&["add_vhost", &name])?;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"])?;
        let amqp_url = format!("{}/{}", amqp_server(), name);
        Ok(Self { name, amqp_url })
    }

    /// Forcibly closes every client connection to this vhost (fault injection).
    pub fn close_all_connections(&self) -> anyhow::Result<()> {
        rabbitmqctl(&[
            "close_all_connections",
            "-p",
            &self.name,
            "test fault injection",
        ])?;
        Ok(())
    }

    /// Publishes one persistent JSON message (`message_id`, `event_type`) to `exchange` with
    /// publisher confirms, as the services' relays do; panics if the broker refuses it.
    pub async fn publish(&self, exchange: &str, message_id: &str, event_type: &str, body: &[u8]) {
        let conn = Connection::connect(&self.amqp_url, ConnectionProperties::default())
            .await
            .expect("connect to the test vhost");
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(message_id.into())
            .with_type(event_type.into())
            .with_content_type("application/json".into());
        channel
            .basic_publish(
                exchange.into(),
                "".into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let _ = conn.close(200, "done".into()).await;
    }

    /// Number of messages ready in `queue` (0 if the queue does not exist).
    pub fn queue_depth(&self, queue: &str) -> anyhow::Result<u64> {
        Ok(self.queue_depths()?.get(queue).copied().unwrap_or(0))
    }

    /// Every queue's depth (ready + unacknowledged) from one `rabbitmqctl` call: on a
    /// loaded machine each call costs seconds, so a test waiting for several queues to
    /// drain asks once per round, not once per queue.
    pub fn queue_depths(&self) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let text = rabbitmqctl(&[
            "list_queues",
            "-p",
            &self.name,
            "-q",
            "--no-table-headers",
            "name",
            "messages",
        ])?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                Some((parts.next()?.to_owned(), parts.next()?.parse::<u64>().ok()?))
            })
            .collect())
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

/// How long [`wait_for`] waits for an asynchronous effect: a generous deadline, not a
/// measure of speed.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// [`eventually`] within [`PATIENCE`], panicking when the condition is never met.
pub async fn wait_for<T, F, Fut>(check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually(PATIENCE, check).await.unwrap()
}

/// Polls `check` until it yields `Some`, or fails after `timeout`. Tests wait for
/// asynchronous effects with this instead of sleeping a fixed time.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
