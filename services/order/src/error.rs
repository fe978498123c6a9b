//! The order service's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paywire_domain::{OrderId, PayChannel};
use paywire_platform::http::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid channel: {0}")]
    InvalidChannel(String),
    /// Unknown business record, or one that belongs to someone else (indistinguishable on
    /// purpose: the caller must not learn which records exist).
    #[error("business record not found")]
    BizNotFound,
    #[error("business record cannot be paid: {0}")]
    BizNotPayable(String),
    #[error("order {0} not found")]
    OrderNotFound(OrderId),
    #[error("order {0} is already paid")]
    OrderAlreadyPaid(OrderId),
    #[error("order {0} is closed")]
    OrderClosed(OrderId),
    #[error("order {0} was refunded")]
    OrderRefunded(OrderId),
    #[error("order {0} is not paid; there is nothing to refund")]
    OrderNotPaid(OrderId),
    #[error("the payment gateway refused the refund: {0}")]
    RefundNotAllowed(String),
    #[error("channel {0} is not enabled")]
    ChannelNotEnabled(PayChannel),
    #[error("{service} is unavailable: {reason}")]
    UpstreamUnavailable {
        service: &'static str,
        reason: String,
    },
    #[error("{service} refused the request ({status}): {code}: {message}")]
    UpstreamRejected {
        service: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{service} answered something unexpected: {reason}")]
    BadUpstreamResponse {
        service: &'static str,
        reason: String,
    },
    /// A pay result that contradicts the order (amount, user or business record): it must
    /// be investigated, never applied.
    #[error("pay result for order {order_id} does not match it: {reason}")]
    PayResultMismatch { order_id: OrderId, reason: String },
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("corrupt row: {0}")]
    CorruptRow(String),
    #[error("encoding a message: {0}")]
    Encode(#[from] serde_json::Error),
}

impl OrderError {
    pub fn code(&self) -> &'static str {
        match self {
            OrderError::InvalidRequest(_) => "invalid_request",
            OrderError::InvalidChannel(_) => "invalid_channel",
            OrderError::BizNotFound => "biz_not_found",
            OrderError::BizNotPayable(_) => "biz_not_payable",
            OrderError::OrderNotFound(_) => "order_not_found",
            OrderError::OrderAlreadyPaid(_) => "order_already_paid",
            OrderError::OrderClosed(_) => "order_closed",
            OrderError::OrderRefunded(_) => "order_refunded",
            OrderError::OrderNotPaid(_) => "order_not_paid",
            OrderError::RefundNotAllowed(_) => "refund_not_allowed",
            OrderError::ChannelNotEnabled(_) => "channel_not_enabled",
            OrderError::UpstreamUnavailable { .. } => "upstream_unavailable",
            OrderError::UpstreamRejected { .. } | OrderError::BadUpstreamResponse { .. } => {
                "upstream_error"
            }
            OrderError::PayResultMismatch { .. }
            | OrderError::Database(_)
            | OrderError::Pool(_)
            | OrderError::CorruptRow(_)
            | OrderError::Encode(_) => "internal_error",
        }
    }

    /// Whether retrying the same work later may succeed (infrastructure, not data).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OrderError::Database(_) | OrderError::Pool(_) | OrderError::UpstreamUnavailable { .. }
        )
    }
}

impl ResponseError for OrderError {
    fn status_code(&self) -> StatusCode {
        match self {
            OrderError::InvalidRequest(_)
            | OrderError::InvalidChannel(_)
            | OrderError::ChannelNotEnabled(_) => StatusCode::BAD_REQUEST,
            OrderError::BizNotFound | OrderError::OrderNotFound(_) => StatusCode::NOT_FOUND,
            OrderError::BizNotPayable(_)
            | OrderError::OrderAlreadyPaid(_)
            | OrderError::OrderClosed(_)
            | OrderError::OrderRefunded(_)
            | OrderError::OrderNotPaid(_)
            | OrderError::RefundNotAllowed(_) => StatusCode::CONFLICT,
            OrderError::UpstreamUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            OrderError::UpstreamRejected { .. } | OrderError::BadUpstreamResponse { .. } => {
                StatusCode::BAD_GATEWAY
            }
            OrderError::PayResultMismatch { .. }
            | OrderError::Database(_)
            | OrderError::Pool(_)
            | OrderError::CorruptRow(_)
            | OrderError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Internal and upstream details stay in the log; callers get a stable code.
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "a service this request depends on is unavailable; retry later".to_owned()
                }
                StatusCode::BAD_GATEWAY => "an upstream service failed".to_owned(),
                _ => "internal error".to_owned(),
            }
        } else {
            self.to_string()
        };
        HttpResponse::build(status).json(ErrorBody::new(self.code(), message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_stable_codes_and_statuses() {
        let id = OrderId::from(5);
        let cases = [
            (OrderError::BizNotFound, 404, "biz_not_found"),
            (
                OrderError::BizNotPayable("x".into()),
                409,
                "biz_not_payable",
            ),
            (OrderError::OrderNotFound(id), 404, "order_not_found"),
            (OrderError::OrderAlreadyPaid(id), 409, "order_already_paid"),
            (OrderError::OrderClosed(id), 409, "order_closed"),
            (
                OrderError::InvalidChannel("x".into()),
                400,
                "invalid_channel",
            ),
            (
                OrderError::UpstreamUnavailable {
                    service: "learning-center",
                    reason: "timeout".into(),
                },
                503,
                "upstream_unavailable",
            ),
            (OrderError::Pool("gone".into()), 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status_code().as_u16(), status, "{err}");
            assert_eq!(err.code(), code);
        }
    }

    #[test]
    fn server_errors_hide_their_details() {
        let resp = OrderError::CorruptRow("secret detail".into()).error_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = actix_web::body::MessageBody::try_into_bytes(resp.into_body()).unwrap();
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error, "internal_error");
        assert!(!body.message.contains("secret detail"));
    }
}
