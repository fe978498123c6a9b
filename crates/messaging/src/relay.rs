//! The outbox relay: publishes committed outbox rows to RabbitMQ and marks them published
//! only after the broker's confirm.
//!
//! Woken by `LISTEN paywire_outbox` (every `enqueue` notifies on commit) with a poll
//! interval as safety net, because notifications sent while the listener reconnects are
//! lost. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so relays on several instances
//! never publish the same row concurrently. A row whose outcome is unknown (confirm lost
//! with the connection) is published again later: consumers deduplicate by `message_id`.
//!
//! Metrics: `paywire_outbox_pending_rows` and `paywire_outbox_oldest_unpublished_age_seconds`
//! (measured after each round), `paywire_outbox_published_total`,
//! `paywire_outbox_republished_total` (published after an earlier attempt failed or its
//! outcome was lost), `paywire_outbox_publish_failures_total{outcome}` (`refused` by the
//! broker, or `unknown`: the confirm was lost), `paywire_outbox_publish_seconds` (a batch's
//! first publish to its last confirm).
//!
//! Traces: each row is published in an `outbox_publish` span continuing the trace context
//! stored with the row, and the message carries that span's context as its `traceparent`
//! header.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures::{FutureExt, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use paywire_platform::db::{DbPool, establish_patiently};
use paywire_platform::health::{Component, Readiness};
use paywire_platform::telemetry;
use tracing::Instrument;

use crate::schema::outbox;
use crate::{MessagingError, NOTIFY_CHANNEL, topology};

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed per round (and per DB transaction).
    pub batch_size: i64,
    /// Safety-net poll when no notification arrives.
    pub poll_interval: Duration,
    /// Upper bound on waiting for the confirms of one batch; the batch's DB transaction
    /// stays open meanwhile.
    pub confirm_timeout: Duration,
    /// A failed row becomes due again after `retry_backoff × attempts` (attempts capped at 10).
    pub retry_backoff: Duration,
    /// First pause before reconnecting after a broker or DB failure; doubles up to 30 s.
    pub reconnect_backoff: Duration,
    /// Up while a session is connected; what the service's `/health/ready` watches.
    pub ready: Component,
}

impl RelayConfig {
    /// Reports the relay's sessions to `readiness` as `outbox-relay`.
    pub fn reporting_to(mut self, readiness: &Readiness) -> Self {
        self.ready = readiness.component("outbox-relay");
        self
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            confirm_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_secs(5),
            reconnect_backoff: Duration::from_millis(500),
            ready: Component::default(),
        }
    }
}

const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);
/// How long a new LISTEN connection waits for a server that refuses (restarting).
const LISTENER_PATIENCE: Duration = Duration::from_secs(30);

/// Runs the relay forever: connection failures (broker or database) are logged and the
/// connections rebuilt with backoff. Spawn it as a task; it returns only if cancelled.
pub async fn run_relay(
    pool: DbPool,
    database_url: String,
    amqp_url: String,
    config: RelayConfig,
) -> Result<(), MessagingError> {
    let mut backoff = config.reconnect_backoff;
    loop {
        let mut connected = false;
        let err = session(&pool, &database_url, &amqp_url, &config, &mut connected).await;
        config.ready.down();
        if connected {
            backoff = config.reconnect_backoff;
        }
        tracing::warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "outbox relay reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
    }
}

