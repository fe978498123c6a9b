//! Endpoints for other Paywire services (service credential only).

use actix_web::web;
use paywire_contracts::ErrorBody;
use paywire_contracts::learning_center::ChooseCourseRecord;
use paywire_contracts::openapi::answers::CallerErrors;
use paywire_contracts::openapi::answers::RequestErrors;
use paywire_domain::ChooseCourseId;
use paywire_platform::auth::{FromOrder, ServiceCaller};

use crate::AppState;
use crate::error::LearningError;
use crate::store;

/// A choice as the order service needs it to price an order
#[utoipa::path(
    get,
    path = "/internal/choose-courses/{choose_course_id}",
    operation_id = "getChooseCourseRecord",
    tag = "internal",
    security(("serviceToken" = ["order"])),
    params(("choose_course_id" = ChooseCourseId, Path)),
    responses(
        CallerErrors,
        (status = 200, description = "the choice with the course's name and price", body = ChooseCourseRecord),
        (status = 404, description = "`choose_course_not_found`", body = ErrorBody),
        RequestErrors,
    )
)]
#[tracing::instrument(skip_all, fields(choose_course_id = %path))]
pub async fn choose_course(
    _caller: ServiceCaller<FromOrder>,
    state: web::Data<AppState>,
    path: web::Path<ChooseCourseId>,
) -> Result<web::Json<ChooseCourseRecord>, LearningError> {
    let id = path.into_inner();
    let choice = state
        .repeat(async |conn| store::find_choice(conn, id).await)
        .await?
        .ok_or(LearningError::ChooseCourseNotFound(id))?;
    Ok(web::Json(ChooseCourseRecord {
        choose_course_id: choice.id,
        user_id: choice.user_id,
        course_id: choice.course_id,
        course_name: choice.course_name,
        price_fen: choice.price,
        status: choice.status,
    }))
}
