//! Reverse proxy for the public APIs: `/api/learning/*` → learning center,
//! `/api/orders/*` → order service. Method, path, query, body, status and end-to-end
//! headers (including `Authorization`) pass unchanged; answers are streamed back.
//! Nothing else is forwarded, so `/internal/*` stays unreachable from the browser: the
//! raw path must pass [`api_path::normalise`](crate::api_path::normalise) first, and the
//! upstream URL is built from the checked path, never from the request line.

use std::time::Duration;

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use futures::TryStreamExt;
use paywire_platform::auth::SERVICE_TOKEN_HEADER;

use crate::api_path::{self, ApiPath};
use crate::{CashierError, UpstreamSettings};

/// Connection-scoped headers (RFC 9110 §7.6.1) and those the proxy sets itself.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    // The proxy's own request span continues the browser's trace context and passes on
    // its own (`telemetry::propagate`).
    "traceparent",
    "tracestate",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    LearningCenter,
    Order,
}

impl Upstream {
    pub fn name(self) -> &'static str {
        match self {
            Upstream::LearningCenter => "learning-center",
            Upstream::Order => "order",
        }
    }
}

#[derive(Debug)]
pub struct Proxy {
    client: reqwest::Client,
    learning_center: reqwest::Url,
    order: reqwest::Url,
    max_body: usize,
}

impl Proxy {
    pub fn new(settings: &UpstreamSettings, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(timeout)
            // Redirects are the browser's business: pass them through as they are.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            learning_center: reqwest::Url::parse(&settings.learning_center_url)?,
            order: reqwest::Url::parse(&settings.order_url)?,
            max_body: settings.max_body_bytes,
        })
    }

    /// The upstream URL for a checked path: the upstream's base (its own path prefix
    /// kept), the path, the request's query. The result is parsed back and compared, so
    /// a URL parser that would rewrite the path (resolve a dot segment) refuses it.
    fn url(&self, path: &ApiPath, query: Option<&str>) -> Option<reqwest::Url> {
        let mut url = match path.upstream() {
            Upstream::LearningCenter => self.learning_center.clone(),
            Upstream::Order => self.order.clone(),
        };
        let full = format!("{}{}", url.path().trim_end_matches('/'), path.as_str());
        url.set_path(&full);
        url.set_query(query);
        (url.path() == full).then_some(url)
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/api").default_service(web::to(api)));
}

/// Everything under `/api`: the raw path is checked before anything else looks at it.
async fn api(
    req: HttpRequest,
    body: web::Payload,
    proxy: web::Data<Proxy>,
) -> Result<HttpResponse, CashierError> {
    let refused = |why: api_path::Refused| {
        tracing::info!(path = %req.uri().path(), %why, "path refused");
        CashierError::NotFound(req.uri().path().to_owned())
    };
    let path = api_path::normalise(req.uri().path()).map_err(refused)?;
    let url = proxy
        .url(&path, req.uri().query())
        .ok_or_else(|| CashierError::NotFound(req.uri().path().to_owned()))?;
    forward(path.upstream(), url, req, body, proxy).await
}

#[tracing::instrument(skip_all, fields(upstream = upstream.name(), method = %req.method(), path = %req.path(), status = tracing::field::Empty))]
async fn forward(
    upstream: Upstream,
    url: reqwest::Url,
    req: HttpRequest,
    body: web::Payload,
    proxy: web::Data<Proxy>,
) -> Result<HttpResponse, CashierError> {
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|e| CashierError::InvalidRequest(e.to_string()))?;

    // Owned copies: the connection info is borrowed from the request, not across awaits.
    let forwarded = {
        let info = req.connection_info();
        (
            info.peer_addr().map(str::to_owned),
            info.host().to_owned(),
            info.scheme().to_owned(),
        )
    };

    // Request bodies are small JSON documents; buffering them (bounded) keeps the
    // upstream request retry-free and simple. Answers are streamed.
    let body = body
        .to_bytes_limited(proxy.max_body)
        .await
        .map_err(|_| CashierError::BodyTooLarge(proxy.max_body))?
        .map_err(|e| CashierError::InvalidRequest(e.to_string()))?;

    let mut out = proxy.client.request(method, url);
    for (name, value) in req.headers() {
        let lower = name.as_str();
        // A browser never holds the service credential; one sent anyway is dropped so
        // the proxy cannot be used to smuggle it.
        if NOT_FORWARDED.contains(&lower) || lower.eq_ignore_ascii_case(SERVICE_TOKEN_HEADER) {
            continue;
        }
        out = out.header(lower, value.as_bytes());
    }
    if let Some(peer) = &forwarded.0 {
        out = out.header("x-forwarded-for", peer.as_str());
    }
    out = out
        .header("x-forwarded-host", forwarded.1)
        .header("x-forwarded-proto", forwarded.2);
    if !body.is_empty() {
        out = out.body(body);
    }
    out = paywire_platform::telemetry::propagate(out);

    let answer = out.send().await.map_err(|e| {
        if e.is_timeout() {
            CashierError::UpstreamTimeout {
                service: upstream.name(),
            }
        } else {
            CashierError::UpstreamUnavailable {
                service: upstream.name(),
                reason: e.to_string(),
            }
        }
    })?;
    tracing::Span::current().record("status", answer.status().as_u16());

    let status = StatusCode::from_u16(answer.status().as_u16())
        .map_err(|e| CashierError::InvalidRequest(e.to_string()))?;
    let mut resp = HttpResponseBuilder::new(status);
    for (name, value) in answer.headers() {
        if NOT_FORWARDED.contains(&name.as_str()) {
            continue;
        }
        resp.append_header((name.as_str(), value.as_bytes()));
    }
    let length = answer.content_length();
    let stream = answer.bytes_stream().map_err(std::io::Error::other);
    Ok(match length {
        Some(len) => resp.body(SizedStream::new(len, stream)),
        None => resp.body(BodyStream::new(stream)),
    })
}
