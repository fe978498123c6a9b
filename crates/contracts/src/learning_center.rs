//! The learning center's internal API (service credential).

use paywire_domain::{ChooseCourseId, ChooseCourseStatus, CourseId, Fen, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /internal/choose-courses/{choose_course_id}`: the record an order pays for. The
/// price here is the only price an order uses; it never takes one from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChooseCourseRecord {
    pub choose_course_id: ChooseCourseId,
    pub user_id: UserId,
    pub course_id: CourseId,
    pub course_name: String,
    pub price_fen: Fen,
    pub status: ChooseCourseStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_wire;

    #[test]
    fn choose_course_record_keeps_its_wire_format() {
        assert_wire(
            &ChooseCourseRecord {
                choose_course_id: ChooseCourseId::from(11),
                user_id: UserId::parse("alice").unwrap(),
                course_id: CourseId::from(2),
                course_name: "Rust 入门".into(),
                price_fen: Fen::new(19900).unwrap(),
                status: ChooseCourseStatus::AwaitingPayment,
            },
            r#"{"choose_course_id":"11","user_id":"alice","course_id":"2","course_name":"Rust 入门","price_fen":19900,"status":"awaiting_payment"}"#,
        );
    }
}
