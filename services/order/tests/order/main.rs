//! The order service's integration tests, one binary (one link of the service) with a
//! module per suite; `common` holds the harness and the HTTP peers they share.

mod api;
mod common;
mod migrate;
mod production;
mod rate_limits;
mod refunds;
mod timeout;
