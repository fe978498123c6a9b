//! The test kit's own integration tests (private PostgreSQL servers, a starting RabbitMQ
//! node), one binary with a module per suite.

mod private_postgres;
mod rabbitmq_start;
