//! Outbox + relay against real PostgreSQL and RabbitMQ.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{EXCHANGE, Env, WAIT, fast_relay, message, message_id};
use diesel_async::AsyncConnection;
use paywire_messaging::{RelayConfig, enqueue};
use paywire_testkit::eventually;

const QUEUE: &str = "test.sub";

#[tokio::test]
async fn rolled_back_rows_are_never_published_committed_rows_exactly_once() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.spawn_relay(fast_relay());

    let mut conn = env.pool.get().await?;
    let rolled_back = conn
        .transaction::<(), diesel::result::Error, _>(async |conn| {
            enqueue(conn, &message(1, EXCHANGE)).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled_back.is_err());
    env.enqueue(&[2]).await?;

    eventually(WAIT, || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await?;
    assert_eq!(env.count("SELECT count(*) AS n FROM outbox").await?, 1);
    assert_eq!(
        env.count("SELECT count(*) AS n FROM outbox WHERE id = 2 AND published_at IS NOT NULL AND attempts = 0")
            .await?,
        1
    );

    let got = env.drain(QUEUE).await?;
    assert_eq!(got.iter().map(message_id).collect::<Vec<_>>(), vec!["2"]);
    let props = &got[0].delivery.properties;
    assert_eq!(props.kind().as_ref().map(|s| s.as_str()), Some("test.v1"));
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(*props.delivery_mode(), Some(2));
    assert!(props.timestamp().is_some());
    let body: serde_json::Value = serde_json::from_slice(&got[0].delivery.data)?;
    assert_eq!(body, serde_json::json!({"n": 2}));
    Ok(())
}

#[tokio::test]
async fn enqueue_outside_a_transaction_is_refused() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let mut conn = env.pool.get().await?;
    let err = enqueue(&mut conn, &message(1, EXCHANGE)).await.unwrap_err();
    assert!(err.to_string().contains("inside the transaction"), "{err}");
    assert_eq!(env.count("SELECT count(*) AS n FROM outbox").await?, 0);
    Ok(())
}

#[tokio::test]
async fn notify_wakes_the_relay_without_polling() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.spawn_relay(RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..fast_relay()
    });

    env.enqueue(&[1]).await?;
    eventually(WAIT, || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await?;
    // Let any wake-up still pending from the first commit pass, so the second row can only
    // be found through its own notification (the poll interval is an hour).
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.enqueue(&[2]).await?;
    eventually(WAIT, || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await?;

    let ids: Vec<String> = env.drain(QUEUE).await?.iter().map(message_id).collect();
    assert_eq!(ids, vec!["1", "2"]);
    Ok(())
}

#[tokio::test]
async fn relay_survives_the_broker_closing_its_connection() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    env.spawn_relay(fast_relay());

    for chunk in (1..=100).collect::<Vec<i64>>().chunks(10) {
        env.enqueue(chunk).await?;
    }
    eventually(WAIT, || async {
        (env.count("SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL")
            .await
            .ok()?
            > 0)
        .then_some(())
    })
    .await?;
    let vhost = env.vhost.name.clone();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", "-p", &vhost, "fault"])
            .output()
    })
    .await??;
    for chunk in (101..=200).collect::<Vec<i64>>().chunks(10) {
        env.enqueue(chunk).await?;
    }

    eventually(Duration::from_secs(60), || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await?;
    let ids: BTreeSet<i64> = env
        .drain(QUEUE)
        .await?
        .iter()
        .map(|m| message_id(m).parse().unwrap())
        .collect();
    // Duplicates are allowed (a confirm may be lost with the connection), losses are not.
    assert_eq!(ids, (1..=200).collect::<BTreeSet<i64>>());
    Ok(())
}

#[tokio::test]
async fn two_relays_publish_every_row_exactly_once() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    let config = RelayConfig {
        batch_size: 5,
        ..fast_relay()
    };
    env.spawn_relay(config.clone());
    env.spawn_relay(config);

    for chunk in (1..=200).collect::<Vec<i64>>().chunks(4) {
        env.enqueue(chunk).await?;
    }
    eventually(Duration::from_secs(60), || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await?;

    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for m in env.drain(QUEUE).await? {
        *seen.entry(message_id(&m).parse()?).or_default() += 1;
    }
    assert_eq!(seen.len(), 200);
    assert!(seen.values().all(|n| *n == 1), "duplicates: {seen:?}");
    assert_eq!(
        env.count("SELECT count(*) AS n FROM outbox WHERE attempts > 0")
            .await?,
        0
    );
    Ok(())
}

