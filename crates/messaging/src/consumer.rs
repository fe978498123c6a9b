//! Idempotent consumers: every delivery is handled in one DB transaction that also records
//! `(consumer, message_id)` in `processed_messages`; the broker ack comes only after commit.
//! A crash between commit and ack causes a redelivery, which the inbox turns into a no-op.
//!
//! Failures: a transient handler failure republishes a copy to the queue's next retry
//! queue (delays from [`RetryPolicy`]) and acks the original; once the retries are used up,
//! or for a permanent failure or a message without `message_id`, a copy is parked in the
//! queue's dead-letter queue with the reason in headers. Database faults that pass (the
//! server restarting, no connection from the pool, a lost race), whether in the handler,
//! the inbox insert or the commit, spend nothing: the consumer waits for the database with
//! backoff and processes the same delivery again, without a nack (a quorum queue counts
//! every requeue towards `x-delivery-limit`) and without a retry. Database errors are
//! judged by `paywire_platform::db::DbFault`, the same classification the HTTP APIs answer
//! by; handlers turn their own errors into [`HandleError`]s with [`HandleError::of`].
//!
//! Metrics: `paywire_consumer_messages_total{queue,outcome}` (`applied`, `duplicate`,
//! `retried`, `parked`, `requeued`), `paywire_consumer_handling_seconds{queue}`, and
//! `paywire_queue_messages{queue}`: the depth of the queue, its retry queues and its
//! dead-letter queue, read from the broker every [`DEPTH_INTERVAL`].
//!
//! Traces: each delivery is handled in a `consume` span that continues the message's
//! `traceparent` header (the relay's publish span).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel::ExpressionMethods;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Confirmation};
use paywire_platform::db::{DbFault, DbPool, PoolError, Transience};
use paywire_platform::health::{Component, Readiness};
use paywire_platform::telemetry;
use tracing::Instrument;

use crate::schema::processed_messages;
use crate::topology::{RetryPolicy, dead_letter_queue_name, retry_queue_name};
use crate::{MessagingError, topology};

/// Header carrying how many times a message has been sent through the retry queues.
pub const RETRY_COUNT_HEADER: &str = "x-retry-count";
/// Header on parked messages: why it was parked (`permanent_failure`, `retries_exhausted`,
/// `missing_message_id`).
pub const DEATH_REASON_HEADER: &str = "x-death-reason";
/// Header on parked and retried messages: the last handler error.
pub const ERROR_HEADER: &str = "x-error";

/// A delivery as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    pub message_id: String,
    /// The AMQP `type` property (`""` when absent; handlers reject types they do not know).
    pub event_type: String,
    pub body: Vec<u8>,
    pub redelivered: bool,
    /// Retries this message has already taken through the retry queues (0 at first).
    pub retries: u32,
}

impl IncomingMessage {
    /// A first delivery (not redelivered, no retries yet) of `body` with the AMQP `type`
    /// `event_type`: a message as a handler's tests hand it over.
    pub fn first(message_id: &str, event_type: &str, body: Vec<u8>) -> Self {
        Self {
            message_id: message_id.to_owned(),
            event_type: event_type.to_owned(),
            body,
            redelivered: false,
            retries: 0,
        }
    }

    /// Decodes the body as an `EventEnvelope<T>` whose `event_type` must be `event_type`.
    /// Anything else can never succeed, so it is a [`HandleError::Permanent`] (parked).
    pub fn decode_envelope<T: serde::de::DeserializeOwned>(
        &self,
        event_type: &str,
    ) -> Result<paywire_contracts::EventEnvelope<T>, HandleError> {
        let envelope: paywire_contracts::EventEnvelope<T> = serde_json::from_slice(&self.body)
            .map_err(|e| HandleError::Permanent(format!("malformed {event_type}: {e}")))?;
        if envelope.event_type != event_type {
            return Err(HandleError::Permanent(format!(
                "unknown event type {:?}",
                envelope.event_type
            )));
        }
        Ok(envelope)
    }
}

