//! The order service's internal API (service credential): refunds are a business decision,
//! taken by operators or other services, never by the student.

use paywire_domain::{Fen, OrderId, PayNo, RefundNo, RefundStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
