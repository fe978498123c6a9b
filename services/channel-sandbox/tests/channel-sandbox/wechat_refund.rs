//! Black-box tests of WeChat Pay refunds (`/v3/refund/domestic/refunds`).

use crate::support;

use serde_json::{Value, json};
use support::*;

fn refund_body(otn: &str, no: &str, refund: i64, total: i64, notify_url: &str) -> String {
    json!({
        "out_trade_no": otn, "out_refund_no": no, "reason": "退课",
        "notify_url": notify_url,
        "amount": {"refund": refund, "total": total, "currency": "CNY"}
    })
    .to_string()
}

async fn paid_trade(s: &Sandbox, total: i64, notify_url: &str) -> (String, Value) {
    let otn = unique("w");
    let code = s.wx_trade(&otn, total, notify_url).await;
    let (status, paid) = s.wallet("pay", &code).await;
    assert_eq!(status, 200);
    (otn, paid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_is_processing_then_success_with_a_signed_encrypted_notification() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    let (otn, paid) = paid_trade(&s, 1000, &receiver.url).await;
    receiver.wait_for(1).await;

    let answer = s
        .wx(
            "POST",
            "/v3/refund/domestic/refunds",
            &refund_body(&otn, "rf1", 300, 1000, &receiver.url),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert!(answer.verifies);
    let r = answer.json();
    assert_eq!(r["status"], "PROCESSING");
    assert_eq!(r["out_refund_no"], "rf1");
    assert_eq!(r["out_trade_no"], otn.as_str());
    assert_eq!(r["transaction_id"], paid["transaction_id"]);
    assert_eq!(r["amount"]["refund"], 300);
    assert_eq!(r["amount"]["total"], 1000);
    let refund_id = r["refund_id"].as_str().unwrap().to_owned();

    // The trade turned REFUND.
    assert_eq!(s.wx_query(&otn).await.json()["trade_state"], "REFUND");

    let deliveries = receiver.wait_for(2).await;
    let (verifies, envelope, resource) = open_wechat(&deliveries[1]);
    assert!(verifies, "refund notification signature does not verify");
    assert_eq!(envelope["event_type"], "REFUND.SUCCESS");
    assert_eq!(envelope["summary"], "退款成功");
    assert_eq!(envelope["resource"]["original_type"], "refund");
    assert_eq!(envelope["resource"]["associated_data"], "refund");
    assert_eq!(resource["refund_status"], "SUCCESS");
    assert_eq!(resource["out_refund_no"], "rf1");
    assert_eq!(resource["refund_id"], refund_id.as_str());
    assert_eq!(resource["out_trade_no"], otn.as_str());
    assert_eq!(resource["mchid"], MCHID);
    assert_eq!(resource["amount"]["refund"], 300);
    assert!(
        resource["success_time"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );

    let q = s.wx("GET", "/v3/refund/domestic/refunds/rf1", "").await;
    assert!(q.verifies);
    assert_eq!(q.json()["status"], "SUCCESS");
    assert_eq!(q.json()["refund_id"], refund_id.as_str());

    // The same out_refund_no and parameters: the same refund, no second one.
    let again = s
        .wx(
            "POST",
            "/v3/refund/domestic/refunds",
            &refund_body(&otn, "rf1", 300, 1000, &receiver.url),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["refund_id"], refund_id.as_str());
    assert_eq!(again.json()["status"], "SUCCESS");
    assert_eq!(s.trade(&otn).await["refunds"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_rules() {
    let s = Sandbox::start().await;
    let dead = "http://127.0.0.1:9/notify";
    let (otn, _) = paid_trade(&s, 1000, dead).await;
    let post = |body: String| {
        let s = &s;
        async move { s.wx("POST", "/v3/refund/domestic/refunds", &body).await }
    };
    let code = |a: &WxAnswer| (a.status, a.json()["code"].as_str().unwrap_or("").to_owned());

    assert_eq!(
        post(refund_body(&otn, "a1", 600, 1000, dead)).await.status,
        200
    );
    // The same number with other parameters.
    let reused = post(refund_body(&otn, "a1", 500, 1000, dead)).await;
    assert!(reused.verifies);
    assert_eq!(code(&reused), (400, "INVALID_REQUEST".into()));
    // Cumulative refunds cannot exceed the total.
    let exceeds = post(refund_body(&otn, "a2", 401, 1000, dead)).await;
    assert_eq!(code(&exceeds), (400, "INVALID_REQUEST".into()));
    assert_eq!(
        post(refund_body(&otn, "a3", 400, 1000, dead)).await.status,
        200
    );
    // amount.total must be the order's.
    let (otn2, _) = paid_trade(&s, 1000, dead).await;
    let wrong_total = post(refund_body(&otn2, "b1", 1, 999, dead)).await;
    assert_eq!(code(&wrong_total), (400, "PARAM_ERROR".into()));
    // Unpaid and unknown trades.
    let unpaid = unique("u");
    s.wx_trade(&unpaid, 100, dead).await;
    let a = post(refund_body(&unpaid, "c1", 1, 100, dead)).await;
    assert_eq!(code(&a), (400, "INVALID_REQUEST".into()));
    let a = post(refund_body("nosuchtrade", "c2", 1, 100, dead)).await;
    assert_eq!(code(&a), (404, "ORDER_NOT_EXIST".into()));
    // Unknown refund.
    let q = s.wx("GET", "/v3/refund/domestic/refunds/none", "").await;
    assert!(q.verifies);
    assert_eq!(code(&q), (404, "RESOURCE_NOT_EXISTS".into()));
    // Refunds need a signature like everything else.
    let resp = s
        .client
        .post(format!("{}/v3/refund/domestic/refunds", s.base))
        .body(refund_body(&otn2, "d1", 1, 1000, dead))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_delay_keeps_the_refund_processing_until_it_passes() {
    let receiver = Receiver::acking().await;
    let mut settings = settings(1000.0);
    settings.wechat.refund_delay_ms = 60_000;
    let s = Sandbox::start_with(settings).await;
    let (otn, _) = paid_trade(&s, 100, &receiver.url).await;
    let a = s
        .wx(
            "POST",
            "/v3/refund/domestic/refunds",
            &refund_body(&otn, "z1", 100, 100, &receiver.url),
        )
        .await;
    assert_eq!(a.json()["status"], "PROCESSING");
    let q = s.wx("GET", "/v3/refund/domestic/refunds/z1", "").await;
    assert_eq!(q.json()["status"], "PROCESSING");
    // Absent, not null, as WeChat Pay answers a processing refund.
    assert!(a.json().get("success_time").is_none(), "{}", a.json());
    assert!(q.json().get("success_time").is_none(), "{}", q.json());
    assert!(q.json().get("create_time").is_some());
}

/// The query by WeChat Pay's own number answers the same trade as the query by ours; an
/// unknown number is `ORDER_NOT_EXIST`, another merchant's `mchid` a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_trade_is_found_by_its_transaction_id() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    let (otn, paid) = paid_trade(&s, 100, &receiver.url).await;
    let id = paid["transaction_id"].as_str().unwrap();
    let by_id = s
        .wx(
            "GET",
            &format!("/v3/pay/transactions/id/{id}?mchid={MCHID}"),
            "",
        )
        .await;
    assert_eq!(by_id.status, 200);
    assert!(by_id.verifies);
    assert_eq!(by_id.json()["trade_state"], "SUCCESS");
    assert_eq!(by_id.json(), s.wx_query(&otn).await.json());
    let unknown = s
        .wx(
            "GET",
            &format!("/v3/pay/transactions/id/4200000000000000000000000000?mchid={MCHID}"),
            "",
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.verifies);
    assert_eq!(unknown.json()["code"], "ORDER_NOT_EXIST");
    let other = s
        .wx(
            "GET",
            &format!("/v3/pay/transactions/id/{id}?mchid=1900000001"),
            "",
        )
        .await;
    assert_eq!(other.status, 400);
}
