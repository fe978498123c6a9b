//! Relay and consumers keep every message through repeated broker-side connection drops
//! in the middle of publishing and consuming.
//!
//! The suite shares one RabbitMQ with every other test running in parallel, so the faults
//! here are per vhost (`close_all_connections -p <vhost>`); a full broker restart
//! (`stop_app`/`start_app`) is exercised by `cargo xtask chaos` only.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use common::{Env, consumer_config, fast_relay};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use paywire_messaging::{
    HandleError, IncomingMessage, MessageHandler, dead_letter_queue_name, retry_queue_name,
};
use paywire_testkit::eventually;

const QUEUE_A: &str = "test.res.a";
const QUEUE_B: &str = "test.res.b";
const MESSAGES: i64 = 300;
const SETTLE: Duration = Duration::from_secs(120);

/// Records every application in a table without a unique key, so a second application of
/// one message would show up as a second row instead of a constraint error.
struct Applier {
    consumer: String,
}

#[async_trait]
impl MessageHandler for Applier {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        diesel::sql_query("INSERT INTO applications (consumer, message_id) VALUES ($1, $2)")
            .bind::<Text, _>(&self.consumer)
            .bind::<Text, _>(&msg.message_id)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Open consumer connections of the vhost. The relay is not counted: an idle relay only
/// notices a dropped connection when it next has something to publish, which is fine
/// (it reconnects then), so waiting for it here would make the test depend on timing.
fn connections(vhost: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "-p",
            vhost,
            "-q",
            "--no-table-headers",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("paywire-consumer-"))
        .count()
}

/// Drops every connection of the vhost, then waits until the clients have reconnected
/// (3 consumers, each with a second connection for republishing).
async fn drop_connections_and_wait_for_reconnect(env: &Env, expected: usize) {
    let vhost = env.vhost.name.clone();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", "-p", &vhost, "resilience fault"])
            .output()
            .expect("rabbitmqctl");
        assert!(out.status.success(), "{out:?}");
    })
    .await
    .expect("fault injection");
    let vhost = env.vhost.name.clone();
    eventually(SETTLE, || {
        let vhost = vhost.clone();
        async move {
            tokio::task::spawn_blocking(move || connections(&vhost) >= expected)
                .await
                .ok()?
                .then_some(())
        }
    })
    .await
    .expect("clients reconnect after the connection drop");
}

