//! HTTP clients for the services the order service depends on. Each call carries the
//! service credential and a timeout; failures become [`OrderError`]s a caller can act on:
//! unreachable, timed out or 5xx → `UpstreamUnavailable` (503 to our caller).

pub mod learning_center;
pub mod payment_gateway;

use std::time::Duration;

use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_platform::http::ErrorBody;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::error::OrderError;

pub use learning_center::{ChooseCourseRecord, LearningCenterClient};
pub use payment_gateway::{
    CloseOutcome, CreatePayment, PaymentAttempt, PaymentGatewayClient, RefundAnswer, RefundView,
    RequestRefund, SyncResult,
};

/// One `reqwest` client per upstream, with the service token as a default header marked
/// sensitive (never printed by `Debug`).
pub(crate) fn http_client(
    service_token: &SecretString,
    timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut token = HeaderValue::from_str(service_token.expose_secret())
        .map_err(|_| anyhow::anyhow!("the service token is not a valid header value"))?;
    token.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(SERVICE_TOKEN_HEADER, token);
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()?)
}

/// A request that never got a usable answer: unreachable, timed out, reset.
pub(crate) fn unavailable(service: &'static str, e: reqwest::Error) -> OrderError {
    let reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.to_string()
    };
    OrderError::UpstreamUnavailable { service, reason }
}

/// Maps a non-success answer that the caller has no specific meaning for.
pub(crate) async fn unexpected(service: &'static str, resp: reqwest::Response) -> OrderError {
    let status = resp.status();
    if status.is_server_error() {
        return OrderError::UpstreamUnavailable {
            service,
            reason: format!("status {status}"),
        };
    }
    let (code, message) = error_body(resp)
        .await
        .map(|b| (b.error, b.message))
        .unwrap_or_else(|| ("unknown".into(), String::new()));
    OrderError::UpstreamRejected {
        service,
        status: status.as_u16(),
        code,
        message,
    }
}

/// The standard `{"error","message"}` body, if the upstream sent one.
pub(crate) async fn error_body(resp: reqwest::Response) -> Option<ErrorBody> {
    resp.json::<ErrorBody>().await.ok()
}

pub(crate) fn bad_response(service: &'static str, e: reqwest::Error) -> OrderError {
    OrderError::BadUpstreamResponse {
        service,
        reason: e.to_string(),
    }
}
