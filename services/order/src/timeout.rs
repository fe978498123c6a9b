//! Order timeout through a delay queue (seeds `000`, `002`).
//!
//! Creating an order writes an `order.timeout.v1` message to the order service's own
//! outbox, in the same transaction as the order. The relay publishes it to the delay
//! queue `<delay_queue>.<ttl>s` (no consumers, queue-level TTL); when it expires the broker
//! dead-letters it (at-least-once) through the direct exchange `order.timeout` to the queue
//! `order.timeout`, consumed here. An order that is still unpaid is then settled by the
//! payment gateway: an attempt found paid is recorded there and its pay result marks the
//! order paid; otherwise every attempt is closed at its channel first, and only then is the
//! order closed here. An unreachable gateway or channel is retried later, never guessed.

use std::time::Duration;

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use lapin::Channel;
use paywire_contracts::EventEnvelope;
pub use paywire_contracts::OrderTimeoutV1;
use paywire_domain::{EventId, OrderId, OrderStatus};
use paywire_messaging::consumer::{HandleError, IncomingMessage, MessageHandler};
use paywire_messaging::outbox::OutboxMessage;
use paywire_messaging::topology::{RetryPolicy, declare_delay_queue};
use serde::{Deserialize, Serialize};

use crate::clients::{CloseOutcome, PaymentGatewayClient};
use crate::error::OrderError;
use crate::store::{self, Order};

/// Inbox key of the timeout consumer in `processed_messages`.
pub const CONSUMER_NAME: &str = "order-timeout";

/// `[timeout]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeoutSettings {
    /// How long an order may stay unpaid. Must exceed `payment_attempt_ttl_secs`, so an
    /// attempt has expired at its channel before the order is settled (seed `000`).
    pub order_ttl_secs: u64,
    /// The payment gateway's attempt TTL (its `payment.attempt_ttl_secs`), checked at start.
    pub payment_attempt_ttl_secs: u64,
    /// Base name of the delay queue; the TTL is appended (`order.timeout.delay.1800s`)
    /// because a queue's TTL cannot change: a new TTL gets a new queue.
    pub delay_queue: String,
    /// Durable direct exchange the delay queue dead-letters to.
    pub exchange: String,
    /// The consumed queue (with its own `.retry.<n>` and `.dlq` queues).
    pub queue: String,
    /// Delays before retrying a timeout whose gateway or channel was unreachable; after the
    /// last one the message is parked in `<queue>.dlq`. Queue arguments: changing them
    /// requires deleting the retry queues first.
    pub retry_delays_secs: Vec<u64>,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        Self {
            order_ttl_secs: 1800,
            payment_attempt_ttl_secs: 900,
            delay_queue: "order.timeout.delay".into(),
            exchange: "order.timeout".into(),
            queue: "order.timeout".into(),
            retry_delays_secs: vec![1, 10, 60, 300, 1800],
        }
    }
}

impl TimeoutSettings {
    /// Refuses settings that would close orders whose attempts may still be paid.
    pub fn validate(&self) -> Result<(), String> {
        if self.order_ttl_secs <= self.payment_attempt_ttl_secs {
            return Err(format!(
                "timeout.order_ttl_secs ({}) must exceed timeout.payment_attempt_ttl_secs ({})",
                self.order_ttl_secs, self.payment_attempt_ttl_secs
            ));
        }
        if self.delay_queue.is_empty() || self.exchange.is_empty() || self.queue.is_empty() {
            return Err("timeout queue and exchange names must not be empty".into());
        }
        if self.retry_delays_secs.is_empty() || self.retry_delays_secs.contains(&0) {
            return Err("timeout.retry_delays_secs must be a non-empty list of seconds".into());
        }
        Ok(())
    }

    pub fn order_ttl(&self) -> Duration {
        Duration::from_secs(self.order_ttl_secs)
    }

    /// The delay queue's real name: derived from the TTL, so a changed TTL never meets an
    /// existing queue declared with another `x-message-ttl`.
    pub fn delay_queue_name(&self) -> String {
        format!("{}.{}s", self.delay_queue, self.order_ttl_secs)
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            delays: self
                .retry_delays_secs
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            ..RetryPolicy::default()
        }
    }

    /// Declares the delay queue, the exchange and the consumed queue (idempotent).
    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        declare_delay_queue(
            channel,
            &self.delay_queue_name(),
            self.order_ttl(),
            &self.exchange,
            &self.queue,
            &self.retry_policy(),
        )
        .await?;
        Ok(())
    }
}

