//! Refund vocabulary: statuses, reasons, the stored refund and the `refund.result.v1` event.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use paywire_domain::{
    EventEnvelope, EventId, Fen, OrderId, ParseError, PayChannel, PayNo, RefundNo,
};
use serde::{Deserialize, Serialize};

/// Where a refund of stray money stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Recorded; not yet accepted by the channel.
    Pending,
    /// Accepted by the channel, not final yet.
    Processing,
    /// The money is on its way back: final.
    Succeeded,
    /// The channel gave up: final, needs a human.
    Failed,
}

impl RefundStatus {
    pub const ALL: &'static [RefundStatus] = &[
        RefundStatus::Pending,
        RefundStatus::Processing,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    pub const fn can_become(self, next: RefundStatus) -> bool {
        use RefundStatus::*;
        matches!(
            (self, next),
            (Pending, Processing) | (Pending | Processing, Succeeded | Failed)
        )
    }

    /// The guard of a guarded update into `self`.
    pub fn source_names(self) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|s| s.can_become(self))
            .map(|s| s.as_str())
            .collect()
    }

    pub fn is_final(self) -> bool {
        matches!(self, RefundStatus::Succeeded | RefundStatus::Failed)
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefundStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| ParseError::new("refund status", format!("unknown value {s:?}")))
    }
}

/// Why money goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// Paid on an attempt (or order) that was already closed.
    OrderClosed,
    /// The order was already paid through another attempt.
    DuplicatePayment,
    /// Asked for by the order service (a business decision), through `POST /internal/refunds`.
    Requested,
}

impl RefundReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            RefundReason::OrderClosed => "order_closed",
            RefundReason::DuplicatePayment => "duplicate_payment",
            RefundReason::Requested => "requested",
        }
    }

    /// What the payer sees at the channel.
    pub const fn payer_text(self) -> &'static str {
        match self {
            RefundReason::OrderClosed => "订单已关闭，自动退款",
            RefundReason::DuplicatePayment => "订单重复支付，自动退款",
            RefundReason::Requested => "退款",
        }
    }
}

impl fmt::Display for RefundReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefundReason {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "order_closed" => Ok(RefundReason::OrderClosed),
            "duplicate_payment" => Ok(RefundReason::DuplicatePayment),
            "requested" => Ok(RefundReason::Requested),
            other => Err(ParseError::new(
                "refund reason",
                format!("unknown value {other:?}"),
            )),
        }
    }
}

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
        assert!(Succeeded.is_final() && Failed.is_final() && !Pending.is_final());
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
