//! Idempotent consumers: every delivery is handled in one DB transaction that also records
//! `(consumer, message_id)` in `processed_messages`; the broker ack comes only after commit.
//! A crash between commit and ack causes a redelivery, which the inbox turns into a no-op.
//!
//! Failures: a transient handler failure republishes a copy to the queue's next retry
//! queue (delays from [`RetryPolicy`]) and acks the original; once the retries are used up,
//! or for a permanent failure or a message without `message_id`, a copy is parked in the
//! queue's dead-letter queue with the reason in headers. Infrastructure failures (database
//! unavailable, a lost race at commit) requeue the delivery after a pause instead of
//! spending retries. Database errors are judged by `paywire_platform::db::DbFault`, the
//! same classification the HTTP APIs answer by.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use diesel::ExpressionMethods;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Confirmation};
use paywire_platform::db::{DbFault, DbPool, PoolError};

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
}

impl IncomingMessage {
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
    /// May succeed later (a dependency is down, a row is locked): retried with delays.
    Transient(String),
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Permanent(m) => write!(f, "permanent failure: {m}"),
            Self::Transient(m) => write!(f, "transient failure: {m}"),
        }
    }
}

/// Database errors inside a handler, classified once ([`DbFault`]): a lost connection or a
/// lost race is retried; a constraint violation or a missing row is parked at once.
impl From<diesel::result::Error> for HandleError {
    fn from(e: diesel::result::Error) -> Self {
        if DbFault::of_query(&e).is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
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
    /// Pause before requeueing a delivery that failed for infrastructure reasons.
    pub requeue_pause: Duration,
    /// First pause before reconnecting; doubles up to 30 s.
    pub reconnect_backoff: Duration,
}

impl ConsumerConfig {
    pub fn new(queue: impl Into<String>, consumer: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            consumer: consumer.into(),
            prefetch: 20,
            retry: RetryPolicy::default(),
            requeue_pause: Duration::from_secs(1),
            reconnect_backoff: Duration::from_millis(500),
        }
    }
}

const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);

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
    let (_connection, _republisher, publish_channel, _channel, mut deliveries) =
        tokio::time::timeout(topology::CONNECT_TIMEOUT, setup)
            .await
            .map_err(|_| MessagingError::Timeout("setting up the consumer session"))??;
    *connected = true;
    tracing::info!(queue = %config.queue, "consumer connected");
    while let Some(delivery) = deliveries.next().await {
        on_delivery(pool, &publish_channel, config, handler, delivery?).await?;
    }
    Err(MessagingError::ConsumerClosed(config.queue.clone()))
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
    };
    process(pool, publish_channel, config, handler, &delivery, &msg).await
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

#[tracing::instrument(skip_all, fields(
    queue = %config.queue,
    message_id = %msg.message_id,
    event_type = %msg.event_type,
    redelivered = msg.redelivered,
))]
async fn process(
    pool: &DbPool,
    publish_channel: &Channel,
    config: &ConsumerConfig,
    handler: &dyn MessageHandler,
    delivery: &Delivery,
    msg: &IncomingMessage,
) -> Result<(), MessagingError> {
    let applied = match pool.get().await {
        Err(e) => Err(TxError::Pool(e)),
        Ok(mut conn) => {
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
    };
    match applied {
        Ok(Applied::Now) => {
            tracing::debug!("message applied");
            ack(delivery, msg).await
        }
        Ok(Applied::Before) => {
            tracing::info!("duplicate message skipped");
            ack(delivery, msg).await
        }
        Err(TxError::Pool(e)) => {
            tracing::warn!(error = %e, fault = ?DbFault::of_pool(&e), "no database connection, requeueing");
            requeue_after_pause(delivery, config).await
        }
        Err(TxError::Database(e)) if DbFault::of_query(&e).is_transient() => {
            tracing::warn!(error = %e, fault = ?DbFault::of_query(&e), "database failure, requeueing");
            requeue_after_pause(delivery, config).await
        }
        Err(TxError::Database(e)) => {
            // A constraint or data error outside the handler: requeueing would loop forever.
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
        Err(TxError::Handler(HandleError::Transient(reason))) => {
            let done = retry_count(delivery);
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
    let target = retry_queue_name(&config.queue, attempt as usize);
    let headers = vec![
        (
            RETRY_COUNT_HEADER,
            AMQPValue::LongLongInt(i64::from(attempt)),
        ),
        (ERROR_HEADER, AMQPValue::LongString(reason.into())),
    ];
    match republish(publish_channel, delivery, &target, headers).await {
        Ok(()) => {
            delivery.ack(BasicAckOptions::default()).await?;
            Ok(())
        }
        Err(e) => {
            // Without the copy the original must stay in the queue.
            tracing::warn!(error = %e, queue = %target, "retry copy not confirmed, requeueing");
            requeue_after_pause(delivery, config).await?;
            Err(MessagingError::ChannelBroken(e))
        }
    }
}

async fn park(
    publish_channel: &Channel,
    config: &ConsumerConfig,
    delivery: &Delivery,
    reason: &str,
    error: &str,
) -> Result<(), MessagingError> {
    let target = dead_letter_queue_name(&config.queue);
    let headers = vec![
        (DEATH_REASON_HEADER, AMQPValue::LongString(reason.into())),
        (ERROR_HEADER, AMQPValue::LongString(error.into())),
    ];
    match republish(publish_channel, delivery, &target, headers).await {
        Ok(()) => {
            delivery.ack(BasicAckOptions::default()).await?;
            Ok(())
        }
        Err(e) => {
            // The queue's own dead-letter route still parks it, without the reason headers.
            tracing::warn!(error = %e, "parking copy not confirmed, rejecting to the DLX");
            delivery
                .reject(BasicRejectOptions { requeue: false })
                .await?;
            Err(MessagingError::ChannelBroken(e))
        }
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    fn message(body: &str) -> IncomingMessage {
        IncomingMessage {
            message_id: "1".into(),
            event_type: "x.v1".into(),
            body: body.as_bytes().to_vec(),
            redelivered: false,
        }
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
