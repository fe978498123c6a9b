//! Issue 9, abuse limits: creating, paying and asking for the pay result are limited per
//! user; over the limit the answer is `429 rate_limited` with `Retry-After`, before the
//! handler (or the gateway behind it) is reached.

use paywire_platform::rate_limit::{Limit, RateLimitSettings};
use serde_json::json;

use crate::common::Harness;

/// A limit that refills so slowly that no request of a test run is admitted by refilling.
fn per_day(requests: u32) -> Limit {
    Limit {
        requests,
        window_secs: 86_400,
    }
}

async fn get_raw(h: &Harness, user: &str, path: &str) -> reqwest::Response {
    h.client
        .get(format!("{}{path}", h.base))
        .bearer_auth(h.token(user))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_201st_pay_result_in_a_window_is_429_and_other_users_are_independent() {
    let h = Harness::start_with(|s| s.rate_limit.pay_result = per_day(200)).await;
    let alice = h.order_for("alice", 9101).await;
    let bob = h.order_for("bob", 9102).await;
    let alice_path = format!("/api/orders/{alice}/pay-result");
    for i in 0..200 {
        let (status, body) = h.get("alice", &alice_path).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let syncs_before = h.gw.sync_calls().len();
    assert_eq!(syncs_before, 200);

    let refused = get_raw(&h, "alice", &alice_path).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One request more every 432 s.
    assert!((1..=432).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
    // Refused before the handler: the gateway was not asked.
    assert_eq!(h.gw.sync_calls().len(), syncs_before);

    // Bob has his own allowance; Alice's other routes have theirs.
    let (status, body) = h.get("bob", &format!("/api/orders/{bob}/pay-result")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = h.get("alice", &format!("/api/orders/{alice}")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h
        .post(
            "alice",
            &format!("/api/orders/{alice}/pay"),
            json!({"channel": "wechat"}),
        )
        .await;
    assert_ne!(status, 429);
}

/// Sends `send` until the first `429` (at most `limit + 10` times); returns the statuses
/// before it. GCRA refills one request every `window / limit`, so a slow burst may see a few
/// more admitted than `limit`, never fewer.
async fn until_refused<F, Fut>(limit: usize, send: F) -> Vec<u16>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (u16, serde_json::Value)>,
{
    let mut before = Vec::new();
    for _ in 0..limit + 10 {
        let (status, body) = send().await;
        if status == 429 {
            assert_eq!(body["error"], "rate_limited", "{body}");
            return before;
        }
        before.push(status);
    }
    panic!("no 429 after {} requests: {before:?}", before.len());
}

/// The shipped defaults (30 creates a minute per user), with the probe: a burst of
/// creates is refused once the 30 are spent, and a request without a valid token counts
/// against its client address instead of passing unlimited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limits_refuse_a_burst_of_creates() {
    let defaults = RateLimitSettings::default();
    assert_eq!(defaults.create_order.requests, 30);
    let h = Harness::start_with(|s| s.rate_limit = defaults.clone()).await;
    let body = json!({"biz_type": "course", "biz_id": "424242"});
    let admitted = until_refused(30, || h.post("mallory", "/api/orders", body.clone())).await;
    // Unknown record: 404 for every admitted request.
    assert!(admitted.len() >= 30, "{admitted:?}");
    assert!(admitted.iter().all(|s| *s == 404), "{admitted:?}");
    // The refused ones never reached the learning center.
    assert_eq!(
        h.lc.calls.load(std::sync::atomic::Ordering::SeqCst),
        admitted.len() as i64
    );

    // Without a token: limited per address (all of this test's requests come from
    // 127.0.0.1), answered 401 until then.
    let anonymous = || async {
        let resp = h
            .client
            .post(format!("{}/api/orders", h.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    };
    let admitted = until_refused(30, anonymous).await;
    assert!(admitted.len() >= 30, "{admitted:?}");
    assert!(admitted.iter().all(|s| *s == 401), "{admitted:?}");
    // Another user is still served.
    assert_eq!(h.post("trent", "/api/orders", body.clone()).await.0, 404);
}
