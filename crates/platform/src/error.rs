/// Failures of the shared plumbing (start-up, configuration, database bootstrap).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("configuration: {0}")]
    Config(#[from] ::config::ConfigError),
    #[error("database {action}: {message}")]
    Database {
        action: &'static str,
        message: String,
    },
    #[error("migrations: {0}")]
    Migration(String),
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
    #[error("telemetry: {0}")]
    Telemetry(String),
}
