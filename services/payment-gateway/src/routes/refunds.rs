//! Internal refund API, for the order service: ask for a refund of a paid attempt, look
//! at it.

use actix_web::{HttpRequest, HttpResponse, web};
use paywire_contracts::payment_gateway::{IDEMPOTENCY_KEY_HEADER, RefundView, RequestRefund};
use paywire_domain::RefundNo;
use paywire_platform::auth::ServiceCaller;

use crate::AppState;
use crate::error::GatewayError;
use crate::refunds::model::Refund;
use crate::refunds::request::{RefundRequest, RefundRequested, request_refund};
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

/// `POST /internal/refunds`: 201 with a new refund, 200 with the refund of an earlier
/// request with the same idempotency key.
#[tracing::instrument(
    skip_all,
    fields(order_id = %body.order_id, pay_no = %body.pay_no, refund_no = tracing::field::Empty)
)]
pub async fn create(
    _caller: ServiceCaller,
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Json<RequestRefund>,
) -> Result<HttpResponse, GatewayError> {
    let header = match http.headers().get(IDEMPOTENCY_KEY_HEADER) {
        Some(v) => Some(v.to_str().map_err(|_| {
            GatewayError::InvalidRequest("the Idempotency-Key header is not text".into())
        })?),
        None => None,
    };
    let request = RefundRequest::parse(body.into_inner(), header)?;
    let outcome = request_refund(&state, &request).await?;
    let view = view(outcome.refund());
    tracing::Span::current().record("refund_no", tracing::field::display(view.refund_no));
    Ok(match outcome {
        RefundRequested::Created(_) => HttpResponse::Created().json(view),
        RefundRequested::Existing(_) => HttpResponse::Ok().json(view),
    })
}

/// `GET /internal/refunds/{refund_no}`.
#[tracing::instrument(skip_all, fields(refund_no = %path))]
pub async fn get(
    _caller: ServiceCaller,
    state: web::Data<AppState>,
    path: web::Path<RefundNo>,
) -> Result<HttpResponse, GatewayError> {
    let refund_no = path.into_inner();
    let mut conn = state.pool.get().await?;
    let refund = store::find(&mut conn, refund_no)
        .await?
        .ok_or(GatewayError::RefundNotFound(refund_no))?;
    Ok(HttpResponse::Ok().json(view(&refund)))
}