/// One connected lifetime of the relay; returns the error that ended it.
async fn session(
    pool: &DbPool,
    database_url: &str,
    amqp_url: &str,
    config: &RelayConfig,
    connected: &mut bool,
) -> MessagingError {
    match session_inner(pool, database_url, amqp_url, config, connected).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session_inner(
    pool: &DbPool,
    database_url: &str,
    amqp_url: &str,
    config: &RelayConfig,
    connected: &mut bool,
) -> Result<std::convert::Infallible, MessagingError> {
    // LISTEN before the first round: a commit after it is either seen by the round or
    // wakes the next one.
    // During a database restart, wait for the server here (a pause of at most 500 ms)
    // rather than in the session's backoff, which grows to 30 s.
    let mut listener = establish_patiently(database_url, LISTENER_PATIENCE).await?;
    diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
        .execute(&mut listener)
        .await?;
    let connection = topology::connect(amqp_url, "paywire-outbox-relay").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut publisher = Publisher {
        connection,
        channel,
        known_exchanges: HashSet::new(),
    };
    *connected = true;
    config.ready.up();
    tracing::info!("outbox relay connected");

    let mut notifications = std::pin::pin!(listener.notifications_stream());
    loop {
        let report = publish_batch(pool, &mut publisher, config).await?;
        measure_backlog(pool).await?;
        if let Some(reason) = report.channel_broken {
            return Err(MessagingError::ChannelBroken(reason));
        }
        if report.fetched >= config.batch_size {
            continue;
        }
        tokio::select! {
            n = notifications.next() => check_notification(n)?,
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
        // Notifications already queued belong to commits the next round will see anyway;
        // draining them avoids one empty round per commit under load.
        while let Some(n) = notifications.next().now_or_never() {
            check_notification(n)?;
        }
    }
}

fn check_notification(
    n: Option<QueryResult<diesel::pg::PgNotification>>,
) -> Result<(), MessagingError> {
    match n {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e.into()),
        None => Err(MessagingError::ListenerClosed),
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = outbox)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct OutboxRow {
    id: i64,
    exchange: String,
    routing_key: String,
    event_type: String,
    aggregate_id: String,
    payload: serde_json::Value,
    created_at: DateTime<Utc>,
    attempts: i32,
    traceparent: Option<String>,
}

/// Rows not yet published and the age of the oldest, for the backlog gauges (the alert on
/// a stuck outbox watches the age).
async fn measure_backlog(pool: &DbPool) -> Result<(), MessagingError> {
    #[derive(QueryableByName)]
    struct Backlog {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pending: i64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        oldest_age_seconds: f64,
    }
    let mut conn = pool.get().await?;
    let backlog: Backlog = diesel::sql_query(
        "SELECT count(*) AS pending, \
         COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) AS oldest_age_seconds \
         FROM outbox WHERE published_at IS NULL",
    )
    .get_result(&mut conn)
    .await?;
    metrics::gauge!("paywire_outbox_pending_rows").set(backlog.pending as f64);
    metrics::gauge!("paywire_outbox_oldest_unpublished_age_seconds")
        .set(backlog.oldest_age_seconds.max(0.0));
    Ok(())
}

#[derive(Debug, Default)]
struct BatchReport {
    fetched: i64,
    /// Set when a publish or confirm failed in a way that leaves the channel unusable.
    channel_broken: Option<String>,
    published: u64,
    /// Published rows that had failed (or whose outcome was lost) before.
    republished: u64,
}

enum Outcome {
    Published,
    Failed {
        reason: String,
        channel_broken: bool,
    },
}

fn failed(reason: impl Into<String>, channel_broken: bool) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
        channel_broken,
    }
}

/// The relay's broker side for one connected lifetime.
struct Publisher {
    connection: Connection,
    channel: Channel,
    /// Exchanges verified to exist on this connection.
    known_exchanges: HashSet<String>,
}

impl Publisher {
    /// Whether `exchange` exists. Publishing to a missing exchange makes the broker close
    /// the channel, failing every other publish in flight; checking first (passively, on a
    /// throwaway channel) keeps one misaddressed row from blocking the whole outbox.
    async fn exchange_exists(&mut self, exchange: &str) -> Result<bool, MessagingError> {
        if exchange.is_empty() || self.known_exchanges.contains(exchange) {
            return Ok(true);
        }
        let exists =
            topology::exists(&self.connection, topology::Declared::Exchange, exchange).await?;
        if exists {
            self.known_exchanges.insert(exchange.to_owned());
        }
        Ok(exists)
    }
}

