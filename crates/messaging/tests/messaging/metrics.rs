//! The relay's and consumers' metrics move with what happens to rows and messages, read
//! from the process's Prometheus scrape. The recorder is the process's, shared with the
//! other suites of this binary: the relay's series are compared as at-least deltas, the
//! consumer's are labelled by this test's own queue.

use crate::common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{Env, WAIT, consumer_config, fast_relay};
use diesel_async::AsyncPgConnection;
use paywire_messaging::{HandleError, IncomingMessage, MessageHandler, dead_letter_queue_name};
use paywire_testkit::eventually;

/// The value of one series as rendered (`name{labels}`); 0 when absent.
fn sample(series: &str) -> f64 {
    paywire_platform::metrics::install()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn until(series: &str, at_least: f64) -> anyhow::Result<()> {
    eventually(WAIT, || async {
        (sample(series) >= at_least).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{series} did not reach {at_least}: {e}"))
}

#[tokio::test]
async fn the_relay_counts_refusals_backlog_and_a_row_published_after_failing() -> anyhow::Result<()>
{
    paywire_platform::metrics::install();
    let mut env = Env::new().await?;
    // The exchange exists but nothing is bound: the broker returns the mandatory publish.
    let orphan = "test.metrics-orphan";
    {
        let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-admin").await?;
        let ch = conn.create_channel().await?;
        paywire_messaging::declare_fanout_exchange(&ch, orphan).await?;
    }
    let refused = r#"paywire_outbox_publish_failures_total{outcome="refused"}"#;
    let (refused_before, published_before, republished_before) = (
        sample(refused),
        sample("paywire_outbox_published_total"),
        sample("paywire_outbox_republished_total"),
    );
    env.spawn_relay(fast_relay());
    env.enqueue_to(orphan, &[11]).await?;

    until(refused, refused_before + 2.0).await?;

    {
        let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-admin").await?;
        let ch = conn.create_channel().await?;
        ch.queue_declare(
            "test.metrics-bound".into(),
            Default::default(),
            Default::default(),
        )
        .await?;
        ch.queue_bind(
            "test.metrics-bound".into(),
            orphan.into(),
            "".into(),
            Default::default(),
            Default::default(),
        )
        .await?;
    }
    until("paywire_outbox_published_total", published_before + 1.0).await?;
    // It had failed before: published again after attempts that did not go out.
    until("paywire_outbox_republished_total", republished_before + 1.0).await?;
    assert!(sample("paywire_outbox_publish_seconds_count") >= 1.0);
    let scrape = paywire_platform::metrics::install().render();
    for gauge in [
        "paywire_outbox_pending_rows ",
        "paywire_outbox_oldest_unpublished_age_seconds ",
    ] {
        assert!(
            scrape.lines().any(|l| l.starts_with(gauge)),
            "{gauge}: {scrape}"
        );
    }
    Ok(())
}

/// Fails transiently forever for message ids starting with `fail`, else applies.
struct FailSome;

#[async_trait]
impl MessageHandler for FailSome {
    async fn handle(
        &self,
        _conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        if msg.message_id.starts_with("fail") {
            Err(HandleError::Transient("busy".into()))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_consumer_counts_each_outcome_and_watches_its_dead_letter_queue() -> anyhow::Result<()> {
    paywire_platform::metrics::install();
    let queue = "test.metrics-sub";
    let mut env = Env::new().await?;
    env.declare(queue).await?;
    env.publish_raw(queue, Some("ok-1"), b"{}").await?;
    env.publish_raw(queue, Some("ok-1"), b"{}").await?;
    env.publish_raw(queue, Some("fail-1"), b"{}").await?;
    env.spawn_consumer(consumer_config(queue, "c"), Arc::new(FailSome));

    let series = |outcome: &str| {
        format!(r#"paywire_consumer_messages_total{{queue="{queue}",outcome="{outcome}"}}"#)
    };
    until(&series("applied"), 1.0).await?;
    until(&series("duplicate"), 1.0).await?;
    // Two retry levels (fast_retry), then parked.
    until(&series("parked"), 1.0).await?;
    assert_eq!(sample(&series("retried")), 2.0);
    assert_eq!(sample(&series("applied")), 1.0);
    let dlq = dead_letter_queue_name(queue);
    // The depth watcher reads the broker every few seconds; a quorum queue's count lags.
    until(&format!(r#"paywire_queue_messages{{queue="{dlq}"}}"#), 1.0).await?;
    assert!(
        sample(&format!(
            r#"paywire_consumer_handling_seconds_count{{queue="{queue}"}}"#
        )) >= 5.0,
        "every delivery is timed"
    );
    Ok(())
}
