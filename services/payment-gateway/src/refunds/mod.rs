//! Refunds of stray money (recorded by [`crate::payments::record`]) and refunds the
//! order service asks for ([`request`]): driven to a final state by the one [`worker`]
//! (and by the channel's refund notifications), announced as `refund.result.v1`.

pub mod model;
pub mod request;
pub mod store;
pub mod worker;

pub use model::{Refund, RefundReason, RefundStatus};
pub use paywire_contracts::RefundResultV1;
