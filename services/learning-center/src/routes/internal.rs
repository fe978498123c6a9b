//! Endpoints for other Paywire services (service credential only).

use actix_web::{HttpResponse, web};
use paywire_contracts::learning_center::ChooseCourseRecord;
use paywire_domain::ChooseCourseId;
use paywire_platform::auth::ServiceCaller;

use crate::AppState;
use crate::error::LearningError;
use crate::store;

/// `GET /internal/choose-courses/{choose_course_id}`.
#[tracing::instrument(skip_all, fields(choose_course_id = %path))]
pub async fn choose_course(
    _caller: ServiceCaller,
    state: web::Data<AppState>,
    path: web::Path<ChooseCourseId>,
) -> Result<HttpResponse, LearningError> {
    let id = path.into_inner();
    let mut conn = state.pool.get().await?;
    let choice = store::find_choice(&mut conn, id)
        .await?
        .ok_or(LearningError::ChooseCourseNotFound(id))?;
    Ok(HttpResponse::Ok().json(ChooseCourseRecord {
        choose_course_id: choice.id,
        user_id: choice.user_id,
        course_id: choice.course_id,
        course_name: choice.course_name,
        price_fen: choice.price,
        status: choice.status,
    }))
}
