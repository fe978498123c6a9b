//! Internal payment-attempt API, for the order service.

use actix_web::{HttpResponse, web};
use paywire_contracts::payment_gateway::{CreatePayment, PaymentAttempt};
use paywire_domain::PayNo;
use paywire_platform::auth::ServiceCaller;

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::{AttemptOutcome, Payment, PaymentRequest, create_or_reuse, store};

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

/// `POST /internal/payments`: 201 with a new attempt, 200 with a reused live one.
#[tracing::instrument(
    skip_all,
    fields(order_id = %body.order_id, channel = %body.channel, pay_no = tracing::field::Empty)
)]
pub async fn create(
    _caller: ServiceCaller,
    state: web::Data<AppState>,
    body: web::Json<CreatePayment>,
) -> Result<HttpResponse, GatewayError> {
    let request = PaymentRequest::try_from(body.into_inner())?;
    let outcome = create_or_reuse(&state, request).await?;
    let view = view(outcome.payment());
    tracing::Span::current().record("pay_no", tracing::field::display(view.pay_no));
    Ok(match outcome {
        AttemptOutcome::Created(_) => HttpResponse::Created().json(view),
        AttemptOutcome::Reused(_) => HttpResponse::Ok().json(view),
    })
}

/// `GET /internal/payments/{pay_no}`.
#[tracing::instrument(
    skip_all,
    fields(pay_no = %path, order_id = tracing::field::Empty, channel = tracing::field::Empty)
)]
pub async fn get(
    _caller: ServiceCaller,
    state: web::Data<AppState>,
    path: web::Path<PayNo>,
) -> Result<HttpResponse, GatewayError> {
    let pay_no = path.into_inner();
    let mut conn = state.pool.get().await?;
    let payment = store::find(&mut conn, pay_no)
        .await?
        .ok_or(GatewayError::PaymentNotFound(pay_no))?;
    let span = tracing::Span::current();
    span.record("order_id", tracing::field::display(payment.order_id));
    span.record("channel", tracing::field::display(payment.channel));
    Ok(HttpResponse::Ok().json(view(&payment)))
}
