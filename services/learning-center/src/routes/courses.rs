//! The public course catalogue.

use actix_web::web;
use paywire_contracts::openapi::answers::ServerErrors;
use paywire_domain::{CourseCharge, CourseId, Fen};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::LearningError;
use crate::store::{self, Course};

/// A course on sale.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Course)]
pub struct CourseView {
    pub id: CourseId,
    pub name: String,
    pub charge: CourseCharge,
    pub price_fen: Fen,
    pub valid_days: u32,
}

impl From<Course> for CourseView {
    fn from(c: Course) -> Self {
        CourseView {
            id: c.id,
            name: c.name,
            charge: c.charge,
            price_fen: c.price,
            valid_days: c.valid_days,
        }
    }
}

/// The published catalogue
///
/// Needs no credential.
#[utoipa::path(
    get,
    path = "/api/learning/courses",
    operation_id = "listCourses",
    tag = "public",
    security(()),
    responses(
        (status = 200, description = "every course on sale", body = Vec<CourseView>),
        ServerErrors,
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list(state: web::Data<AppState>) -> Result<web::Json<Vec<CourseView>>, LearningError> {
    let courses = state
        .repeat(async |conn| store::list_courses(conn).await)
        .await?;
    Ok(web::Json(
        courses.into_iter().map(CourseView::from).collect(),
    ))
}
