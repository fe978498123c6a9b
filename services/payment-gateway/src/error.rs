//! The gateway's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paywire_domain::{OrderId, PayChannel, PayNo, RefundNo};
use paywire_platform::http::ErrorBody;

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
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("corrupt row: {0}")]
    CorruptRow(String),
    #[error("messaging: {0}")]
    Messaging(#[from] paywire_messaging::MessagingError),
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::UnknownChannel(_) => "unknown_channel",
            GatewayError::ChannelNotEnabled(_) => "channel_not_enabled",
            GatewayError::OrderAlreadyPaid(_) => "order_already_paid",
            GatewayError::OrderClosed(_) => "order_closed",
            GatewayError::OrderBusy(_) => "order_busy",
            GatewayError::PaymentNotFound(_) => "payment_not_found",
            GatewayError::PaymentChanged(_) => "payment_changed",
            GatewayError::RefundNotAllowed(_) => "refund_not_allowed",
            GatewayError::RefundNotFound(_) => "refund_not_found",
            GatewayError::IdempotencyConflict(_) => "idempotency_conflict",
            GatewayError::ChannelUnavailable(_) => "channel_unavailable",
            GatewayError::ChannelRejected { .. } => "channel_rejected",
            GatewayError::Database(_)
            | GatewayError::Pool(_)
            | GatewayError::CorruptRow(_)
            | GatewayError::Messaging(_) => "internal_error",
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            GatewayError::InvalidRequest(_) | GatewayError::ChannelNotEnabled(_) => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::UnknownChannel(_)
            | GatewayError::PaymentNotFound(_)
            | GatewayError::RefundNotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::OrderAlreadyPaid(_)
            | GatewayError::OrderClosed(_)
            | GatewayError::PaymentChanged(_)
            | GatewayError::RefundNotAllowed(_)
            | GatewayError::IdempotencyConflict(_) => StatusCode::CONFLICT,
            // Retry later: the channel's answer is unknown, nothing was guessed or changed.
            GatewayError::ChannelUnavailable(_) | GatewayError::OrderBusy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::ChannelRejected { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::Database(_)
            | GatewayError::Pool(_)
            | GatewayError::CorruptRow(_)
            | GatewayError::Messaging(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Internal details stay in the log; callers get a stable code.
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        HttpResponse::build(status).json(ErrorBody::new(self.code(), message))
    }
}
