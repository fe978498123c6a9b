//! The order service's internal API (service credential): refunds are a business decision,
//! taken by operators or other services, never by the student.

use paywire_domain::{Fen, OrderId, PayNo, RefundNo, RefundStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Optional body of `POST /internal/orders/{order_id}/refund` (no body: the full amount).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundOrder {
    /// How much to refund; absent → what the order cost. Less than that is a partial
    /// refund, which keeps the order `paid` and the course's access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_fen: Option<Fen>,
    /// What the payer sees at the channel; absent → a generic text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 80)]
    pub reason: Option<String>,
    /// Tells apart two refunds of the same order and amount; the same key again answers
    /// the same refund. Absent: the amount is the key (`full`, or the amount in fen), so a
    /// repeated request never refunds twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub request_id: Option<String>,
}

/// Answer of `POST /internal/orders/{order_id}/refund`: the gateway's refund of the attempt
/// that paid the order. `status` is final when `succeeded` or `failed`; the order becomes
/// `refunded` when `refund.result.v1` (`succeeded`) arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundTicket {
    pub refund_no: RefundNo,
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub amount_fen: Fen,
    pub status: RefundStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_wire;

    #[test]
    fn refund_order_is_optional_field_by_field_and_refuses_extra_fields() {
        assert_wire(&RefundOrder::default(), "{}");
        assert_wire(
            &RefundOrder {
                amount_fen: Some(Fen::new(100).unwrap()),
                reason: Some("goodwill".into()),
                request_id: Some("r1".into()),
            },
            r#"{"amount_fen":100,"reason":"goodwill","request_id":"r1"}"#,
        );
        assert!(serde_json::from_str::<RefundOrder>(r#"{"amount":1}"#).is_err());
    }

    #[test]
    fn refund_ticket_keeps_its_wire_format() {
        assert_wire(
            &RefundTicket {
                refund_no: RefundNo::from(5),
                pay_no: PayNo::from(7),
                order_id: OrderId::from(8),
                amount_fen: Fen::new(19900).unwrap(),
                status: RefundStatus::Pending,
            },
            r#"{"refund_no":"5","pay_no":"7","order_id":"8","amount_fen":19900,"status":"pending"}"#,
        );
    }
}
