//! Idempotent consumers, retries and parking against real PostgreSQL and RabbitMQ.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{Env, WAIT, consumer_config, fast_relay, header_str, message_id};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use paywire_messaging::{
    DEATH_REASON_HEADER, ERROR_HEADER, HandleError, IncomingMessage, MessageHandler,
    RETRY_COUNT_HEADER, dead_letter_queue_name, retry_queue_name,
};
use paywire_platform::db::DbFault;
use paywire_testkit::eventually;

const QUEUE: &str = "test.sub";

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Succeed,
    /// Fails transiently on the first n calls, then succeeds.
    TransientTimes(usize),
    Permanent,
    /// Loses a race in the database on the first n calls, then succeeds.
    ConflictTimes(usize),
    /// On the first call, has the broker drop every connection of the vhost (so the ack
    /// that follows the commit is lost), then succeeds.
    LoseConnectionOnFirstCall,
}

struct Recorder {
    consumer: String,
    behaviour: Behaviour,
    calls: AtomicUsize,
    /// `(retries, redelivered)` of every call.
    deliveries: Mutex<Vec<(u32, bool)>>,
    vhost: String,
}

impl Recorder {
    fn new(env: &Env, consumer: &str, behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            consumer: consumer.to_owned(),
            behaviour,
            calls: AtomicUsize::new(0),
            deliveries: Mutex::new(Vec::new()),
            vhost: env.vhost.name.clone(),
        })
    }

    fn calls(&self) -> usize {
        AtomicUsize::load(&self.calls, Ordering::SeqCst)
    }

    fn deliveries(&self) -> Vec<(u32, bool)> {
        self.deliveries.lock().unwrap().clone()
    }
}

fn vhost_connections(vhost: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-p",
            vhost,
            "-q",
            "--no-table-headers",
            "pid",
        ])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[async_trait]
impl MessageHandler for Recorder {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.deliveries
            .lock()
            .unwrap()
            .push((msg.retries, msg.redelivered));
        match self.behaviour {
            Behaviour::Succeed => {}
            Behaviour::TransientTimes(n) if call <= n => {
                return Err(HandleError::Transient(format!("busy (call {call})")));
            }
            Behaviour::TransientTimes(_) => {}
            Behaviour::ConflictTimes(n) if call <= n => {
                return Err(HandleError::Database(
                    DbFault::Conflict,
                    format!("could not serialize access (call {call})"),
                ));
            }
            Behaviour::ConflictTimes(_) => {}
            Behaviour::Permanent => return Err(HandleError::Permanent("malformed".into())),
            Behaviour::LoseConnectionOnFirstCall if call == 1 => {
                let vhost = self.vhost.clone();
                tokio::task::spawn_blocking(move || {
                    std::process::Command::new("rabbitmqctl")
                        .args(["close_all_connections", "-p", &vhost, "fault"])
                        .output()
                        .expect("rabbitmqctl");
                    // Bounded wait until the broker has really dropped them.
                    for _ in 0..200 {
                        if vhost_connections(&vhost) == 0 {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    panic!("connections were not closed");
                })
                .await
                .expect("fault injection");
            }
            Behaviour::LoseConnectionOnFirstCall => {}
        }
        diesel::sql_query("INSERT INTO effects (consumer, message_id) VALUES ($1, $2)")
            .bind::<Text, _>(&self.consumer)
            .bind::<Text, _>(&msg.message_id)
            .execute(conn)
            .await?;
        Ok(())
    }
}

async fn wait_empty(env: &Env, queues: &[String]) -> anyhow::Result<()> {
    eventually(WAIT, || async { env.all_empty(queues).then_some(()) }).await
}

fn all_queues() -> Vec<String> {
    vec![
        QUEUE.to_owned(),
        retry_queue_name(QUEUE, 1),
        retry_queue_name(QUEUE, 2),
    ]
}

async fn effects(env: &Env, id: &str) -> anyhow::Result<i64> {
    env.count_for(
        "SELECT count(*) AS n FROM effects WHERE message_id = $1",
        id,
    )
    .await
}

async fn processed(env: &Env, id: &str) -> anyhow::Result<i64> {
    env.count_for(
        "SELECT count(*) AS n FROM processed_messages WHERE message_id = $1",
        id,
    )
    .await
}

#[tokio::test]
async fn duplicate_message_ids_are_applied_once() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.publish_raw(QUEUE, Some("m1"), b"{}").await?;
    env.publish_raw(QUEUE, Some("m1"), b"{}").await?;
    env.publish_raw(QUEUE, Some("m2"), b"{}").await?;
    let handler = Recorder::new(&env, "c", Behaviour::Succeed);
    env.spawn_consumer(consumer_config(QUEUE, "c"), handler.clone());

