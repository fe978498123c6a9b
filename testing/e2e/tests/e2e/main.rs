//! End-to-end tests, one binary (the five services linked once, not once per suite) with a
//! module per suite; the platform harness is the crate's library (`paywire_e2e`).

mod browser;
mod faults;
mod hostile;
mod interop;
mod observability;
mod purchase;
mod refunds;
mod timeout;
mod traces;
