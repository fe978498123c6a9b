//! Component benches: one part of the platform alone, against its own baseline.
//!
//! * relay alone: N committed outbox rows → all published and confirmed (msgs/s), against
//!   the raw broker confirm rate;
//! * consumer alone: N queued messages → applied (msgs/s), each in its own transaction
//!   that records the message in `processed_messages` with a one-row effect, against the raw
//!   single-row transaction rate. It measures the shared consumer machinery
//!   (`paywire_messaging::consumer`) that both services' pay-result consumers run on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use paywire_domain::EventId;
use paywire_domain::topology::{PAY_RESULT_EXCHANGE, PAY_RESULT_SUBSCRIBERS};
use paywire_messaging::consumer::{
    ConsumerConfig, HandleError, IncomingMessage, MessageHandler, run_consumer,
};
use paywire_messaging::outbox::{OutboxMessage, enqueue};
use paywire_messaging::relay::{RelayConfig, run_relay};
use paywire_messaging::topology::{
    RetryPolicy, connect, declare_fanout_exchange, declare_pay_result_topology,
    declare_subscriber_queue,
};
use paywire_platform::config::DatabaseSettings;
use paywire_testkit::{TestDatabase, TestVhost};

const TIMEOUT: Duration = Duration::from_secs(300);

async fn messaging_db(
    prefix: &str,
    connections: usize,
) -> anyhow::Result<(TestDatabase, paywire_platform::db::DbPool)> {
    let db = TestDatabase::create(prefix).await?;
    paywire_platform::db::migrate(&db.url, vec![paywire_messaging::MIGRATIONS]).await?;
    let mut settings = DatabaseSettings::local("unused");
    settings.url = db.url.clone();
    settings.max_connections = connections;
    let pool = paywire_platform::db::pool(&settings)?;
    Ok((db, pool))
}

async fn count(url: &str, sql: &str) -> anyhow::Result<i64> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    Ok(paywire_testkit::count(&mut conn, sql).await?)
}

/// Waits until `sql` (a count) reaches `n`; the time from `started`.
async fn until_count(url: &str, sql: &str, n: i64, started: Instant) -> anyhow::Result<Duration> {
    loop {
        if count(url, sql).await? >= n {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < TIMEOUT, "not done within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// N outbox rows (committed before the relay starts) → all published: msgs/s.
pub async fn relay_alone(n: usize) -> anyhow::Result<f64> {
    let (db, pool) = messaging_db("bench_relay", 4).await?;
    let vhost = TestVhost::create()?;
    {
        let conn = connect(&vhost.amqp_url, "bench-relay-setup").await?;
        let channel = conn.create_channel().await?;
        declare_pay_result_topology(&channel, PAY_RESULT_SUBSCRIBERS).await?;
        let _ = conn.close(200, "done".into()).await;
    }
    let mut conn = AsyncPgConnection::establish(&db.url).await?;
    let payload = serde_json::json!({ "filler": "x".repeat(crate::baseline::BODY_BYTES - 20) });
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        conn.transaction::<_, anyhow::Error, _>(async |conn| {
            for i in chunk {
                let msg = OutboxMessage {
                    id: EventId::from(1_000_000 + *i as i64),
                    exchange: PAY_RESULT_EXCHANGE.into(),
                    routing_key: String::new(),
                    event_type: "pay.result.v1".into(),
                    aggregate_id: i.to_string(),
                    payload: payload.clone(),
                };
                enqueue(conn, &msg).await?;
            }
            Ok(())
        })
        .await?;
    }
    let started = Instant::now();
    let relay = tokio::spawn(run_relay(
        pool,
        db.url.clone(),
        vhost.amqp_url.clone(),
        RelayConfig::default(),
    ));
    let took = until_count(
        &db.url,
        "SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL",
        n as i64,
        started,
    )
    .await;
    relay.abort();
    Ok(n as f64 / took?.as_secs_f64())
}

struct OneRowEffect;

#[async_trait]
impl MessageHandler for OneRowEffect {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        _msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        diesel::sql_query("INSERT INTO effects (v) VALUES (1)")
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// N messages queued before the consumer starts → all applied: msgs/s.
pub async fn consumer_alone(n: usize, prefetch: u16) -> anyhow::Result<f64> {
    let (db, pool) = messaging_db("bench_consumer", 4).await?;
    {
        let mut conn = AsyncPgConnection::establish(&db.url).await?;
        diesel::sql_query("CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, v BIGINT NOT NULL)")
            .execute(&mut conn)
            .await?;
    }
    let vhost = TestVhost::create()?;
    const EXCHANGE: &str = "bench.consumer";
    const QUEUE: &str = "bench.consumer.work";
    let policy = RetryPolicy::default();
    let conn = connect(&vhost.amqp_url, "bench-consumer-setup").await?;
    let channel = conn.create_channel().await?;
    declare_fanout_exchange(&channel, EXCHANGE).await?;
    declare_subscriber_queue(&channel, EXCHANGE, QUEUE, &policy).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let body = vec![b'x'; crate::baseline::BODY_BYTES];
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let mut confirms = Vec::new();
        for i in chunk {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(format!("m{i}").into())
                .with_type("bench.v1".into());
            confirms.push(
                channel
                    .basic_publish(
                        EXCHANGE.into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        &body,
                        props,
                    )
                    .await?,
            );
        }
        for c in futures::future::join_all(confirms).await {
            anyhow::ensure!(c?.is_ack(), "the broker refused a message");
        }
    }
    let _ = conn.close(200, "done".into()).await;

    let mut config = ConsumerConfig::new(QUEUE, "bench");
    config.prefetch = prefetch;
    config.retry = policy;
    let started = Instant::now();
    let consumer = tokio::spawn(run_consumer(
        pool,
        vhost.amqp_url.clone(),
        config,
        Arc::new(OneRowEffect),
    ));
    let took = until_count(
        &db.url,
        "SELECT count(*) AS n FROM processed_messages",
        n as i64,
        started,
    )
    .await;
    consumer.abort();
    Ok(n as f64 / took?.as_secs_f64())
}