/// Why a handler did not apply a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// Malformed or otherwise never going to succeed: parked at once.
    Permanent(String),
    /// May succeed later for a reason outside the database (an upstream service is down):
    /// retried with delays, spending one of the message's retries.
    Transient(String),
    /// The database failed in a way that passes ([`DbFault::Unavailable`] or
    /// [`DbFault::Conflict`]): the same delivery is processed again once the database
    /// answers, spending no retry.
    Database(DbFault, String),
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Permanent(m) => write!(f, "permanent failure: {m}"),
            Self::Transient(m) => write!(f, "transient failure: {m}"),
            Self::Database(fault, m) => write!(f, "database {fault:?}: {m}"),
        }
    }
}

impl HandleError {
    /// What went wrong, without the classification.
    pub fn message(&self) -> &str {
        match self {
            Self::Permanent(m) | Self::Transient(m) | Self::Database(_, m) => m,
        }
    }

    /// The one decision for a handler's own error: a passing database fault waits for the
    /// database ([`HandleError::Database`]), another transient failure is retried later,
    /// anything else is parked (and logged as an error: it needs a person).
    pub fn of<E: Transience>(e: E) -> Self {
        match e.db_fault() {
            Some(fault) if fault.is_transient() => {
                tracing::warn!(error = %e, ?fault, "database fault; the message waits for the database");
                Self::Database(fault, e.to_string())
            }
            _ if e.is_transient() => {
                tracing::warn!(error = %e, "transient failure; retrying later");
                Self::Transient(e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "message cannot be applied");
                Self::Permanent(e.to_string())
            }
        }
    }
}

/// Database errors inside a handler, classified once ([`DbFault`]): a lost connection or a
/// lost race waits for the database; a constraint violation or a missing row is parked.
impl From<diesel::result::Error> for HandleError {
    fn from(e: diesel::result::Error) -> Self {
        Self::of(e)
    }
}

#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Runs inside the transaction that also records the message as processed.
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError>;
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue: String,
    /// Inbox key, e.g. `"order"`; two consumers with different keys each apply a message.
    pub consumer: String,
    pub prefetch: u16,
    /// Must match the policy the queue was declared with.
    pub retry: RetryPolicy,
    /// Pause before requeueing a delivery whose retry copy the broker did not confirm.
    pub requeue_pause: Duration,
    /// First pause before processing a delivery again after a passing database fault;
    /// doubles up to [`MAX_DATABASE_PAUSE`].
    pub database_pause: Duration,
    /// Tries of one delivery that got a connection and still met a passing database fault,
    /// before it is treated as an ordinary transient failure (one retry spent). A restart
    /// costs one or two such tries; a fault that keeps coming back while the pool works is
    /// not a restart and must not hold the queue forever. Tries that found no connection
    /// at all are not counted: the database is away, and no other message could be
    /// applied either.
    pub database_tries: u32,
    /// First pause before reconnecting; doubles up to 30 s.
    pub reconnect_backoff: Duration,
    /// Up while subscribed; what the service's `/health/ready` watches.
    pub ready: Component,
}

impl ConsumerConfig {
    pub fn new(queue: impl Into<String>, consumer: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            consumer: consumer.into(),
            prefetch: 20,
            retry: RetryPolicy::default(),
            requeue_pause: Duration::from_secs(1),
            database_pause: Duration::from_millis(100),
            database_tries: 10,
            reconnect_backoff: Duration::from_millis(500),
            ready: Component::default(),
        }
    }

    /// Reports the consumer's sessions to `readiness` as `consumer:<queue>`.
    pub fn reporting_to(mut self, readiness: &Readiness) -> Self {
        self.ready = readiness.component(format!("consumer:{}", self.queue));
        self
    }
}

const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);
/// The longest pause between two tries of a delivery that met a database fault.
pub const MAX_DATABASE_PAUSE: Duration = Duration::from_secs(2);

/// How often a consumer reads its queues' depths from the broker.
pub const DEPTH_INTERVAL: Duration = Duration::from_secs(5);

