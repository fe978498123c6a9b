//! Black-box tests of fault injection: each fault is shown to happen, and is recorded.

use crate::support;

use std::time::Duration;

use paywire_testkit::test_key;
use serde_json::{Value, json};
use support::*;

fn kinds(trade: &Value) -> Vec<String> {
    trade["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn scope(channel: &str, otn: &str) -> Value {
    json!({"channel": channel, "out_trade_no": otn})
}

/// A WeChat trade paid in the wallet; returns its out_trade_no.
async fn wx_paid(s: &Sandbox, notify_url: &str) -> String {
    let otn = unique("w");
    let code = s.wx_trade(&otn, 100, notify_url).await;
    assert_eq!(s.wallet("pay", &code).await.0, 200);
    otn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_means_no_delivery_at_all() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    let otn = unique("d");
    let code = s.wx_trade(&otn, 100, &receiver.url).await;
    let (status, _) = s
        .put_faults(json!({"scope": scope("wechat", &otn), "notify": {"drop": true}}))
        .await;
    assert_eq!(status, 200);
    s.wallet("pay", &code).await;
    // Another trade's notification gets through, so the receiver is listening.
    let other = wx_paid(&s, &receiver.url).await;
    let d = receiver.wait_for(1).await;
    let (_, _, resource) = open_wechat(&d[0]);
    assert_eq!(resource["out_trade_no"], other.as_str());
    let trade = s.trade(&otn).await;
    let n = &trade["notifications"][0];
    assert_eq!(n["dropped"], true);
    assert_eq!(n["finished"], true);
    assert!(n["attempts"].as_array().unwrap().is_empty());
    assert_eq!(kinds(&trade), ["drop"]);
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_n_gives_n_plus_one_deliveries() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    s.put_faults(json!({"scope": "global", "notify": {"duplicate": 2}}))
        .await;
    let otn = unique("a");
    let qr = s.ali_trade(&otn, "1.00", &receiver.url).await;
    s.wallet("pay", &qr).await;
    let record = s.finished_notification(&otn, 0).await;
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[1]["injected"], "duplicate");
    let d = receiver.wait_for(3).await;
    assert_eq!(d.len(), 3);
    assert!(
        d.iter().all(|x| x.1 == d[0].1),
        "copies are the same notification"
    );
    assert!(d.iter().all(|x| open_alipay(x).0));
    assert_eq!(kinds(&s.trade(&otn).await), ["duplicate"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_first_loses_attempts_and_the_schedule_delivers_later() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start_with(settings(1_000_000.0)).await;
    let otn = unique("f");
    let code = s.wx_trade(&otn, 100, &receiver.url).await;
    s.put_faults(json!({"scope": {"out_trade_no": otn}, "notify": {"drop_first": 2}}))
        .await;
    s.wallet("pay", &code).await;
    let record = s.finished_notification(&otn, 0).await;
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["injected"], "drop_first");
    assert_eq!(attempts[1]["injected"], "drop_first");
    assert_eq!(attempts[2]["acknowledged"], true);
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_the_first_attempt() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    let otn = unique("l");
    let code = s.wx_trade(&otn, 100, &receiver.url).await;
    s.put_faults(json!({"scope": scope("wechat", &otn), "notify": {"delay_ms": 700}}))
        .await;
    s.wallet("pay", &code).await;
    let record = s.finished_notification(&otn, 0).await;
    let trade = s.trade(&otn).await;
    assert_eq!(kinds(&trade), ["delay"]);
    let decided: chrono::DateTime<chrono::Utc> =
        trade["faults"][0]["at"].as_str().unwrap().parse().unwrap();
    let sent: chrono::DateTime<chrono::Utc> = record["attempts"][0]["at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // A lower bound only: the sandbox slept at least this long before sending.
    assert!(
        sent - decided >= chrono::Duration::milliseconds(700),
        "{decided} {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_lets_the_next_notification_overtake() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    let first = unique("o");
    let code = s.wx_trade(&first, 100, &receiver.url).await;
    s.put_faults(json!({"scope": scope("wechat", &first), "notify": {"reorder": true}}))
        .await;
    s.wallet("pay", &code).await;
    let second = wx_paid(&s, &receiver.url).await;
    let d = receiver.wait_for(2).await;
    let order: Vec<String> = d
        .iter()
        .map(|x| {
            open_wechat(x).2["out_trade_no"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(order, [second, first.clone()]);
    assert_eq!(kinds(&s.trade(&first).await), ["reorder"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_without_notify_pays_silently() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    let otn = unique("s");
    let qr = s.ali_trade(&otn, "3.00", &receiver.url).await;
    s.put_faults(json!({"scope": scope("alipay", &otn), "pay_without_notify": true}))
        .await;
    let (status, paid) = s.wallet("pay", &qr).await;
    assert_eq!(
        (status, paid["trade_state"].as_str()),
        (200, Some("TRADE_SUCCESS"))
    );
    let q = s
        .ali("alipay.trade.query", json!({"out_trade_no": otn}))
        .await;
    assert_eq!(q.content["trade_status"], "TRADE_SUCCESS");
    // Another payment is notified; this one never is.
    let other = unique("s");
    let qr2 = s.ali_trade(&other, "3.00", &receiver.url).await;
    s.wallet("pay", &qr2).await;
    let d = receiver.wait_for(1).await;
    assert_eq!(
        field(&open_alipay(&d[0]).1, "out_trade_no"),
        Some(other.as_str())
    );
    let trade = s.trade(&otn).await;
    assert!(trade["notifications"].as_array().unwrap().is_empty());
    assert_eq!(kinds(&trade), ["pay_without_notify"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_5xx_answers_without_doing_anything() {
    let s = Sandbox::start().await;
    let otn = unique("x");
    let code = s.wx_trade(&otn, 100, "http://127.0.0.1:9/notify").await;
    s.put_faults(json!({"scope": {"out_trade_no": otn}, "api": {"status_5xx": true}}))
        .await;
    let close_path = format!("/v3/pay/transactions/out-trade-no/{otn}/close");
    let a = s
        .wx("POST", &close_path, &json!({"mchid": MCHID}).to_string())
        .await;
    assert_eq!(a.status, 500);
    assert!(a.verifies);
    assert_eq!(a.json()["code"], "SYSTEM_ERROR");
    // Nothing was closed: the payer can still pay.
    assert_eq!(s.wallet("pay", &code).await.0, 200);

    let ali = unique("x");
    s.ali_trade(&ali, "1.00", "http://127.0.0.1:9/notify").await;
    s.put_faults(json!({"scope": {"out_trade_no": ali}, "api": {"status_5xx": true}}))
        .await;
    let a = s
        .ali("alipay.trade.query", json!({"out_trade_no": ali}))
        .await;
    assert_eq!(a.status, 500);
    assert_eq!(a.content["code"], "20000");
    assert_eq!(kinds(&s.trade(&ali).await), ["status_5xx"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_does_the_work_but_answers_too_late() {
    let s = Sandbox::start().await;
    let otn = unique("t");
    s.wx_trade(&otn, 100, "http://127.0.0.1:9/notify").await;
    s.put_faults(json!({"scope": scope("wechat", &otn), "api": {"timeout_ms": 3000}}))
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let path = format!("/v3/pay/transactions/out-trade-no/{otn}/close");
    let body = json!({"mchid": MCHID}).to_string();
    let ts = chrono::Utc::now().timestamp();
    // Signed like `Sandbox::wx_send`, sent with a client that gives up early.
    let signed = sign_wechat("POST", &path, &body, ts);
    let result = impatient
        .post(format!("{}{path}", s.base))
        .header("Content-Type", "application/json")
        .header("Authorization", signed)
        .body(body)
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    s.delete_faults("").await;
    // The close happened although the client never heard.
    assert_eq!(s.wx_query(&otn).await.json()["trade_state"], "CLOSED");
    assert_eq!(kinds(&s.trade(&otn).await), ["timeout"]);
}

fn sign_wechat(method: &str, path: &str, body: &str, ts: i64) -> String {
    use paywire_channels::wechat::crypto;
    let key =
        paywire_channels::keys::private_key_from_file(test_key("wechat/merchant_private_key.pem"))
            .unwrap();
    let nonce = crypto::nonce();
    let sig = crypto::sign(
        &key,
        crypto::request_message(method, path, ts, &nonce, body).as_bytes(),
    );
    crypto::authorization(MCHID, SERIAL, ts, &nonce, &sig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_on_answers_fails_the_clients_verification() {
    let s = Sandbox::start().await;
    let otn = unique("b");
    s.wx_trade(&otn, 100, "http://127.0.0.1:9/notify").await;
    assert!(s.wx_query(&otn).await.verifies);
    s.put_faults(json!({"scope": scope("wechat", &otn), "api": {"bad_signature": true}}))
        .await;
    let a = s.wx_query(&otn).await;
    assert_eq!(a.status, 200);
    assert!(!a.verifies);

    let ali = unique("b");
    s.ali_trade(&ali, "1.00", "http://127.0.0.1:9/notify").await;
    s.put_faults(json!({"scope": scope("alipay", &ali), "api": {"bad_signature": true}}))
        .await;
    let a = s
        .ali("alipay.trade.query", json!({"out_trade_no": ali}))
        .await;
    assert!(!a.verifies, "{}", a.raw);
    assert_eq!(a.content["sub_code"], "ACQ.TRADE_NOT_EXIST");
    assert_eq!(kinds(&s.trade(&ali).await), ["bad_signature"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_on_notifications_fails_the_receivers_verification() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    s.put_faults(json!({"scope": "global", "notify": {"bad_signature": true}}))
        .await;
    let wx = wx_paid(&s, &receiver.url).await;
    let d = receiver.wait_for(1).await;
    let (verifies, _, resource) = open_wechat(&d[0]);
    assert!(!verifies);
    assert_eq!(resource["out_trade_no"], wx.as_str());
    let ali = unique("n");
    let qr = s.ali_trade(&ali, "1.00", &receiver.url).await;
    s.wallet("pay", &qr).await;
    let d = receiver.wait_for(2).await;
    let (verifies, params) = open_alipay(&d[1]);
    assert!(!verifies);
    assert_eq!(field(&params, "out_trade_no"), Some(ali.as_str()));
    assert_eq!(kinds(&s.trade(&ali).await), ["notify_bad_signature"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_shows_validates_and_clears() {
    let s = Sandbox::start().await;
    let (status, err) = s
        .put_faults(json!({"scope": "global", "probability": 2.0}))
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_fault_spec"))
    );
    let (status, err) = s
        .put_faults(json!({"scope": "global", "notify": {"dorp": true}}))
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_fault_spec"))
    );
    // Probability 0: configured but never fires.
    s.put_faults(json!({"scope": "global", "api": {"status_5xx": true}, "probability": 0.0}))
        .await;
    let otn = unique("p");
    s.wx_trade(&otn, 100, "http://127.0.0.1:9/notify").await;
    assert_eq!(s.wx_query(&otn).await.status, 200);
    s.put_faults(json!({"scope": {"out_trade_no": otn}, "api": {"status_5xx": true}}))
        .await;
    let shown = s.faults().await;
    assert_eq!(shown["global"]["probability"], 0.0);
    assert_eq!(shown["trades"][0]["out_trade_no"], otn.as_str());
    assert_eq!(s.wx_query(&otn).await.status, 500);
    let (_, after) = s.delete_faults(&format!("?out_trade_no={otn}")).await;
    assert!(after["trades"].as_array().unwrap().is_empty());
    assert!(after["global"].is_object());
    assert_eq!(s.wx_query(&otn).await.status, 200);
    let (_, after) = s.delete_faults("?scope=global").await;
    assert!(after["global"].is_null());
    // What fired stays on record.
    let injected = after["injected"].as_array().unwrap();
    assert_eq!(injected.len(), 1);
    assert_eq!(injected[0]["kind"], "status_5xx");
}

/// Issue 9: fault injection, health and metrics answer on the internal listener only;
/// the channels' APIs and the wallet on the public one only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_metrics_answer_404_on_the_public_listener() {
    let s = Sandbox::start().await;
    paywire_testkit::listeners::assert_split(
        &s.base,
        &s.internal,
        &[
            ("GET", "/sandbox/admin/faults"),
            ("PUT", "/sandbox/admin/faults"),
            ("DELETE", "/sandbox/admin/faults"),
        ],
        &[
            ("POST", "/v3/pay/transactions/native"),
            ("POST", "/gateway.do"),
            ("GET", "/sandbox/wallet"),
            ("GET", "/sandbox/trades"),
            ("POST", "/sandbox/wallet/scan"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_page_is_served_with_its_test_ids() {
    let s = Sandbox::start().await;
    let resp = s
        .client
        .get(format!("{}/sandbox/wallet", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    for id in ["trade-row", "pay-button", "code-input", "notification-row"] {
        assert!(html.contains(id), "{id}");
    }
}
