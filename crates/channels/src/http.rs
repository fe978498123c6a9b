//! What both channel clients do alike over HTTP: check the configured base URL and the
//! signing key, build the client, and send a request and read its whole answer.

use std::time::Duration;

use rsa::RsaPrivateKey;
use rsa::traits::PublicKeyParts;

use crate::ChannelError;

const MIN_RSA_BITS: usize = 2048;

/// Parses the configured base URL `name`: http(s), with a host and no query.
pub(crate) fn base_url(name: &str, value: &str) -> Result<reqwest::Url, ChannelError> {
    let url = reqwest::Url::parse(value)
        .map_err(|e| ChannelError::Config(format!("{name} {value:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ChannelError::Config(format!(
            "{name} {value:?} is not an http(s) URL"
        )));
    }
    if url.query().is_some() {
        return Err(ChannelError::Config(format!(
            "{name} must not have a query"
        )));
    }
    Ok(url)
}

/// Refuses a signing key shorter than 2048 bits; `whose` names it in the error.
pub(crate) fn check_key_size(key: &RsaPrivateKey, whose: &str) -> Result<(), ChannelError> {
    if key.size() * 8 < MIN_RSA_BITS {
        return Err(ChannelError::Config(format!(
            "the {whose} private key must have at least {MIN_RSA_BITS} bits"
        )));
    }
    Ok(())
}

/// The HTTP client of a channel.
pub(crate) fn client(timeout: Duration, user_agent: &str) -> Result<reqwest::Client, ChannelError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(user_agent)
        .build()
        .map_err(|e| ChannelError::Config(format!("HTTP client: {e}")))
}

/// An answer as received: status, lower-cased headers and the raw body.
#[derive(Debug)]
pub(crate) struct Received {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Sends `request` and reads the whole answer; a failure on the way is `TimedOut` when the
/// client's timeout ran out, otherwise `Unavailable` (no connection, a broken answer).
/// The current trace context goes with it (`traceparent`).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Received, ChannelError> {
    let failed = |what: &str, e: reqwest::Error| {
        if e.is_timeout() {
            ChannelError::TimedOut(format!("{what}: {e}"))
        } else {
            ChannelError::Unavailable(format!("{what}: {e}"))
        }
    };
    let response = paywire_platform::telemetry::propagate(request)
        .send()
        .await
        .map_err(|e| failed("request failed", e))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = response
        .bytes()
        .await
        .map_err(|e| failed("reading response", e))?
        .to_vec();
    Ok(Received {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel that accepts the connection and never answers is a timeout; one that
    /// cannot be reached is unavailable: operators tell them apart in the metrics.
    #[tokio::test]
    async fn a_silent_channel_times_out_and_an_absent_one_is_unavailable() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                let (socket, _) = silent.accept().await.unwrap();
                open.push(socket);
            }
        });
        let http = client(Duration::from_millis(300), "paywire-test").unwrap();
        let err = send(http.get(format!("http://{addr}/v3/x")))
            .await
            .unwrap_err();
        assert!(matches!(err, ChannelError::TimedOut(_)), "{err:?}");
        assert!(err.is_retryable());
        held.abort();

        let err = send(http.get("http://127.0.0.1:1/v3/x")).await.unwrap_err();
        assert!(matches!(err, ChannelError::Unavailable(_)), "{err:?}");
    }
}
