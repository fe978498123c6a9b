//! Internal refund API, for the order service: ask for a refund of a paid attempt, look
//! at it.

use actix_web::{HttpRequest, web};
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::CallerErrors;
use paywire_contracts::openapi::answers::RequestErrors;
use paywire_contracts::payment_gateway::{IDEMPOTENCY_KEY_HEADER, RefundView, RequestRefund};
use paywire_domain::RefundNo;
use paywire_platform::answer::Stored;
use paywire_platform::auth::{FromOrder, ServiceCaller};
use paywire_platform::db::repeat_while_unavailable;

use crate::AppState;
use crate::error::GatewayError;
use crate::refunds::model::Refund;
use crate::refunds::request::{RefundRequest, request_refund};
use crate::refunds::store;

fn view(r: &Refund) -> RefundView {
    RefundView {
        refund_no: r.refund_no,
        pay_no: r.pay_no,
        order_id: r.order_id,
        channel: r.channel,
        amount_fen: r.amount,
        reason: r.reason,
        status: r.status,
        request_id: r.request_id.clone(),
        refunded_at: r.refunded_at,
    }
}

/// Refund (part of) a paid attempt
///
/// A business decision of the order service. Under the order's lock and the attempt's row
/// lock: the attempt must exist (404 `payment_not_found`), belong to `order_id`, be `paid`,
/// and the refunds of the attempt that are not `failed` plus this one must not exceed the
/// amount paid; otherwise 409 `refund_not_allowed` and nothing is recorded. Partial refunds
/// are allowed; the attempt becomes `refunded` once its succeeded refunds reach the amount
/// paid.
///
/// The refund is recorded `pending` (reason `requested`) and driven to a final state by the
/// gateway's refund worker (channel refund, then query or refund notification), which emits
/// `refund.result.v1` on the `paywire.pay-result` exchange.
///
/// Idempotent: the key comes as the `Idempotency-Key` header or as `request_id` in the body
/// (both → they must agree). The same key again answers 200 with the first refund as it
/// stands now; the same key for another order, attempt or amount is 409
/// `idempotency_conflict`.
#[utoipa::path(
    post,
    path = "/internal/refunds",
    operation_id = "requestRefund",
    tag = "internal",
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        description = "required unless the body has `request_id`; 1-128 printable characters"
    )),
    request_body = RequestRefund,
    responses(
        CallerErrors,
        (status = 201, description = "refund recorded", body = RefundView),
        (status = 200, description = "the refund of an earlier request with the same idempotency key", body = RefundView),
        (status = 404, description = "`payment_not_found`", body = ErrorBody),
        (status = 409, description = "`refund_not_allowed` or `idempotency_conflict`", body = ErrorBody),
        RequestErrors,
    )
)]
#[tracing::instrument(
    skip_all,
    fields(order_id = %body.order_id, pay_no = %body.pay_no, refund_no = tracing::field::Empty)
)]
pub async fn create(
    _caller: ServiceCaller<FromOrder>,
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Json<RequestRefund>,
) -> Result<Stored<RefundView>, GatewayError> {
    let header = match http.headers().get(IDEMPOTENCY_KEY_HEADER) {
        Some(v) => Some(v.to_str().map_err(|_| {
            GatewayError::InvalidRequest("the Idempotency-Key header is not text".into())
        })?),
        None => None,
    };
    let request = RefundRequest::parse(body.into_inner(), header)?;
    let outcome = request_refund(&state, &request).await?;
    tracing::Span::current().record(
        "refund_no",
        tracing::field::display(outcome.get().refund_no),
    );
    Ok(outcome.map(|r| view(&r)))
}

/// One refund (requested or of stray money)
#[utoipa::path(
    get,
    path = "/internal/refunds/{refund_no}",
    operation_id = "getRefund",
    tag = "internal",
    params(("refund_no" = RefundNo, Path)),
    responses(
        CallerErrors,
        (status = 200, description = "the refund", body = RefundView),
        (status = 404, description = "`refund_not_found`", body = ErrorBody),
        RequestErrors,
    )
)]
#[tracing::instrument(skip_all, fields(refund_no = %path))]
pub async fn get(
    _caller: ServiceCaller<FromOrder>,
    state: web::Data<AppState>,
    path: web::Path<RefundNo>,
) -> Result<web::Json<RefundView>, GatewayError> {
    let refund_no = path.into_inner();
    let refund = repeat_while_unavailable(&state.pool, state.retry_budget, async |conn| {
        store::find(conn, refund_no).await
    })
    .await?
    .ok_or(GatewayError::RefundNotFound(refund_no))?;
    Ok(web::Json(view(&refund)))
}