fn queues_of(queue: &str) -> Vec<String> {
    vec![
        queue.to_owned(),
        retry_queue_name(queue, 1),
        retry_queue_name(queue, 2),
        dead_letter_queue_name(queue),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_and_competing_consumers_survive_repeated_connection_drops_mid_publish()
-> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.sql(
        "CREATE TABLE applications (id BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, \
         message_id TEXT NOT NULL)",
    )
    .await?;
    env.declare(QUEUE_A).await?;
    env.declare(QUEUE_B).await?;
    env.spawn_relay(fast_relay());
    // Two instances of subscriber "a" compete on its queue; "b" has one.
    for (queue, consumer) in [(QUEUE_A, "a"), (QUEUE_A, "a"), (QUEUE_B, "b")] {
        env.spawn_consumer(
            consumer_config(queue, consumer),
            Arc::new(Applier {
                consumer: consumer.to_owned(),
            }),
        );
    }
    // consumers 3 × (consuming + republishing) = 6 connections.
    const CLIENTS: usize = 6;
    eventually(SETTLE, || async {
        let vhost = env.vhost.name.clone();
        tokio::task::spawn_blocking(move || connections(&vhost) >= CLIENTS)
            .await
            .ok()?
            .then_some(())
    })
    .await
    .context("clients never connected")?;

    // Producer and fault injector run concurrently: rows are committed while connections
    // are being torn down, so publishes and confirms are cut off mid-flight.
    let producer = {
        let pool = env.pool.clone();
        tokio::spawn(async move {
            for chunk in (1..=MESSAGES).collect::<Vec<i64>>().chunks(5) {
                let mut conn = pool.get().await?;
                let msgs: Vec<_> = chunk
                    .iter()
                    .map(|id| common::message(*id, common::EXCHANGE))
                    .collect();
                use diesel_async::AsyncConnection;
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    for m in &msgs {
                        paywire_messaging::enqueue(conn, m).await?;
                    }
                    Ok(())
                })
                .await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(())
        })
    };
    let mut drops = 0;
    while !producer.is_finished() || drops < 3 {
        // Wait for some progress so each drop hits a live publishing session.
        let published_before = env
            .count("SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL")
            .await?;
        eventually(SETTLE, || async {
            let now = env
                .count("SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL")
                .await
                .ok()?;
            (now > published_before || env.unpublished().await.ok()? == 0).then_some(())
        })
        .await
        .with_context(|| format!("no publishing progress before drop {}", drops + 1))?;
        drop_connections_and_wait_for_reconnect(&env, CLIENTS).await;
        drops += 1;
        if drops >= 10 {
            break;
        }
    }
    producer.await??;
    assert!(drops >= 3, "only {drops} connection drops were injected");

    // Every row published (after a confirm), every message applied exactly once per
    // subscriber, and nothing left in any queue, ready or unacknowledged.
    eventually(SETTLE, || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await
    .with_context(|| format!("outbox not drained after {drops} drops"))?;
    assert_eq!(
        env.count("SELECT count(*) AS n FROM outbox").await?,
        MESSAGES
    );
    eventually(SETTLE, || async {
        (env.count("SELECT count(*) AS n FROM applications")
            .await
            .ok()?
            >= 2 * MESSAGES)
            .then_some(())
    })
    .await
    .context("not every message applied")?;
    let all: Vec<String> = queues_of(QUEUE_A)
        .into_iter()
        .chain(queues_of(QUEUE_B))
        .collect();
    // `messages` counts ready and unacknowledged deliveries.
    eventually(SETTLE, || async { env.all_empty(&all).then_some(()) })
        .await
        .with_context(|| {
            let depths: Vec<_> = all.iter().map(|q| (q.clone(), env.depth(q))).collect();
            format!("queues not empty: {depths:?}")
        })?;
    for consumer in ["a", "b"] {
        assert_eq!(
            env.count_for(
                "SELECT count(*) AS n FROM applications WHERE consumer = $1",
                consumer
            )
            .await?,
            MESSAGES,
            "applications of consumer {consumer}"
        );
        assert_eq!(
            env.count_for(
                "SELECT count(DISTINCT message_id) AS n FROM applications WHERE consumer = $1",
                consumer
            )
            .await?,
            MESSAGES,
            "distinct messages applied by consumer {consumer}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) AS n FROM processed_messages")
            .await?,
        2 * MESSAGES
    );
    Ok(())
}

/// A stand-in broker node: forwards TCP to the suite's RabbitMQ until it is lost, then
/// refuses connections like a stopped node (its port is closed) and has dropped every
/// connection it carried, as a killed node does.
struct Node {
    port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    tasks: tokio::task::JoinSet<()>,
}

impl Node {
    async fn start(broker: &str) -> anyhow::Result<Node> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let (count, broker) = (accepted.clone(), broker.to_owned());
        tasks.spawn(async move {
            let mut tunnels = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let broker = broker.clone();
                tunnels.spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(broker).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        Ok(Node {
            port,
            accepted,
            tasks,
        })
    }

    /// Closes the port and every forwarded connection (aborting the accept task drops
    /// the listener and the tunnels' JoinSet with it).
    /// Connections it has forwarded. (Spelled out: diesel's `RunQueryDsl::load`, in scope
    /// for every type, would shadow the atomic's own `load`.)
    fn accepted(&self) -> usize {
        std::sync::atomic::AtomicUsize::load(&self.accepted, std::sync::atomic::Ordering::SeqCst)
    }

    async fn lose(mut self) {
        self.tasks.shutdown().await;
    }
}

/// `amqp://…@127.0.0.1:5672/vhost` with another port.
fn via_port(url: &str, port: u16) -> String {
    url.replacen("@127.0.0.1:5672/", &format!("@127.0.0.1:{port}/"), 1)
}

/// Issue 15: with `amqp.url` naming two nodes, the relay and a consumer work through the
/// first; when it is lost mid-stream they reconnect to the second without a restart, and
/// every message is still applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_and_consumer_fail_over_to_the_next_broker_node() -> anyhow::Result<()> {
    const PER_PHASE: i64 = 100;
    let mut env = Env::new().await?;
    assert!(
        env.vhost.amqp_url.contains("@127.0.0.1:5672/"),
        "{}",
        env.vhost.amqp_url
    );
    env.sql(
        "CREATE TABLE applications (id BIGSERIAL PRIMARY KEY, consumer TEXT NOT NULL, \
         message_id TEXT NOT NULL)",
    )
    .await?;
    let queue = "test.failover";
    env.declare(queue).await?;
    let first = Node::start("127.0.0.1:5672").await?;
    let direct = env.vhost.amqp_url.clone();
    env.vhost.amqp_url = format!("{},{direct}", via_port(&direct, first.port));
    env.spawn_relay(fast_relay());
    env.spawn_consumer(
        consumer_config(queue, "f"),
        Arc::new(Applier {
            consumer: "f".to_owned(),
        }),
    );

    let enqueue = |from: i64| {
        let pool = env.pool.clone();
        async move {
            let mut conn = pool.get().await?;
            use diesel_async::AsyncConnection;
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                for id in from..from + PER_PHASE {
                    paywire_messaging::enqueue(conn, &common::message(id, common::EXCHANGE))
                        .await?;
                }
                Ok(())
            })
            .await?;
            anyhow::Ok(())
        }
    };
    let applied = || env.count("SELECT count(*) AS n FROM applications");
    enqueue(1).await?;
    eventually(SETTLE, || async {
        (applied().await.ok()? >= PER_PHASE / 2).then_some(())
    })
    .await
    .context("nothing applied through the first node")?;
    // Consumer, its republisher and the relay connected through the first node.
    assert!(
        first.accepted() >= 3,
        "connections through the first node: {}",
        first.accepted()
    );
    first.lose().await;
    enqueue(1 + PER_PHASE).await?;

    eventually(SETTLE, || async {
        (env.unpublished().await.ok()? == 0 && applied().await.ok()? >= 2 * PER_PHASE).then_some(())
    })
    .await
    .with_context(|| "not everything published and applied after the node was lost")?;
    let all = queues_of(queue);
    eventually(SETTLE, || async { env.all_empty(&all).then_some(()) })
        .await
        .context("queue not drained")?;
    assert_eq!(
        applied().await?,
        2 * PER_PHASE,
        "a message was applied twice"
    );
    assert_eq!(
        env.count("SELECT count(DISTINCT message_id) AS n FROM applications")
            .await?,
        2 * PER_PHASE
    );
    Ok(())
}
