//! Internal payment-attempt API, for the order service.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use paywire_domain::{OrderId, PayChannel, PayNo, PaymentStatus};
use paywire_platform::auth::ServiceCaller;
use serde::Serialize;

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::create::CreatePaymentBody;
use crate::payments::{AttemptOutcome, Payment, PaymentRequest, create_or_reuse, store};

#[derive(Debug, Serialize)]
pub struct PaymentView {
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub channel: PayChannel,
    pub code_url: Option<String>,
    #[serde(serialize_with = "rfc3339_seconds")]
    pub expires_at: DateTime<Utc>,
    pub status: PaymentStatus,
}

fn rfc3339_seconds<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> Self {
        PaymentView {
            pay_no: p.pay_no,
            order_id: p.order_id,
            channel: p.channel,
            code_url: p.code_url.clone(),
            expires_at: p.expires_at,
            status: p.status,
        }
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
    body: web::Json<CreatePaymentBody>,
) -> Result<HttpResponse, GatewayError> {
    let request = PaymentRequest::try_from(body.into_inner())?;
    let outcome = create_or_reuse(&state, request).await?;
    let view = PaymentView::from(outcome.payment());
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
    let mut conn = state.conn().await?;
    let payment = store::find(&mut conn, pay_no)
        .await?
        .ok_or(GatewayError::PaymentNotFound(pay_no))?;
    let span = tracing::Span::current();
    span.record("order_id", tracing::field::display(payment.order_id));
    span.record("channel", tracing::field::display(payment.channel));
    Ok(HttpResponse::Ok().json(PaymentView::from(&payment)))
}
