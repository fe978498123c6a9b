//! WeChat Pay API v2 as the third channel: a purchase paid by notification, the exact
//! v2 acknowledgement, refused forgeries, stray money refunded over mutual TLS (with its
//! encrypted refund notification), and the timeout close.

use crate::support;

use paywire_channels::wechat_v2::sign::{SignType, sign_fields};
use paywire_channels::wechat_v2::xml::{self, XmlMap};
use paywire_channels::wechat_v2::{DEV_API_KEY, DEV_APPID, DEV_MCH_ID};
use paywire_testkit::{TestDatabase, TestVhost};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::{Harness, eventually, gateway_settings, start_sandbox_v2_with, with_wechat_v2};

const SUCCESS_REPLY: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

fn next_order() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(40_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

async fn harness() -> Harness {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let (sandbox, tls_port) = start_sandbox_v2_with(|_| {}).await;
    let mut settings = gateway_settings(&db, &vhost, &sandbox);
    with_wechat_v2(&mut settings, &sandbox, tls_port);
    Harness::with_settings(settings, sandbox, db, vhost).await
}

async fn v2_attempt(h: &Harness, order: i64, amount: i64) -> Value {
    let resp = h
        .create_payment_body(json!({
            "order_id": order.to_string(),
            "user_id": "student-1",
            "amount_fen": amount,
            "channel": "wechat_v2",
            "description": "Rust 入门课程",
            "biz_type": "course",
            "biz_id": "77",
        }))
        .await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

/// A payment notification as WeChat Pay v2 sends it, signed with `key`.
fn notification(pay_no: &str, transaction_id: &str, total_fee: &str, key: &str) -> Vec<u8> {
    let mut map: XmlMap = [
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("appid", DEV_APPID),
        ("mch_id", DEV_MCH_ID),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
        ("trade_type", "NATIVE"),
        ("bank_type", "CMC"),
        ("total_fee", total_fee),
        ("fee_type", "CNY"),
        ("transaction_id", transaction_id),
        ("out_trade_no", pay_no),
        ("time_end", "20260301100500"),
    ]
    .into_iter()
    .collect();
    sign_fields(
        &mut map,
        &SecretString::from(key.to_owned()),
        SignType::HmacSha256,
    );
    map.to_xml().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_purchase_is_paid_by_its_notification_and_acknowledged_exactly() {
    let h = harness().await;
    let order = next_order();
    let attempt = v2_attempt(&h, order, 1999).await;
    assert_eq!(attempt["channel"], "wechat_v2");
    assert!(s(&attempt, "code_url").starts_with("weixin://wxpay/bizpayurl?pr="));
    let pay_no = s(&attempt, "pay_no").to_owned();
    assert_eq!(h.sandbox_trade(&pay_no).await["channel"], "wechat_v2");

    h.wallet_pay(s(&attempt, "code_url")).await;
    eventually(|| async { (h.events("pay.result.v1").await.len() == 1).then_some(()) }).await;
    let row = h.payment(&pay_no).await;
    assert_eq!(row.status, "paid");
    let event = &h.events("pay.result.v1").await[0];
    assert_eq!(event["data"]["channel"], "wechat_v2");
    assert_eq!(event["data"]["amount_fen"], 1999);
    // The sandbox saw the exact SUCCESS reply on the first attempt.
    let n = eventually(|| async {
        let n = h.sandbox_trade(&pay_no).await["notifications"][0].clone();
        (n["finished"] == true).then_some(n)
    })
    .await;
    assert_eq!(n["attempts"][0]["acknowledged"], true, "{n}");

    // Delivered again (WeChat retries): acknowledged again, nothing new.
    let transaction_id = row.channel_trade_no.unwrap();
    let again = notification(&pay_no, &transaction_id, "1999", DEV_API_KEY);
    let reply = h.post_callback("wechat_v2", &[], &again).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.unwrap(), SUCCESS_REPLY);
    assert_eq!(h.events("pay.result.v1").await.len(), 1);
    // And the sync agrees.
    let sync: Value = h.sync(order).await.json().await.unwrap();
    assert_eq!(sync["paid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_wrong_v2_notifications_change_nothing_and_get_fail() {
    let h = harness().await;
    let order = next_order();
    let attempt = v2_attempt(&h, order, 800).await;
    let pay_no = s(&attempt, "pay_no").to_owned();
    let fail = |body: String| {
        let map = xml::parse(body.as_bytes()).unwrap();
        assert_eq!(map.get("return_code"), Some("FAIL"), "{body}");
    };
    // Signed with another key, tampered after signing, another amount (signed right),
    // a DTD: all refused with FAIL.
    let forged = notification(&pay_no, "4200000001", "800", &"k".repeat(32));
    let reply = h.post_callback("wechat_v2", &[], &forged).await;
    assert_eq!(reply.status(), 401);
    fail(reply.text().await.unwrap());
    let tampered = String::from_utf8(notification(&pay_no, "4200000001", "800", DEV_API_KEY))
        .unwrap()
        .replace("<![CDATA[800]]>", "<![CDATA[1]]>");
    let reply = h.post_callback("wechat_v2", &[], tampered.as_bytes()).await;
    assert_eq!(reply.status(), 401);
    fail(reply.text().await.unwrap());
    let wrong_amount = notification(&pay_no, "4200000001", "1", DEV_API_KEY);
    let reply = h.post_callback("wechat_v2", &[], &wrong_amount).await;
    assert!(reply.status().is_client_error(), "{}", reply.status());
    fail(reply.text().await.unwrap());
    let doctype = format!(
        "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        String::from_utf8(notification(&pay_no, "4200000001", "800", DEV_API_KEY)).unwrap()
    );
    let reply = h.post_callback("wechat_v2", &[], doctype.as_bytes()).await;
    assert_eq!(reply.status(), 400);
    fail(reply.text().await.unwrap());
    assert_eq!(h.payment(&pay_no).await.status, "unpaid");
    assert!(h.events("pay.result.v1").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_v2_payment_is_refunded_over_mutual_tls() {
    let h = harness().await;
    let order = next_order();
    let first = v2_attempt(&h, order, 800).await;
    let second = v2_attempt(&h, order, 900).await;
    h.wallet_pay(s(&first, "code_url")).await;
    eventually(|| async { (h.events("pay.result.v1").await.len() == 1).then_some(()) }).await;
    h.wallet_pay(s(&second, "code_url")).await;
    let refund = eventually(|| async {
        h.refunds()
            .await
            .into_iter()
            .find(|r| r.status == "succeeded")
    })
    .await;
    let second_pay_no = s(&second, "pay_no");
    assert_eq!(refund.pay_no.to_string(), second_pay_no);
    assert_eq!(refund.amount_fen, 900);
    assert!(refund.channel_refund_id.is_some());
    assert_eq!(h.payment(second_pay_no).await.status, "refunded");
    let trade = h.sandbox_trade(second_pay_no).await;
    assert_eq!(trade["trade_state"], "REFUND");
    assert_eq!(trade["refunds"][0]["status"], "SUCCESS");
    let events = h.events("refund.result.v1").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["channel"], "wechat_v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_v2_attempt_is_closed_at_the_channel_on_timeout() {
    let h = harness().await;
    let order = next_order();
    let attempt = v2_attempt(&h, order, 500).await;
    let pay_no = s(&attempt, "pay_no").to_owned();
    let closed = h.close(order).await;
    assert_eq!(closed.status(), 200, "{:?}", closed.text().await);
    assert_eq!(h.payment(&pay_no).await.status, "closed");
    assert_eq!(h.sandbox_trade(&pay_no).await["trade_state"], "CLOSED");
    // The closed code cannot be paid any more.
    let resp = h
        .client
        .post(format!("{}/sandbox/wallet/pay", h.sandbox))
        .json(&json!({"code": s(&attempt, "code_url")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
}
