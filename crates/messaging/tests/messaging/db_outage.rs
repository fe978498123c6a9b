//! Consumers and the relay across a restart of their PostgreSQL (a private server, stopped
//! and started; the suite's shared one stays up).
//!
//! * A message whose handler loses the database half-way is applied exactly once after the
//!   restart, on the same delivery: no retry spent, no requeue (a quorum queue would count
//!   it towards `x-delivery-limit`), nothing parked.
//! * The relay's LISTEN connection and its pool come back by themselves: a row committed
//!   after the restart is published through the notification (with polling all but off),
//!   and a row that notifies nobody is still found by the poll.

use crate::common;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use common::{EXCHANGE, Env, WAIT, consumer_config, fast_relay, message_id};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use paywire_messaging::{
    HandleError, IncomingMessage, MessageHandler, RelayConfig, dead_letter_queue_name,
    retry_queue_name,
};
use paywire_testkit::eventually;
use paywire_testkit::postgres::{PrivatePostgres, Shutdown};
use tokio::sync::{Notify, oneshot};

const QUEUE: &str = "test.outage";
/// Bound for what has to happen after the server is back (it usually takes a second).
const AFTER_RESTART: Duration = Duration::from_secs(60);

/// On its first call, says so and waits until the test has stopped the database; the
/// insert that follows then meets the dead connection. Every call is recorded with what
/// the delivery said about itself.
struct StopsHalfway {
    started: Mutex<Option<oneshot::Sender<()>>>,
    proceed: Notify,
    /// `(retries, redelivered)` per call.
    calls: Mutex<Vec<(u32, bool)>>,
}

#[async_trait]
impl MessageHandler for StopsHalfway {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        self.calls
            .lock()
            .unwrap()
            .push((msg.retries, msg.redelivered));
        let first = self.started.lock().unwrap().take();
        if let Some(started) = first {
            let _ = started.send(());
            self.proceed.notified().await;
        }
        diesel::sql_query("INSERT INTO effects (consumer, message_id) VALUES ('c', $1)")
            .bind::<Text, _>(&msg.message_id)
            .execute(conn)
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_database_restarts_mid_handler_is_applied_once_without_spending_a_retry()
-> anyhow::Result<()> {
    let server = PrivatePostgres::start().await?;
    let mut env = Env::on(&server.url()).await?;
    env.declare(QUEUE).await?;
    let (started_tx, started_rx) = oneshot::channel();
    let handler = Arc::new(StopsHalfway {
        started: Mutex::new(Some(started_tx)),
        proceed: Notify::new(),
        calls: Mutex::new(Vec::new()),
    });
    env.spawn_consumer(consumer_config(QUEUE, "c"), handler.clone());
    env.publish_raw(QUEUE, Some("m1"), b"{}").await?;

    tokio::time::timeout(WAIT, started_rx).await??;
    server.control().stop(Shutdown::Immediate).await?;
    handler.proceed.notify_one();
    // Down long enough for the consumer to try again against a server that is away (its
    // pool waits 300 ms for a connection, then fails).
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.control().start().await?;

    eventually(AFTER_RESTART, || async {
        (env.count("SELECT count(*) AS n FROM processed_messages")
            .await
            .ok()?
            == 1)
            .then_some(())
    })
    .await?;
    assert_eq!(
        env.count_for(
            "SELECT count(*) AS n FROM effects WHERE message_id = $1",
            "m1"
        )
        .await?,
        1
    );
    let calls = handler.calls.lock().unwrap().clone();
    assert!(
        calls.len() >= 2,
        "applied again after the restart: {calls:?}"
    );
    assert!(
        calls.iter().all(|&c| c == (0, false)),
        "every try was the first delivery with no retry spent: {calls:?}"
    );
    eventually(WAIT, || async {
        env.all_empty(&[
            QUEUE.to_owned(),
            retry_queue_name(QUEUE, 1),
            retry_queue_name(QUEUE, 2),
        ])
        .then_some(())
    })
    .await?;
    assert_eq!(env.depth(&dead_letter_queue_name(QUEUE)), 0);
    drop(env);
    Ok(())
}

/// Commits outbox rows through `enqueue` (which notifies), waits for each to be published.
async fn publish_through_the_relay(env: &Env, id: i64, what: &str) -> anyhow::Result<()> {
    env.enqueue(&[id]).await?;
    eventually(AFTER_RESTART, || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await
    .map_err(|e| e.context(format!("row {id} ({what}) never published")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_restarts_the_relay_listens_again_and_a_notification_publishes_new_rows()
-> anyhow::Result<()> {
    let server = PrivatePostgres::start().await?;
    let mut env = Env::on(&server.url()).await?;
    env.declare(QUEUE).await?;
    // Polling all but off: what is published promptly was woken by LISTEN/NOTIFY.
    env.spawn_relay(RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..fast_relay()
    });
    publish_through_the_relay(&env, 1, "before the restart").await?;

    for (round, mode) in [Shutdown::Fast, Shutdown::Immediate]
        .into_iter()
        .enumerate()
    {
        server
            .control()
            .restart(mode, Duration::from_millis(500))
            .await?;
        // Once the relay listens again, only the notification can wake it for this row.
        eventually(AFTER_RESTART, || async {
            (env.count(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN %'",
            )
            .await
            .ok()?
                == 1)
                .then_some(())
        })
        .await?;
        let id = 2 + round as i64;
        publish_through_the_relay(&env, id, &format!("after a {mode} restart")).await?;
    }
    let got: Vec<String> = env.drain(QUEUE).await?.iter().map(message_id).collect();
    assert_eq!(got, ["1", "2", "3"]);
    drop(env);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_poll_still_finds_rows_nobody_notified() -> anyhow::Result<()> {
    let server = PrivatePostgres::start().await?;
    let mut env = Env::on(&server.url()).await?;
    env.declare(QUEUE).await?;
    env.spawn_relay(fast_relay());
    publish_through_the_relay(&env, 1, "before the restart").await?;

    server
        .control()
        .restart(Shutdown::Immediate, Duration::from_millis(500))
        .await?;
    // Written without `enqueue`, so no NOTIFY: only the poll can find it.
    env.sql(&format!(
        "INSERT INTO outbox (id, exchange, event_type, aggregate_id, payload) \
         VALUES (2, '{EXCHANGE}', 'test.v1', 'agg-2', '{{}}')"
    ))
    .await?;
    eventually(AFTER_RESTART, || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await?;
    let got: Vec<String> = env.drain(QUEUE).await?.iter().map(message_id).collect();
    assert_eq!(got, ["1", "2"]);
    drop(env);
    Ok(())
}
