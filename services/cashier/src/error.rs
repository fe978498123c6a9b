//! The cashier's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use paywire_platform::api_error::{ApiError, Reply};

#[derive(Debug, thiserror::Error)]
pub enum CashierError {
    #[error("no such page or API: {0}")]
    NotFound(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("{service} is unreachable: {reason}")]
    UpstreamUnavailable {
        service: &'static str,
        reason: String,
    },
    #[error("{service} did not answer in time")]
    UpstreamTimeout { service: &'static str },
}

/// Every answer shows its message, none naming anything internal: an unreachable
/// upstream's reason stays in the log.
impl ApiError for CashierError {
    fn reply(&self) -> Reply {
        let reply = match self {
            CashierError::NotFound(_) => Reply::new(StatusCode::NOT_FOUND, "not_found"),
            CashierError::InvalidRequest(_) => {
                Reply::new(StatusCode::BAD_REQUEST, "invalid_request")
            }
            CashierError::BodyTooLarge(_) => {
                Reply::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            // The reason (the client library's text, naming the upstream's URL) is logged,
            // never answered (issue 9).
            CashierError::UpstreamUnavailable { service, .. } => {
                return Reply::new(StatusCode::BAD_GATEWAY, "upstream_unavailable")
                    .message(format!("{service} is unreachable"));
            }
            CashierError::UpstreamTimeout { .. } => {
                Reply::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
        };
        reply.detail()
    }
}
paywire_platform::api_error!(CashierError);

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;

    #[test]
    fn each_error_has_its_status_and_code() {
        let cases = [
            (CashierError::NotFound("/x".into()), 404, "not_found"),
            (
                CashierError::InvalidRequest("x".into()),
                400,
                "invalid_request",
            ),
            (CashierError::BodyTooLarge(1), 413, "body_too_large"),
            (
                CashierError::UpstreamUnavailable {
                    service: "order",
                    reason: "refused".into(),
                },
                502,
                "upstream_unavailable",
            ),
            (
                CashierError::UpstreamTimeout { service: "order" },
                504,
                "upstream_timeout",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status_code().as_u16(), status);
            assert_eq!(err.reply().code, code);
        }
    }
}
