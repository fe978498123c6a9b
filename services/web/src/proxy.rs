//! Reverse proxy for the public APIs: `/api/learning/*` → learning center,
//! `/api/orders/*` → order service. Method, path, query, body, status and end-to-end
//! headers (including `Authorization`) pass unchanged; answers are streamed back.
//! Nothing else is forwarded, so `/internal/*` stays unreachable from the browser.

use std::time::Duration;

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use futures::TryStreamExt;
use paywire_platform::auth::SERVICE_TOKEN_HEADER;

use crate::{UpstreamSettings, WebError};

/// Public API prefixes and the upstream each belongs to.
pub const LEARNING_PREFIX: &str = "/api/learning";
pub const ORDERS_PREFIX: &str = "/api/orders";

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
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    LearningCenter,
    Order,
}

impl Upstream {
    fn name(self) -> &'static str {
        match self {
            Upstream::LearningCenter => "learning-center",
            Upstream::Order => "order",
        }
    }
}

#[derive(Debug)]
pub struct Proxy {
    client: reqwest::Client,
    learning_center: String,
    order: String,
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
            learning_center: settings
                .learning_center_url
                .trim_end_matches('/')
                .to_owned(),
            order: settings.order_url.trim_end_matches('/').to_owned(),
            max_body: settings.max_body_bytes,
        })
    }

    fn base(&self, upstream: Upstream) -> &str {
        match upstream {
            Upstream::LearningCenter => &self.learning_center,
            Upstream::Order => &self.order,
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope(LEARNING_PREFIX).default_service(web::to(to_learning_center)))
        .service(web::scope(ORDERS_PREFIX).default_service(web::to(to_order)));
}

async fn to_learning_center(
    req: HttpRequest,
    body: web::Payload,
    proxy: web::Data<Proxy>,
) -> Result<HttpResponse, WebError> {
    forward(Upstream::LearningCenter, req, body, proxy).await
}

async fn to_order(
    req: HttpRequest,
    body: web::Payload,
    proxy: web::Data<Proxy>,
) -> Result<HttpResponse, WebError> {
    forward(Upstream::Order, req, body, proxy).await
}

#[tracing::instrument(skip_all, fields(upstream = upstream.name(), method = %req.method(), path = %req.path(), status = tracing::field::Empty))]
async fn forward(
    upstream: Upstream,
    req: HttpRequest,
    body: web::Payload,
    proxy: web::Data<Proxy>,
) -> Result<HttpResponse, WebError> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or_else(|| req.path());
    let url = format!("{}{path_and_query}", proxy.base(upstream));
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|e| WebError::InvalidRequest(e.to_string()))?;

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
        .map_err(|_| WebError::BodyTooLarge(proxy.max_body))?
        .map_err(|e| WebError::InvalidRequest(e.to_string()))?;

    let mut out = proxy.client.request(method, &url);
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

    let answer = out.send().await.map_err(|e| {
        if e.is_timeout() {
            WebError::UpstreamTimeout {
                service: upstream.name(),
            }
        } else {
            WebError::UpstreamUnavailable {
                service: upstream.name(),
                reason: e.to_string(),
            }
        }
    })?;
    tracing::Span::current().record("status", answer.status().as_u16());

    let status = StatusCode::from_u16(answer.status().as_u16())
        .map_err(|e| WebError::InvalidRequest(e.to_string()))?;
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