    eventually(WAIT, || async {
        (env.count("SELECT count(*) AS n FROM processed_messages")
            .await
            .ok()?
            == 2)
            .then_some(())
    })
    .await?;
    wait_empty(&env, &all_queues()).await?;
    assert_eq!(effects(&env, "m1").await?, 1);
    assert_eq!(effects(&env, "m2").await?, 1);
    assert_eq!(handler.calls(), 2);
    assert_eq!(env.depth(&dead_letter_queue_name(QUEUE)), 0);
    Ok(())
}

#[tokio::test]
async fn transient_failures_are_retried_through_the_retry_queues() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.publish_raw(QUEUE, Some("m1"), b"{}").await?;
    let handler = Recorder::new(&env, "c", Behaviour::TransientTimes(2));
    env.spawn_consumer(consumer_config(QUEUE, "c"), handler.clone());

    eventually(WAIT, || async {
        (effects(&env, "m1").await.ok()? == 1).then_some(())
    })
    .await?;
    wait_empty(&env, &all_queues()).await?;
    assert_eq!(handler.calls(), 3);
    assert_eq!(processed(&env, "m1").await?, 1);
    assert_eq!(env.depth(&dead_letter_queue_name(QUEUE)), 0);
    Ok(())
}

#[tokio::test]
async fn lost_database_races_are_tried_again_on_the_same_delivery_without_a_retry()
-> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.publish_raw(QUEUE, Some("m1"), b"{}").await?;
    let handler = Recorder::new(&env, "c", Behaviour::ConflictTimes(3));
    env.spawn_consumer(consumer_config(QUEUE, "c"), handler.clone());

    eventually(WAIT, || async {
        (effects(&env, "m1").await.ok()? == 1).then_some(())
    })
    .await?;
    wait_empty(&env, &all_queues()).await?;
    // Three lost races and the success, all on the first delivery: never requeued
    // (redelivered), never sent through a retry queue (retries).
    assert_eq!(handler.deliveries(), vec![(0, false); 4]);
    assert_eq!(processed(&env, "m1").await?, 1);
    assert_eq!(env.depth(&dead_letter_queue_name(QUEUE)), 0);
    Ok(())
}

#[tokio::test]
async fn a_database_fault_that_keeps_coming_back_spends_retries_and_is_parked() -> anyhow::Result<()>
{
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.publish_raw(QUEUE, Some("m1"), b"{}").await?;
    let handler = Recorder::new(&env, "c", Behaviour::ConflictTimes(usize::MAX));
    let mut config = consumer_config(QUEUE, "c");
    config.database_tries = 2;
    env.spawn_consumer(config, handler.clone());

    let dlq = dead_letter_queue_name(QUEUE);
    eventually(WAIT, || async { (env.depth(&dlq) == 1).then_some(()) }).await?;
    wait_empty(&env, &all_queues()).await?;
    // Two tries per delivery: the first, then one through each of the two retry queues.
    assert_eq!(
        handler.deliveries(),
        vec![
            (0, false),
            (0, false),
            (1, false),
            (1, false),
            (2, false),
            (2, false)
        ]
    );
    let parked = env.drain(&dlq).await?;
    assert_eq!(
        header_str(&parked[0], DEATH_REASON_HEADER).as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(processed(&env, "m1").await?, 0);
    Ok(())
}

#[tokio::test]
async fn exhausted_retries_park_the_message_with_its_reason() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.publish_raw(QUEUE, Some("m1"), b"{}").await?;
    let handler = Recorder::new(&env, "c", Behaviour::TransientTimes(usize::MAX));
    env.spawn_consumer(consumer_config(QUEUE, "c"), handler.clone());

    let dlq = dead_letter_queue_name(QUEUE);
    eventually(WAIT, || async { (env.depth(&dlq) == 1).then_some(()) }).await?;
    wait_empty(&env, &all_queues()).await?;
    // First delivery plus one per retry level, then parked.
    assert_eq!(handler.calls(), 3);
    assert_eq!(effects(&env, "m1").await?, 0);
    assert_eq!(processed(&env, "m1").await?, 0);
    let parked = env.drain(&dlq).await?;
    assert_eq!(parked.len(), 1);
    assert_eq!(message_id(&parked[0]), "m1");
    assert_eq!(
        header_str(&parked[0], DEATH_REASON_HEADER).as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(
        header_str(&parked[0], RETRY_COUNT_HEADER).as_deref(),
        Some("2")
    );
    assert_eq!(
        header_str(&parked[0], ERROR_HEADER).as_deref(),
        Some("busy (call 3)")
    );
    Ok(())
}

#[tokio::test]
async fn permanent_failures_are_parked_at_once_and_not_redelivered() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.publish_raw(QUEUE, Some("bad"), b"not json").await?;
    let handler = Recorder::new(&env, "c", Behaviour::Permanent);
    env.spawn_consumer(consumer_config(QUEUE, "c"), handler.clone());

    let dlq = dead_letter_queue_name(QUEUE);
    eventually(WAIT, || async { (env.depth(&dlq) == 1).then_some(()) }).await?;
    wait_empty(&env, &all_queues()).await?;
    assert_eq!(handler.calls(), 1);
    assert_eq!(processed(&env, "bad").await?, 0);
    let parked = env.drain(&dlq).await?;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].delivery.data, b"not json");
    assert_eq!(
        header_str(&parked[0], DEATH_REASON_HEADER).as_deref(),
        Some("permanent_failure")
    );
    assert_eq!(
        header_str(&parked[0], ERROR_HEADER).as_deref(),
        Some("malformed")
    );
    Ok(())
}

