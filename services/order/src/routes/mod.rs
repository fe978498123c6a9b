//! HTTP routes of the order service.

pub mod internal;
pub mod openapi;
pub mod orders;

use actix_web::web;
use paywire_platform::rate_limit::{RouteClass, limit};

/// The service's own routes on the public listener (the students' API); readiness, state
/// and credentials come with [`paywire_platform::http::api`], the limiters with
/// [`paywire_platform::rate_limit::with_limits`]. Creating, paying and asking for the pay
/// result are limited per user.
pub fn public(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/orders")
            .service(
                web::resource("")
                    .wrap(limit(RouteClass::CreateOrder))
                    .route(web::post().to(orders::create)),
            )
            .route("/{order_id}", web::get().to(orders::get))
            .service(
                web::resource("/{order_id}/pay")
                    .wrap(limit(RouteClass::Pay))
                    .route(web::post().to(orders::pay)),
            )
            .service(
                web::resource("/{order_id}/pay-result")
                    .wrap(limit(RouteClass::PayResult))
                    .route(web::get().to(orders::pay_result)),
            ),
    );
}

/// The routes of the internal listener. Not for students: a refund is a business decision
/// (operators, other services).
pub fn internal(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/internal/orders/{order_id}/refund",
        web::post().to(internal::refund),
    );
}
