//! Topology declaration against a real RabbitMQ vhost.

use crate::common;

use common::Env;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation};
use paywire_domain::topology::{PAY_RESULT_EXCHANGE, PAY_RESULT_SUBSCRIBERS};
use paywire_messaging::{
    RetryPolicy, dead_letter_queue_name, declare_delay_queue, declare_pay_result_topology,
    declare_subscriber_queue, retry_queue_name,
};

#[tokio::test]
async fn pay_result_topology_is_idempotent_and_fans_out_to_every_subscriber() -> anyhow::Result<()>
{
    let env = Env::new().await?;
    let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-topology").await?;
    let ch = conn.create_channel().await?;
    declare_pay_result_topology(&ch, PAY_RESULT_SUBSCRIBERS).await?;
    // A second service starting declares the same thing again.
    declare_pay_result_topology(&ch, PAY_RESULT_SUBSCRIBERS).await?;

    ch.confirm_select(Default::default()).await?;
    let confirm = ch
        .basic_publish(
            PAY_RESULT_EXCHANGE.into(),
            "".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"{}",
            BasicProperties::default().with_message_id("1".into()),
        )
        .await?
        .await?;
    assert_eq!(confirm, Confirmation::Ack(None));
    for queue in PAY_RESULT_SUBSCRIBERS {
        assert_eq!(env.drain(queue).await?.len(), 1, "{queue}");
        // Retry and dead-letter queues exist but are not bound to the fanout exchange.
        assert_eq!(env.drain(&dead_letter_queue_name(queue)).await?.len(), 0);
        for n in 1..=RetryPolicy::default().delays.len() {
            assert_eq!(env.drain(&retry_queue_name(queue, n)).await?.len(), 0);
        }
    }

    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-p",
            &env.vhost.name,
            "-q",
            "--no-table-headers",
            "name",
            "type",
        ])
        .output()?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let queues: Vec<&str> = listing.lines().collect();
    assert_eq!(queues.len(), PAY_RESULT_SUBSCRIBERS.len() * 5, "{listing}");
    assert!(
        queues.iter().all(|l| l.trim_end().ends_with("quorum")),
        "{listing}"
    );
    Ok(())
}

#[tokio::test]
async fn redeclaring_a_queue_with_another_policy_fails() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-topology").await?;
    let ch = conn.create_channel().await?;
    paywire_messaging::declare_fanout_exchange(&ch, "test.events").await?;
    declare_subscriber_queue(&ch, "test.events", "q", &RetryPolicy::default()).await?;
    let other = RetryPolicy {
        delivery_limit: 3,
        ..RetryPolicy::default()
    };
    let ch2 = conn.create_channel().await?;
    assert!(
        declare_subscriber_queue(&ch2, "test.events", "q", &other)
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn delay_queues_hold_messages_for_their_ttl_then_hand_them_to_the_target_queue()
-> anyhow::Result<()> {
    let env = Env::new().await?;
    let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-topology").await?;
    let ch = conn.create_channel().await?;
    let policy = common::fast_retry();
    let ttl = std::time::Duration::from_millis(300);
    declare_delay_queue(&ch, "t.delay.300ms", ttl, "t.target", "t.q", &policy).await?;
    // Idempotent: every instance declares it at start.
    declare_delay_queue(&ch, "t.delay.300ms", ttl, "t.target", "t.q", &policy).await?;

    env.publish_raw("t.delay.300ms", Some("m1"), b"{}").await?;
    let arrived = paywire_testkit::eventually(common::WAIT, || async {
        let got = env.drain("t.q").await.ok()?;
        (!got.is_empty()).then_some(got)
    })
    .await?;
    assert_eq!(arrived.len(), 1);
    assert_eq!(common::message_id(&arrived[0]), "m1");
    assert_eq!(env.drain("t.delay.300ms").await?.len(), 0);
    assert_eq!(env.drain(&dead_letter_queue_name("t.q")).await?.len(), 0);

    // The target queue is bound by its own name only: nothing else reaches it.
    ch.confirm_select(Default::default()).await?;
    let confirm = ch
        .basic_publish(
            "t.target".into(),
            "other".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"{}",
            BasicProperties::default().with_message_id("m2".into()),
        )
        .await?
        .await?;
    assert!(matches!(confirm, Confirmation::Ack(Some(_))), "{confirm:?}");

    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-p",
            &env.vhost.name,
            "-q",
            "--no-table-headers",
            "name",
            "type",
        ])
        .output()?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut names: Vec<&str> = listing
        .lines()
        .filter_map(|l| {
            assert!(l.trim_end().ends_with("quorum"), "{listing}");
            l.split_whitespace().next()
        })
        .collect();
    names.sort();
    let mut expected = vec![
        "t.delay.300ms".to_owned(),
        "t.q".to_owned(),
        dead_letter_queue_name("t.q"),
    ];
    expected.extend((1..=policy.delays.len()).map(|n| retry_queue_name("t.q", n)));
    expected.sort();
    assert_eq!(names, expected);
    Ok(())
}

#[tokio::test]
async fn a_delay_queue_cannot_change_its_ttl_under_the_same_name() -> anyhow::Result<()> {
    let env = Env::new().await?;
    let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-topology").await?;
    let ch = conn.create_channel().await?;
    let policy = RetryPolicy::default();
    let ttl = std::time::Duration::from_secs(60);
    declare_delay_queue(&ch, "d.60s", ttl, "d.target", "d.q", &policy).await?;
    let ch2 = conn.create_channel().await?;
    assert!(
        declare_delay_queue(&ch2, "d.60s", ttl * 2, "d.target", "d.q", &policy)
            .await
            .is_err()
    );
    // A name derived from the new TTL is a new queue, next to the old one.
    let ch3 = conn.create_channel().await?;
    declare_delay_queue(&ch3, "d.120s", ttl * 2, "d.target", "d.q", &policy).await?;
    Ok(())
}

#[tokio::test]
async fn exists_tells_declared_from_missing_and_keeps_the_connection() -> anyhow::Result<()> {
    use paywire_messaging::topology::{Declared, exists};
    let env = Env::new().await?;
    let conn = paywire_messaging::connect(&env.vhost.amqp_url, "test-exists").await?;
    let ch = conn.create_channel().await?;
    declare_pay_result_topology(&ch, PAY_RESULT_SUBSCRIBERS).await?;

    assert!(exists(&conn, Declared::Exchange, PAY_RESULT_EXCHANGE).await?);
    assert!(exists(&conn, Declared::Queue, PAY_RESULT_SUBSCRIBERS[0]).await?);
    assert!(!exists(&conn, Declared::Exchange, "no-such-exchange").await?);
    assert!(!exists(&conn, Declared::Queue, "no-such-queue").await?);
    // A refused probe closes only its own channel.
    assert!(conn.status().connected());
    assert!(ch.status().connected());
    assert!(exists(&conn, Declared::Queue, PAY_RESULT_SUBSCRIBERS[0]).await?);
    Ok(())
}
