//! Internal payment-attempt API, for the order service.

use actix_web::web;
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::CallerErrors;
use paywire_contracts::openapi::answers::{AuthErrors, ChannelErrors, RequestErrors};
use paywire_contracts::payment_gateway::{CreatePayment, PaymentAttempt};
use paywire_domain::PayNo;
use paywire_platform::answer::Stored;
use paywire_platform::auth::{FromOrder, ServiceCaller};
use paywire_platform::db::repeat_while_unavailable;

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::{Payment, PaymentRequest, create_or_reuse, store};

fn view(p: &Payment) -> PaymentAttempt {
    PaymentAttempt {
        pay_no: p.pay_no,
        order_id: p.order_id,
        channel: p.channel,
        code_url: p.code_url.clone(),
        expires_at: p.expires_at,
        status: p.status,
    }
}

/// Create a payment attempt at a channel (or reuse a live one)
///
/// Reuses a still-valid unpaid attempt of the same order, channel and amount that has its
/// QR code (200); otherwise creates one at the channel (201). Refuses with 409
/// `order_already_paid` when an attempt paid the order, and 409 `order_closed` once the
/// order timeout closed it.
#[utoipa::path(
    post,
    path = "/internal/payments",
    operation_id = "createPayment",
    tag = "internal",
    request_body = CreatePayment,
    responses(
        CallerErrors,
        (status = 201, description = "a new attempt", body = PaymentAttempt),
        (status = 200, description = "a reused live attempt", body = PaymentAttempt),
        (status = 400, description = "`invalid_request`, `channel_not_enabled`", body = ErrorBody),
        (status = 409, description = "`order_already_paid`, `order_closed`, `payment_changed`", body = ErrorBody),
        AuthErrors,
        ChannelErrors,
    )
)]
#[tracing::instrument(
    skip_all,
    fields(order_id = %body.order_id, channel = %body.channel, pay_no = tracing::field::Empty)
)]
pub async fn create(
    _caller: ServiceCaller<FromOrder>,
    state: web::Data<AppState>,
    body: web::Json<CreatePayment>,
) -> Result<Stored<PaymentAttempt>, GatewayError> {
    let request = PaymentRequest::try_from(body.into_inner())?;
    let outcome = create_or_reuse(&state, request).await?;
    tracing::Span::current().record("pay_no", tracing::field::display(outcome.get().pay_no));
    Ok(outcome.map(|p| view(&p)))
}

/// One payment attempt
#[utoipa::path(
    get,
    path = "/internal/payments/{pay_no}",
    operation_id = "getPayment",
    tag = "internal",
    params(("pay_no" = PayNo, Path)),
    responses(
        CallerErrors,
        (status = 200, description = "the attempt", body = PaymentAttempt),
        (status = 404, description = "`payment_not_found`", body = ErrorBody),
        RequestErrors,
    )
)]
#[tracing::instrument(
    skip_all,
    fields(pay_no = %path, order_id = tracing::field::Empty, channel = tracing::field::Empty)
)]
pub async fn get(
    _caller: ServiceCaller<FromOrder>,
    state: web::Data<AppState>,
    path: web::Path<PayNo>,
) -> Result<web::Json<PaymentAttempt>, GatewayError> {
    let pay_no = path.into_inner();
    let payment = repeat_while_unavailable(&state.pool, state.retry_budget, async |conn| {
        store::find(conn, pay_no).await
    })
    .await?
    .ok_or(GatewayError::PaymentNotFound(pay_no))?;
    let span = tracing::Span::current();
    span.record("order_id", tracing::field::display(payment.order_id));
    span.record("channel", tracing::field::display(payment.channel));
    Ok(web::Json(view(&payment)))
}