#[tokio::test]
async fn unroutable_rows_stay_pending_and_are_retried() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    // The exchange exists but nothing is bound yet: a mandatory publish is returned.
    env.declare(QUEUE).await?;
    let orphan = "test.orphan";
    {
        let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-admin").await?;
        let ch = conn.create_channel().await?;
        paywire_messaging::declare_fanout_exchange(&ch, orphan).await?;
    }
    env.spawn_relay(fast_relay());
    env.enqueue_to(orphan, &[7]).await?;

    eventually(WAIT, || async {
        (env.count("SELECT count(*) AS n FROM outbox WHERE attempts >= 2")
            .await
            .ok()?
            == 1)
            .then_some(())
    })
    .await?;
    assert_eq!(env.unpublished().await?, 1);
    assert_eq!(
        env.count("SELECT count(*) AS n FROM outbox WHERE last_error LIKE '%312%NO_ROUTE%'")
            .await?,
        1
    );

    // Once a queue is bound the row goes out.
    {
        let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-admin").await?;
        let ch = conn.create_channel().await?;
        ch.queue_bind(
            QUEUE.into(),
            orphan.into(),
            "".into(),
            Default::default(),
            Default::default(),
        )
        .await?;
    }
    eventually(WAIT, || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await?;
    let ids: Vec<String> = env.drain(QUEUE).await?.iter().map(message_id).collect();
    assert_eq!(ids, vec!["7"]);
    Ok(())
}

#[tokio::test]
async fn a_row_for_a_missing_exchange_does_not_block_the_others() -> anyhow::Result<()> {
    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    // Publishing to a missing exchange makes the broker close the channel: the relay must
    // count the failure, reconnect, and keep publishing the other rows.
    env.enqueue_to("test.missing", &[1]).await?;
    env.enqueue(&[2, 3]).await?;
    env.spawn_relay(fast_relay());
    env.enqueue(&[4]).await?;

    eventually(WAIT, || async {
        (env.count("SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL")
            .await
            .ok()?
            == 3)
            .then_some(())
    })
    .await?;
    eventually(WAIT, || async {
        (env.count("SELECT count(*) AS n FROM outbox WHERE id = 1 AND attempts >= 1 AND published_at IS NULL AND last_error LIKE '%NOT_FOUND%'")
            .await
            .ok()?
            == 1)
        .then_some(())
    })
    .await?;
    let ids: BTreeSet<String> = env.drain(QUEUE).await?.iter().map(message_id).collect();
    assert_eq!(ids, ["2", "3", "4"].map(String::from).into());
    Ok(())
}

/// The trace context of the transaction that wrote a row is stored with it, and the
/// relay's publish span continues it into the message's `traceparent` header; a row whose
/// stored value is malformed (or missing) is published with a trace of its own.
///
/// Run in a process of its own (`.ci/run` does, right after the suite): beside the other
/// tests of this binary the relay's publish span was sometimes not traced under this
/// thread's subscriber (process-wide `tracing` state; passes alone every time so far).
#[tokio::test]
#[ignore = "needs a process of its own; .ci/run runs it alone with --ignored"]
async fn the_writers_trace_context_travels_with_the_row_into_the_message_header()
-> anyhow::Result<()> {
    use paywire_platform::telemetry;
    // Current-thread runtime: the relay's task runs on this thread, under this subscriber.
    let _traced = tracing::subscriber::set_default(telemetry::local_subscriber());
    const WRITER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let trace_of = |tp: &str| tp.split('-').nth(1).map(str::to_owned);

    let mut env = Env::new().await?;
    env.declare(QUEUE).await?;
    let span = tracing::info_span!("request");
    assert!(telemetry::continue_trace(&span, Some(WRITER)));
    let written = {
        use tracing::Instrument;
        env.enqueue(&[1]).instrument(span.clone()).await?;
        telemetry::traceparent_of(&span).unwrap()
    };
    // Outside a span nothing is stored; a malformed value is written by hand.
    env.enqueue(&[2, 3]).await?;
    env.sql("UPDATE outbox SET traceparent = 'not-a-traceparent' WHERE id = 3")
        .await?;
    assert_eq!(
        env.count_for(
            "SELECT count(*) AS n FROM outbox WHERE id = 1 AND traceparent = $1",
            &written
        )
        .await?,
        1
    );
    assert_eq!(
        env.count("SELECT count(*) AS n FROM outbox WHERE id = 2 AND traceparent IS NULL")
            .await?,
        1
    );

    env.spawn_relay(fast_relay());
    eventually(WAIT, || async {
        (env.unpublished().await.ok()? == 0).then_some(())
    })
    .await?;
    let got: BTreeMap<String, Option<String>> = env
        .drain(QUEUE)
        .await?
        .iter()
        .map(|m| (message_id(m), common::header_str(m, "traceparent")))
        .collect();
    let header = |id: &str| {
        got[id]
            .clone()
            .unwrap_or_else(|| panic!("{id}: no traceparent"))
    };
    let first = header("1");
    assert_eq!(trace_of(&first).as_deref(), Some(TRACE), "{first}");
    assert_ne!(
        first, written,
        "the relay's publish span is the consumers' parent"
    );
    for id in ["2", "3"] {
        let own = header(id);
        assert!(telemetry::parse_traceparent(&own).is_some(), "{id}: {own}");
        assert_ne!(trace_of(&own).as_deref(), Some(TRACE), "{id}: {own}");
    }
    Ok(())
}
