//! Stray money goes back, and Alipay beside WeChat: black-box against the channel sandbox
//! (both channels, refunds, wallet).

use crate::support;

use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::{Value, json};
use support::{AlipayNotify, Harness, eventually, gateway_settings, nowhere, start_sandbox};

fn next_order() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(90_000);
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

/// Gateway whose callbacks (both channels) never arrive.
async fn quiet_harness() -> Harness {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = start_sandbox().await;
    let mut settings = gateway_settings(&db, &vhost, &sandbox);
    settings.wechat.notify_url = nowhere();
    settings.alipay.notify_url = nowhere().replace("wechat", "alipay");
    settings.sweeper.first_check_secs = 3600;
    settings.sweeper.max_backoff_secs = 3600;
    Harness::with_settings(settings, sandbox, db, vhost).await
}

async fn alipay_attempt(h: &Harness, order: i64, amount: i64) -> Value {
    let resp = h
        .create_payment_body(json!({
            "order_id": order.to_string(),
            "user_id": "student-1",
            "amount_fen": amount,
            "channel": "alipay",
            "description": "Rust 入门课程",
            "biz_type": "course",
            "biz_id": "77",
        }))
        .await;
    json_of(resp, 201).await
}

async fn succeeded_refund(h: &Harness) -> support::RefundRow {
    eventually(|| async {
        h.refunds()
            .await
            .into_iter()
            .find(|r| r.status == "succeeded")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_paid_wechat_attempts_of_one_order_give_one_pay_result_and_one_refund() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = start_sandbox().await;
    // Real callbacks: both payments arrive by notification.
    let settings = gateway_settings(&db, &vhost, &sandbox);
    let h = Harness::with_settings(settings, sandbox, db, vhost).await;
    let order = next_order();
    let first = h.new_attempt(order, 800).await;
    let second = h.new_attempt(order, 900).await;
    h.wallet_pay(s(&first, "code_url")).await;
    eventually(|| async { (h.events("pay.result.v1").await.len() == 1).then_some(()) }).await;
    h.wallet_pay(s(&second, "code_url")).await;

    let refund = succeeded_refund(&h).await;
    let second_pay_no = s(&second, "pay_no");
    assert_eq!(refund.pay_no.to_string(), second_pay_no);
    assert_eq!(refund.order_id, order);
    assert_eq!(refund.amount_fen, 900);
    assert_eq!(refund.reason, "duplicate_payment");
    assert!(refund.channel_refund_id.is_some());
    assert_eq!(h.refunds().await.len(), 1);
    assert_eq!(h.payment(second_pay_no).await.status, "refunded");
    assert_eq!(h.payment(s(&first, "pay_no")).await.status, "paid");
    assert_eq!(
        h.sandbox_trade(second_pay_no).await["trade_state"],
        "REFUND"
    );

    let results = h.events("pay.result.v1").await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["data"]["pay_no"], s(&first, "pay_no"));
    let refunds = h.events("refund.result.v1").await;
    assert_eq!(refunds.len(), 1);
    let data = &refunds[0]["data"];
    assert_eq!(data["refund_no"], refund.refund_no.to_string());
    assert_eq!(data["pay_no"], second_pay_no);
    assert_eq!(data["order_id"], order.to_string());
    assert_eq!(data["channel"], "wechat");
    assert_eq!(data["amount_fen"], 900);
    assert_eq!(data["reason"], "duplicate_payment");
    assert_eq!(data["status"], "succeeded");
    assert!(data["refunded_at"].is_string());
    // Sync still names the attempt that paid the order.
    let body = json_of(h.sync(order).await, 200).await;
    assert_eq!(body["pay_no"], s(&first, "pay_no"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_for_a_closed_order_is_refunded_without_a_pay_result() {
    let h = quiet_harness().await;
    let order = next_order();
    let attempt = h.new_attempt(order, 800).await;
    let pay_no = s(&attempt, "pay_no").to_owned();
    // The student pays while the timeout is closing: locally the attempt is already
    // closed, but the channel took the money.
    h.wallet_pay(s(&attempt, "code_url")).await;
    h.set_status(&pay_no, "closed").await;
    h.sql(&format!(
        "INSERT INTO closed_orders (order_id) VALUES ({order})"
    ))
    .await;
    // The callback finally arrives (sent by the test, signed like the channel's).
    let trade = h.sandbox_trade(&pay_no).await;
    let mut notify = support::Notify::new(&pay_no, 800);
    notify.transaction_id = s(&trade, "transaction_id").to_owned();
    let (headers, body) = notify.build();
    assert_eq!(
        h.post_callback("wechat", &headers, &body).await.status(),
        204
    );

    let refund = succeeded_refund(&h).await;
    assert_eq!(refund.reason, "order_closed");
    assert_eq!(refund.pay_no.to_string(), pay_no);
    assert_eq!(h.payment(&pay_no).await.status, "refunded");
    assert_eq!(h.sandbox_trade(&pay_no).await["trade_state"], "REFUND");
    assert!(h.events("pay.result.v1").await.is_empty());
    let events = h.events("refund.result.v1").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["reason"], "order_closed");
    // Stray money is not the order's payment.
    assert_eq!(json_of(h.sync(order).await, 200).await["paid"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alipay_payment_arrives_through_the_generic_callback_pipeline() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = start_sandbox().await;
    let settings = gateway_settings(&db, &vhost, &sandbox);
    let h = Harness::with_settings(settings, sandbox, db, vhost).await;
    let order = next_order();
    let attempt = alipay_attempt(&h, order, 1999).await;
    assert_eq!(attempt["channel"], "alipay");
    assert!(s(&attempt, "code_url").starts_with("https://qr.alipay.com/"));
    let pay_no = s(&attempt, "pay_no").to_owned();
    h.wallet_pay(s(&attempt, "code_url")).await;

    let result = eventually(|| async { h.events("pay.result.v1").await.into_iter().next() }).await;
    assert_eq!(result["data"]["pay_no"], pay_no.as_str());
    assert_eq!(result["data"]["channel"], "alipay");
    assert_eq!(result["data"]["amount_fen"], 1999);
    assert_eq!(h.payment(&pay_no).await.status, "paid");
    let outcomes = h.outcomes().await;
    assert_eq!(outcomes.first().map(String::as_str), Some("applied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_alipay_notification_is_refused_and_changes_nothing() {
    let h = quiet_harness().await;
    let attempt = alipay_attempt(&h, next_order(), 500).await;
    let pay_no = s(&attempt, "pay_no");
    let forged = format!(
        "out_trade_no={pay_no}&trade_no=2026112222001400000000000001&trade_status=TRADE_SUCCESS\
         &total_amount=5.00&app_id=2021000000000001&seller_id=2088000000000001\
         &sign_type=RSA2&sign=AAAA"
    );
    let resp = h
        .post_callback(
            "alipay",
            &[(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            forged.as_bytes(),
        )
        .await;
    assert_ne!(resp.status(), 200);
    assert_eq!(h.payment(pay_no).await.status, "unpaid");
    assert!(h.outbox().await.is_empty());
}

/// Issue 9: a validly signed notification that leaves out our seller (or names another
/// seller or app) was paid. Each is refused (`failure`, so never acknowledged), recorded
/// as `wrong_merchant`, and the attempt stays unpaid; the same notification with our
/// seller and app then pays it, so the refusals are not the signature's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alipay_notification_not_for_our_seller_and_app_is_refused() {
    let h = quiet_harness().await;
    let attempt = alipay_attempt(&h, next_order(), 500).await;
    let pay_no = s(&attempt, "pay_no");
    let cases = [
        ("seller_id", None),
        ("seller_id", Some("")),
        ("seller_id", Some("2088000000000002")),
        ("app_id", Some("2021000000000002")),
    ];
    for (name, value) in cases {
        let (headers, body) = AlipayNotify::paid(pay_no, "5.00").with(name, value).build();
        let resp = h.post_callback("alipay", &headers, &body).await;
        assert_eq!(resp.status().as_u16(), 400, "{name}={value:?}");
        assert_eq!(resp.text().await.unwrap(), "failure", "{name}={value:?}");
        assert_eq!(h.payment(pay_no).await.status, "unpaid", "{name}={value:?}");
    }
    assert!(h.outbox().await.is_empty());
    // Refused by the channel layer: counted, no audit row each.
    assert!(h.outcomes().await.is_empty());
    assert_eq!(
        h.refusals().await.0,
        vec!["rejected:wrong_merchant"; cases.len()]
    );

    let (headers, body) = AlipayNotify::paid(pay_no, "5.00").build();
    let resp = h.post_callback("alipay", &headers, &body).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "success");
    assert_eq!(h.payment(pay_no).await.status, "paid");
}

/// `TRADE_CLOSED` is recorded as `trade_closed` for its attempt (it was
/// `rejected:unsupported_event`), acknowledged, and moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alipay_trade_closed_notification_is_recorded_as_such() {
    let h = quiet_harness().await;
    let attempt = alipay_attempt(&h, next_order(), 500).await;
    let pay_no = s(&attempt, "pay_no");
    let (headers, body) = AlipayNotify::paid(pay_no, "5.00")
        .with("trade_status", Some("TRADE_CLOSED"))
        .with("gmt_payment", None)
        .build();
    let resp = h.post_callback("alipay", &headers, &body).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "success");
    let rows = h.notifications().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "trade_closed");
    assert_eq!(
        rows[0].pay_no.map(|p| p.to_string()).as_deref(),
        Some(pay_no)
    );
    assert_eq!(h.payment(pay_no).await.status, "unpaid");
    assert!(h.outbox().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alipay_sync_and_close_work_like_wechat() {
    let h = quiet_harness().await;
    // Paid without a callback: found by sync.
    let order = next_order();
    let attempt = alipay_attempt(&h, order, 700).await;
    h.wallet_pay(s(&attempt, "code_url")).await;
    let body = json_of(h.sync(order).await, 200).await;
    assert_eq!(body["paid"], true);
    assert_eq!(body["pay_no"], attempt["pay_no"]);
    assert_eq!(h.events("pay.result.v1").await.len(), 1);

    // Never scanned: closed at Alipay (TRADE_NOT_EXIST before the scan) and locally.
    let order = next_order();
    let attempt = alipay_attempt(&h, order, 700).await;
    let body = json_of(h.close(order).await, 200).await;
    assert_eq!(body["outcome"], "closed");
    assert_eq!(h.payment(s(&attempt, "pay_no")).await.status, "closed");
    let resp = alipay_attempt_raw(&h, order).await;
    assert_eq!(json_of(resp, 409).await["error"], "order_closed");
}

async fn alipay_attempt_raw(h: &Harness, order: i64) -> reqwest::Response {
    h.create_payment_body(json!({
        "order_id": order.to_string(), "user_id": "student-1", "amount_fen": 700,
        "channel": "alipay", "description": "x", "biz_type": "course", "biz_id": "77",
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_channels_two_scans_give_one_enrolment_and_one_refund() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = start_sandbox().await;
    let settings = gateway_settings(&db, &vhost, &sandbox);
    let h = Harness::with_settings(settings, sandbox, db, vhost).await;
    let order = next_order();
    let wechat = h.new_attempt(order, 800).await;
    let alipay = alipay_attempt(&h, order, 800).await;
    // Both scanned at about the same time.
    let (a, b) = tokio::join!(
        h.wallet_pay(s(&wechat, "code_url")),
        h.wallet_pay(s(&alipay, "code_url"))
    );
    assert!(a["out_trade_no"].is_string() && b["out_trade_no"].is_string());

    let refund = succeeded_refund(&h).await;
    assert_eq!(refund.reason, "duplicate_payment");
    assert_eq!(h.refunds().await.len(), 1);
    let results = h.events("pay.result.v1").await;
    assert_eq!(results.len(), 1);
    let paid = results[0]["data"]["pay_no"].as_str().unwrap().to_owned();
    assert_ne!(paid, refund.pay_no.to_string());
    assert_eq!(h.payment(&paid).await.status, "paid");
    assert_eq!(
        h.payment(&refund.pay_no.to_string()).await.status,
        "refunded"
    );
    let refunds = h.events("refund.result.v1").await;
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["data"]["status"], "succeeded");
}
