//! Refunds of stray money: recorded by [`crate::payments::record`], driven to a final
//! state by the [`worker`] (and by the channel's refund notifications), announced as
//! `refund.result.v1`.

pub mod model;
pub mod store;
pub mod worker;

pub use model::{Refund, RefundReason, RefundResultV1, RefundStatus};
