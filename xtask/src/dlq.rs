//! `cargo xtask dlq list|replay`: inspecting and replaying the messages parked in the
//! consumers' dead-letter queues (`<queue>.dlq`, see `paywire_messaging::topology`).
//!
//! Listing never loses a message: parked messages are fetched without acknowledgement and
//! go back to the queue when the inspecting channel closes. Replay publishes a copy to the
//! original queue with publisher confirms and acknowledges the parked copy only after the
//! broker's confirm, so a failure in between leaves a duplicate (absorbed by the
//! consumers' inbox), never a loss.

use anyhow::{Context, bail};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use paywire_domain::topology::PAY_RESULT_SUBSCRIBERS;
use paywire_messaging::{
    DEATH_REASON_HEADER, ERROR_HEADER, RETRY_COUNT_HEADER, dead_letter_queue_name, topology,
};

const DLQ_SUFFIX: &str = ".dlq";

/// One parked message as shown by `dlq list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedMessage {
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    pub death_reason: Option<String>,
    pub error: Option<String>,
    pub retry_count: Option<String>,
}

/// One dead-letter queue and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqReport {
    /// The dead-letter queue, `<queue>.dlq`.
    pub queue: String,
    pub count: usize,
    pub messages: Vec<ParkedMessage>,
}

/// Which parked messages `dlq replay` moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    MessageId(String),
}

/// What `dlq replay` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayReport {
    pub replayed: usize,
    /// Parked messages not selected; they stay in the dead-letter queue.
    pub kept: usize,
}

/// `<queue>` for `<queue>.dlq`, and `<queue>` itself otherwise.
pub fn origin_queue(name: &str) -> &str {
    name.strip_suffix(DLQ_SUFFIX).unwrap_or(name)
}

/// The broker URL pointed at `vhost` (`/` is written `%2f`).
pub fn url_for_vhost(amqp_url: &str, vhost: &str) -> String {
    let (scheme, rest) = amqp_url.split_once("://").unwrap_or(("amqp", amqp_url));
    let authority = rest.split('/').next().unwrap_or(rest);
    let encoded = if vhost == "/" {
        "%2f".to_owned()
    } else {
        vhost.replace('%', "%25").replace('/', "%2f")
    };
    format!("{scheme}://{authority}/{encoded}")
}

/// The vhost an AMQP URL names (`/` when the path is empty or `%2f`).
pub fn vhost_of(amqp_url: &str) -> String {
    let rest = amqp_url.split_once("://").map_or(amqp_url, |(_, r)| r);
    match rest.split_once('/') {
        None | Some((_, "")) => "/".to_owned(),
        Some((_, path)) => path
            .replace("%2f", "/")
            .replace("%2F", "/")
            .replace("%25", "%"),
    }
}

/// Every `*.dlq` queue of the vhost according to `rabbitmqctl`; if that tool is not
/// available, the dead-letter queues of the known pay-result subscribers.
pub fn discover(vhost: &str) -> Vec<String> {
    let listed = paywire_testkit::rabbitmq::rabbitmqctl(&[
        "list_queues",
        "-p",
        vhost,
        "-q",
        "--no-table-headers",
        "name",
    ]);
    match listed {
        Ok(out) => {
            let mut names: Vec<String> = out
                .lines()
                .map(str::trim)
                .filter(|l| l.ends_with(DLQ_SUFFIX))
                .map(str::to_owned)
                .collect();
            names.sort();
            names
        }
        _ => PAY_RESULT_SUBSCRIBERS
            .iter()
            .map(|q| dead_letter_queue_name(q))
            .collect(),
    }
}

fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::ShortShortInt(v) => Some(v.to_string()),
        AMQPValue::ShortShortUInt(v) => Some(v.to_string()),
        AMQPValue::ShortInt(v) => Some(v.to_string()),
        AMQPValue::ShortUInt(v) => Some(v.to_string()),
        AMQPValue::LongInt(v) => Some(v.to_string()),
        AMQPValue::LongUInt(v) => Some(v.to_string()),
        AMQPValue::LongLongInt(v) => Some(v.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn parked(props: &BasicProperties) -> ParkedMessage {
    let headers = props.headers().clone().unwrap_or_default();
    ParkedMessage {
        message_id: props.message_id().as_ref().map(|s| s.as_str().to_owned()),
        event_type: props.kind().as_ref().map(|s| s.as_str().to_owned()),
        death_reason: header_text(&headers, DEATH_REASON_HEADER),
        error: header_text(&headers, ERROR_HEADER),
        retry_count: header_text(&headers, RETRY_COUNT_HEADER),
    }
}

async fn queue_exists(conn: &Connection, queue: &str) -> anyhow::Result<bool> {
    Ok(topology::exists(conn, topology::Declared::Queue, queue).await?)
}

/// Fetches every message of `queue` without acknowledging; they are requeued when
/// `channel` closes.
async fn fetch_unacked(
    channel: &Channel,
    queue: &str,
) -> anyhow::Result<Vec<lapin::message::BasicGetMessage>> {
    let mut out = Vec::new();
    while let Some(m) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .with_context(|| format!("reading {queue}"))?
    {
        out.push(m);
    }
    Ok(out)
}

/// Shows the given dead-letter queues (missing ones are skipped).
pub async fn list(amqp_url: &str, queues: &[String]) -> anyhow::Result<Vec<DlqReport>> {
    let conn = paywire_messaging::connect(amqp_url, "xtask-dlq-list")
        .await
        .context("connecting to RabbitMQ")?;
    let mut reports = Vec::new();
    for queue in queues {
        if !queue_exists(&conn, queue).await? {
            continue;
        }
        let channel = conn.create_channel().await?;
        let fetched = fetch_unacked(&channel, queue).await?;
        let messages: Vec<ParkedMessage> = fetched
            .iter()
            .map(|m| parked(&m.delivery.properties))
            .collect();
        // Closing without acknowledging puts every fetched message back.
        channel.close(200, "inspected".into()).await?;
        reports.push(DlqReport {
            queue: queue.clone(),
            count: messages.len(),
            messages,
        });
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(reports)
}

/// Moves the selected messages of `<queue>.dlq` back to `<queue>` with `x-retry-count`
/// and the parking headers removed, so they get a fresh set of retries.
pub async fn replay(
    amqp_url: &str,
    queue: &str,
    selection: &Selection,
) -> anyhow::Result<ReplayReport> {
    let target = origin_queue(queue).to_owned();
    let dlq = dead_letter_queue_name(&target);
    let conn = paywire_messaging::connect(amqp_url, "xtask-dlq-replay")
        .await
        .context("connecting to RabbitMQ")?;
    for q in [&target, &dlq] {
        if !queue_exists(&conn, q).await? {
            bail!("queue {q} does not exist");
        }
    }
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let reader = conn.create_channel().await?;
    let fetched = fetch_unacked(&reader, &dlq).await?;
    let mut report = ReplayReport::default();
    for m in fetched {
        let props = &m.delivery.properties;
        let selected = match selection {
            Selection::All => true,
            Selection::MessageId(id) => {
                props.message_id().as_ref().map(|s| s.as_str()) == Some(id.as_str())
            }
        };
        if !selected {
            report.kept += 1;
            continue;
        }
        let mut headers = props.headers().clone().unwrap_or_default();
        let mut fresh = FieldTable::default();
        for (k, v) in headers.inner() {
            let key = k.as_str();
            if ![
                RETRY_COUNT_HEADER,
                DEATH_REASON_HEADER,
                ERROR_HEADER,
                "x-death",
            ]
            .contains(&key)
            {
                fresh.insert(k.clone(), v.clone());
            }
        }
        headers = fresh;
        let properties = props.clone().with_delivery_mode(2).with_headers(headers);
        let confirm = publisher
            .basic_publish(
                "".into(),
                target.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &m.delivery.data,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) => {
                m.delivery.ack(BasicAckOptions::default()).await?;
                report.replayed += 1;
            }
            other => bail!(
                "replay to {target} not confirmed ({other:?}); the parked copy stays in {dlq}"
            ),
        }
    }
    // Unselected messages go back to the dead-letter queue.
    reader.close(200, "replayed".into()).await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(report)
}

fn cell(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// The `dlq list` output.
pub fn render(reports: &[DlqReport]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        out.push_str("no dead-letter queues found\n");
    }
    for r in reports {
        out.push_str(&format!("{}: {} message(s)\n", r.queue, r.count));
        for m in &r.messages {
            out.push_str(&format!(
                "  message_id={} type={} reason={} retries={} error={}\n",
                cell(&m.message_id),
                cell(&m.event_type),
                cell(&m.death_reason),
                cell(&m.retry_count),
                cell(&m.error),
            ));
        }
    }
    out
}

/// The broker URL for the command: `$PAYWIRE__AMQP__URL` (or the default), moved to
/// `vhost` when given.
fn command_url(vhost: Option<&str>) -> (String, String) {
    let base = crate::layout::amqp_url();
    match vhost {
        Some(v) => (url_for_vhost(&base, v), v.to_owned()),
        None => {
            let v = vhost_of(&base);
            (base, v)
        }
    }
}

pub async fn run_list(vhost: Option<&str>, queue: Option<&str>) -> anyhow::Result<()> {
    let (url, vhost) = command_url(vhost);
    let queues = match queue {
        Some(q) => vec![dead_letter_queue_name(origin_queue(q))],
        None => discover(&vhost),
    };
    let reports = list(&url, &queues).await?;
    print!("{}", render(&reports));
    Ok(())
}

pub async fn run_replay(
    vhost: Option<&str>,
    queue: &str,
    selection: &Selection,
) -> anyhow::Result<()> {
    let (url, _) = command_url(vhost);
    let report = replay(&url, queue, selection).await?;
    println!(
        "replayed {} message(s) to {}; {} kept in {}",
        report.replayed,
        origin_queue(queue),
        report.kept,
        dead_letter_queue_name(origin_queue(queue)),
    );
    if let Selection::MessageId(id) = selection
        && report.replayed == 0
    {
        bail!("no parked message with message_id {id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_messaging::{RetryPolicy, declare_fanout_exchange, declare_subscriber_queue};
    use paywire_testkit::TestVhost;

    const QUEUE: &str = "svc.events";

    async fn setup() -> (TestVhost, Connection) {
        let vhost = tokio::task::spawn_blocking(TestVhost::create)
            .await
            .unwrap()
            .unwrap();
        let conn = paywire_messaging::connect(&vhost.amqp_url, "dlq-test")
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        declare_fanout_exchange(&ch, "svc.exchange").await.unwrap();
        declare_subscriber_queue(&ch, "svc.exchange", QUEUE, &RetryPolicy::default())
            .await
            .unwrap();
        (vhost, conn)
    }

    /// [`setup`], then `ids` parked for `reason`.
    async fn setup_parked(ids: &[&str], reason: &str) -> (TestVhost, Connection) {
        let (vhost, conn) = setup().await;
        for id in ids {
            park(&conn, id, reason).await;
        }
        (vhost, conn)
    }

    async fn park(conn: &Connection, id: &str, reason: &str) {
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut headers = FieldTable::default();
        headers.insert(
            DEATH_REASON_HEADER.into(),
            AMQPValue::LongString(reason.into()),
        );
        headers.insert(ERROR_HEADER.into(), AMQPValue::LongString("boom".into()));
        headers.insert(RETRY_COUNT_HEADER.into(), AMQPValue::LongLongInt(3));
        headers.insert("aggregate-id".into(), AMQPValue::LongString("agg".into()));
        let props = BasicProperties::default()
            .with_message_id(id.into())
            .with_type("pay.result.v1".into())
            .with_delivery_mode(2)
            .with_headers(headers);
        let confirm = ch
            .basic_publish(
                "".into(),
                dead_letter_queue_name(QUEUE).as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                format!("{{\"id\":\"{id}\"}}").as_bytes(),
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(confirm, Confirmation::Ack(None));
    }

    async fn drain(conn: &Connection, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
        let ch = conn.create_channel().await.unwrap();
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            out.push(m);
        }
        out
    }

    /// The ids of the messages left in the dead-letter queue (which it empties).
    async fn still_parked(conn: &Connection) -> Vec<String> {
        ids(&drain(conn, &dead_letter_queue_name(QUEUE)).await)
    }

    fn ids(msgs: &[lapin::message::BasicGetMessage]) -> Vec<String> {
        let mut v: Vec<String> = msgs
            .iter()
            .map(|m| {
                parked(&m.delivery.properties)
                    .message_id
                    .unwrap_or_default()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn names_and_urls() {
        assert_eq!(origin_queue("order.pay-result.dlq"), "order.pay-result");
        assert_eq!(origin_queue("order.pay-result"), "order.pay-result");
        assert_eq!(
            url_for_vhost("amqp://guest:guest@127.0.0.1:5672/%2f", "chaos_1"),
            "amqp://guest:guest@127.0.0.1:5672/chaos_1"
        );
        assert_eq!(
            url_for_vhost("amqp://guest:guest@h:5672", "/"),
            "amqp://guest:guest@h:5672/%2f"
        );
        assert_eq!(vhost_of("amqp://guest:guest@h:5672/%2f"), "/");
        assert_eq!(vhost_of("amqp://guest:guest@h:5672"), "/");
        assert_eq!(vhost_of("amqp://guest:guest@h:5672/t_abc"), "t_abc");
    }

    #[test]
    fn rendering_shows_every_field_and_placeholders() {
        let text = render(&[DlqReport {
            queue: "q.dlq".into(),
            count: 1,
            messages: vec![ParkedMessage {
                message_id: Some("42".into()),
                event_type: Some("pay.result.v1".into()),
                death_reason: Some("retries_exhausted".into()),
                error: Some("db down".into()),
                retry_count: None,
            }],
        }]);
        assert_eq!(
            text,
            "q.dlq: 1 message(s)\n  message_id=42 type=pay.result.v1 \
             reason=retries_exhausted retries=- error=db down\n"
        );
        assert_eq!(render(&[]), "no dead-letter queues found\n");
    }

    #[tokio::test]
    async fn list_shows_parked_messages_and_leaves_them_parked() {
        let (vhost, conn) = setup().await;
        park(&conn, "m1", "retries_exhausted").await;
        park(&conn, "m2", "permanent_failure").await;

        let dlqs = discover(&vhost.name);
        assert_eq!(dlqs, vec![dead_letter_queue_name(QUEUE)]);
        let reports = list(&vhost.amqp_url, &dlqs).await.unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].count, 2);
        let m1 = &reports[0].messages[0];
        assert_eq!(m1.message_id.as_deref(), Some("m1"));
        assert_eq!(m1.event_type.as_deref(), Some("pay.result.v1"));
        assert_eq!(m1.death_reason.as_deref(), Some("retries_exhausted"));
        assert_eq!(m1.error.as_deref(), Some("boom"));
        assert_eq!(m1.retry_count.as_deref(), Some("3"));
        assert_eq!(
            reports[0].messages[1].death_reason.as_deref(),
            Some("permanent_failure")
        );

        // Listing twice shows the same: nothing was consumed.
        let again = list(&vhost.amqp_url, &dlqs).await.unwrap();
        assert_eq!(again[0].count, 2);
        let mut seen: Vec<_> = again[0].messages.clone();
        seen.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        assert_eq!(seen, reports[0].messages);
        // Missing queues are skipped rather than failing the listing.
        let none = list(&vhost.amqp_url, &["nope.dlq".to_owned()])
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(still_parked(&conn).await, ["m1", "m2"]);
    }

    #[tokio::test]
    async fn replay_one_moves_only_that_message_with_a_fresh_retry_budget() {
        let (vhost, conn) = setup_parked(&["m1", "m2", "m3"], "retries_exhausted").await;
        let report = replay(&vhost.amqp_url, QUEUE, &Selection::MessageId("m2".into()))
            .await
            .unwrap();
        assert_eq!(
            report,
            ReplayReport {
                replayed: 1,
                kept: 2
            }
        );

        let moved = drain(&conn, QUEUE).await;
        assert_eq!(ids(&moved), ["m2"]);
        let p = &moved[0].delivery.properties;
        let shown = parked(p);
        assert_eq!(shown.retry_count, None);
        assert_eq!(shown.death_reason, None);
        assert_eq!(shown.error, None);
        assert_eq!(shown.event_type.as_deref(), Some("pay.result.v1"));
        assert_eq!(
            header_text(&p.headers().clone().unwrap(), "aggregate-id").as_deref(),
            Some("agg")
        );
        assert_eq!(moved[0].delivery.data, b"{\"id\":\"m2\"}");
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(still_parked(&conn).await, ["m1", "m3"]);
    }

    #[tokio::test]
    async fn replay_all_empties_the_dead_letter_queue_given_either_name() {
        let (vhost, conn) = setup_parked(&["m1", "m2"], "permanent_failure").await;
        let report = replay(
            &vhost.amqp_url,
            &dead_letter_queue_name(QUEUE),
            &Selection::All,
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            ReplayReport {
                replayed: 2,
                kept: 0
            }
        );
        assert_eq!(ids(&drain(&conn, QUEUE).await), ["m1", "m2"]);
        assert!(
            drain(&conn, &dead_letter_queue_name(QUEUE))
                .await
                .is_empty()
        );

        // Nothing parked: nothing to do.
        let empty = replay(&vhost.amqp_url, QUEUE, &Selection::All)
            .await
            .unwrap();
        assert_eq!(empty, ReplayReport::default());
    }

    #[tokio::test]
    async fn replay_to_a_missing_queue_fails_and_keeps_the_messages() {
        let (vhost, conn) = setup_parked(&["m1"], "retries_exhausted").await;
        let err = replay(&vhost.amqp_url, "other.queue", &Selection::All)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let unknown = replay(&vhost.amqp_url, QUEUE, &Selection::MessageId("zzz".into()))
            .await
            .unwrap();
        assert_eq!(
            unknown,
            ReplayReport {
                replayed: 0,
                kept: 1
            }
        );
        assert_eq!(still_parked(&conn).await, ["m1"]);
    }
}
