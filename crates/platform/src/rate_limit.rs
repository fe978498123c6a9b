//! Abuse limits, written once (issue 9): a keyed GCRA limiter (`governor`) per route class,
//! per user on the student's order API and per client address on the channels' callbacks
//! and the dev sign-in. A request over its limit answers `429 rate_limited` with
//! `Retry-After` through the one error mapping ([`crate::api_error`]) and counts in
//! `paywire_rate_limited_total{class}`.
//!
//! A service registers its limiters once with [`with_limits`] (they live as app data, so
//! every worker shares them) and wraps each limited resource in [`limit`]:
//!
//! ```ignore
//! web::resource("/{order_id}/pay").wrap(limit(RouteClass::Pay)).route(web::post().to(pay))
//! ```
//!
//! A limit of `requests` per `window_secs` admits a burst of `requests` at once and then
//! one more every `window_secs / requests` (GCRA: the bucket refills continuously, there is
//! no window boundary to game). Limits are per instance: behind a load balancer with `k`
//! instances a client gets at most `k` times the limit. The client address is the TCP peer;
//! `X-Forwarded-For` is read only when `rate_limit.trust_forwarded_for` says a proxy we run
//! stands in front (then its last entry, the one that proxy appended: anything left of it
//! is whatever the client sent).

use std::future::{Ready, ready};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, ResponseError, web};
use futures::future::LocalBoxFuture;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::api_error::{ApiError, Reply};
use crate::http::{ListenerRoutes, Routes};

/// `requests` per `window_secs`; `requests = 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limit {
    pub requests: u32,
    pub window_secs: u32,
}

impl Limit {
    pub const fn per_minute(requests: u32) -> Self {
        Self {
            requests,
            window_secs: 60,
        }
    }

    /// No limit.
    pub const OFF: Limit = Limit {
        requests: 0,
        window_secs: 60,
    };

    fn quota(self) -> Option<Quota> {
        let burst = NonZeroU32::new(self.requests)?;
        let window = Duration::from_secs(u64::from(self.window_secs.max(1)));
        let period = (window / self.requests).max(Duration::from_nanos(1));
        Some(Quota::with_period(period)?.allow_burst(burst))
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::OFF
    }
}

/// The `rate_limit` section: one [`Limit`] per route class (a service uses the classes it
/// serves) and where the client address comes from.
/// `PAYWIRE__RATE_LIMIT__PAY_RESULT__REQUESTS=600` raises one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Take the client address from the last `X-Forwarded-For` entry instead of the TCP
    /// peer. Only behind a proxy of ours that sets that header; otherwise a client could
    /// pick a fresh address for every request.
    pub trust_forwarded_for: bool,
    /// `POST /api/orders`, per user.
    pub create_order: Limit,
    /// `POST /api/orders/{id}/pay`, per user.
    pub pay: Limit,
    /// `GET /api/orders/{id}/pay-result`, per user (each may make the gateway ask the
    /// channel; the gateway also asks at most once per attempt every few seconds).
    pub pay_result: Limit,
    /// `POST /api/callback/{channel}`, per client address. Generous: a channel's
    /// notification servers are a few addresses sending every merchant notification, and
    /// a refused notification is delivered again later by the channel.
    pub callback: Limit,
    /// `POST /dev/login`, per client address.
    pub dev_login: Limit,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            trust_forwarded_for: false,
            create_order: Limit::per_minute(30),
            pay: Limit::per_minute(30),
            pay_result: Limit::per_minute(120),
            callback: Limit::per_minute(1200),
            dev_login: Limit::per_minute(30),
        }
    }
}

impl RateLimitSettings {
    /// Every limit off (tests that drive many requests through one user or address).
    pub fn off() -> Self {
        Self {
            trust_forwarded_for: false,
            create_order: Limit::OFF,
            pay: Limit::OFF,
            pay_result: Limit::OFF,
            callback: Limit::OFF,
            dev_login: Limit::OFF,
        }
    }

