//! The web service's one error type, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paywire_platform::http::ErrorBody;

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

impl WebError {
    fn code(&self) -> &'static str {
        match self {
            WebError::NotFound(_) => "not_found",
            WebError::InvalidRequest(_) => "invalid_request",
            WebError::BodyTooLarge(_) => "body_too_large",
            WebError::UpstreamUnavailable { .. } => "upstream_unavailable",
            WebError::UpstreamTimeout { .. } => "upstream_timeout",
        }
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            WebError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::UpstreamUnavailable { .. } => StatusCode::BAD_GATEWAY,
            WebError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(ErrorBody::new(self.code(), self.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(err.code(), code);
        }
    }
}