/// What the create transaction needs to schedule an order's timeout.
#[derive(Debug, Clone)]
pub struct ScheduleTimeout {
    pub event_id: EventId,
    pub delay_queue: String,
}

impl ScheduleTimeout {
    /// The outbox row: through the default exchange straight into the delay queue.
    pub fn message(&self, order: &Order) -> Result<OutboxMessage, OrderError> {
        let envelope = EventEnvelope {
            event_id: self.event_id,
            event_type: OrderTimeoutV1::EVENT_TYPE.to_owned(),
            occurred_at: order.created_at,
            data: OrderTimeoutV1 {
                order_id: order.id,
                created_at: order.created_at,
            },
        };
        Ok(OutboxMessage {
            id: self.event_id,
            exchange: String::new(),
            routing_key: self.delay_queue.clone(),
            event_type: OrderTimeoutV1::EVENT_TYPE.to_owned(),
            aggregate_id: order.id.to_string(),
            payload: serde_json::to_value(&envelope)?,
        })
    }
}

/// What [`expire`] did with an order whose time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Paid or closed before the timeout fired: left alone.
    Settled(OrderStatus),
    /// The gateway found an attempt paid; its pay result will mark the order paid.
    PaidAtChannel,
    /// Every attempt is closed at its channel, and the order moved `unpaid → closed`.
    Closed,
}

/// Settles an expired order. No row lock is held across the gateway call: the guarded
/// `unpaid → closed` decides any race with a pay result arriving meanwhile.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn expire(
    conn: &mut AsyncPgConnection,
    gateway: &PaymentGatewayClient,
    order_id: OrderId,
) -> Result<Expiry, OrderError> {
    let order = store::find(conn, order_id)
        .await?
        .ok_or(OrderError::OrderNotFound(order_id))?;
    if order.status != OrderStatus::Unpaid {
        tracing::debug!(status = %order.status, "order settled before its timeout");
        return Ok(Expiry::Settled(order.status));
    }
    match gateway.close_payments(order_id).await? {
        CloseOutcome::Paid => {
            tracing::info!("order found paid at the channel on timeout");
            Ok(Expiry::PaidAtChannel)
        }
        CloseOutcome::Closed => {
            if store::close(conn, order_id).await? {
                tracing::info!("order closed on timeout");
                return Ok(Expiry::Closed);
            }
            // A pay result got here first (the attempt was paid before the gateway closed).
            let now = store::find(conn, order_id)
                .await?
                .ok_or(OrderError::OrderNotFound(order_id))?;
            Ok(Expiry::Settled(now.status))
        }
    }
}

/// Decodes an `order.timeout.v1` delivery. Only this service publishes to the timeout
/// queue, so any other type or shape is a bug to park, not to skip.
pub fn decode(msg: &IncomingMessage) -> Result<OrderTimeoutV1, HandleError> {
    if msg.event_type != OrderTimeoutV1::EVENT_TYPE {
        return Err(HandleError::Permanent(format!(
            "unexpected message type {:?} on the timeout queue",
            msg.event_type
        )));
    }
    let envelope: EventEnvelope<OrderTimeoutV1> = serde_json::from_slice(&msg.body)
        .map_err(|e| HandleError::Permanent(format!("malformed order timeout: {e}")))?;
    if envelope.event_type != OrderTimeoutV1::EVENT_TYPE {
        return Err(HandleError::Permanent(format!(
            "envelope type {:?} on an order.timeout.v1 message",
            envelope.event_type
        )));
    }
    Ok(envelope.data)
}

/// Consumes the timeout queue.
///
/// The gateway call runs inside the consumer's inbox transaction rather than before it:
/// splitting would need a second dedupe of its own, while inside it the message's inbox row
/// serialises duplicate deliveries and a rollback (gateway down) simply retries the whole
/// message, which is safe because the gateway's close is idempotent. The call is bounded by
/// the upstream timeout and takes no row lock, so pay results for the order never wait on it.
#[derive(Debug, Clone)]
pub struct TimeoutHandler {
    pub gateway: PaymentGatewayClient,
}

