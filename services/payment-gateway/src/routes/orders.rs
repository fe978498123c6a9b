//! Internal per-order endpoints for the order service: the active sync behind the
//! student's "I have paid" button and the order timeout's close.

use actix_web::web;
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::CallerErrors;
use paywire_contracts::openapi::answers::{ChannelErrors, RequestErrors};
use paywire_contracts::payment_gateway::{CloseResult, SyncResult};
use paywire_domain::OrderId;
use paywire_platform::auth::{FromOrder, ServiceCaller};

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::active;

/// Ask the channels about every unpaid attempt of an order
///
/// Behind the student's "I have paid" button. Each unpaid attempt is queried at its
/// channel; one found paid is recorded exactly as if its callback had come (guarded
/// `unpaid → paid` and `pay.result.v1` in the outbox, once). `pay_no` names the attempt
/// that paid the order (stray money that is being refunded does not count).
///
/// An attempt is asked about at most once every `payment.sync_min_interval_secs`
/// (default 5), across every gateway instance (a guarded timestamp in the database);
/// within that interval it counts as not paid unless the database already says otherwise.
#[utoipa::path(
    post,
    path = "/internal/orders/{order_id}/payments/sync",
    operation_id = "syncOrderPayments",
    tag = "internal",
    params(("order_id" = OrderId, Path)),
    responses(
        CallerErrors,
        (status = 200, description = "what the channels said", body = SyncResult),
        RequestErrors,
        ChannelErrors,
    )
)]
#[tracing::instrument(skip_all, fields(order_id = %path))]
pub async fn sync(
    _caller: ServiceCaller<FromOrder>,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<web::Json<SyncResult>, GatewayError> {
    Ok(web::Json(
        active::sync_order(&state, path.into_inner()).await?,
    ))
}

/// The order timeout: close every unpaid attempt, unless one is paid
///
/// For every unpaid attempt: query the channel; paid → recorded as if its callback had
/// come and the answer is `paid`; not paid → closed at the channel first, then locally
/// (`unpaid → closed`). When no unpaid attempt is left the order is closed for good
/// (`closed`): new attempts get 409 `order_closed`, and money that still arrives for it
/// is refunded automatically. Idempotent. A channel that cannot be reached → 503 and
/// nothing is guessed: retry later.
#[utoipa::path(
    post,
    path = "/internal/orders/{order_id}/payments/close",
    operation_id = "closeOrderPayments",
    tag = "internal",
    params(("order_id" = OrderId, Path)),
    responses(
        CallerErrors,
        (status = 200, description = "the order is paid or closed", body = CloseResult),
        RequestErrors,
        (status = 502, description = "`channel_rejected`", body = ErrorBody),
        (
            status = 503,
            description = "`channel_unavailable`, or `order_busy` (new attempts kept appearing): retry later",
            body = ErrorBody
        ),
    )
)]
#[tracing::instrument(skip_all, fields(order_id = %path))]
pub async fn close(
    _caller: ServiceCaller<FromOrder>,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<web::Json<CloseResult>, GatewayError> {
    Ok(web::Json(
        active::close_order(&state, path.into_inner()).await?,
    ))
}
