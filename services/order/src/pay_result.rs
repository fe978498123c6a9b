//! Consuming pay results: an order becomes paid exactly once, and only by a result that
//! matches it (amount, user, business record). Anything else is logged for investigation
//! instead of being applied or retried forever.
//!
//! Refund results share the exchange: a `requested` refund that `succeeded` for the
//! attempt that paid the order, in full, makes the order `refunded` (once). Refunds of
//! stray money (`order_closed`, `duplicate_payment`) never touch the order.

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;
pub use paywire_contracts::{PayResultV1, RefundResultV1};
use paywire_domain::{OrderStatus, RefundReason, RefundStatus};
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

/// What [`mark_refunded`] did with a refund result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkRefunded {
    /// The order moved `paid → refunded`.
    Applied,
    /// The order was already refunded by this attempt (a redelivery).
    AlreadyApplied,
    /// Not an order refund: stray money, a failed or partial refund, or another attempt.
    Ignored,
}

/// Applies one refund result (the gateway's typed `refund.result.v1`) to its order with a
/// guarded update, on the caller's connection (inside the consumer's transaction).
#[tracing::instrument(skip_all, fields(order_id = %event.order_id, pay_no = %event.pay_no, refund_no = %event.refund_no))]
pub async fn mark_refunded(
    conn: &mut AsyncPgConnection,
    event: &RefundResultV1,
) -> Result<MarkRefunded, OrderError> {
    if event.reason.known() != Some(RefundReason::Requested) {
        // Stray money went back to the payer; the order never counted it.
        tracing::debug!(reason = %event.reason, "refund of stray money; order unchanged");
        return Ok(MarkRefunded::Ignored);
    }
    if event.status.known() != Some(RefundStatus::Succeeded) {
        tracing::warn!(status = %event.status, "requested refund did not succeed; order stays paid");
        return Ok(MarkRefunded::Ignored);
    }
    let Some(refunded_at) = event.refunded_at else {
        return Err(OrderError::BadUpstreamResponse {
            service: "payment-gateway",
            reason: format!("succeeded refund {} without refunded_at", event.refund_no),
        });
    };
    let order = store::find(conn, event.order_id)
        .await?
        .ok_or(OrderError::OrderNotFound(event.order_id))?;
    if order.pay_no != Some(event.pay_no) || event.amount_fen != order.total {
        // A partial refund, or a refund of an attempt that did not pay this order.
        tracing::warn!(
            paid_by = ?order.pay_no.map(|p| p.get()),
            amount_fen = event.amount_fen.get(),
            total_fen = order.total.get(),
            "requested refund is not the order's full refund; order unchanged"
        );
        return Ok(MarkRefunded::Ignored);
    }
    if store::set_refunded(conn, order.id, event.pay_no, refunded_at).await? {
        tracing::info!(channel = %event.channel, "order refunded");
        return Ok(MarkRefunded::Applied);
    }
    if order.status == OrderStatus::Refunded {
        return Ok(MarkRefunded::AlreadyApplied);
    }
    tracing::warn!(order_status = %order.status, "refund result for an order that is not paid; order unchanged");
    Ok(MarkRefunded::Ignored)
}

/// Decodes pay and refund results and applies them ([`mark_paid`], [`mark_refunded`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PayResultHandler;

/// One delivery from the pay-result exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Pay(PayResultV1),
    Refund(RefundResultV1),
    /// Another event type on the shared exchange, not for this service.
    Other,
}

/// Decodes a delivery. A message without a type, or a known type of a shape this build
/// does not know, is refused (parked); other types are acknowledged unread.
pub fn decode(msg: &IncomingMessage) -> Result<Incoming, HandleError> {
    if msg.event_type.is_empty() {
        return Err(HandleError::Permanent("message without a type".into()));
    }
    if msg.event_type == PayResultV1::EVENT_TYPE {
        return msg
            .decode_envelope::<PayResultV1>(PayResultV1::EVENT_TYPE)
            .map(|e| Incoming::Pay(e.data));
    }
    if msg.event_type == RefundResultV1::EVENT_TYPE {
        return msg
            .decode_envelope::<RefundResultV1>(RefundResultV1::EVENT_TYPE)
            .map(|e| Incoming::Refund(e.data));
    }
    Ok(Incoming::Other)
}

