//! HTTP routes of the learning center.

pub mod choose;
pub mod courses;
pub mod internal;
pub mod openapi;

use actix_web::web;

/// The service's own routes on the public listener (the students' API); readiness, state
/// and credentials come with [`paywire_platform::http::api`].
pub fn public(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/learning")
            .route("/courses", web::get().to(courses::list))
            .route("/choose-course", web::post().to(choose::choose))
            .route(
                "/learn-status/{course_id}",
                web::get().to(choose::learn_status),
            )
            .route("/my-courses", web::get().to(choose::my_courses)),
    );
}

/// The routes of the internal listener (the order service's questions).
pub fn internal(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/internal").route(
        "/choose-courses/{choose_course_id}",
        web::get().to(internal::choose_course),
    ));
}
