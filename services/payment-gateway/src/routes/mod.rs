//! HTTP routes.

pub mod callbacks;
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod reconciliation;
pub mod refunds;

use actix_web::web;
use paywire_platform::rate_limit::{RouteClass, limit};

/// The service's own routes on the public listener: the channels' notifications, the only
/// thing the outside world calls, limited per client address
/// ([`paywire_platform::rate_limit`]); readiness, state and credentials come with
/// [`paywire_platform::http::api`].
pub fn public(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/callback/{channel}")
            .wrap(limit(RouteClass::Callback))
            .route(web::post().to(callbacks::notification)),
    );
}

/// The routes of the internal listener (the order service's calls, the operators'
/// reconciliation).
pub fn internal(cfg: &mut web::ServiceConfig) {
    cfg.route("/internal/payments", web::post().to(payments::create))
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
            "/internal/reconciliation",
            web::post().to(reconciliation::run),
        );
}
