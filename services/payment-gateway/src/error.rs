//! The gateway's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use paywire_domain::{OrderId, PayChannel, PayNo, RefundNo};
use paywire_platform::api_error::{ApiError, Reply};
use paywire_platform::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    #[error("channel {0} is not enabled")]
    ChannelNotEnabled(PayChannel),
    #[error("order {0} is already paid")]
    OrderAlreadyPaid(OrderId),
    #[error("order {0} is closed; it takes no new payment attempts")]
    OrderClosed(OrderId),
    #[error("order {0} kept changing while it was being closed; retry")]
    OrderBusy(OrderId),
    #[error("payment {0} not found")]
    PaymentNotFound(PayNo),
    #[error("payment {0} changed while it was being created; retry")]
    PaymentChanged(PayNo),
    #[error("refund not allowed: {0}")]
    RefundNotAllowed(String),
    #[error("refund {0} not found")]
    RefundNotFound(RefundNo),
    #[error("idempotency key reused for another request: {0}")]
    IdempotencyConflict(String),
    #[error("channel unavailable: {0}")]
    ChannelUnavailable(String),
    #[error("channel rejected the request: {code}: {message}")]
    ChannelRejected { code: String, message: String },
    #[error("{0}'s statement of {1} is being reconciled by another run")]
    ReconciliationRunning(PayChannel, chrono::NaiveDate),
    /// A statement that failed its check (hash, CRC, totals): nothing was compared.
    #[error("statement refused: {0}")]
    StatementRefused(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("corrupt row: {0}")]
    CorruptRow(String),
    #[error("messaging: {0}")]
    Messaging(#[from] paywire_messaging::MessagingError),
}

paywire_platform::db_error!(GatewayError);

impl ApiError for GatewayError {
    fn reply(&self) -> Reply {
        use StatusCode as S;
        match self {
            GatewayError::InvalidRequest(_) => Reply::new(S::BAD_REQUEST, "invalid_request"),
            GatewayError::ChannelNotEnabled(_) => Reply::new(S::BAD_REQUEST, "channel_not_enabled"),
            GatewayError::UnknownChannel(_) => Reply::new(S::NOT_FOUND, "unknown_channel"),
            GatewayError::PaymentNotFound(_) => Reply::new(S::NOT_FOUND, "payment_not_found"),
            GatewayError::RefundNotFound(_) => Reply::new(S::NOT_FOUND, "refund_not_found"),
            GatewayError::OrderAlreadyPaid(_) => Reply::new(S::CONFLICT, "order_already_paid"),
            GatewayError::OrderClosed(_) => Reply::new(S::CONFLICT, "order_closed"),
            GatewayError::PaymentChanged(_) => Reply::new(S::CONFLICT, "payment_changed"),
            GatewayError::RefundNotAllowed(_) => Reply::new(S::CONFLICT, "refund_not_allowed"),
            GatewayError::IdempotencyConflict(_) => Reply::new(S::CONFLICT, "idempotency_conflict"),
            // Retry later: the channel's answer is unknown, nothing was guessed or changed.
            // Why (the HTTP client's text, naming the channel's URL) is logged, never
            // answered (issue 9).
            GatewayError::ChannelUnavailable(_) => {
                Reply::new(S::SERVICE_UNAVAILABLE, "channel_unavailable")
                    .message("the payment channel did not answer; retry later")
            }
            GatewayError::OrderBusy(_) => Reply::new(S::SERVICE_UNAVAILABLE, "order_busy").detail(),
            GatewayError::ChannelRejected { .. } => {
                Reply::new(S::BAD_GATEWAY, "channel_rejected").detail()
            }
            GatewayError::ReconciliationRunning(..) => {
                Reply::new(S::CONFLICT, "reconciliation_running").detail()
            }
            GatewayError::StatementRefused(_) => Reply::new(S::BAD_GATEWAY, "statement_refused")
                .message("the channel's statement failed its check (hash, CRC or totals); nothing was compared"),
            GatewayError::Db(e) => e.reply(),
            GatewayError::CorruptRow(_) | GatewayError::Messaging(_) => Reply::internal(),
        }
    }
}
paywire_platform::api_error!(GatewayError);
