//! Consuming pay results: an order becomes paid exactly once, and only by a result that
//! matches it (amount, user, business record). Anything else is logged for investigation
//! instead of being applied or retried forever.

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
use paywire_domain::{EventEnvelope, OrderStatus, PayResultV1};
use paywire_messaging::consumer::{HandleError, IncomingMessage, MessageHandler};

use crate::error::OrderError;
use crate::store;

/// Inbox key of this consumer in `processed_messages`.
pub const CONSUMER_NAME: &str = "order";

/// What [`mark_paid`] did with a pay result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkPaid {
    /// The order moved `unpaid → paid`.
    Applied,
    /// The order was already paid by this very attempt (a redelivery): nothing to do.
    AlreadyApplied,
    /// Money arrived for an order that is closed or was paid by another attempt. Logged as
    /// `stray_payment`; refunding it belongs to the refund flow, not to a retry loop.
    Stray { status: OrderStatus },
}

/// Applies one pay result to its order with a guarded update. Runs on the caller's
/// connection (inside the consumer's transaction), so it can be tested without a broker.
#[tracing::instrument(skip_all, fields(order_id = %event.order_id, pay_no = %event.pay_no))]
pub async fn mark_paid(
    conn: &mut AsyncPgConnection,
    event: &PayResultV1,
) -> Result<MarkPaid, OrderError> {
    let order = store::find(conn, event.order_id)
        .await?
        .ok_or(OrderError::OrderNotFound(event.order_id))?;

    let mut mismatches = Vec::new();
    if event.amount_fen != order.total {
        mismatches.push(format!(
            "amount_fen {} != total_fen {}",
            event.amount_fen.get(),
            order.total.get()
        ));
    }
    if event.user_id != order.user_id {
        mismatches.push(format!("user {} != {}", event.user_id, order.user_id));
    }
    if event.biz_type != order.biz_type || event.biz_id != order.biz_id {
        mismatches.push(format!(
            "biz {}/{} != {}/{}",
            event.biz_type, event.biz_id, order.biz_type, order.biz_id
        ));
    }
    if !mismatches.is_empty() {
        let reason = mismatches.join("; ");
        tracing::error!(
            order_id = %order.id,
            pay_no = %event.pay_no,
            reason = %reason,
            "pay result contradicts its order; not applied"
        );
        return Err(OrderError::PayResultMismatch {
            order_id: order.id,
            reason,
        });
    }

    if store::set_paid(conn, event).await? {
        tracing::info!(channel = %event.channel, "order paid");
        return Ok(MarkPaid::Applied);
    }

    // The guard refused: look at what the order became meanwhile.
    let current = store::find(conn, event.order_id)
        .await?
        .ok_or(OrderError::OrderNotFound(event.order_id))?;
    if current.status == OrderStatus::Paid && current.pay_no == Some(event.pay_no) {
        return Ok(MarkPaid::AlreadyApplied);
    }
    tracing::warn!(
        stray_payment = true,
        order_id = %current.id,
        order_status = %current.status,
        paid_by = ?current.pay_no.map(|p| p.get()),
        pay_no = %event.pay_no,
        amount_fen = event.amount_fen.get(),
        channel = %event.channel,
        channel_trade_no = %event.channel_trade_no,
        "stray_payment: money arrived for an order that cannot take it"
    );
    Ok(MarkPaid::Stray {
        status: current.status,
    })
}

/// Decodes `EventEnvelope<PayResultV1>` deliveries and applies them with [`mark_paid`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PayResultHandler;

/// Decodes a delivery: `None` for another event type on the shared exchange (e.g.
/// `refund.result.v1`), which is not for this service. A message without a type, or a pay
/// result of a shape this build does not know, is refused.
pub fn decode(msg: &IncomingMessage) -> Result<Option<PayResultV1>, HandleError> {
    if msg.event_type.is_empty() {
        return Err(HandleError::Permanent("message without a type".into()));
    }
    if msg.event_type != PayResultV1::EVENT_TYPE {
        return Ok(None);
    }
    let envelope: EventEnvelope<PayResultV1> = serde_json::from_slice(&msg.body)
        .map_err(|e| HandleError::Permanent(format!("malformed pay result: {e}")))?;
    if envelope.event_type != PayResultV1::EVENT_TYPE {
        return Err(HandleError::Permanent(format!(
            "unknown event type {:?}",
            envelope.event_type
        )));
    }
    Ok(Some(envelope.data))
}

#[async_trait]
impl MessageHandler for PayResultHandler {
    #[tracing::instrument(skip_all, fields(message_id = %msg.message_id, order_id = tracing::field::Empty))]
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        let Some(event) = decode(msg).inspect_err(|e| tracing::error!(error = %e, "rejected"))?
        else {
            tracing::debug!(event_type = %msg.event_type, "event type not handled here; acknowledged");
            return Ok(());
        };
        tracing::Span::current().record("order_id", tracing::field::display(event.order_id));
        match mark_paid(conn, &event).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_transient() => Err(HandleError::Transient(e.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "pay result cannot be applied");
                Err(HandleError::Permanent(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_domain::{BizType, EventId, Fen, OrderId, PayChannel, PayNo, UserId};

    fn event() -> PayResultV1 {
        PayResultV1 {
            pay_no: PayNo::from(7),
            order_id: OrderId::from(8),
            user_id: UserId::parse("s1").unwrap(),
            biz_type: BizType::Course,
            biz_id: "9".into(),
            channel: PayChannel::Wechat,
            amount_fen: Fen::new(100).unwrap(),
            channel_trade_no: "t".into(),
            paid_at: "2026-11-22T10:00:00Z".parse().unwrap(),
        }
    }

    fn message(event_type: &str, body: Vec<u8>) -> IncomingMessage {
        IncomingMessage {
            message_id: "1".into(),
            event_type: event_type.into(),
            body,
            redelivered: false,
        }
    }

    #[test]
    fn decodes_pay_results() {
        let env = event().into_envelope(EventId::from(1), chrono::Utc::now());
        let msg = message("pay.result.v1", serde_json::to_vec(&env).unwrap());
        assert_eq!(decode(&msg).unwrap(), Some(event()));
    }

    #[test]
    fn other_event_types_are_skipped_not_parked() {
        for kind in ["refund.result.v1", "pay.result.v2"] {
            for body in [b"{\"refund_no\": \"1\"}".to_vec(), b"{".to_vec()] {
                assert_eq!(decode(&message(kind, body)).unwrap(), None, "{kind}");
            }
        }
    }

    #[test]
    fn untyped_messages_and_malformed_pay_results_are_permanent() {
        let env = event().into_envelope(EventId::from(1), chrono::Utc::now());
        let body = serde_json::to_vec(&env).unwrap();
        assert!(matches!(
            decode(&message("", body)),
            Err(HandleError::Permanent(_))
        ));
        assert!(matches!(
            decode(&message("pay.result.v1", b"{not json".to_vec())),
            Err(HandleError::Permanent(_))
        ));
        let mut env = serde_json::to_value(&env).unwrap();
        env["event_type"] = "refund.result.v1".into();
        assert!(matches!(
            decode(&message("pay.result.v1", serde_json::to_vec(&env).unwrap())),
            Err(HandleError::Permanent(_))
        ));
        env["event_type"] = "pay.result.v1".into();
        env["data"]["amount_fen"] = (-5).into();
        assert!(matches!(
            decode(&message("pay.result.v1", serde_json::to_vec(&env).unwrap())),
            Err(HandleError::Permanent(_))
        ));
    }
}
