//! Messaging written once for every service: the transactional outbox, the relay that
//! publishes it to RabbitMQ with publisher confirms, idempotent consumers backed by an inbox
//! table, and the broker topology (fanout exchange, per-service queues, retry and
//! dead-letter queues).
//!
//! Delivery is at-least-once end to end: the relay may publish a row twice (a lost confirm,
//! a crash before the row is marked), and the broker may redeliver. Consumers therefore
//! record every `message_id` in `processed_messages` in the same transaction as their
//! effects, which makes the effects exactly-once.

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub mod consumer;
pub mod error;
pub mod outbox;
pub mod relay;
pub mod schema;
pub mod topology;

pub use consumer::{
    ConsumerConfig, DEATH_REASON_HEADER, ERROR_HEADER, HandleError, IncomingMessage,
    MessageHandler, RETRY_COUNT_HEADER, run_consumer,
};
pub use error::MessagingError;
pub use outbox::{NOTIFY_CHANNEL, OutboxMessage, enqueue};
pub use relay::{RelayConfig, run_relay};
pub use topology::{
    RetryPolicy, connect, dead_letter_queue_name, declare_at_startup, declare_delay_queue,
    declare_fanout_exchange, declare_pay_result_topology, declare_subscriber_queue,
    retry_queue_name,
};

/// The outbox and inbox tables; every service applies this set before its own.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/messaging");
