//! Shared fixtures: a fresh database with the messaging migrations, a fresh vhost, and
//! helpers to enqueue, publish raw messages and drain queues.

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, RunQueryDsl};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Confirmation};
use paywire_domain::EventId;
use paywire_messaging::{
    ConsumerConfig, MIGRATIONS, MessageHandler, OutboxMessage, RelayConfig, RetryPolicy,
    declare_fanout_exchange, declare_subscriber_queue, enqueue, run_consumer, run_relay,
};
use paywire_platform::config::DatabaseSettings;
use paywire_platform::db::DbPool;
use paywire_testkit::{TestDatabase, TestVhost};
use tokio::task::JoinHandle;

pub const EXCHANGE: &str = "test.events";
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Env {
    pub pool: DbPool,
    pub vhost: TestVhost,
    pub db: TestDatabase,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn fast_relay() -> RelayConfig {
    RelayConfig {
        batch_size: 10,
        poll_interval: Duration::from_millis(200),
        confirm_timeout: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(100),
        reconnect_backoff: Duration::from_millis(100),
        ..RelayConfig::default()
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        delays: vec![Duration::from_millis(100), Duration::from_millis(200)],
        delivery_limit: 5,
    }
}

pub fn consumer_config(queue: &str, consumer: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(queue, consumer);
    c.prefetch = 10;
    c.retry = fast_retry();
    c.requeue_pause = Duration::from_millis(100);
    c.database_pause = Duration::from_millis(50);
    c.reconnect_backoff = Duration::from_millis(100);
    c
}

impl Env {
    /// On the shared server.
    pub async fn new() -> anyhow::Result<Self> {
        let patience = DatabaseSettings::default().connect_patience_ms;
        Self::create(&paywire_testkit::pg_server(), patience).await
    }

    /// On `server`, a private one the test stops and starts: the pool waits only 300 ms
    /// for a new connection, so an outage also shows as checkouts that fail.
    pub async fn on(server: &str) -> anyhow::Result<Self> {
        Self::create(server, 300).await
    }

    async fn create(server: &str, connect_patience_ms: u64) -> anyhow::Result<Self> {
        let db = TestDatabase::create_on(server, "messaging").await?;
        paywire_platform::db::migrate(&db.url, vec![MIGRATIONS]).await?;
        let pool = paywire_platform::db::pool(&DatabaseSettings {
            url: db.url.clone(),
            max_connections: 8,
            migrate: false,
            connect_patience_ms,
            ..DatabaseSettings::default()
        })?;
        let vhost = tokio::task::spawn_blocking(TestVhost::create).await??;
        let env = Self {
            pool,
            vhost,
            db,
            tasks: Vec::new(),
        };
        env.sql("CREATE TABLE effects (consumer TEXT NOT NULL, message_id TEXT NOT NULL, PRIMARY KEY (consumer, message_id))")
            .await?;
        Ok(env)
    }

    pub async fn sql(&self, query: &str) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        diesel::sql_query(query).execute(&mut conn).await?;
        Ok(())
    }

    pub async fn count(&self, query: &str) -> anyhow::Result<i64> {
        let mut conn = self.pool.get().await?;
        Ok(paywire_testkit::count(&mut conn, query).await?)
    }

    pub async fn count_for(&self, query: &str, id: &str) -> anyhow::Result<i64> {
        let mut conn = self.pool.get().await?;
        let c: paywire_testkit::Count = diesel::sql_query(query)
            .bind::<Text, _>(id)
            .get_result(&mut conn)
            .await?;
        Ok(c.n)
    }

    pub async fn unpublished(&self) -> anyhow::Result<i64> {
        self.count("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
            .await
    }

    /// Declares the test fanout exchange and `queue` with its retry and dead-letter queues.
    pub async fn declare(&self, queue: &str) -> anyhow::Result<()> {
        self.declare_with(queue, &fast_retry()).await
    }

    pub async fn declare_with(&self, queue: &str, policy: &RetryPolicy) -> anyhow::Result<()> {
        let conn = paywire_messaging::connect(&self.vhost.amqp_url, "test-admin").await?;
        let ch = conn.create_channel().await?;
        declare_fanout_exchange(&ch, EXCHANGE).await?;
        declare_subscriber_queue(&ch, EXCHANGE, queue, policy).await?;
        Ok(())
    }

    pub fn spawn_relay(&mut self, config: RelayConfig) {
        let fut = run_relay(
            self.pool.clone(),
            self.db.url.clone(),
            self.vhost.amqp_url.clone(),
            config,
        );
        self.tasks.push(tokio::spawn(async move {
            let _ = fut.await;
        }));
    }

    pub fn spawn_consumer(&mut self, config: ConsumerConfig, handler: Arc<dyn MessageHandler>) {
        let fut = run_consumer(
            self.pool.clone(),
            self.vhost.amqp_url.clone(),
            config,
            handler,
        );
        self.tasks.push(tokio::spawn(async move {
            let _ = fut.await;
        }));
    }

    /// Enqueues one message per id to `exchange`, all in one committed transaction.
    pub async fn enqueue_to(&self, exchange: &str, ids: &[i64]) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await?;
        let msgs: Vec<OutboxMessage> = ids.iter().map(|id| message(*id, exchange)).collect();
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            for m in &msgs {
                enqueue(conn, m).await?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub async fn enqueue(&self, ids: &[i64]) -> anyhow::Result<()> {
        self.enqueue_to(EXCHANGE, ids).await
    }

    /// Publishes a raw message straight to `queue` (through the default exchange).
    pub async fn publish_raw(
        &self,
        queue: &str,
        message_id: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<()> {
        let conn = paywire_messaging::connect(&self.vhost.amqp_url, "test-publisher").await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_type("test.v1".into());
        if let Some(id) = message_id {
            props = props.with_message_id(id.into());
        }
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props,
            )
            .await?
            .await?;
        anyhow::ensure!(
            confirm == Confirmation::Ack(None),
            "not confirmed: {confirm:?}"
        );
        Ok(())
    }

    /// Takes every message currently in `queue` (auto-ack).
    pub async fn drain(&self, queue: &str) -> anyhow::Result<Vec<BasicGetMessage>> {
        let conn = paywire_messaging::connect(&self.vhost.amqp_url, "test-drain").await?;
        let ch = conn.create_channel().await?;
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await?
        {
            out.push(m);
        }
        Ok(out)
    }

    pub fn depth(&self, queue: &str) -> u64 {
        self.vhost.queue_depth(queue).unwrap_or(u64::MAX)
    }

    /// Whether every one of `queues` is empty (one broker query for all of them).
    pub fn all_empty(&self, queues: &[String]) -> bool {
        self.vhost
            .queue_depths()
            .is_ok_and(|d| queues.iter().all(|q| d.get(q).copied().unwrap_or(0) == 0))
    }
}

pub fn message(id: i64, exchange: &str) -> OutboxMessage {
    OutboxMessage {
        id: EventId::from(id),
        exchange: exchange.to_owned(),
        routing_key: String::new(),
        event_type: "test.v1".to_owned(),
        aggregate_id: format!("agg-{id}"),
        payload: serde_json::json!({ "n": id }),
    }
}

pub fn message_id(m: &BasicGetMessage) -> String {
    m.delivery
        .properties
        .message_id()
        .as_ref()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

pub fn header_str(m: &BasicGetMessage, key: &str) -> Option<String> {
    match m.delivery.properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(v) => Some(v.to_string()),
        AMQPValue::LongInt(v) => Some(v.to_string()),
        other => Some(format!("{other:?}")),
    }
}
