//! The cashier's integration tests, one binary (one link of the service) with a module per
//! suite.

mod api;
mod production;