    fn limit(&self, class: RouteClass) -> Limit {
        match class {
            RouteClass::CreateOrder => self.create_order,
            RouteClass::Pay => self.pay,
            RouteClass::PayResult => self.pay_result,
            RouteClass::Callback => self.callback,
            RouteClass::DevLogin => self.dev_login,
        }
    }
}

/// A group of routes sharing one limit and one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    CreateOrder,
    Pay,
    PayResult,
    Callback,
    DevLogin,
}

impl RouteClass {
    const ALL: [RouteClass; 5] = [
        RouteClass::CreateOrder,
        RouteClass::Pay,
        RouteClass::PayResult,
        RouteClass::Callback,
        RouteClass::DevLogin,
    ];

    /// The class's name in settings and in `paywire_rate_limited_total{class}`.
    pub fn name(self) -> &'static str {
        match self {
            RouteClass::CreateOrder => "create_order",
            RouteClass::Pay => "pay",
            RouteClass::PayResult => "pay_result",
            RouteClass::Callback => "callback",
            RouteClass::DevLogin => "dev_login",
        }
    }

    fn per_user(self) -> bool {
        matches!(
            self,
            RouteClass::CreateOrder | RouteClass::Pay | RouteClass::PayResult
        )
    }
}

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
    /// No peer address (not over TCP): one shared bucket.
    Unknown,
}

/// Forgotten keys are dropped after this many checks of one limiter, so the key map of a
/// flood of addresses does not grow without end.
const SWEEP_EVERY: u64 = 4096;

struct Limiter {
    limiter: DefaultKeyedRateLimiter<Key>,
    checks: AtomicU64,
}

/// This instance's limiters, one per configured class; app data of the service.
pub struct RateLimits {
    trust_forwarded_for: bool,
    limiters: Vec<(RouteClass, Limiter)>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field(
                "classes",
                &self
                    .limiters
                    .iter()
                    .map(|(c, _)| c.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let limiters = RouteClass::ALL
            .into_iter()
            .filter_map(|class| {
                let quota = settings.limit(class).quota()?;
                Some((
                    class,
                    Limiter {
                        limiter: RateLimiter::keyed(quota),
                        checks: AtomicU64::new(0),
                    },
                ))
            })
            .collect();
        Self {
            trust_forwarded_for: settings.trust_forwarded_for,
            limiters,
        }
    }

    /// Counts `req` against `class`'s limit: `Err` when it is over.
    pub fn check(&self, class: RouteClass, req: &HttpRequest) -> Result<(), RateLimited> {
        let Some((_, limiter)) = self.limiters.iter().find(|(c, _)| *c == class) else {
            return Ok(());
        };
        let key = self.key(class, req);
        let result = limiter.limiter.check_key(&key);
        if limiter.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.limiter.retain_recent();
            limiter.limiter.shrink_to_fit();
        }
        result.map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.limiter.clock().now());
            metrics::counter!("paywire_rate_limited_total", "class" => class.name()).increment(1);
            RateLimited {
                class,
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    /// The user of a valid bearer token on a per-user class, else the client address (an
    /// unauthenticated flood is bounded too, before the handler answers it `401`).
    fn key(&self, class: RouteClass, req: &HttpRequest) -> Key {
        if class.per_user()
            && let Ok(user) = crate::auth::bearer_user(req)
        {
            return Key::User(user.as_str().to_owned());
        }
        client_address(req, self.trust_forwarded_for).map_or(Key::Unknown, Key::Address)
    }
}

/// The TCP peer's address, or with `trust_forwarded_for` the last `X-Forwarded-For` entry
/// (the one the proxy in front of us appended) when it is an IP address.
pub fn client_address(req: &HttpRequest, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let last = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
        if last.is_some() {
            return last;
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// `routes` with this instance's limiters from `settings` as app data on both listeners,
/// where [`limit`] finds them.
pub fn with_limits(
    settings: &RateLimitSettings,
    routes: ListenerRoutes<impl Routes, impl Routes>,
) -> ListenerRoutes<impl Routes, impl Routes> {
    let limits = web::Data::new(RateLimits::new(settings));
    let internal_limits = limits.clone();
    let ListenerRoutes { public, internal } = routes;
    ListenerRoutes {
        public: move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(limits.clone());
            public(cfg);
        },
        internal: move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(internal_limits.clone());
            internal(cfg);
        },
    }
}

/// A request over its limit.
#[derive(Debug, thiserror::Error)]
#[error("too many requests ({}); retry in {retry_after_secs} s", .class.name())]
pub struct RateLimited {
    pub class: RouteClass,
    pub retry_after_secs: u64,
}

impl ApiError for RateLimited {
    fn reply(&self) -> Reply {
        Reply::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited").retry_after(self.retry_after_secs)
    }
}
crate::api_error!(RateLimited);

/// Middleware counting each request of the wrapped resource against `class`'s limit; over
/// it, `429 rate_limited` before the handler runs. Without [`with_limits`] (or with the
/// class's limit off) it lets everything through.
pub fn limit(class: RouteClass) -> RateLimit {
    RateLimit(class)
}

/// See [`limit`].
#[derive(Debug, Clone, Copy)]
pub struct RateLimit(RouteClass);

impl<S, B> Transform<S, ServiceRequest> for RateLimit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RateLimitMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RateLimitMiddleware {
            class: self.0,
            service,
        }))
    }
}

