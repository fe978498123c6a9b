//! Broker topology: the pay-result fanout exchange and, per subscribing service, its own
//! queue plus retry and dead-letter queues. All declarations are idempotent, so every
//! service (and the relay's owner) declares them at start.
//!
//! Per subscriber queue `Q`:
//! * `Q`: quorum, bound to the fanout exchange; dead-letters to `Q.dlq` (through the default
//!   exchange) when rejected or when `x-delivery-limit` is exceeded (crash-loop guard).
//! * `Q.retry.<n>` (n = 1..): quorum, no consumers, `x-message-ttl` = the n-th delay;
//!   expired messages dead-letter back to `Q` only, never through the fanout exchange
//!   (which would deliver them to every service again).
//! * `Q.dlq`: quorum parking lot for inspection and replay.
//!
//! Queue arguments are immutable: changing a `RetryPolicy` for an existing queue makes the
//! declaration fail with `PRECONDITION_FAILED`; delete the queues (or rename) to change it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use paywire_domain::topology::PAY_RESULT_EXCHANGE;

use crate::MessagingError;

/// How a consumer retries transiently failing messages, and how its queues are declared.
/// The consumer and the queue declaration must use the same policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the n-th retry; its length bounds the number of retries, after which
    /// the message is parked in the dead-letter queue.
    pub delays: Vec<Duration>,
    /// Deliveries of one message before the broker dead-letters it on its own (a handler
    /// that crashes the process never gets to reject).
    pub delivery_limit: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            delivery_limit: 20,
        }
    }
}

/// `<queue>.retry.<n>`, n starting at 1.
pub fn retry_queue_name(queue: &str, n: usize) -> String {
    format!("{queue}.retry.{n}")
}

/// `<queue>.dlq`.
pub fn dead_letter_queue_name(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Opens a connection named for the broker's connection list. Callers own reconnection
/// (the relay and consumers rebuild connections in their own loops).
///
/// `amqp_url` may name the nodes of a cluster, comma-separated
/// ([`paywire_platform::config::broker_nodes`]): the nodes are tried in turn, starting
/// with the one that answered last in this process, so a reconnect after a node is lost
/// lands on a node that is up (queues are quorum queues, replicated on every node).
pub async fn connect(amqp_url: &str, connection_name: &str) -> Result<Connection, MessagingError> {
    let nodes = paywire_platform::config::broker_nodes(amqp_url);
    if nodes.len() <= 1 {
        return connect_node(nodes.first().copied().unwrap_or(amqp_url), connection_name).await;
    }
    let key = {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(amqp_url, &mut hasher);
        std::hash::Hasher::finish(&hasher)
    };
    let answered_last = || LAST_ANSWERED.lock().unwrap_or_else(|e| e.into_inner());
    let first = answered_last().get(&key).copied().unwrap_or(0) % nodes.len();
    let mut failure = None;
    for index in (first..nodes.len()).chain(0..first) {
        match connect_node(nodes[index], connection_name).await {
            Ok(connection) => {
                answered_last().insert(key, index);
                return Ok(connection);
            }
            Err(e) => {
                // The node's position, never its URL: URLs carry the broker password.
                tracing::warn!(node = index, nodes = nodes.len(), error = %e, "broker node did not answer; trying the next");
                failure = Some(e);
            }
        }
    }
    Err(failure.expect("at least two nodes were tried"))
}

/// Per node list (by its hash: the list holds passwords), the position of the node that
/// answered last: where the next connection starts.
static LAST_ANSWERED: Mutex<BTreeMap<u64, usize>> = Mutex::new(BTreeMap::new());

async fn connect_node(url: &str, connection_name: &str) -> Result<Connection, MessagingError> {
    let props = ConnectionProperties::default().with_connection_name(connection_name.into());
    // A handshake cut off by the broker (restart, `close_all_connections`) can leave the
    // connect future pending forever; the reconnect loops must get an error to retry on.
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props))
        .await
        .map_err(|_| MessagingError::Timeout("connecting to the broker"))?
        .map_err(MessagingError::from)
}

/// The start-up declaration every service makes before it publishes or consumes: connects
/// as `<service>-setup`, runs `declare` on one channel, and closes. Declarations are
/// idempotent, so every service declares what it relies on, whichever starts first.
pub async fn declare_at_startup<E>(
    amqp_url: &str,
    service: &str,
    declare: impl AsyncFnOnce(&Channel) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<MessagingError>,
{
    let connection = connect(amqp_url, &format!("{service}-setup")).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(MessagingError::from)?;
    declare(&channel).await?;
    let _ = channel.close(200, "topology declared".into()).await;
    let _ = connection.close(200, "topology declared".into()).await;
    Ok(())
}

/// Upper bound for opening a connection and setting up a session on it.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// Dead-lettering through the default exchange to one named queue, with broker-side
/// confirms so a dead-lettered message cannot be lost (needs `x-overflow=reject-publish`).
fn dead_letter_to(args: &mut FieldTable, target: &str) {
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(target.into()),
    );
    args.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
}