fn count(queue: &str, outcome: &'static str) {
    metrics::counter!("paywire_consumer_messages_total", "queue" => queue.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// Publishes `paywire_queue_messages` for the queue, its retry queues and its DLQ until the
/// session ends. A probe that fails (a queue this deployment did not declare) ends the
/// watching, never the consuming.
async fn watch_depths(
    connection: &lapin::Connection,
    config: &ConsumerConfig,
) -> std::convert::Infallible {
    let queues: Vec<String> = [config.queue.clone(), dead_letter_queue_name(&config.queue)]
        .into_iter()
        .chain((1..=config.retry.delays.len()).map(|n| retry_queue_name(&config.queue, n)))
        .collect();
    let probe = async {
        let channel = connection.create_channel().await?;
        loop {
            for queue in &queues {
                let declared = channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                metrics::gauge!("paywire_queue_messages", "queue" => queue.clone())
                    .set(f64::from(declared.message_count()));
            }
            tokio::time::sleep(DEPTH_INTERVAL).await;
        }
    };
    let result: Result<std::convert::Infallible, lapin::Error> = probe.await;
    let Err(e) = result;
    tracing::warn!(queue = %config.queue, error = %e, "queue depths not watched");
    std::future::pending().await
}

/// Consumes `config.queue` forever, reconnecting with backoff after broker failures.
/// Spawn it as a task; it returns only if cancelled.
pub async fn run_consumer(
    pool: DbPool,
    amqp_url: String,
    config: ConsumerConfig,
    handler: Arc<dyn MessageHandler>,
) -> Result<(), MessagingError> {
    let mut backoff = config.reconnect_backoff;
    loop {
        let mut connected = false;
        let err = match session(&pool, &amqp_url, &config, handler.as_ref(), &mut connected).await {
            Ok(never) => match never {},
            Err(e) => e,
        };
        config.ready.down();
        if connected {
            backoff = config.reconnect_backoff;
        }
        tracing::warn!(queue = %config.queue, error = %err, backoff_ms = backoff.as_millis() as u64, "consumer reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
    }
}

fn consumer_tag(consumer: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{consumer}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn session(
    pool: &DbPool,
    amqp_url: &str,
    config: &ConsumerConfig,
    handler: &dyn MessageHandler,
    connected: &mut bool,
) -> Result<std::convert::Infallible, MessagingError> {
    let setup = async {
        let connection =
            topology::connect(amqp_url, &format!("paywire-consumer-{}", config.consumer)).await?;
        // Retry and parking copies go out on their own connection: if the broker blocks a
        // publishing connection, acks on the consuming one must still flow.
        let republisher = topology::connect(
            amqp_url,
            &format!("paywire-consumer-{}-republish", config.consumer),
        )
        .await?;
        let publish_channel = republisher.create_channel().await?;
        publish_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        let deliveries = channel
            .basic_consume(
                config.queue.as_str().into(),
                consumer_tag(&config.consumer).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, MessagingError>((
            connection,
            republisher,
            publish_channel,
            channel,
            deliveries,
        ))
    };
    // Set-up on a connection the broker is tearing down can stall; bound it so the
    // reconnect loop always gets control back.
    let (connection, _republisher, publish_channel, _channel, mut deliveries) =
        tokio::time::timeout(topology::CONNECT_TIMEOUT, setup)
            .await
            .map_err(|_| MessagingError::Timeout("setting up the consumer session"))??;
    *connected = true;
    config.ready.up();
    tracing::info!(queue = %config.queue, "consumer connected");
    let consume = async {
        while let Some(delivery) = deliveries.next().await {
            let started = Instant::now();
            on_delivery(pool, &publish_channel, config, handler, delivery?).await?;
            metrics::histogram!("paywire_consumer_handling_seconds", "queue" => config.queue.clone())
                .record(started.elapsed().as_secs_f64());
        }
        Err(MessagingError::ConsumerClosed(config.queue.clone()))
    };
    tokio::select! {
        ended = consume => ended,
        never = watch_depths(&connection, config) => match never {},
    }
}

async fn on_delivery(
    pool: &DbPool,
    publish_channel: &Channel,
    config: &ConsumerConfig,
    handler: &dyn MessageHandler,
    delivery: Delivery,
) -> Result<(), MessagingError> {
    let props = &delivery.properties;
    let Some(message_id) = props.message_id().as_ref().map(|s| s.as_str().to_owned()) else {
        tracing::warn!(queue = %config.queue, "message without message_id parked");
        return park(
            publish_channel,
            config,
            &delivery,
            "missing_message_id",
            "no message_id property",
        )
        .await;
    };
    let msg = IncomingMessage {
        message_id,
        event_type: props
            .kind()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        body: delivery.data.clone(),
        redelivered: delivery.redelivered,
        retries: retry_count(&delivery),
    };
    let span = tracing::info_span!(
        "consume",
        queue = %config.queue,
        consumer = %config.consumer,
        message_id = %msg.message_id,
        event_type = %msg.event_type,
        redelivered = msg.redelivered,
        retries = msg.retries,
        otel.kind = "consumer",
    );
    // The relay's publish span is the parent (the `traceparent` header, kept on retry
    // copies); a message without one, or with a malformed one, starts a trace of its own.
    telemetry::continue_trace(&span, traceparent(&delivery).as_deref());
    process(pool, publish_channel, config, handler, &delivery, &msg)
        .instrument(span)
        .await
}

/// The message's `traceparent` header, as the relay sets it.
fn traceparent(delivery: &Delivery) -> Option<String> {
    match delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(telemetry::TRACEPARENT)?
    {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

enum Applied {
    Now,
    Before,
}

enum TxError {
    /// The inbox insert, the commit, or the pool failed (not the handler).
    Database(diesel::result::Error),
    Pool(PoolError),
    Handler(HandleError),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Database(e)
    }
}

/// One try of a delivery: the inbox insert, the handler and the commit.
async fn apply(
    pool: &DbPool,
    config: &ConsumerConfig,
    handler: &dyn MessageHandler,
    msg: &IncomingMessage,
) -> Result<Applied, TxError> {
    let mut conn = pool.get().await.map_err(TxError::Pool)?;
    conn.transaction::<_, TxError, _>(async |conn| {
        let inserted = diesel::insert_into(processed_messages::table)
            .values((
                processed_messages::consumer.eq(&config.consumer),
                processed_messages::message_id.eq(&msg.message_id),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 0 {
            return Ok(Applied::Before);
        }
        handler.handle(conn, msg).await.map_err(TxError::Handler)?;
        Ok(Applied::Now)
    })
    .await
}

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxError::Pool(e) => write!(f, "database pool: {e}"),
            TxError::Database(e) => write!(f, "database: {e}"),
            TxError::Handler(e) => f.write_str(e.message()),
        }
    }
}

impl TxError {
    /// The passing database fault behind this failure, and whether a connection was had.
    fn passing_fault(&self) -> Option<(DbFault, bool)> {
        let (fault, connected) = match self {
            TxError::Pool(e) => (DbFault::of_pool(e), false),
            TxError::Database(e) => (DbFault::of_query(e), true),
            TxError::Handler(HandleError::Database(fault, _)) => (*fault, true),
            TxError::Handler(_) => return None,
        };
        fault.is_transient().then_some((fault, connected))
    }
}

/// One delivery, in its `consume` span (see [`on_delivery`]).
async fn process(
    pool: &DbPool,
    publish_channel: &Channel,
    config: &ConsumerConfig,
    handler: &dyn MessageHandler,
    delivery: &Delivery,
    msg: &IncomingMessage,
) -> Result<(), MessagingError> {
    // A passing database fault holds this delivery (unacknowledged, so a crash still
    // returns it to the queue) and tries it again: no nack, no retry spent.
    let mut pause = config.database_pause;
    let mut connected_tries = 0;
    let applied = loop {
        let result = apply(pool, config, handler, msg).await;
        let Err(e) = &result else { break result };
        let Some((fault, connected)) = e.passing_fault() else {
            break result;
        };
        if connected {
            connected_tries += 1;
            if connected_tries >= config.database_tries {
                break result;
            }
        }
        tracing::warn!(error = %e, ?fault, pause_ms = pause.as_millis() as u64, "database fault; trying the same delivery again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_DATABASE_PAUSE);
    };
    match applied {
        Ok(Applied::Now) => {
            tracing::debug!("message applied");
            count(&config.queue, "applied");
            ack(delivery, msg).await
        }
        Ok(Applied::Before) => {
            tracing::info!("duplicate message skipped");
            count(&config.queue, "duplicate");
            ack(delivery, msg).await
        }
        Err(TxError::Database(e)) if !DbFault::of_query(&e).is_transient() => {
            // A constraint or data error outside the handler: trying again would loop.
            tracing::error!(error = %e, "permanent database failure, parking message");
            park(
                publish_channel,
                config,
                delivery,
                "permanent_failure",
                &e.to_string(),
            )
            .await
        }
        Err(TxError::Pool(e)) => {
            // Only a pool that can never work gets here (a misconfiguration): the message
            // is not at fault, so it goes back to the queue rather than to the DLQ.
            tracing::error!(error = %e, "database pool unusable, requeueing");
            requeue_after_pause(delivery, config).await
        }
        Err(TxError::Handler(HandleError::Permanent(reason))) => {
            tracing::warn!(error = %reason, "permanent failure, parking message");
            park(
                publish_channel,
                config,
                delivery,
                "permanent_failure",
                &reason,
            )
            .await
        }
        // Transient failures, and database faults that kept coming back with a working
        // pool: retried through the retry queues, spending one retry.
        Err(e) => {
            let reason = e.to_string();
            let done = msg.retries;
            let delays = &config.retry.delays;
            if (done as usize) < delays.len() {
                tracing::warn!(error = %reason, retry = done + 1, "transient failure, retrying later");
                retry(publish_channel, config, delivery, done + 1, &reason).await
            } else {
                tracing::warn!(error = %reason, retries = done, "retries exhausted, parking message");
                park(
                    publish_channel,
                    config,
                    delivery,
                    "retries_exhausted",
                    &reason,
                )
                .await
            }
        }
    }
}

async fn ack(delivery: &Delivery, msg: &IncomingMessage) -> Result<(), MessagingError> {
    match delivery.ack(BasicAckOptions::default()).await {
        Ok(true) => Ok(()),
        // The channel is gone: the broker redelivers, and the inbox absorbs the duplicate.
        Ok(false) | Err(_) => Err(MessagingError::AckLost(msg.message_id.clone())),
    }
}

async fn requeue_after_pause(
    delivery: &Delivery,
    config: &ConsumerConfig,
) -> Result<(), MessagingError> {
    tokio::time::sleep(config.requeue_pause).await;
    delivery
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await?;
    count(&config.queue, "requeued");
    Ok(())
}

fn header_u32(value: &AMQPValue) -> Option<u32> {
    match value {
        AMQPValue::ShortShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::ShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::LongUInt(v) => Some(*v),
        AMQPValue::ShortShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongLongInt(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

/// Retries already taken by this message (0 on first delivery).
fn retry_count(delivery: &Delivery) -> u32 {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(RETRY_COUNT_HEADER))
        .and_then(header_u32)
        .unwrap_or(0)
}

/// Publishes a copy (same properties, extra headers) to a queue through the default
/// exchange and waits for the broker's confirm.
async fn republish(
    publish_channel: &Channel,
    delivery: &Delivery,
    queue: &str,
    extra_headers: Vec<(&str, AMQPValue)>,
) -> Result<(), String> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    for (k, v) in extra_headers {
        headers.insert(k.into(), v);
    }
    let properties = delivery
        .properties
        .clone()
        .with_delivery_mode(2)
        .with_headers(headers);
    let confirm = publish_channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &delivery.data,
            properties,
        )
        .await
        .map_err(|e| e.to_string())?;
    match confirm.await {
        Ok(Confirmation::Ack(None)) => Ok(()),
        Ok(Confirmation::Ack(Some(r))) => {
            Err(format!("returned: {} {}", r.reply_code, r.reply_text))
        }
        Ok(Confirmation::Nack(_)) => Err("nacked".into()),
        Ok(Confirmation::NotRequested) => Err("confirms not enabled".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn retry(
    publish_channel: &Channel,
    config: &ConsumerConfig,
    delivery: &Delivery,
    attempt: u32,
    reason: &str,
) -> Result<(), MessagingError> {
    let copy = Destination {
        queue: retry_queue_name(&config.queue, attempt as usize),
        headers: vec![
            (
                RETRY_COUNT_HEADER,
                AMQPValue::LongLongInt(i64::from(attempt)),
            ),
            (ERROR_HEADER, AMQPValue::LongString(reason.into())),
        ],
        outcome: "retried",
        // Without the copy the original must stay in the queue.
        unconfirmed: Unconfirmed::Requeue,
    };
    move_to(publish_channel, config, delivery, copy).await
}

async fn park(
    publish_channel: &Channel,
    config: &ConsumerConfig,
    delivery: &Delivery,
    reason: &str,
    error: &str,
) -> Result<(), MessagingError> {
    let copy = Destination {
        queue: dead_letter_queue_name(&config.queue),
        headers: vec![
            (DEATH_REASON_HEADER, AMQPValue::LongString(reason.into())),
            (ERROR_HEADER, AMQPValue::LongString(error.into())),
        ],
        outcome: "parked",
        // The queue's own dead-letter route still parks it, without the reason headers.
        unconfirmed: Unconfirmed::RejectToDeadLetters,
    };
    move_to(publish_channel, config, delivery, copy).await
}

/// Where a delivery is moved (a retry queue, the dead-letter queue) and what becomes of
/// the original when the broker does not confirm the copy.
struct Destination {
    queue: String,
    headers: Vec<(&'static str, AMQPValue)>,
    /// Counted once the copy is confirmed and the original acked.
    outcome: &'static str,
    unconfirmed: Unconfirmed,
}

enum Unconfirmed {
    /// Back into its queue after a pause.
    Requeue,
    /// Rejected without requeue: the queue's dead-letter exchange takes it.
    RejectToDeadLetters,
}

/// Moves `delivery`: a copy to `copy.queue` ([`republish`]); once the broker confirmed it,
/// the original is acked and counted. An unconfirmed copy leaves the original to
/// `copy.unconfirmed` and is an error (the channel is broken).
async fn move_to(
    publish_channel: &Channel,
    config: &ConsumerConfig,
    delivery: &Delivery,
    copy: Destination,
) -> Result<(), MessagingError> {
    let Err(e) = republish(publish_channel, delivery, &copy.queue, copy.headers).await else {
        delivery.ack(BasicAckOptions::default()).await?;
        count(&config.queue, copy.outcome);
        return Ok(());
    };
    match copy.unconfirmed {
        Unconfirmed::Requeue => {
            tracing::warn!(error = %e, queue = %copy.queue, "retry copy not confirmed, requeueing");
            requeue_after_pause(delivery, config).await?;
        }
        Unconfirmed::RejectToDeadLetters => {
            tracing::warn!(error = %e, "parking copy not confirmed, rejecting to the DLX");
            delivery
                .reject(BasicRejectOptions { requeue: false })
                .await?;
        }
    }
    Err(MessagingError::ChannelBroken(e))
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    fn message(body: &str) -> IncomingMessage {
        IncomingMessage::first("1", "x.v1", body.as_bytes().to_vec())
    }

    #[test]
    fn envelopes_of_the_expected_type_decode_and_others_are_permanent() {
        let ok =
            r#"{"event_id":"1","event_type":"x.v1","occurred_at":"2026-11-22T10:00:00Z","data":5}"#;
        assert_eq!(message(ok).decode_envelope::<u32>("x.v1").unwrap().data, 5);
        assert!(matches!(
            message(ok).decode_envelope::<u32>("y.v1"),
            Err(HandleError::Permanent(_))
        ));
        assert!(matches!(
            message("{").decode_envelope::<u32>("x.v1"),
            Err(HandleError::Permanent(_))
        ));
    }
}