#[async_trait]
impl MessageHandler for PayResultHandler {
    #[tracing::instrument(skip_all, fields(message_id = %msg.message_id, order_id = tracing::field::Empty))]
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        match decode(msg).inspect_err(|e| tracing::error!(error = %e, "rejected"))? {
            Incoming::Other => {
                tracing::debug!(event_type = %msg.event_type, "event type not handled here; acknowledged");
                return Ok(());
            }
            Incoming::Pay(event) => {
                tracing::Span::current()
                    .record("order_id", tracing::field::display(event.order_id));
                mark_paid(conn, &event).await.map(drop)
            }
            Incoming::Refund(event) => {
                tracing::Span::current()
                    .record("order_id", tracing::field::display(event.order_id));
                mark_refunded(conn, &event).await.map(drop)
            }
        }
        .map_err(HandleError::of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_domain::{EventId, OrderId, PayNo, RefundNo};
    use paywire_testkit::events::pay_result as event;

    fn message(event_type: &str, body: Vec<u8>) -> IncomingMessage {
        IncomingMessage::first("1", event_type, body)
    }

    #[test]
    fn decodes_pay_results() {
        let env = event().into_envelope(EventId::from(1), chrono::Utc::now());
        let msg = message("pay.result.v1", serde_json::to_vec(&env).unwrap());
        assert_eq!(decode(&msg).unwrap(), Incoming::Pay(event()));
    }

    fn refund_envelope() -> serde_json::Value {
        serde_json::json!({
            "event_id": "3", "event_type": "refund.result.v1",
            "occurred_at": "2026-11-22T10:00:00Z",
            "data": {"refund_no": "5", "pay_no": "7", "order_id": "8", "channel": "alipay",
                     "amount_fen": 100, "reason": "requested", "status": "succeeded",
                     "refunded_at": "2026-11-22T10:00:00Z"}
        })
    }

    #[test]
    fn decodes_refund_results_and_parks_malformed_ones() {
        let body = serde_json::to_vec(&refund_envelope()).unwrap();
        let Incoming::Refund(r) = decode(&message("refund.result.v1", body)).unwrap() else {
            panic!("not a refund result");
        };
        assert_eq!(
            (r.refund_no, r.pay_no, r.order_id, r.amount_fen.get()),
            (RefundNo::from(5), PayNo::from(7), OrderId::from(8), 100)
        );
        assert_eq!(
            (r.reason.to_string().as_str(), r.status.to_string().as_str()),
            ("requested", "succeeded")
        );
        for body in [b"{\"refund_no\": \"1\"}".to_vec(), b"{".to_vec()] {
            assert!(matches!(
                decode(&message("refund.result.v1", body)),
                Err(HandleError::Permanent(_))
            ));
        }
        // A reason or status this build does not know is read (and then ignored), not
        // parked: a newer gateway must not fill this service's dead-letter queue.
        let mut env = refund_envelope();
        env["data"]["reason"] = "goodwill".into();
        env["data"]["status"] = "reversed".into();
        let body = serde_json::to_vec(&env).unwrap();
        let Incoming::Refund(r) = decode(&message("refund.result.v1", body)).unwrap() else {
            panic!("not a refund result");
        };
        assert_eq!((r.reason.known(), r.status.known()), (None, None));
    }

    #[test]
    fn other_event_types_are_skipped_not_parked() {
        for body in [b"{\"refund_no\": \"1\"}".to_vec(), b"{".to_vec()] {
            assert_eq!(
                decode(&message("pay.result.v2", body)).unwrap(),
                Incoming::Other
            );
        }
    }

    #[test]
    fn untyped_messages_and_malformed_pay_results_are_permanent() {
        let env = event().into_envelope(EventId::from(1), chrono::Utc::now());
        let body = serde_json::to_vec(&env).unwrap();
        let mut mistyped = serde_json::to_value(&env).unwrap();
        mistyped["event_type"] = "refund.result.v1".into();
        let mut negative = serde_json::to_value(&env).unwrap();
        negative["data"]["amount_fen"] = (-5).into();
        for (kind, body) in [
            ("", body),
            ("pay.result.v1", b"{not json".to_vec()),
            ("pay.result.v1", serde_json::to_vec(&mistyped).unwrap()),
            ("pay.result.v1", serde_json::to_vec(&negative).unwrap()),
        ] {
            assert!(matches!(
                decode(&message(kind, body)),
                Err(HandleError::Permanent(_))
            ));
        }
    }
}
