//! Prometheus metrics, written once: one recorder per process (the `metrics` facade, so
//! the relay, consumers and channel clients record with one line where they know a fact),
//! `GET /metrics` in Prometheus's text format, HTTP request counts and latencies by route
//! *template* (bounded cardinality), and `paywire_build_info`.
//!
//! Every service runs in its own process in production, so one global recorder is one
//! service's metrics. Tests that run several services in one process share it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// `paywire_http_requests_total{route,method,status}`.
pub const HTTP_REQUESTS: &str = "paywire_http_requests_total";
/// `paywire_http_request_duration_seconds{route,method,status}` (histogram).
pub const HTTP_DURATION: &str = "paywire_http_request_duration_seconds";
/// `paywire_build_info{service,version,git_sha}` = 1.
pub const BUILD_INFO: &str = "paywire_build_info";

/// Histogram buckets (seconds) for every latency: from a fast handler to a channel call
/// near its timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histograms are drained into their buckets at each scrape and at least this often, so
/// an unscraped process does not accumulate samples.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (first call) and returns the handle that renders it.
/// Called by the HTTP bootstrap before any service code runs; tests that assert a metric
/// outside a service call it first so nothing is recorded into the no-op default.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder was installed first; /metrics stays empty");
        }
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            })
            .expect("spawn the metrics upkeep thread");
        handle
    })
}

/// The build a service runs: its version and the git commit, from `PAYWIRE_GIT_SHA` at run
/// time (set by `cargo xtask up` and the images), else at build time, else `unknown`.
pub fn record_build_info(service: &'static str) {
    install();
    let git_sha = std::env::var("PAYWIRE_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| option_env!("PAYWIRE_GIT_SHA").map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    metrics::gauge!(
        BUILD_INFO,
        "service" => service,
        "version" => env!("CARGO_PKG_VERSION"),
        "git_sha" => git_sha,
    )
    .set(1.0);
}

/// `GET /metrics` (mounted by the bootstrap): Prometheus text format, version 0.0.4.
pub async fn render() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(install().render())
}

/// Middleware: counts every request and observes its latency by route template (the
/// pattern that matched, `unmatched` for a 404 no route knows), method and status. The raw
/// path never becomes a label: ids in paths would make every order its own series.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let result = next.call(req).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    result
}

/// Standard methods by name; anything a client invents is `other` (bounded labels).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_http::get;
    use actix_web::web;

    /// The value of the sample `name{labels}` in a scrape, if present.
    fn sample(scrape: &str, series: &str) -> Option<f64> {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn a_request_moves_its_route_templates_counter_and_histogram_in_the_scrape() {
        let listeners = crate::http::bind(&crate::config::HttpSettings::default()).unwrap();
        let port = listeners.internal.local_addr().unwrap().port();
        let servers = crate::http::serve(
            listeners,
            1,
            crate::http::ListenerRoutes {
                public: |_: &mut web::ServiceConfig| {},
                internal: |cfg: &mut web::ServiceConfig| {
                    cfg.route(
                        "/metrics-test/{id}",
                        web::get().to(|id: web::Path<u32>| async move { id.to_string() }),
                    );
                },
            },
        )
        .unwrap();
        let handle = servers.internal.handle();
        tokio::spawn(servers.internal);
        tokio::spawn(servers.public);

        let series =
            r#"paywire_http_requests_total{route="/metrics-test/{id}",method="GET",status="200"}"#;
        let before = sample(&get(port, "/metrics").await, series).unwrap_or(0.0);
        for id in [1, 2] {
            assert!(
                get(port, &format!("/metrics-test/{id}"))
                    .await
                    .starts_with("HTTP/1.1 200")
            );
        }
        assert!(
            get(port, "/metrics-test/not-a-number")
                .await
                .starts_with("HTTP/1.1 400")
        );
        assert!(
            get(port, "/no-such-route/42")
                .await
                .starts_with("HTTP/1.1 404")
        );

        let scrape = get(port, "/metrics").await;
        assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
        assert!(
            scrape.contains("content-type: text/plain; version=0.0.4"),
            "{scrape}"
        );
        assert_eq!(sample(&scrape, series), Some(before + 2.0), "{scrape}");
        let bad =
            r#"paywire_http_requests_total{route="/metrics-test/{id}",method="GET",status="400"}"#;
        assert!(sample(&scrape, bad).is_some_and(|n| n >= 1.0), "{scrape}");
        let unmatched =
            r#"paywire_http_requests_total{route="unmatched",method="GET",status="404"}"#;
        assert!(
            sample(&scrape, unmatched).is_some_and(|n| n >= 1.0),
            "{scrape}"
        );
        let count = r#"paywire_http_request_duration_seconds_count{route="/metrics-test/{id}",method="GET",status="200"}"#;
        assert_eq!(sample(&scrape, count), Some(before + 2.0), "{scrape}");
        assert!(
            scrape.contains(r#"paywire_http_request_duration_seconds_bucket{route="/metrics-test/{id}",method="GET",status="200",le="0.005"}"#),
            "a histogram with buckets, not a summary: {scrape}"
        );
        assert!(
            !scrape.contains("/metrics-test/1"),
            "raw paths are no labels: {scrape}"
        );
        assert!(
            !scrape.contains("/no-such-route"),
            "raw paths are no labels: {scrape}"
        );
        handle.stop(false).await;
    }

    #[test]
    fn build_info_names_the_service_version_and_commit() {
        record_build_info("metrics-test");
        let scrape = install().render();
        let line = scrape
            .lines()
            .find(|l| l.starts_with(BUILD_INFO) && l.contains(r#"service="metrics-test""#))
            .unwrap_or_else(|| panic!("{scrape}"));
        assert!(
            line.contains(&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        assert!(line.contains("git_sha=\""), "{line}");
        assert!(line.ends_with(" 1"), "{line}");
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "other");
    }
}
