//! HTTP routes.

pub mod callbacks;
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod refunds;

use actix_web::web;
use paywire_platform::auth::Authenticator;

use crate::AppState;

pub fn configure(
    cfg: &mut web::ServiceConfig,
    state: web::Data<AppState>,
    auth: web::Data<Authenticator>,
) {
    paywire_platform::http::readiness(cfg, state.pool.clone());
    cfg.app_data(state)
        .app_data(auth)
        .route("/internal/payments", web::post().to(payments::create))
        .route("/internal/payments/{pay_no}", web::get().to(payments::get))
        .route(
            "/internal/orders/{order_id}/payments/sync",
            web::post().to(orders::sync),
        )
        .route(
            "/internal/orders/{order_id}/payments/close",
            web::post().to(orders::close),
        )
        .route("/internal/refunds", web::post().to(refunds::create))
        .route("/internal/refunds/{refund_no}", web::get().to(refunds::get))
        .route(
            "/api/callback/{channel}",
            web::post().to(callbacks::notification),
        );
}
