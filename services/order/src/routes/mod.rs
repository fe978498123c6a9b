//! HTTP routes of the order service.

pub mod internal;
pub mod openapi;
pub mod orders;

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
        .service(
            web::scope("/api/orders")
                .route("", web::post().to(orders::create))
                .route("/{order_id}", web::get().to(orders::get))
                .route("/{order_id}/pay", web::post().to(orders::pay))
                .route("/{order_id}/pay-result", web::get().to(orders::pay_result)),
        )
        // Not for students: a refund is a business decision (operators, other services).
        .route(
            "/internal/orders/{order_id}/refund",
            web::post().to(internal::refund),
        );
}
