//! Internal order API (service credential): refunds are a business decision, taken by
//! operators or other services, never by the student.

use actix_web::web;
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::CallerErrors;
use paywire_contracts::openapi::answers::{RequestErrors, UpstreamErrors};
use paywire_contracts::order::RefundTicket;
use paywire_domain::{OrderId, OrderStatus};
use paywire_platform::answer::Stored;
use paywire_platform::auth::{FromOperator, ServiceCaller};
use tracing::field::{Empty, display};

use crate::AppState;
use crate::clients::RequestRefund;
use crate::error::OrderError;
use crate::store;

/// What the payer sees at the channel.
const REFUND_REASON: &str = "订单退款";

/// The idempotency key of an order's full refund: one per order, so a retried or
/// repeated call answers the same refund instead of refunding twice.
pub fn refund_key(order_id: OrderId) -> String {
    format!("order-{order_id}-full-refund")
}

/// Refund a paid order in full (operators and services, never students)
///
/// Forwards to the payment gateway's `POST /internal/refunds` the full amount of the
/// attempt that paid the order, with the idempotency key `order-{order_id}-full-refund`:
/// asking again answers the same refund (200). The order itself changes only when the
/// gateway's `refund.result.v1` (`reason: requested`, `status: succeeded`, full amount,
/// that attempt) arrives through the broker (`paid → refunded`).
#[utoipa::path(
    post,
    path = "/internal/orders/{order_id}/refund",
    operation_id = "refundOrder",
    security(("serviceToken" = ["operator"])),
    params(("order_id" = OrderId, Path)),
    responses(
        CallerErrors,
        (status = 201, description = "the gateway recorded the refund now", body = RefundTicket),
        (status = 200, description = "the refund of an earlier request for this order", body = RefundTicket),
        (status = 404, description = "`order_not_found`", body = ErrorBody),
        (
            status = 409,
            description = "`order_not_paid` (unpaid or closed), `refund_not_allowed` (the gateway refused: nothing left to refund)",
            body = ErrorBody
        ),
        RequestErrors,
        UpstreamErrors,
    )
)]
#[tracing::instrument(skip_all, fields(order_id = %path, pay_no = Empty, refund_no = Empty))]
pub async fn refund(
    _caller: ServiceCaller<FromOperator>,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<Stored<RefundTicket>, OrderError> {
    let order_id = path.into_inner();
    let order = {
        let mut conn = state.pool.get().await?;
        store::find(&mut conn, order_id)
            .await?
            .ok_or(OrderError::OrderNotFound(order_id))?
    };
    let pay_no = match (order.status, order.pay_no) {
        // Refunded already: the same key answers the refund that did it.
        (OrderStatus::Paid | OrderStatus::Refunded, Some(pay_no)) => pay_no,
        (OrderStatus::Paid | OrderStatus::Refunded, None) => {
            return Err(OrderError::CorruptRow(format!(
                "order {order_id} is {} without a pay_no",
                order.status
            )));
        }
        (OrderStatus::Unpaid | OrderStatus::Closed, _) => {
            return Err(OrderError::OrderNotPaid(order_id));
        }
    };
    tracing::Span::current().record("pay_no", display(pay_no));
    let answer = state
        .payment_gateway
        .request_refund(
            &RequestRefund {
                order_id,
                pay_no,
                amount_fen: order.total,
                reason: Some(REFUND_REASON.to_owned()),
                request_id: None,
            },
            &refund_key(order_id),
        )
        .await?;
    let refund = answer.get();
    tracing::Span::current().record("refund_no", display(refund.refund_no));
    tracing::info!(created = answer.is_created(), status = %refund.status, "refund requested");
    Ok(answer.map(|refund| RefundTicket {
        refund_no: refund.refund_no,
        pay_no: refund.pay_no,
        order_id: refund.order_id,
        amount_fen: refund.amount_fen,
        status: refund.status,
    }))
}
