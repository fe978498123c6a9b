//! The learning center's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use paywire_domain::{ChooseCourseId, CourseId};
use paywire_platform::api_error::{ApiError, Reply};
use paywire_platform::db::DbError;

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
    /// A refund result this service cannot apply (e.g. succeeded without a time).
    #[error("invalid refund result: {0}")]
    InvalidRefundResult(String),
    /// The same request lost every race it retried (should not happen; logged).
    #[error("concurrent changes prevented the request: {0}")]
    Contention(String),
    #[error(transparent)]
    Db(#[from] DbError),
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
            LearningError::Db(e) => e.reply(),
            LearningError::PayResultMismatch { .. }
            | LearningError::InvalidBizId(_)
            | LearningError::InvalidRefundResult(_)
            | LearningError::CorruptRow(_) => Reply::internal(),
        }
    }
}
paywire_platform::api_error!(LearningError);

// Transient: infrastructure, not data: the database, or races the request kept losing.
paywire_platform::db_error!(LearningError, transient: LearningError::Contention(_));

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_platform::db::{PoolError, Transience};
    use paywire_testkit::api::{assert_hides_details, assert_replies};

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
                LearningError::from(PoolError::Closed),
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
        assert_replies(cases);
    }

    #[test]
    fn only_infrastructure_failures_are_transient() {
        assert!(LearningError::from(PoolError::Closed).is_transient());
        let closed = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection".to_owned()),
        );
        assert!(LearningError::from(closed).is_transient());
        // A constraint violation or a missing row is parked at once, not retried.
        assert!(!LearningError::from(diesel::result::Error::NotFound).is_transient());
        let duplicate = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate key".to_owned()),
        );
        assert!(!LearningError::from(duplicate).is_transient());
        assert!(!LearningError::ChooseCourseNotFound(ChooseCourseId::from(1)).is_transient());
        assert!(!LearningError::InvalidBizId("x".into()).is_transient());
    }

    #[test]
    fn server_errors_hide_their_details() {
        assert_hides_details(
            LearningError::CorruptRow("secret detail".into()),
            "secret detail",
        );
    }
}
