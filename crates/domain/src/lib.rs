//! The shared vocabulary of Paywire.
//!
//! Everything a service says to another service (over HTTP or through the broker) is
//! built from these types, so they are parsed once at the edge and trusted inside; the
//! messages themselves are declared in `paywire-contracts`.

pub mod biz;
pub mod channel;
pub mod id;
pub mod money;
pub mod schema;
pub mod status;
pub mod topology;
pub mod user;

pub use biz::BizType;
pub use channel::PayChannel;
pub use id::{ChooseCourseId, CourseId, EventId, IdGenerator, OrderId, PayNo, RefundNo};
pub use money::Fen;
pub use status::{
    ChooseCourseStatus, CourseCharge, EnrolmentStatus, InvalidTransition, LearnStatus, OrderStatus,
    PaymentStatus, RefundReason, RefundStatus, SideEdge, TextEnum,
};
pub use user::UserId;

/// Error for a string that does not parse into one of the domain's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct ParseError {
    pub what: &'static str,
    pub reason: String,
}

impl ParseError {
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}
