//! Payment attempts: creation (with reuse of a live attempt) and storage.

pub mod create;
pub mod store;

pub use create::{AttemptOutcome, PaymentRequest, create_or_reuse};
pub use store::{NotificationOutcome, Payment};
