//! The machine's own limits, measured in the same run as the platform so that each
//! Paywire figure can be read as a ratio of what this machine can do at all (a shared,
//! noisy machine moves both together).

use std::time::{Duration, Instant};

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel};
use paywire_domain::topology::{PAY_RESULT_EXCHANGE, PAY_RESULT_SUBSCRIBERS};
use paywire_messaging::topology::{connect, declare_pay_result_topology};
use paywire_testkit::{TestDatabase, TestVhost};

/// A message about the size of a `pay.result.v1` envelope.
pub const BODY_BYTES: usize = 420;

/// RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second on every core, with the signing
/// function the channels and the sandbox use (the `rsa` crate, blinded).
pub async fn rsa_signatures_per_sec(duration: Duration) -> anyhow::Result<f64> {
    let path =
        paywire_testkit::repo_root().join("deploy/test-keys/wechat/merchant_private_key.pem");
    let key = std::sync::Arc::new(
        paywire_channels::keys::private_key_from_file(&path)
            .with_context(|| format!("loading the test key {}", path.display()))?,
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..threads {
        let key = key.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            let mut n = 0u64;
            let message = b"POST\n/v3/pay/transactions/native\n1700000000\nnonce\n{\"amount\":1}\n";
            while started.elapsed() < duration {
                std::hint::black_box(paywire_channels::rsa_sha256::sign(&key, message));
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Single-row transactions per second (autocommit `INSERT`, the default durability) on the
/// machine's PostgreSQL, from `connections` connections at once.
pub async fn pg_transactions_per_sec(
    connections: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let db = TestDatabase::create("bench_pg").await?;
    {
        let mut conn = AsyncPgConnection::establish(&db.url).await?;
        diesel::sql_query("CREATE TABLE rows (id BIGSERIAL PRIMARY KEY, v BIGINT NOT NULL)")
            .execute(&mut conn)
            .await?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            let mut n = 0u64;
            while started.elapsed() < duration {
                diesel::sql_query("INSERT INTO rows (v) VALUES (1)")
                    .execute(&mut conn)
                    .await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Persistent messages per second published with confirms into the pay-result fanout
/// exchange (both subscriber queues bound, as in production) in pipelined batches of
/// `batch` whose confirms are awaited together: the most a relay can get from the broker.
pub async fn broker_confirms_per_sec(batch: usize, duration: Duration) -> anyhow::Result<f64> {
    let vhost = TestVhost::create()?;
    let conn = connect(&vhost.amqp_url, "bench-baseline").await?;
    let channel = conn.create_channel().await?;
    declare_pay_result_topology(&channel, PAY_RESULT_SUBSCRIBERS).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let body = vec![b'x'; BODY_BYTES];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        publish_batch(&channel, &body, batch).await?;
        n += batch as u64;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = conn.close(200, "done".into()).await;
    Ok(rate)
}

async fn publish_batch(channel: &Channel, body: &[u8], batch: usize) -> anyhow::Result<()> {
    let mut confirms = Vec::with_capacity(batch);
    for i in 0..batch {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(i.to_string().into())
            .with_content_type("application/json".into());
        confirms.push(
            channel
                .basic_publish(
                    PAY_RESULT_EXCHANGE.into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await?,
        );
    }
    for c in futures::future::join_all(confirms).await {
        anyhow::ensure!(c?.is_ack(), "the broker refused a message");
    }
    Ok(())
}
