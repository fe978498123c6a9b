//! The order service's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use paywire_domain::{OrderId, PayChannel};
use paywire_platform::api_error::{ApiError, Reply};
use paywire_platform::db::DbError;

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
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("corrupt row: {0}")]
    CorruptRow(String),
    #[error("encoding a message: {0}")]
    Encode(#[from] serde_json::Error),
}

impl ApiError for OrderError {
    fn reply(&self) -> Reply {
        use StatusCode as S;
        match self {
            OrderError::InvalidRequest(_) => Reply::new(S::BAD_REQUEST, "invalid_request"),
            OrderError::InvalidChannel(_) => Reply::new(S::BAD_REQUEST, "invalid_channel"),
            OrderError::ChannelNotEnabled(_) => Reply::new(S::BAD_REQUEST, "channel_not_enabled"),
            OrderError::BizNotFound => Reply::new(S::NOT_FOUND, "biz_not_found"),
            OrderError::OrderNotFound(_) => Reply::new(S::NOT_FOUND, "order_not_found"),
            OrderError::BizNotPayable(_) => Reply::new(S::CONFLICT, "biz_not_payable"),
            OrderError::OrderAlreadyPaid(_) => Reply::new(S::CONFLICT, "order_already_paid"),
            OrderError::OrderClosed(_) => Reply::new(S::CONFLICT, "order_closed"),
            OrderError::OrderRefunded(_) => Reply::new(S::CONFLICT, "order_refunded"),
            OrderError::OrderNotPaid(_) => Reply::new(S::CONFLICT, "order_not_paid"),
            OrderError::RefundNotAllowed(_) => Reply::new(S::CONFLICT, "refund_not_allowed"),
            OrderError::UpstreamUnavailable { .. } => {
                Reply::new(S::SERVICE_UNAVAILABLE, "upstream_unavailable")
            }
            OrderError::UpstreamRejected { .. } | OrderError::BadUpstreamResponse { .. } => {
                Reply::new(S::BAD_GATEWAY, "upstream_error")
            }
            OrderError::Db(e) => e.reply(),
            OrderError::PayResultMismatch { .. }
            | OrderError::CorruptRow(_)
            | OrderError::Encode(_) => Reply::internal(),
        }
    }
}
paywire_platform::api_error!(OrderError);

// Transient: infrastructure, not data: the database, or an upstream that cannot be reached.
paywire_platform::db_error!(OrderError, transient: OrderError::UpstreamUnavailable { .. });

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_platform::db::PoolError;
    use paywire_testkit::api::{assert_hides_details, assert_replies};

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
            (
                OrderError::from(PoolError::Closed),
                503,
                "database_unavailable",
            ),
            (
                OrderError::from(diesel::result::Error::NotFound),
                500,
                "internal_error",
            ),
        ];
        assert_replies(cases);
    }

    #[test]
    fn server_errors_hide_their_details() {
        assert_hides_details(
            OrderError::CorruptRow("secret detail".into()),
            "secret detail",
        );
    }
}