#[async_trait]
impl MessageHandler for TimeoutHandler {
    #[tracing::instrument(skip_all, fields(message_id = %msg.message_id, order_id = tracing::field::Empty))]
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        let event = decode(msg).inspect_err(|e| tracing::error!(error = %e, "rejected"))?;
        tracing::Span::current().record("order_id", tracing::field::display(event.order_id));
        let expiry = expire(conn, &self.gateway, event.order_id)
            .await
            .map_err(HandleError::of)?;
        // `paywire_order_timeouts_total{result}`: what a fired timeout found.
        let result = match expiry {
            Expiry::Settled(_) => "settled",
            Expiry::PaidAtChannel => "paid_at_channel",
            Expiry::Closed => "closed",
        };
        metrics::counter!("paywire_order_timeouts_total", "result" => result).increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    #[test]
    fn defaults_leave_the_attempt_time_to_expire_first() {
        let s = TimeoutSettings::default();
        assert_eq!(s.order_ttl_secs, 1800);
        assert!(s.validate().is_ok());
        assert_eq!(s.delay_queue_name(), "order.timeout.delay.1800s");
        assert_eq!(s.queue, "order.timeout");
        assert_eq!(s.exchange, "order.timeout");
        assert_eq!(s.retry_policy().delays[0], Duration::from_secs(1));
    }

    #[test]
    fn an_order_ttl_not_above_the_attempt_ttl_is_refused() {
        for ttl in [900, 60] {
            let s = TimeoutSettings {
                order_ttl_secs: ttl,
                ..TimeoutSettings::default()
            };
            let err = s.validate().unwrap_err();
            assert!(err.contains("must exceed"), "{err}");
        }
        let s = TimeoutSettings {
            retry_delays_secs: vec![],
            ..TimeoutSettings::default()
        };
        assert!(s.validate().is_err());
        let s = TimeoutSettings {
            queue: String::new(),
            ..TimeoutSettings::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn a_new_ttl_gets_a_new_delay_queue() {
        let s = TimeoutSettings {
            order_ttl_secs: 2,
            payment_attempt_ttl_secs: 1,
            ..TimeoutSettings::default()
        };
        assert_eq!(s.delay_queue_name(), "order.timeout.delay.2s");
    }

    fn message(event_type: &str, body: Vec<u8>) -> IncomingMessage {
        IncomingMessage::first("1", event_type, body)
    }

    #[test]
    fn timeout_messages_round_trip_and_anything_else_is_permanent() {
        let created_at: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        let order_id = OrderId::from(8);
        let env = EventEnvelope {
            event_id: EventId::from(1),
            event_type: OrderTimeoutV1::EVENT_TYPE.to_owned(),
            occurred_at: created_at,
            data: OrderTimeoutV1 {
                order_id,
                created_at,
            },
        };
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(
            json["data"],
            serde_json::json!({"order_id": "8", "created_at": "2026-11-22T10:00:00Z"})
        );
        let body = serde_json::to_vec(&env).unwrap();
        assert_eq!(
            decode(&message("order.timeout.v1", body.clone()))
                .unwrap()
                .order_id,
            order_id
        );
        for (ty, body) in [
            ("pay.result.v1", body.clone()),
            ("", body),
            ("order.timeout.v1", b"{".to_vec()),
        ] {
            assert!(matches!(
                decode(&message(ty, body)),
                Err(HandleError::Permanent(_))
            ));
        }
    }

    #[test]
    fn the_asyncapi_document_describes_the_default_timeout_topology_and_message() {
        let doc = include_str!("../../../proto-docs/pay-result.asyncapi.yaml");
        let s = TimeoutSettings::default();
        let ttl_ms = s.order_ttl_secs * 1000;
        for needle in [
            format!("address: {}", s.delay_queue_name()),
            format!("x-message-ttl: {ttl_ms}"),
            format!("x-dead-letter-exchange: {}", s.exchange),
            format!("x-dead-letter-routing-key: {}", s.queue),
            format!("x-dead-letter-routing-key: {}.dlq", s.queue),
            // The message's schema is generated from `OrderTimeoutV1` itself
            // (`cargo xtask proto-docs`, drift-tested in xtask); the topology is checked here
            // because it comes from this service's settings.
            format!("name: {}", OrderTimeoutV1::EVENT_TYPE),
        ] {
            assert!(doc.contains(&needle), "AsyncAPI lacks {needle:?}");
        }
        let data = serde_json::to_value(OrderTimeoutV1 {
            order_id: OrderId::from(1),
            created_at: Utc::now(),
        })
        .unwrap();
        let keys: Vec<&str> = data
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["created_at", "order_id"]);
    }
}
