//! HTTP routes of the learning center.

pub mod choose;
pub mod courses;
pub mod internal;
pub mod openapi;

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
            web::scope("/api/learning")
                .route("/courses", web::get().to(courses::list))
                .route("/choose-course", web::post().to(choose::choose))
                .route(
                    "/learn-status/{course_id}",
                    web::get().to(choose::learn_status),
                )
                .route("/my-courses", web::get().to(choose::my_courses)),
        )
        .service(web::scope("/internal").route(
            "/choose-courses/{choose_course_id}",
            web::get().to(internal::choose_course),
        ));
}