async fn publish_batch(
    pool: &DbPool,
    publisher: &mut Publisher,
    config: &RelayConfig,
) -> Result<BatchReport, MessagingError> {
    let span = tracing::info_span!(
        "outbox_batch",
        fetched = tracing::field::Empty,
        published = tracing::field::Empty,
        failed = tracing::field::Empty,
    );
    let mut conn = pool.get().await?;
    let report = conn.transaction::<_, MessagingError, _>(async |conn| {
        let rows: Vec<OutboxRow> = outbox::table
            .filter(outbox::published_at.is_null())
            .filter(outbox::available_at.le(diesel::dsl::now))
            .order((outbox::available_at.asc(), outbox::id.asc()))
            .limit(config.batch_size)
            .for_update()
            .skip_locked()
            .select(OutboxRow::as_select())
            .load(conn)
            .await?;
        let mut report = BatchReport {
            fetched: rows.len() as i64,
            ..BatchReport::default()
        };
        if rows.is_empty() {
            return Ok(report);
        }
        tracing::Span::current().record("fetched", rows.len());

        // Pipeline the whole batch, then wait for all confirms at once.
        let started = Instant::now();
        let mut pending = Vec::with_capacity(rows.len());
        for row in &rows {
            if !publisher.exchange_exists(&row.exchange).await? {
                pending.push(Err((format!("exchange {} NOT_FOUND", row.exchange), false)));
                continue;
            }
            let span = tracing::info_span!(
                "outbox_publish",
                message_id = row.id,
                event_type = %row.event_type,
                otel.kind = "producer",
            );
            // The transaction that wrote the row is the span's parent; the broker's
            // consumers continue from this span (the message's `traceparent`).
            telemetry::continue_trace(&span, row.traceparent.as_deref());
            let published = publish_row(&publisher.channel, row)
                .instrument(span)
                .await
                .map_err(|e| (format!("publish: {e}"), true));
            let channel_dead = published.is_err();
            pending.push(published);
            if channel_dead {
                // The rest of the batch would fail the same way; leave those rows untouched
                // (no attempt counted) for the next connection.
                break;
            }
        }
        let deadline = tokio::time::Instant::now() + config.confirm_timeout;
        let outcomes =
            futures::future::join_all(pending.into_iter().map(|p| await_confirm(p, deadline)))
                .await;
        let confirmed_after = started.elapsed().as_secs_f64();

        let mut published_ids = Vec::new();
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                Outcome::Published => {
                    published_ids.push(row.id);
                    if row.attempts > 0 {
                        report.republished += 1;
                    }
                }
                Outcome::Failed {
                    reason,
                    channel_broken,
                } => {
                    tracing::warn!(message_id = row.id, error = %reason, "outbox publish failed");
                    // A broken channel or lost confirm leaves the outcome unknown: the
                    // row is published again and consumers deduplicate.
                    let outcome = if channel_broken { "unknown" } else { "refused" };
                    metrics::counter!("paywire_outbox_publish_failures_total", "outcome" => outcome)
                        .increment(1);
                    if channel_broken && report.channel_broken.is_none() {
                        report.channel_broken = Some(reason.clone());
                    }
                    diesel::sql_query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                         available_at = now() + ($3 * LEAST(attempts + 1, 10)) * interval '1 second' \
                         WHERE id = $1",
                    )
                    .bind::<diesel::sql_types::BigInt, _>(row.id)
                    .bind::<diesel::sql_types::Text, _>(&reason)
                    .bind::<diesel::sql_types::Double, _>(config.retry_backoff.as_secs_f64())
                    .execute(conn)
                    .await?;
                }
            }
        }
        if !published_ids.is_empty() {
            diesel::update(outbox::table.filter(outbox::id.eq_any(&published_ids)))
                .set(outbox::published_at.eq(diesel::dsl::now))
                .execute(conn)
                .await?;
        }
        let span = tracing::Span::current();
        span.record("published", published_ids.len());
        span.record("failed", rows.len() - published_ids.len());
        report.published = published_ids.len() as u64;
        if report.published > 0 {
            metrics::histogram!("paywire_outbox_publish_seconds").record(confirmed_after);
        }
        Ok(report)
    })
    .instrument(span)
    .await?;
    // Counted once the rows are marked published (committed), not at the confirm.
    metrics::counter!("paywire_outbox_published_total").increment(report.published);
    metrics::counter!("paywire_outbox_republished_total").increment(report.republished);
    Ok(report)
}

async fn publish_row(channel: &Channel, row: &OutboxRow) -> Result<PublisherConfirm, String> {
    let body = serde_json::to_vec(&row.payload).map_err(|e| e.to_string())?;
    let mut headers = FieldTable::default();
    headers.insert(
        "aggregate-id".into(),
        AMQPValue::LongString(row.aggregate_id.as_str().into()),
    );
    if let Some(traceparent) = telemetry::current_traceparent() {
        headers.insert(
            telemetry::TRACEPARENT.into(),
            AMQPValue::LongString(traceparent.as_str().into()),
        );
    }
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(row.id.to_string().into())
        .with_type(row.event_type.as_str().into())
        .with_content_type("application/json".into())
        .with_timestamp(u64::try_from(row.created_at.timestamp()).unwrap_or(0))
        .with_headers(headers);
    channel
        .basic_publish(
            row.exchange.as_str().into(),
            row.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            properties,
        )
        .await
        .map_err(|e| e.to_string())
}

/// A sent publish, or why it was not sent and whether the channel is unusable.
type Sent = Result<PublisherConfirm, (String, bool)>;

async fn await_confirm(published: Sent, deadline: tokio::time::Instant) -> Outcome {
    let confirm = match published {
        Ok(c) => c,
        Err((reason, channel_broken)) => return failed(reason, channel_broken),
    };
    match tokio::time::timeout_at(deadline, confirm).await {
        Ok(Ok(Confirmation::Ack(None))) => Outcome::Published,
        Ok(Ok(Confirmation::Ack(Some(returned)))) => failed(
            format!(
                "returned by broker: {} {}",
                returned.reply_code, returned.reply_text
            ),
            false,
        ),
        Ok(Ok(Confirmation::Nack(_))) => failed("nacked by broker", false),
        Ok(Ok(Confirmation::NotRequested)) => failed("publisher confirms not enabled", true),
        Ok(Err(e)) => failed(format!("confirm: {e}"), true),
        Err(_) => failed("confirm timed out", true),
    }
}
