//! Internal order API (service credential): refunds are a business decision, taken by
//! operators or other services, never by the student.

use actix_web::{HttpResponse, web};
use paywire_contracts::order::RefundTicket;
use paywire_domain::{OrderId, OrderStatus};
use paywire_platform::auth::ServiceCaller;
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

/// `POST /internal/orders/{order_id}/refund`: asks the gateway to refund the attempt that
/// paid the order, in full. 201 when the gateway recorded the refund now, 200 when it had
/// it already; the order becomes `refunded` when the gateway's `refund.result.v1`
/// (`succeeded`) arrives.
#[tracing::instrument(skip_all, fields(order_id = %path, pay_no = Empty, refund_no = Empty))]
pub async fn refund(
    _caller: ServiceCaller,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<HttpResponse, OrderError> {
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
    tracing::Span::current().record("refund_no", display(answer.refund.refund_no));
    tracing::info!(created = answer.created, status = %answer.refund.status, "refund requested");
    let refund = answer.refund;
    let view = RefundTicket {
        refund_no: refund.refund_no,
        pay_no: refund.pay_no,
        order_id: refund.order_id,
        amount_fen: refund.amount_fen,
        status: refund.status,
    };
    Ok(if answer.created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}
