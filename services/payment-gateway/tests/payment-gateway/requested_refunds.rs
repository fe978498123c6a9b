//! Refunds the order service asks for (`POST /internal/refunds`): black-box against the
//! channel sandbox, driven to a final state by the same refund worker as stray money.

use crate::support;

use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_platform::config::DEV_SERVICE_TOKEN;
use serde_json::{Value, json};
use support::{Harness, eventually};

fn next_order() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(70_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

async fn json_of(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body
}

async fn refund(h: &Harness, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = h
        .client
        .post(format!("{}/internal/refunds", h.internal))
        .header(SERVICE_TOKEN_HEADER, DEV_SERVICE_TOKEN)
        .json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

fn body(order: i64, pay_no: &str, amount: i64) -> Value {
    json!({"order_id": order.to_string(), "pay_no": pay_no, "amount_fen": amount, "reason": "课程退款"})
}

async fn get_refund(h: &Harness, refund_no: &str) -> reqwest::Response {
    h.client
        .get(format!("{}/internal/refunds/{refund_no}", h.internal))
        .header(SERVICE_TOKEN_HEADER, DEV_SERVICE_TOKEN)
        .send()
        .await
        .unwrap()
}

async fn until_status(h: &Harness, refund_no: &str, status: &str) -> Value {
    eventually(|| async {
        let v: Value = get_refund(h, refund_no).await.json().await.unwrap();
        (v["status"] == status).then_some(v)
    })
    .await
}

/// An attempt of a new order on `channel`, paid at the sandbox and recorded (callback).
async fn paid_attempt(h: &Harness, channel: &str, amount: i64) -> (i64, String) {
    let order = next_order();
    let resp = h
        .create_payment_body(json!({
            "order_id": order.to_string(), "user_id": "student-1", "amount_fen": amount,
            "channel": channel, "description": "Rust 入门课程", "biz_type": "course", "biz_id": "77",
        }))
        .await;
    let attempt = json_of(resp, 201).await;
    let pay_no = s(&attempt, "pay_no").to_owned();
    h.wallet_pay(s(&attempt, "code_url")).await;
    eventually(|| async { (h.payment(&pay_no).await.status == "paid").then_some(()) }).await;
    (order, pay_no)
}

async fn requested_events(h: &Harness, pay_no: &str) -> Vec<Value> {
    h.events("refund.result.v1")
        .await
        .into_iter()
        .filter(|e| e["data"]["pay_no"] == pay_no)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_wechat_attempt_is_refunded_in_full_once() {
    let h = Harness::start().await;
    let (order, pay_no) = paid_attempt(&h, "wechat", 800).await;

    let created = json_of(
        refund(&h, Some("ord-refund-1"), body(order, &pay_no, 800)).await,
        201,
    )
    .await;
    let refund_no = s(&created, "refund_no").to_owned();
    assert_eq!(created["pay_no"], pay_no.as_str());
    assert_eq!(created["order_id"], order.to_string());
    assert_eq!(created["amount_fen"], 800);
    assert_eq!(created["channel"], "wechat");
    assert_eq!(created["reason"], "requested");
    assert_eq!(created["request_id"], "ord-refund-1");
    assert!(
        ["pending", "processing", "succeeded"].contains(&s(&created, "status")),
        "{created}"
    );

    let done = until_status(&h, &refund_no, "succeeded").await;
    assert!(done["refunded_at"].is_string());
    assert_eq!(h.payment(&pay_no).await.status, "refunded");
    let trade = h.sandbox_trade(&pay_no).await;
    assert_eq!(trade["trade_state"], "REFUND");
    let refunds = trade["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["out_refund_no"], refund_no.as_str());
    assert_eq!(refunds[0]["amount_fen"], 800);

    let events = eventually(|| async {
        let e = requested_events(&h, &pay_no).await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(events.len(), 1);
    let data = &events[0]["data"];
    assert_eq!(data["refund_no"], refund_no.as_str());
    assert_eq!(data["order_id"], order.to_string());
    assert_eq!(data["amount_fen"], 800);
    assert_eq!(data["reason"], "requested");
    assert_eq!(data["status"], "succeeded");

    // The same request again: the same refund, as it stands now, and nothing new.
    let again = json_of(
        refund(&h, Some("ord-refund-1"), body(order, &pay_no, 800)).await,
        200,
    )
    .await;
    assert_eq!(again["refund_no"], refund_no.as_str());
    assert_eq!(again["status"], "succeeded");
    assert_eq!(h.refunds().await.len(), 1);
    assert_eq!(requested_events(&h, &pay_no).await.len(), 1);
    // A new request for the refunded attempt is refused.
    let resp = refund(&h, Some("ord-refund-2"), body(order, &pay_no, 1)).await;
    assert_eq!(json_of(resp, 409).await["error"], "refund_not_allowed");
    // A requested refund does not make the attempt stray: it still settled the order.
    let sync = json_of(h.sync(order).await, 200).await;
    assert_eq!(sync["paid"], true);
    assert_eq!(sync["pay_no"], pay_no.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_concurrently_gives_one_refund_and_another_payload_is_a_conflict() {
    let h = Harness::start().await;
    let (order, pay_no) = paid_attempt(&h, "wechat", 500).await;
    // The key may come in the body too.
    let mut b = body(order, &pay_no, 500);
    b["request_id"] = "same-key".into();
    let (first, second) = tokio::join!(refund(&h, None, b.clone()), refund(&h, None, b.clone()));
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201]);
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["refund_no"], second["refund_no"]);
    assert_eq!(h.refunds().await.len(), 1);

    // The same key for a different amount: a client bug, refused.
    let resp = refund(&h, Some("same-key"), body(order, &pay_no, 400)).await;
    assert_eq!(json_of(resp, 409).await["error"], "idempotency_conflict");
    // Header and body keys that disagree.
    let resp = refund(&h, Some("other-key"), b).await;
    assert_eq!(json_of(resp, 400).await["error"], "invalid_request");
    until_status(&h, s(&first, "refund_no"), "succeeded").await;
    assert_eq!(h.refunds().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_of_unpaid_foreign_unknown_or_overdrawn_attempts_are_refused() {
    let h = Harness::start().await;
    // Unpaid.
    let order = next_order();
    let unpaid = h.new_attempt(order, 600).await;
    let unpaid_no = s(&unpaid, "pay_no");
    let resp = refund(&h, Some("u1"), body(order, unpaid_no, 600)).await;
    assert_eq!(json_of(resp, 409).await["error"], "refund_not_allowed");
    assert_eq!(h.payment(unpaid_no).await.status, "unpaid");

    let (paid_order, pay_no) = paid_attempt(&h, "wechat", 600).await;
    // Another order's attempt.
    let resp = refund(&h, Some("u2"), body(order, &pay_no, 600)).await;
    assert_eq!(json_of(resp, 409).await["error"], "refund_not_allowed");
    // More than was paid.
    let resp = refund(&h, Some("u3"), body(paid_order, &pay_no, 601)).await;
    assert_eq!(json_of(resp, 409).await["error"], "refund_not_allowed");
    // Unknown attempt.
    let resp = refund(&h, Some("u4"), body(paid_order, "123456789", 1)).await;
    assert_eq!(json_of(resp, 404).await["error"], "payment_not_found");
    // No idempotency key, zero amount, unknown field.
    let resp = refund(&h, None, body(paid_order, &pay_no, 600)).await;
    assert_eq!(json_of(resp, 400).await["error"], "invalid_request");
    let resp = refund(&h, Some("u5"), body(paid_order, &pay_no, 0)).await;
    assert_eq!(json_of(resp, 400).await["error"], "invalid_request");
    let mut extra = body(paid_order, &pay_no, 600);
    extra["status"] = "succeeded".into();
    let resp = refund(&h, Some("u6"), extra).await;
    assert_eq!(resp.status(), 400);
    // Without the service credential.
    let resp = h
        .client
        .post(format!("{}/internal/refunds", h.internal))
        .header("Idempotency-Key", "u7")
        .json(&body(paid_order, &pay_no, 600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = h
        .client
        .get(format!("{}/internal/refunds/1", h.internal))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Unknown refund.
    assert_eq!(
        json_of(get_refund(&h, "987654321").await, 404).await["error"],
        "refund_not_found"
    );
    // Nothing was recorded, nothing moved.
    assert!(h.refunds().await.is_empty());
    assert_eq!(h.payment(&pay_no).await.status, "paid");
    assert!(h.events("refund.result.v1").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_refunds_add_up_to_at_most_the_amount_paid() {
    let h = Harness::start().await;
    let (order, pay_no) = paid_attempt(&h, "wechat", 1000).await;
    let first = json_of(refund(&h, Some("p1"), body(order, &pay_no, 300)).await, 201).await;
    until_status(&h, s(&first, "refund_no"), "succeeded").await;
    // Partly refunded: still paid.
    assert_eq!(h.payment(&pay_no).await.status, "paid");
    // 300 + 800 > 1000.
    let resp = refund(&h, Some("p2"), body(order, &pay_no, 800)).await;
    assert_eq!(json_of(resp, 409).await["error"], "refund_not_allowed");
    let second = json_of(refund(&h, Some("p3"), body(order, &pay_no, 700)).await, 201).await;
    until_status(&h, s(&second, "refund_no"), "succeeded").await;
    assert_eq!(h.payment(&pay_no).await.status, "refunded");
    let trade = h.sandbox_trade(&pay_no).await;
    let amounts: Vec<i64> = trade["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount_fen"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [300, 700]);
    let events = requested_events(&h, &pay_no).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["data"]["status"] == "succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_alipay_attempt_is_refunded_too() {
    let h = Harness::start().await;
    let (order, pay_no) = paid_attempt(&h, "alipay", 1999).await;
    let created = json_of(
        refund(&h, Some("ali-1"), body(order, &pay_no, 1999)).await,
        201,
    )
    .await;
    assert_eq!(created["channel"], "alipay");
    let refund_no = s(&created, "refund_no").to_owned();
    until_status(&h, &refund_no, "succeeded").await;
    assert_eq!(h.payment(&pay_no).await.status, "refunded");
    let trade = h.sandbox_trade(&pay_no).await;
    let refunds = trade["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["out_refund_no"], refund_no.as_str());
    assert_eq!(refunds[0]["amount_fen"], 1999);
    let events = eventually(|| async {
        let e = requested_events(&h, &pay_no).await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["channel"], "alipay");
    assert_eq!(events[0]["data"]["reason"], "requested");
    assert_eq!(events[0]["data"]["status"], "succeeded");
    let resp = refund(&h, Some("ali-2"), body(order, &pay_no, 1)).await;
    assert_eq!(json_of(resp, 409).await["error"], "refund_not_allowed");
}
