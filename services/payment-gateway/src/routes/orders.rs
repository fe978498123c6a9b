//! Internal per-order endpoints for the order service: the active sync behind the
//! student's "I have paid" button and the order timeout's close.

use actix_web::{HttpResponse, web};
use paywire_domain::OrderId;
use paywire_platform::auth::ServiceCaller;

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::active;

/// `POST /internal/orders/{order_id}/payments/sync` → `{"order_id","paid","pay_no"}`.
#[tracing::instrument(skip_all, fields(order_id = %path))]
pub async fn sync(
    _caller: ServiceCaller,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<HttpResponse, GatewayError> {
    let view = active::sync_order(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /internal/orders/{order_id}/payments/close` → `{"order_id","outcome","pay_no"}`.
#[tracing::instrument(skip_all, fields(order_id = %path))]
pub async fn close(
    _caller: ServiceCaller,
    state: web::Data<AppState>,
    path: web::Path<OrderId>,
) -> Result<HttpResponse, GatewayError> {
    let view = active::close_order(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}