#[tokio::test]
async fn messages_without_message_id_are_parked_without_calling_the_handler() -> anyhow::Result<()>
{
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.publish_raw(QUEUE, None, b"{}").await?;
    env.publish_raw(QUEUE, Some("ok"), b"{}").await?;
    let handler = Recorder::new(&env, "c", Behaviour::Succeed);
    env.spawn_consumer(consumer_config(QUEUE, "c"), handler.clone());

    let dlq = dead_letter_queue_name(QUEUE);
    eventually(WAIT, || async { (env.depth(&dlq) == 1).then_some(()) }).await?;
    eventually(WAIT, || async {
        (effects(&env, "ok").await.ok()? == 1).then_some(())
    })
    .await?;
    wait_empty(&env, &all_queues()).await?;
    assert_eq!(handler.calls(), 1);
    let parked = env.drain(&dlq).await?;
    assert_eq!(
        header_str(&parked[0], DEATH_REASON_HEADER).as_deref(),
        Some("missing_message_id")
    );
    Ok(())
}

#[tokio::test]
async fn a_lost_ack_after_commit_leads_to_a_redelivery_that_is_not_reapplied() -> anyhow::Result<()>
{
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.publish_raw(QUEUE, Some("m1"), b"{}").await?;
    let handler = Recorder::new(&env, "c", Behaviour::LoseConnectionOnFirstCall);
    env.spawn_consumer(consumer_config(QUEUE, "c"), handler.clone());

    eventually(WAIT, || async {
        (processed(&env, "m1").await.ok()? == 1).then_some(())
    })
    .await?;
    // Still in the queue until the consumer reconnects and acks the redelivery.
    wait_empty(&env, &all_queues()).await?;
    assert_eq!(handler.calls(), 1);
    assert_eq!(effects(&env, "m1").await?, 1);
    assert_eq!(env.depth(&dead_letter_queue_name(QUEUE)), 0);
    Ok(())
}

#[tokio::test]
async fn outbox_to_two_subscribers_applies_each_event_once_per_subscriber() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    let (qa, qb) = ("test.a", "test.b");
    env.declare(qa).await?;
    env.declare(qb).await?;
    let (ha, hb) = (
        Recorder::new(&env, "a", Behaviour::Succeed),
        Recorder::new(&env, "b", Behaviour::TransientTimes(3)),
    );
    env.spawn_consumer(consumer_config(qa, "a"), ha.clone());
    env.spawn_consumer(consumer_config(qb, "b"), hb.clone());
    env.spawn_relay(fast_relay());

    for chunk in (1..=50).collect::<Vec<i64>>().chunks(5) {
        env.enqueue(chunk).await?;
    }
    eventually(WAIT, || async {
        (env.count("SELECT count(*) AS n FROM effects").await.ok()? == 100).then_some(())
    })
    .await?;
    assert_eq!(
        env.count("SELECT count(DISTINCT (consumer, message_id)) AS n FROM effects")
            .await?,
        100
    );
    assert_eq!(
        env.count("SELECT count(*) AS n FROM processed_messages")
            .await?,
        100
    );
    assert_eq!(ha.calls(), 50);
    assert_eq!(hb.calls(), 53);
    Ok(())
}
