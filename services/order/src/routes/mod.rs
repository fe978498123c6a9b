//! HTTP routes of the order service.

pub mod internal;
pub mod openapi;
pub mod orders;

use actix_web::web;

/// The service's own routes; readiness, state and credentials come with
/// [`paywire_platform::http::api`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
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
