//! The learning center's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paywire_domain::{ChooseCourseId, CourseId};
use paywire_platform::http::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum LearningError {
    #[error("course {0} not found")]
    CourseNotFound(CourseId),
    /// Unknown choice, or (on user endpoints) one that belongs to someone else.
    #[error("choose-course record {0} not found")]
    ChooseCourseNotFound(ChooseCourseId),
    /// A pay result that contradicts its choice (user or amount): investigated, never applied.
    #[error("pay result for choose-course record {choose_course_id} does not match it: {reason}")]
    PayResultMismatch {
        choose_course_id: ChooseCourseId,
        reason: String,
    },
    /// A pay result naming a business record this service cannot read.
    #[error("pay result names an invalid business record: {0}")]
    InvalidBizId(String),
    /// The same request lost every race it retried (should not happen; logged).
    #[error("concurrent changes prevented the request: {0}")]
    Contention(String),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("corrupt row: {0}")]
    CorruptRow(String),
}

impl LearningError {
    pub fn code(&self) -> &'static str {
        match self {
            LearningError::CourseNotFound(_) => "course_not_found",
            LearningError::ChooseCourseNotFound(_) => "choose_course_not_found",
            LearningError::Contention(_) => "conflict",
            LearningError::PayResultMismatch { .. }
            | LearningError::InvalidBizId(_)
            | LearningError::Database(_)
            | LearningError::Pool(_)
            | LearningError::CorruptRow(_) => "internal_error",
        }
    }

    /// Whether retrying the same work later may succeed (infrastructure, not data).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LearningError::Database(_) | LearningError::Pool(_) | LearningError::Contention(_)
        )
    }
}

impl ResponseError for LearningError {
    fn status_code(&self) -> StatusCode {
        match self {
            LearningError::CourseNotFound(_) | LearningError::ChooseCourseNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            LearningError::Contention(_) => StatusCode::CONFLICT,
            LearningError::PayResultMismatch { .. }
            | LearningError::InvalidBizId(_)
            | LearningError::Database(_)
            | LearningError::Pool(_)
            | LearningError::CorruptRow(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Internal details stay in the log; callers get a stable code.
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        HttpResponse::build(status).json(ErrorBody::new(self.code(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_stable_codes_and_statuses() {
        let cases = [
            (
                LearningError::CourseNotFound(CourseId::from(9)),
                404,
                "course_not_found",
            ),
            (
                LearningError::ChooseCourseNotFound(ChooseCourseId::from(9)),
                404,
                "choose_course_not_found",
            ),
            (LearningError::Contention("x".into()), 409, "conflict"),
            (LearningError::Pool("gone".into()), 500, "internal_error"),
            (
                LearningError::PayResultMismatch {
                    choose_course_id: ChooseCourseId::from(9),
                    reason: "user".into(),
                },
                500,
                "internal_error",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status_code().as_u16(), status, "{err}");
            assert_eq!(err.code(), code);
        }
    }

    #[test]
    fn only_infrastructure_failures_are_transient() {
        assert!(LearningError::Pool("x".into()).is_transient());
        assert!(LearningError::Database(diesel::result::Error::NotFound).is_transient());
        assert!(!LearningError::ChooseCourseNotFound(ChooseCourseId::from(1)).is_transient());
        assert!(!LearningError::InvalidBizId("x".into()).is_transient());
    }

    #[test]
    fn server_errors_hide_their_details() {
        let resp = LearningError::CorruptRow("secret detail".into()).error_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = actix_web::body::MessageBody::try_into_bytes(resp.into_body()).unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error, "internal_error");
        assert!(!body.message.contains("secret detail"));
    }
}
