//! Issue 9, abuse limits at the gateway: the "I have paid" sync asks the channel about an
//! attempt at most once per interval whatever the caller does; callbacks are limited per
//! client address; refused callbacks are counted in one row per reason and minute, not
//! stored one row each.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use paywire_platform::rate_limit::Limit;
use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::Value;

use crate::support::{Harness, gateway_settings, start_sandbox};

/// A pass-through to the channel sandbox that counts WeChat Pay order queries
/// (`GET …/out-trade-no/…`): how often the gateway asked the channel.
struct CountingChannel {
    url: String,
    queries: Arc<AtomicUsize>,
}

impl CountingChannel {
    fn start(upstream: &str) -> Self {
        let queries = Arc::new(AtomicUsize::new(0));
        let state = web::Data::new((upstream.to_owned(), reqwest::Client::new(), queries.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(state.clone())
                .default_service(web::to(forward))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { url, queries }
    }

    fn queries(&self) -> usize {
        AtomicUsize::load(&self.queries, Ordering::SeqCst)
    }
}

async fn forward(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<(String, reqwest::Client, Arc<AtomicUsize>)>,
) -> HttpResponse {
    let (upstream, client, queries) = state.get_ref();
    if req.method() == actix_web::http::Method::GET && req.path().contains("/out-trade-no/") {
        queries.fetch_add(1, Ordering::SeqCst);
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let mut out = client
        .request(method, format!("{upstream}{path}"))
        .body(body.to_vec());
    for (name, value) in req.headers() {
        if !matches!(name.as_str(), "host" | "content-length") {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = out.send().await.unwrap();
    let mut resp = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(answer.status().as_u16()).unwrap(),
    );
    for (name, value) in answer.headers() {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding") {
            resp.insert_header((name.as_str(), value.to_str().unwrap_or_default()));
        }
    }
    resp.body(answer.bytes().await.unwrap())
}

async fn sync_paid(h: &Harness, order: i64) -> Value {
    let resp = h.sync(order).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["paid"].clone()
}

/// 200 "I have paid" syncs of an unpaid attempt ask the channel once in an interval; once
/// the interval has passed (moved back in the database) the next one asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_syncs_ask_the_channel_once_per_interval() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = start_sandbox().await;
    let channel = CountingChannel::start(&sandbox);
    let mut settings = gateway_settings(&db, &vhost, &channel.url);
    settings.payment.sync_min_interval_secs = 3600;
    let h = Harness::with_settings(settings, sandbox, db, vhost).await;
    let order = 4242;
    let attempt = h.new_attempt(order, 800).await;
    let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
    assert_eq!(channel.queries(), 0);

    // Twenty at a time, as impatient clients on several order instances would.
    for _ in 0..10 {
        let polls = (0..20).map(|_| sync_paid(&h, order));
        for paid in futures::future::join_all(polls).await {
            assert_eq!(paid, false);
        }
    }
    assert_eq!(channel.queries(), 1, "one channel query for 200 syncs");

    h.sql(&format!(
        "UPDATE payments SET last_synced_at = now() - interval '2 hours' WHERE pay_no = {pay_no}"
    ))
    .await;
    assert_eq!(sync_paid(&h, order).await, false);
    assert_eq!(channel.queries(), 2);
    assert_eq!(sync_paid(&h, order).await, false);
    assert_eq!(channel.queries(), 2);
}

#[derive(Debug, QueryableByName, PartialEq)]
struct RefusedRow {
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = BigInt)]
    refused: i64,
}

async fn refused_rows(h: &Harness) -> Vec<RefusedRow> {
    diesel::sql_query(
        "SELECT channel, reason, refused FROM refused_notifications ORDER BY bucket_start, channel",
    )
    .load(&mut h.conn().await)
    .await
    .unwrap()
}

/// The probe with the shipped limits: 300 unsigned `{}` callbacks are refused and
/// counted (one row per reason and minute), not stored as 300 audit rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_unsigned_callbacks_leave_a_counter_not_three_hundred_rows() {
    let h = Harness::start().await;
    for _ in 0..300 {
        assert_refused(h.post_callback("wechat", &[], b"{}").await);
    }
    for _ in 0..5 {
        assert_refused(h.post_callback("alipay", &[], b"sign=forged").await);
    }
    let rows = refused_rows(&h).await;
    // One row per channel and reason, two if the run crossed a minute.
    assert!((2..=4).contains(&rows.len()), "{rows:?}");
    let total = |channel: &str| -> i64 {
        rows.iter()
            .filter(|r| r.channel == channel)
            .map(|r| r.refused)
            .sum()
    };
    assert_eq!(total("wechat"), 300, "{rows:?}");
    assert_eq!(total("alipay"), 5, "{rows:?}");
    assert!(h.notifications().await.is_empty());
}

fn per_day(requests: u32) -> Limit {
    Limit {
        requests,
        window_secs: 86_400,
    }
}

async fn callback_from(h: &Harness, forwarded_for: Option<&str>) -> reqwest::Response {
    let headers: Vec<(String, String)> = forwarded_for
        .map(|f| vec![("X-Forwarded-For".to_owned(), f.to_owned())])
        .unwrap_or_default();
    h.post_callback("wechat", &headers, b"{}").await
}

/// Refused by verification (an unsigned `{}`), not by the limit: the channel's own
/// failure reply, never a success.
fn assert_refused(resp: reqwest::Response) {
    assert!(
        !resp.status().is_success() && resp.status() != 429,
        "{}",
        resp.status()
    );
}

/// Over the per-address limit a callback is `429 rate_limited` with `Retry-After`, before
/// it is verified or counted; `X-Forwarded-For` is ignored unless trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_limited_per_client_address() {
    let h = Harness::start_with(|s| s.rate_limit.callback = per_day(5)).await;
    for _ in 0..5 {
        assert_refused(callback_from(&h, None).await);
    }
    for forwarded in [None, Some("203.0.113.7")] {
        let resp = callback_from(&h, forwarded).await;
        assert_eq!(resp.status(), 429, "{forwarded:?}");
        let wait: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(wait >= 1, "{wait}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "rate_limited");
    }
    let counted: i64 = refused_rows(&h).await.iter().map(|r| r.refused).sum();
    assert_eq!(
        counted, 5,
        "a limited callback is not even counted as refused"
    );
}

/// Behind a proxy of ours (`trust_forwarded_for`), the client is the last
/// `X-Forwarded-For` entry: two clients behind the one proxy address have their own limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_forwarded_for_separates_clients_behind_a_proxy() {
    let h = Harness::start_with(|s| {
        s.rate_limit.callback = per_day(2);
        s.rate_limit.trust_forwarded_for = true;
    })
    .await;
    let a = Some("198.51.100.1");
    // What the client put left of the proxy's entry does not matter.
    let a_spoofing = Some("192.0.2.99, 198.51.100.1");
    assert_refused(callback_from(&h, a).await);
    assert_refused(callback_from(&h, a_spoofing).await);
    assert_eq!(callback_from(&h, a).await.status(), 429);
    assert_refused(callback_from(&h, Some("198.51.100.2")).await);
}