#[derive(Debug)]
pub struct RateLimitMiddleware<S> {
    class: RouteClass,
    service: S,
}

impl<S, B> Service<ServiceRequest> for RateLimitMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let verdict = req
            .app_data::<web::Data<RateLimits>>()
            .map_or(Ok(()), |limits| limits.check(self.class, req.request()));
        match verdict {
            Ok(()) => {
                let fut = self.service.call(req);
                Box::pin(async move { Ok(fut.await?.map_into_left_body()) })
            }
            Err(limited) => {
                tracing::warn!(class = self.class.name(), "rate limited");
                let response = limited.error_response().map_into_right_body();
                Box::pin(async move { Ok(req.into_response(response)) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn settings(limit: Limit) -> RateLimitSettings {
        RateLimitSettings {
            callback: limit,
            ..RateLimitSettings::off()
        }
    }

    fn from(peer: &str, forwarded: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().unwrap());
        if let Some(f) = forwarded {
            req = req.insert_header(("X-Forwarded-For", f));
        }
        req.to_http_request()
    }

    #[test]
    fn the_request_after_the_burst_is_refused_with_a_wait() {
        let limits = RateLimits::new(&settings(Limit {
            requests: 3,
            window_secs: 3600,
        }));
        let req = from("10.0.0.1:5000", None);
        for _ in 0..3 {
            limits.check(RouteClass::Callback, &req).unwrap();
        }
        let refused = limits.check(RouteClass::Callback, &req).unwrap_err();
        // One more request is allowed every 1200 s.
        assert!(
            (1100..=1200).contains(&refused.retry_after_secs),
            "{refused:?}"
        );
        let resp = refused.error_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            resp.headers()
                .get(actix_web::http::header::RETRY_AFTER)
                .unwrap()
                .to_str()
                .unwrap(),
            refused.retry_after_secs.to_string()
        );
        // Another address has its own bucket; other classes are not limited here.
        limits
            .check(RouteClass::Callback, &from("10.0.0.2:5000", None))
            .unwrap();
        for _ in 0..10 {
            limits.check(RouteClass::PayResult, &req).unwrap();
        }
    }

    #[test]
    fn forwarded_for_counts_only_when_trusted_and_only_its_last_entry() {
        let req = from("10.0.0.1:5000", Some("203.0.113.9, 198.51.100.7"));
        assert_eq!(
            client_address(&req, false),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            client_address(&req, true),
            Some("198.51.100.7".parse().unwrap())
        );
        // Garbage from the proxy: the peer, never a made-up key.
        let junk = from("10.0.0.1:5000", Some("not-an-address"));
        assert_eq!(
            client_address(&junk, true),
            Some("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn zero_requests_turns_a_limit_off() {
        let limits = RateLimits::new(&settings(Limit::OFF));
        let req = from("10.0.0.1:5000", None);
        for _ in 0..1000 {
            limits.check(RouteClass::Callback, &req).unwrap();
        }
    }
}
