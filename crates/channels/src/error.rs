//! The crate's errors: calls to a channel, incoming notifications, and local crypto/keys.

/// A failed call to a payment channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Connect error, 5xx, `SYSTEM_ERROR`, `FREQUENCY_LIMITED`: try again later.
    #[error("channel unavailable: {0}")]
    Unavailable(String),
    /// No answer within the client's timeout: what the channel did is unknown (a create
    /// may have gone through), so the same call is safe only because every call is keyed
    /// by our trade or refund number. Try again later.
    #[error("channel timed out: {0}")]
    TimedOut(String),
    /// The response was not signed by the channel; its content must not be trusted.
    #[error("channel response signature invalid: {0}")]
    BadResponseSignature(String),
    /// A documented business error (`PARAM_ERROR`, `ORDER_CLOSED`, `SIGN_ERROR`, ...).
    #[error("channel rejected the request: {code}: {message}")]
    Rejected { code: String, message: String },
    /// The channel does not know the trade (`ORDER_NOT_EXIST`).
    #[error("trade not found at the channel")]
    NotFound,
    /// A signed, well-formed response whose content we cannot use.
    #[error("unexpected channel response: {0}")]
    UnexpectedResponse(String),
    /// A statement that fails its check (hash, zip CRC, totals) or cannot be read: never
    /// reconciled against.
    #[error("channel statement refused: {0}")]
    BadStatement(String),
    /// Local misconfiguration (bad key, bad URL, ...).
    #[error("channel configuration error: {0}")]
    Config(String),
}

impl ChannelError {
    /// Whether the same call may succeed later. A bad signature is retryable: the
    /// answer may have been tampered with or garbled, and querying again is safe.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ChannelError::Unavailable(_)
                | ChannelError::TimedOut(_)
                | ChannelError::BadResponseSignature(_)
        )
    }
}

/// Why an incoming notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("notification signature invalid")]
    BadSignature,
    #[error("notification timestamp outside the allowed window")]
    StaleTimestamp,
    #[error("notification signed with an unknown key serial")]
    UnknownSerial,
    #[error("malformed notification: {0}")]
    Malformed(String),
    #[error("notification resource could not be decrypted")]
    Decrypt,
    #[error("notification is for another merchant or app")]
    WrongMerchant,
    #[error("unsupported notification event {0}")]
    Unsupported(String),
    /// The notification was fine but we could not process it (e.g. the database is
    /// down): the channel must deliver it again.
    #[error("notification not processed: {0}")]
    Internal(String),
}

/// Local crypto or key-handling failure (bad key material, bad lengths, bad encoding).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("AES-GCM key must be 32 bytes, got {0}")]
    InvalidAesKeyLength(usize),
    #[error("AES-GCM nonce must be 12 bytes, got {0}")]
    InvalidNonceLength(usize),
    #[error("invalid base64")]
    Base64,
    #[error("authenticated decryption failed")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(String),
    #[error("cannot read key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}
