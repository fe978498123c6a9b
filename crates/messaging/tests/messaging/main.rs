//! The messaging crate's integration tests against a real PostgreSQL and RabbitMQ, one
//! binary with a module per suite; `common` holds the harness they share.

mod common;
mod consumer;
mod db_outage;
mod metrics;
mod relay;
mod resilience;
mod topology;
