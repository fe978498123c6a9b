//! Internal order API (service credential): refunds are a business decision, taken by
//! operators or other services, never by the student.

use actix_web::web;
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::CallerErrors;
use paywire_contracts::openapi::answers::{RequestErrors, UpstreamErrors};
use paywire_contracts::order::{RefundOrder, RefundTicket};
use paywire_domain::{Fen, OrderId, OrderStatus};
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

/// The idempotency key of a refund asked with `body`: the full refund's key, or one per
/// order and `request_id` (else per order and amount).
pub fn refund_key_of(order_id: OrderId, total: Fen, body: &RefundOrder) -> String {
    match (&body.request_id, body.amount_fen) {
        (Some(id), _) => format!("order-{order_id}-refund-{id}"),
        (None, None) => refund_key(order_id),
        (None, Some(amount)) if amount == total => refund_key(order_id),
        (None, Some(amount)) => format!("order-{order_id}-refund-{}-fen", amount.get()),
    }
}

/// Reads the optional body: none (or an empty one) is the full refund.
fn refund_body(raw: &[u8]) -> Result<RefundOrder, OrderError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(RefundOrder::default());
    }
    let body: RefundOrder = serde_json::from_slice(raw)
        .map_err(|e| OrderError::InvalidRequest(format!("refund body: {e}")))?;
    if body.amount_fen.is_some_and(Fen::is_zero) {
        return Err(OrderError::InvalidRequest(
            "amount_fen must be positive".into(),
        ));
    }
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 80) {
        return Err(OrderError::InvalidRequest(
            "reason: at most 80 characters".into(),
        ));
    }
    if let Some(id) = &body.request_id
        && (id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
    {
        return Err(OrderError::InvalidRequest(
            "request_id: 1-64 characters of A-Z a-z 0-9 - _ . :".into(),
        ));
    }
    Ok(body)
}

/// Refund a paid order, in full or in part (operators, never students)
///
/// Forwards to the payment gateway's `POST /internal/refunds` a refund of the attempt that
/// paid the order: the whole amount without a body (idempotency key
/// `order-{order_id}-full-refund`), or `amount_fen` of it (key per order and
/// `request_id`, else per order and amount), so asking again answers the same refund
/// (200). The order itself changes only when the gateway's `refund.result.v1`
/// (`reason: requested`, `status: succeeded`, full amount, that attempt) arrives through
/// the broker (`paid → refunded`); a partial refund leaves it `paid`. The learning center
/// revokes the course once that payment's succeeded refunds reach its price.
#[utoipa::path(
    post,
    path = "/internal/orders/{order_id}/refund",
    operation_id = "refundOrder",
    security(("serviceToken" = ["operator"])),
    params(("order_id" = OrderId, Path)),
    request_body(content = Option<RefundOrder>, description = "optional: without it, the full amount"),
    responses(
        CallerErrors,
        (status = 201, description = "the gateway recorded the refund now", body = RefundTicket),
        (status = 200, description = "the refund of an earlier request for this order", body = RefundTicket),
        (status = 404, description = "`order_not_found`", body = ErrorBody),
        (
            status = 409,
            description = "`order_not_paid` (unpaid or closed), `refund_not_allowed` (the gateway refused: more than is left to refund)",
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
    raw: web::Bytes,
) -> Result<Stored<RefundTicket>, OrderError> {
    let order_id = path.into_inner();
    let body = refund_body(&raw)?;
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
                amount_fen: body.amount_fen.unwrap_or(order.total),
                reason: Some(
                    body.reason
                        .clone()
                        .unwrap_or_else(|| REFUND_REASON.to_owned()),
                ),
                request_id: None,
            },
            &refund_key_of(order_id, order.total, &body),
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
