//! The web service's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use paywire_platform::api_error::{ApiError, Reply};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
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

/// Every answer shows its message: none names anything internal.
impl ApiError for WebError {
    fn reply(&self) -> Reply {
        let reply = match self {
            WebError::NotFound(_) => Reply::new(StatusCode::NOT_FOUND, "not_found"),
            WebError::InvalidRequest(_) => Reply::new(StatusCode::BAD_REQUEST, "invalid_request"),
            WebError::BodyTooLarge(_) => {
                Reply::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            WebError::UpstreamUnavailable { .. } => {
                Reply::new(StatusCode::BAD_GATEWAY, "upstream_unavailable")
            }
            WebError::UpstreamTimeout { .. } => {
                Reply::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
        };
        reply.detail()
    }
}
paywire_platform::api_error!(WebError);

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;

    #[test]
    fn each_error_has_its_status_and_code() {
        let cases = [
            (WebError::NotFound("/x".into()), 404, "not_found"),
            (WebError::InvalidRequest("x".into()), 400, "invalid_request"),
            (WebError::BodyTooLarge(1), 413, "body_too_large"),
            (
                WebError::UpstreamUnavailable {
                    service: "order",
                    reason: "refused".into(),
                },
                502,
                "upstream_unavailable",
            ),
            (
                WebError::UpstreamTimeout { service: "order" },
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
