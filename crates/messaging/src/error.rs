//! The crate's single error type.

/// Everything that can go wrong while relaying or consuming. The run loops log these and
/// reconnect; they surface to callers only from one-shot helpers (`connect`, topology).
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database connection: {0}")]
    Connection(#[from] diesel::ConnectionError),
    #[error("database pool: {0}")]
    Pool(#[from] paywire_platform::db::PoolError),
    #[error("event serialization: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("outbox notification listener closed")]
    ListenerClosed,
    #[error("consumer stream of queue {0} ended")]
    ConsumerClosed(String),
    #[error("publishing channel is unusable: {0}")]
    ChannelBroken(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("acknowledgement for message {0} was not accepted by the broker")]
    AckLost(String),
}
