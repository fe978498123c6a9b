//! HTTP clients for the services the order service depends on. Each call carries the
//! service credential and a timeout; failures become [`OrderError`]s a caller can act on:
//! unreachable, timed out or 5xx → `UpstreamUnavailable` (503 to our caller).
//!
//! Every internal call is safe to repeat (a read, or keyed by the order or an idempotency
//! key), so [`send`] repeats it briefly while the upstream cannot be reached or its
//! database is away: a restart of a few seconds costs our caller latency, not a failure.

pub mod learning_center;
pub mod payment_gateway;

use std::time::Duration;

use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_platform::http::ErrorBody;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::error::OrderError;

pub use learning_center::{ChooseCourseRecord, LearningCenterClient};
pub use payment_gateway::{
    CloseOutcome, CreatePayment, PaymentAttempt, PaymentGatewayClient, RefundAnswer, RefundView,
    RequestRefund, SyncResult,
};

/// An upstream service: its base URL and one `reqwest` client for it, carrying the service
/// credential and the timeout. Each typed client below wraps one.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    base_url: String,
}

impl Upstream {
    pub fn new(
        base_url: &str,
        service_token: &SecretString,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(service_token, timeout)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }
}

/// One `reqwest` client per upstream, with the service token as a default header marked
/// sensitive (never printed by `Debug`).
fn http_client(service_token: &SecretString, timeout: Duration) -> anyhow::Result<reqwest::Client> {
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

/// How long [`send`] keeps repeating a call; one more attempt starts only within it.
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(6);
/// The longest pause between attempts (also caps the upstream's `Retry-After`).
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Sends the request `build` makes. While the upstream cannot be reached (restarting) or
/// answers `503` because its database is away (`database_*` codes: it did nothing), the
/// call is repeated, pausing 100 ms doubling up to 1 s (or what `Retry-After` asks,
/// within that), as long as [`RETRY_BUDGET`] allows; so is a request whose connection
/// dropped before any answer came. Other 503s (a channel that timed out)
/// and timeouts are not repeated here: each attempt would cost a full timeout, and the
/// callers retry those on their own schedule. Only for calls that are safe to repeat.
pub(crate) async fn send(
    service: &'static str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, OrderError> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        let (last, wait) = match paywire_platform::telemetry::propagate(build()).send().await {
            Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                let wait = retry_after(&resp).unwrap_or(pause).min(MAX_PAUSE);
                let code = error_body(resp).await.map(|b| b.error).unwrap_or_default();
                let last = OrderError::UpstreamUnavailable {
                    service,
                    reason: format!("status 503 ({code})"),
                };
                if !code.starts_with("database_") {
                    return Err(last);
                }
                (last, wait)
            }
            Ok(resp) => return Ok(resp),
            // Refused, or the connection dropped before an answer (an overloaded upstream
            // closing connections, a pooled connection it had just closed): it did
            // nothing we can see, and the call is safe to repeat. A timeout is not
            // repeated (see above).
            Err(e) if e.is_connect() || (e.is_request() && !e.is_timeout()) => {
                (unavailable(service, e), pause)
            }
            Err(e) => return Err(unavailable(service, e)),
        };
        if started.elapsed() + wait >= RETRY_BUDGET {
            return Err(last);
        }
        tracing::info!(
            upstream = service,
            error = %last,
            wait_ms = wait.as_millis() as u64,
            "upstream briefly unavailable, repeating the call"
        );
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// An upstream that drops the first connection after reading the request (what an
    /// overloaded server or a just-closed pooled connection looks like to the caller),
    /// then answers.
    fn dropping_once() -> (String, std::thread::JoinHandle<usize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut accepted = 0;
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                accepted += 1;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                if accepted == 1 {
                    drop(stream);
                    continue;
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
                break;
            }
            accepted
        });
        (url, handle)
    }

    #[tokio::test]
    async fn a_connection_dropped_before_the_answer_is_repeated() {
        let (url, upstream) = dropping_once();
        let http = reqwest::Client::new();
        let resp = send("test-upstream", || http.post(&url)).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(upstream.join().unwrap(), 2);
    }
}