/// What [`exists`] asks the broker about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Queue,
    Exchange,
}

/// Whether the queue or exchange `name` exists, asked with a passive declaration on a
/// throwaway channel of `connection`: a refused one closes its channel, and while the
/// connection stays up that refusal means it is absent. An error is the connection's.
pub async fn exists(
    connection: &Connection,
    what: Declared,
    name: &str,
) -> Result<bool, lapin::Error> {
    let probe = connection.create_channel().await?;
    let declared = match what {
        Declared::Queue => {
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let queue = probe.queue_declare(name.into(), passive, FieldTable::default());
            queue.await.map(drop)
        }
        Declared::Exchange => {
            let passive = ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            };
            // A passive declaration does not compare the kind.
            let kind = ExchangeKind::Fanout;
            let exchange =
                probe.exchange_declare(name.into(), kind, passive, FieldTable::default());
            exchange.await
        }
    };
    match declared {
        Ok(()) => {
            let _ = probe.close(200, "done".into()).await;
            Ok(true)
        }
        Err(_) if connection.status().connected() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Declares a durable fanout exchange.
pub async fn declare_fanout_exchange(
    channel: &Channel,
    exchange: &str,
) -> Result<(), MessagingError> {
    declare_durable_exchange(channel, exchange, ExchangeKind::Fanout).await
}

/// Paywire's exchanges are durable: they and their bindings survive a broker restart.
async fn declare_durable_exchange(
    channel: &Channel,
    exchange: &str,
    kind: ExchangeKind,
) -> Result<(), MessagingError> {
    channel
        .exchange_declare(
            exchange.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Declares `queue` with its retry and dead-letter queues and binds it to `exchange`
/// (which must exist).
pub async fn declare_subscriber_queue(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    policy: &RetryPolicy,
) -> Result<(), MessagingError> {
    declare_queue_set(channel, exchange, "", queue, policy).await
}

/// Declares a delay queue in front of a consumer's queue:
/// * `target_exchange`: durable direct exchange;
/// * `target_queue`: declared like a subscriber queue (retry and dead-letter queues from
///   `policy`), bound to `target_exchange` with routing key `target_queue`;
/// * `delay_queue`: quorum, no consumers, `x-message-ttl` = `ttl`; expired messages
///   dead-letter (at-least-once, so an expiry is never lost) to `target_exchange` with
///   routing key `target_queue`.
///
/// Publish to the delay queue through the default exchange (routing key = its name). The
/// TTL is an immutable queue argument: derive `delay_queue`'s name from the TTL so a new
/// delay gets a new queue instead of a `PRECONDITION_FAILED` at start-up.
pub async fn declare_delay_queue(
    channel: &Channel,
    delay_queue: &str,
    ttl: Duration,
    target_exchange: &str,
    target_queue: &str,
    policy: &RetryPolicy,
) -> Result<(), MessagingError> {
    declare_durable_exchange(channel, target_exchange, ExchangeKind::Direct).await?;
    declare_queue_set(channel, target_exchange, target_queue, target_queue, policy).await?;

    let mut args = quorum_args();
    dead_letter_to(&mut args, target_queue);
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(target_exchange.into()),
    );
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
    channel
        .queue_declare(delay_queue.into(), QueueDeclareOptions::durable(), args)
        .await?;
    Ok(())
}

/// `queue` (bound to `exchange` with `binding_key`) plus its retry and dead-letter queues.
async fn declare_queue_set(
    channel: &Channel,
    exchange: &str,
    binding_key: &str,
    queue: &str,
    policy: &RetryPolicy,
) -> Result<(), MessagingError> {
    let dlq = dead_letter_queue_name(queue);
    channel
        .queue_declare(
            dlq.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum_args(),
        )
        .await?;

    let mut args = quorum_args();
    dead_letter_to(&mut args, &dlq);
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(policy.delivery_limit)),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), args)
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            binding_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    for (i, delay) in policy.delays.iter().enumerate() {
        let mut args = quorum_args();
        dead_letter_to(&mut args, queue);
        let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX).max(1);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
        channel
            .queue_declare(
                retry_queue_name(queue, i + 1).as_str().into(),
                QueueDeclareOptions::durable(),
                args,
            )
            .await?;
    }
    Ok(())
}

/// The pay-result fanout exchange and each subscriber's queues with the default
/// [`RetryPolicy`]. Idempotent; the exchange must exist before the relay publishes to it.
pub async fn declare_pay_result_topology(
    channel: &Channel,
    subscriber_queues: &[&str],
) -> Result<(), MessagingError> {
    declare_fanout_exchange(channel, PAY_RESULT_EXCHANGE).await?;
    let policy = RetryPolicy::default();
    for queue in subscriber_queues {
        declare_subscriber_queue(channel, PAY_RESULT_EXCHANGE, queue, &policy).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_derived_from_the_subscriber_queue() {
        assert_eq!(
            retry_queue_name("order.pay-result", 2),
            "order.pay-result.retry.2"
        );
        assert_eq!(
            dead_letter_queue_name("order.pay-result"),
            "order.pay-result.dlq"
        );
    }
}
