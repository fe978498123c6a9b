//! Refund vocabulary: statuses, reasons, the stored refund and the `refund.result.v1` event.

use chrono::{DateTime, Utc};
use paywire_domain::{EventEnvelope, EventId, Fen, OrderId, PayChannel, PayNo, RefundNo};
use serde::{Deserialize, Serialize};

/// Declared with the other state machines in the domain crate.
pub use paywire_domain::{RefundReason, RefundStatus};

/// One refund, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub refund_no: RefundNo,
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub channel: PayChannel,
    pub amount: Fen,
    pub reason: RefundReason,
    pub status: RefundStatus,
    pub channel_refund_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub refunded_at: Option<DateTime<Utc>>,
    /// The caller's idempotency key (requested refunds only).
    pub request_id: Option<String>,
    /// What the payer sees at the channel (requested refunds only).
    pub note: Option<String>,
}

impl Refund {
    /// The text sent to the channel with the refund.
    pub fn payer_text(&self) -> &str {
        self.note
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(self.reason.payer_text())
    }
}

/// A refund (of stray money, or requested) reached a final state. Published on the pay-result exchange;
/// consumers that do not handle it ack and ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResultV1 {
    pub refund_no: RefundNo,
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub channel: PayChannel,
    pub amount_fen: Fen,
    pub reason: RefundReason,
    /// `succeeded` or `failed`.
    pub status: RefundStatus,
    /// When the channel completed the refund; `null` when it failed.
    pub refunded_at: Option<DateTime<Utc>>,
}

impl RefundResultV1 {
    pub const EVENT_TYPE: &'static str = "refund.result.v1";

    pub fn into_envelope(
        self,
        event_id: EventId,
        occurred_at: DateTime<Utc>,
    ) -> EventEnvelope<Self> {
        EventEnvelope {
            event_id,
            event_type: Self::EVENT_TYPE.to_owned(),
            occurred_at,
            data: self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_statuses_move_forward_only() {
        use RefundStatus::*;
        assert!(Pending.can_become(Processing));
        assert!(Pending.can_become(Succeeded) && Processing.can_become(Succeeded));
        assert!(Processing.can_become(Failed));
        assert!(!Processing.can_become(Pending));
        assert!(!Succeeded.can_become(Failed) && !Failed.can_become(Succeeded));
        assert_eq!(Succeeded.source_names(), ["pending", "processing"]);
        assert_eq!(Processing.source_names(), ["pending"]);
        for s in RefundStatus::ALL {
            assert_eq!(s.as_str().parse::<RefundStatus>().unwrap(), *s);
        }
        assert!("done".parse::<RefundStatus>().is_err());
        assert!(Succeeded.is_terminal() && Failed.is_terminal() && !Pending.is_terminal());
        // Sending an accepted refund again is a declared side edge, not an ordinary step.
        assert!(RefundStatus::RESEND.allows(Processing) && RefundStatus::RESEND.to == Pending);
    }

    #[test]
    fn refund_result_schema_is_stable() {
        let ev = RefundResultV1 {
            refund_no: RefundNo::from(5),
            pay_no: PayNo::from(7),
            order_id: OrderId::from(8),
            channel: PayChannel::Alipay,
            amount_fen: Fen::new(1999).unwrap(),
            reason: RefundReason::DuplicatePayment,
            status: RefundStatus::Succeeded,
            refunded_at: Some("2026-01-02T03:04:05Z".parse().unwrap()),
        }
        .into_envelope(EventId::from(1), "2026-01-02T03:04:06Z".parse().unwrap());
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({
                "event_id": "1",
                "event_type": "refund.result.v1",
                "occurred_at": "2026-01-02T03:04:06Z",
                "data": {
                    "refund_no": "5", "pay_no": "7", "order_id": "8", "channel": "alipay",
                    "amount_fen": 1999, "reason": "duplicate_payment", "status": "succeeded",
                    "refunded_at": "2026-01-02T03:04:05Z"
                }
            })
        );
        assert_eq!(
            "order_closed".parse::<RefundReason>().unwrap(),
            RefundReason::OrderClosed
        );
        assert_eq!(
            "requested".parse::<RefundReason>().unwrap(),
            RefundReason::Requested
        );
        assert_eq!(RefundReason::Requested.as_str(), "requested");
        assert!("other".parse::<RefundReason>().is_err());
    }
}
