//! Payment attempts: creation (with reuse of a live attempt), storage, recording a
//! confirmed payment, and asking the channel actively.

pub mod active;
pub mod create;
pub mod record;
pub mod store;

pub use create::{AttemptOutcome, PaymentRequest, create_or_reuse};
pub use record::{Recorded, record_confirmed};
pub use store::{NotificationOutcome, Payment};
