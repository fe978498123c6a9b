//! Refund vocabulary: statuses, reasons and the stored refund.

use chrono::{DateTime, Utc};
use paywire_domain::{Fen, OrderId, PayChannel, PayNo, RefundNo};

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
}
