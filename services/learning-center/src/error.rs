//! The learning center's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use paywire_domain::{ChooseCourseId, CourseId};
use paywire_platform::api_error::{ApiError, Reply};
use paywire_platform::db::{DbFault, PoolError, Transience};

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
    Pool(#[from] PoolError),
    #[error("corrupt row: {0}")]
    CorruptRow(String),
}

impl ApiError for LearningError {
    fn reply(&self) -> Reply {
        match self {
            LearningError::CourseNotFound(_) => {
                Reply::new(StatusCode::NOT_FOUND, "course_not_found")
            }
            LearningError::ChooseCourseNotFound(_) => {
                Reply::new(StatusCode::NOT_FOUND, "choose_course_not_found")
            }
            LearningError::Contention(_) => Reply::new(StatusCode::CONFLICT, "conflict"),
            LearningError::Database(e) => Reply::query(e),
            LearningError::Pool(e) => Reply::pool(e),
            LearningError::PayResultMismatch { .. }
            | LearningError::InvalidBizId(_)
            | LearningError::CorruptRow(_) => Reply::internal(),
        }
    }
}
paywire_platform::api_error!(LearningError);

impl Transience for LearningError {
    fn db_fault(&self) -> Option<DbFault> {
        match self {
            LearningError::Database(e) => Some(DbFault::of_query(e)),
            LearningError::Pool(e) => Some(DbFault::of_pool(e)),
            _ => None,
        }
    }

    /// Infrastructure, not data: the database, or races the request kept losing.
    fn is_transient(&self) -> bool {
        matches!(self, LearningError::Contention(_))
            || self.db_fault().is_some_and(DbFault::is_transient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;
    use paywire_platform::http::ErrorBody;

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
            (
                LearningError::Pool(PoolError::Closed),
                503,
                "database_unavailable",
            ),
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
            assert_eq!(err.reply().code, code);
        }
    }

    #[test]
    fn only_infrastructure_failures_are_transient() {
        assert!(LearningError::Pool(PoolError::Closed).is_transient());
        let closed = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection".to_owned()),
        );
        assert!(LearningError::Database(closed).is_transient());
        // A constraint violation or a missing row is parked at once, not retried.
        assert!(!LearningError::Database(diesel::result::Error::NotFound).is_transient());
        let duplicate = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate key".to_owned()),
        );
        assert!(!LearningError::Database(duplicate).is_transient());
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
