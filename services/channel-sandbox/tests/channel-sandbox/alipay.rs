//! Black-box tests of the Alipay imitation: requests signed with the test app key, every
//! answer verified over its raw `*_response` substring with the test Alipay public key.

use crate::support;

use std::time::Duration;

use channel_sandbox::ALIPAY_RETRY_SCHEDULE;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precreate_answers_a_signed_qr_code_with_escaped_slashes() {
    let s = Sandbox::start().await;
    let otn = unique("p");
    let answer = s
        .ali(
            "alipay.trade.precreate",
            json!({"out_trade_no": otn, "total_amount": "88.80", "subject": "课程"}),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert!(answer.verifies, "{}", answer.raw);
    assert!(!answer.is_error_response);
    assert_eq!(answer.content["code"], "10000");
    assert_eq!(answer.content["msg"], "Success");
    assert_eq!(answer.content["out_trade_no"], otn.as_str());
    let qr = answer.content["qr_code"].as_str().unwrap();
    assert!(qr.starts_with("https://qr.alipay.com/bax0"), "{qr}");
    // Alipay writes `\/`; the signature covers that exact text.
    assert!(
        answer.raw.contains(r"https:\/\/qr.alipay.com\/bax0"),
        "{}",
        answer.raw
    );
    assert!(
        answer
            .raw
            .starts_with("{\"alipay_trade_precreate_response\":{")
    );
    // Same number, same parameters: the same code; other parameters: refused.
    let again = s
        .ali(
            "alipay.trade.precreate",
            json!({"out_trade_no": otn, "total_amount": "88.80", "subject": "课程"}),
        )
        .await;
    assert_eq!(again.content["qr_code"], qr);
    let other = s
        .ali(
            "alipay.trade.precreate",
            json!({"out_trade_no": otn, "total_amount": "88.81", "subject": "课程"}),
        )
        .await;
    assert!(other.verifies);
    assert_eq!(other.content["code"], "40004");
    assert_eq!(other.content["sub_code"], "ACQ.CONTEXT_INCONSISTENT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trade_does_not_exist_before_the_scan() {
    let s = Sandbox::start().await;
    let otn = unique("q");
    let qr = s
        .ali_trade(&otn, "12.34", "http://127.0.0.1:9/notify")
        .await;
    for method in ["alipay.trade.query", "alipay.trade.close"] {
        let a = s.ali(method, json!({"out_trade_no": otn})).await;
        assert!(a.verifies, "{}", a.raw);
        assert_eq!(a.content["code"], "40004", "{method}");
        assert_eq!(a.content["msg"], "Business Failed");
        assert_eq!(a.content["sub_code"], "ACQ.TRADE_NOT_EXIST", "{method}");
    }
    let (status, scanned) = s.wallet("scan", &qr).await;
    assert_eq!(status, 200);
    assert_eq!(scanned["channel"], "alipay");
    assert_eq!(scanned["trade_state"], "WAIT_BUYER_PAY");
    let trade_no = scanned["transaction_id"].as_str().unwrap().to_owned();
    let q = s
        .ali("alipay.trade.query", json!({"out_trade_no": otn}))
        .await;
    assert!(q.verifies);
    assert_eq!(q.content["code"], "10000");
    assert_eq!(q.content["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(q.content["trade_no"], trade_no.as_str());
    assert_eq!(q.content["total_amount"], "12.34");
    // By Alipay's trade number too.
    let by_no = s
        .ali("alipay.trade.query", json!({"trade_no": trade_no}))
        .await;
    assert_eq!(by_no.content["out_trade_no"], otn.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_query_refund_and_refund_query() {
    let s = Sandbox::start().await;
    let otn = unique("r");
    let qr = s
        .ali_trade(&otn, "100.00", "http://127.0.0.1:9/notify")
        .await;
    // Paying scans implicitly.
    let (status, paid) = s.wallet("pay", &qr).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["trade_state"], "TRADE_SUCCESS");
    let q = s
        .ali("alipay.trade.query", json!({"out_trade_no": otn}))
        .await;
    assert!(q.verifies);
    assert_eq!(q.content["trade_status"], "TRADE_SUCCESS");
    assert_eq!(q.content["receipt_amount"], "100.00");
    assert_eq!(q.content["buyer_pay_amount"], "100.00");
    assert!(q.content["send_pay_date"].as_str().is_some());
    // A paid trade cannot be closed.
    let close = s
        .ali("alipay.trade.close", json!({"out_trade_no": otn}))
        .await;
    assert!(close.verifies);
    assert_eq!(close.content["sub_code"], "ACQ.TRADE_STATUS_ERROR");

    let refund = |no: &'static str, amount: &'static str| {
        let otn = otn.clone();
        let s = &s;
        async move {
            s.ali(
                "alipay.trade.refund",
                json!({"out_trade_no": otn, "refund_amount": amount, "out_request_no": no, "refund_reason": "退课"}),
            )
            .await
        }
    };
    let r1 = refund("rq1", "30.00").await;
    assert!(r1.verifies, "{}", r1.raw);
    assert_eq!(r1.content["code"], "10000");
    assert_eq!(r1.content["fund_change"], "Y");
    assert_eq!(r1.content["refund_fee"], "30.00");
    // The same request again moves no money.
    let again = refund("rq1", "30.00").await;
    assert_eq!(again.content["fund_change"], "N");
    assert_eq!(again.content["refund_fee"], "30.00");
    let r2 = refund("rq2", "20.50").await;
    assert_eq!(r2.content["fund_change"], "Y");
    assert_eq!(r2.content["refund_fee"], "50.50", "cumulative");
    let too_much = refund("rq3", "49.51").await;
    assert!(too_much.verifies);
    assert_eq!(
        too_much.content["sub_code"],
        "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    );

    let rq = s
        .ali(
            "alipay.trade.fastpay.refund.query",
            json!({"out_trade_no": otn, "out_request_no": "rq2"}),
        )
        .await;
    assert!(rq.verifies, "{}", rq.raw);
    assert_eq!(rq.content["code"], "10000");
    assert_eq!(rq.content["refund_status"], "REFUND_SUCCESS");
    assert_eq!(rq.content["refund_amount"], "20.50");
    assert_eq!(rq.content["total_amount"], "100.00");
    assert_eq!(rq.content["refund_reason"], "退课");
    let none = s
        .ali(
            "alipay.trade.fastpay.refund.query",
            json!({"out_trade_no": otn, "out_request_no": "nope"}),
        )
        .await;
    assert_eq!(none.content["code"], "10000");
    assert!(none.content.get("refund_status").is_none());

    // Refunding the rest closes the trade.
    assert_eq!(refund("rq4", "49.50").await.content["fund_change"], "Y");
    let q = s
        .ali("alipay.trade.query", json!({"out_trade_no": otn}))
        .await;
    assert_eq!(q.content["trade_status"], "TRADE_CLOSED");
}

/// `alipay.trade.cancel` undoes a trade whatever became of it: a trade nobody scanned is
/// void (no `action`, its code no longer pays), an unpaid one closed (`action: close`), a
/// paid one refunded in full once (`action: refund`, no `refund_reason` in the refund
/// query), and a refunded one refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_voids_closes_or_refunds() {
    let s = Sandbox::start().await;
    let cancel = |otn: String| {
        let s = &s;
        async move {
            s.ali("alipay.trade.cancel", json!({"out_trade_no": otn}))
                .await
        }
    };

    let unscanned = unique("x");
    let qr = s
        .ali_trade(&unscanned, "1.00", "http://127.0.0.1:9/notify")
        .await;
    let c = cancel(unscanned.clone()).await;
    assert!(c.verifies, "{}", c.raw);
    assert!(c.raw.starts_with("{\"alipay_trade_cancel_response\":{"));
    assert_eq!(c.content["code"], "10000");
    assert_eq!(c.content["retry_flag"], "N");
    assert_eq!(c.content["out_trade_no"], unscanned.as_str());
    assert!(c.content.get("action").is_none(), "{}", c.raw);
    let (status, err) = s.wallet("pay", &qr).await;
    assert_eq!((status, err["error"].as_str()), (409, Some("trade_closed")));

    let unpaid = unique("x");
    let qr = s
        .ali_trade(&unpaid, "2.00", "http://127.0.0.1:9/notify")
        .await;
    assert_eq!(s.wallet("decline", &qr).await.0, 200);
    let c = cancel(unpaid.clone()).await;
    assert_eq!(c.content["action"], "close");
    assert!(c.content["trade_no"].as_str().is_some());
    let q = s
        .ali("alipay.trade.query", json!({"out_trade_no": unpaid}))
        .await;
    assert_eq!(q.content["trade_status"], "TRADE_CLOSED");

    let paid = unique("x");
    let qr = s
        .ali_trade(&paid, "5.00", "http://127.0.0.1:9/notify")
        .await;
    assert_eq!(s.wallet("pay", &qr).await.0, 200);
    let c = cancel(paid.clone()).await;
    assert!(c.verifies);
    assert_eq!(c.content["action"], "refund");
    assert!(c.content["gmt_refund_pay"].as_str().is_some());
    let q = s
        .ali("alipay.trade.query", json!({"out_trade_no": paid}))
        .await;
    assert_eq!(q.content["trade_status"], "TRADE_CLOSED");
    let rq = s
        .ali(
            "alipay.trade.fastpay.refund.query",
            json!({"out_trade_no": paid, "out_request_no": paid}),
        )
        .await;
    assert_eq!(rq.content["refund_status"], "REFUND_SUCCESS");
    assert_eq!(rq.content["refund_amount"], "5.00");
    assert!(rq.content.get("refund_reason").is_none(), "{}", rq.raw);
    let again = cancel(paid.clone()).await;
    assert!(again.verifies);
    assert_eq!(again.content["sub_code"], "ACQ.REASON_TRADE_REFUND_FEE_ERR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_an_unpaid_trade_blocks_payment() {
    let s = Sandbox::start().await;
    let otn = unique("c");
    let qr = s.ali_trade(&otn, "1.00", "http://127.0.0.1:9/notify").await;
    let (status, declined) = s.wallet("decline", &qr).await;
    assert_eq!(status, 200);
    assert_eq!(declined["trade_state"], "WAIT_BUYER_PAY");
    let close = s
        .ali("alipay.trade.close", json!({"out_trade_no": otn}))
        .await;
    assert!(close.verifies);
    assert_eq!(close.content["code"], "10000");
    assert_eq!(close.content["out_trade_no"], otn.as_str());
    let q = s
        .ali("alipay.trade.query", json!({"out_trade_no": otn}))
        .await;
    assert_eq!(q.content["trade_status"], "TRADE_CLOSED");
    let (status, err) = s.wallet("pay", &qr).await;
    assert_eq!((status, err["error"].as_str()), (409, Some("trade_closed")));
    let refund = s
        .ali(
            "alipay.trade.refund",
            json!({"out_trade_no": otn, "refund_amount": "1.00"}),
        )
        .await;
    assert_eq!(refund.content["sub_code"], "ACQ.TRADE_STATUS_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_signed_error_responses() {
    let s = Sandbox::start().await;
    let biz = json!({"out_trade_no": "x1"});
    // Tampered after signing.
    let mut params = s.ali_params("alipay.trade.query", &biz, &[]);
    for (k, v) in params.iter_mut() {
        if k == "biz_content" {
            *v = json!({"out_trade_no": "x2"}).to_string();
        }
    }
    let a = ali_answer(s.ali_post_form(&params).await, "alipay.trade.query").await;
    assert_eq!(a.status, 200);
    assert!(a.is_error_response);
    assert!(a.verifies, "{}", a.raw);
    assert_eq!(
        a.content,
        json!({"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"})
    );
    // Missing sign.
    params.retain(|(k, _)| k != "sign");
    let a = ali_answer(s.ali_post_form(&params).await, "alipay.trade.query").await;
    assert_eq!(a.content["code"], "40001");
    assert_eq!(a.content["sub_code"], "isv.missing-signature");
    // Another app.
    let a = s
        .ali_with(
            "alipay.trade.query",
            biz.clone(),
            &[("app_id", "2021000000000999")],
        )
        .await;
    assert!(a.is_error_response && a.verifies);
    assert_eq!(a.content["sub_code"], "isv.invalid-app-id");
    // Unknown method.
    let a = s.ali("alipay.trade.pay.everything", biz.clone()).await;
    assert!(a.is_error_response);
    assert_eq!(a.content["sub_code"], "isv.invalid-method");
    // Bad amount.
    let a = s
        .ali(
            "alipay.trade.precreate",
            json!({"out_trade_no": unique("b"), "total_amount": "1.001", "subject": "x"}),
        )
        .await;
    assert!(a.verifies);
    assert_eq!(a.content["code"], "40002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_query_string_split_params_and_java_style_empty_values_are_accepted() {
    let s = Sandbox::start().await;
    let otn = unique("g");
    s.ali_trade(&otn, "2.00", "http://127.0.0.1:9/notify").await;
    let biz = json!({"out_trade_no": otn});
    // python-alipay-sdk: GET, everything in the query string.
    let params = s.ali_params("alipay.trade.query", &biz, &[]);
    let url = format!(
        "{}/gateway.do?{}",
        s.base,
        serde_urlencoded::to_string(&params).unwrap()
    );
    let a = ali_answer(
        s.client.get(url).send().await.unwrap(),
        "alipay.trade.query",
    )
    .await;
    assert!(a.verifies);
    assert_eq!(a.content["sub_code"], "ACQ.TRADE_NOT_EXIST");
    // Node SDK: common params in the query string, biz_content in the form.
    let (query, form): (Vec<_>, Vec<_>) = params
        .iter()
        .cloned()
        .partition(|(k, _)| k != "biz_content");
    let resp = s
        .client
        .post(format!(
            "{}/gateway.do?{}",
            s.base,
            serde_urlencoded::to_string(&query).unwrap()
        ))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();
    let a = ali_answer(resp, "alipay.trade.query").await;
    assert_eq!(a.content["sub_code"], "ACQ.TRADE_NOT_EXIST");
    // A Java client signs without its empty parameters but still sends them.
    let mut params = s.ali_params("alipay.trade.query", &biz, &[]);
    params.push(("app_auth_token".into(), String::new()));
    let a = ali_answer(s.ali_post_form(&params).await, "alipay.trade.query").await;
    assert!(!a.is_error_response, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_is_retried_until_the_body_is_exactly_success() {
    let receiver = Receiver::start(vec![(200, "fail")], (200, "success")).await;
    let s = Sandbox::start().await;
    let otn = unique("n");
    let qr = s.ali_trade(&otn, "9.90", &receiver.url).await;
    let (_, paid) = s.wallet("pay", &qr).await;
    let record = s.finished_notification(&otn, 0).await;
    assert_eq!(record["acknowledged"], true);
    assert_eq!(record["channel"], "alipay");
    let acks: Vec<bool> = record["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["acknowledged"].as_bool().unwrap())
        .collect();
    assert_eq!(acks, [false, true]);
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 2);
    for d in &deliveries {
        let (verifies, p) = open_alipay(d);
        assert!(verifies, "notification signature does not verify");
        assert_eq!(field(&p, "notify_type"), Some("trade_status_sync"));
        assert_eq!(field(&p, "trade_status"), Some("TRADE_SUCCESS"));
        assert_eq!(field(&p, "out_trade_no"), Some(otn.as_str()));
        assert_eq!(field(&p, "trade_no"), paid["transaction_id"].as_str());
        assert_eq!(field(&p, "total_amount"), Some("9.90"));
        assert_eq!(field(&p, "receipt_amount"), Some("9.90"));
        assert_eq!(field(&p, "buyer_pay_amount"), Some("9.90"));
        assert_eq!(field(&p, "app_id"), Some(ALI_APP_ID));
        assert_eq!(field(&p, "seller_id"), Some(ALI_SELLER_ID));
        assert_eq!(field(&p, "sign_type"), Some("RSA2"));
        assert_eq!(field(&p, "charset"), Some("utf-8"));
        assert_eq!(field(&p, "version"), Some("1.0"));
        for name in ["notify_id", "gmt_create", "gmt_payment", "notify_time"] {
            assert!(field(&p, name).is_some_and(|v| !v.is_empty()), "{name}");
        }
    }
    // The same notification both times: merchants deduplicate on notify_id.
    let id = |d| field(&open_alipay(d).1, "notify_id").map(str::to_owned);
    assert_eq!(id(&deliveries[0]), id(&deliveries[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_notify_with_refund_fields() {
    let receiver = Receiver::acking().await;
    let s = Sandbox::start().await;
    let otn = unique("f");
    let qr = s.ali_trade(&otn, "10.00", &receiver.url).await;
    s.wallet("pay", &qr).await;
    receiver.wait_for(1).await;
    let partial = s
        .ali(
            "alipay.trade.refund",
            json!({"out_trade_no": otn, "refund_amount": "4.00", "out_request_no": "a1"}),
        )
        .await;
    assert_eq!(partial.content["fund_change"], "Y");
    let d = receiver.wait_for(2).await;
    let (verifies, p) = open_alipay(&d[1]);
    assert!(verifies);
    assert_eq!(field(&p, "trade_status"), Some("TRADE_SUCCESS"));
    assert_eq!(field(&p, "out_biz_no"), Some("a1"));
    assert_eq!(field(&p, "refund_fee"), Some("4.00"));
    assert!(field(&p, "gmt_refund").is_some());
    assert!(field(&p, "gmt_close").is_none());
    s.ali(
        "alipay.trade.refund",
        json!({"out_trade_no": otn, "refund_amount": "6.00", "out_request_no": "a2"}),
    )
    .await;
    let d = receiver.wait_for(3).await;
    let (verifies, p) = open_alipay(&d[2]);
    assert!(verifies);
    assert_eq!(field(&p, "trade_status"), Some("TRADE_CLOSED"));
    assert_eq!(field(&p, "out_biz_no"), Some("a2"));
    assert_eq!(field(&p, "refund_fee"), Some("10.00"));
    assert!(field(&p, "gmt_close").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_gives_up_after_the_seventh_retry() {
    let receiver = Receiver::start(Vec::new(), (200, "fail")).await;
    // 24h24m of retries in well under a second.
    let s = Sandbox::start_with(settings(1_000_000.0)).await;
    let otn = unique("x");
    let qr = s.ali_trade(&otn, "0.01", &receiver.url).await;
    s.wallet("pay", &qr).await;
    let record = s.finished_notification(&otn, 0).await;
    assert_eq!(record["acknowledged"], false);
    assert_eq!(
        record["attempts"].as_array().unwrap().len(),
        ALIPAY_RETRY_SCHEDULE.len() + 1
    );
    assert_eq!(receiver.deliveries().len(), 8);
}

#[test]
fn alipay_schedule_sums_to_24h24m() {
    let minutes: Vec<u64> = ALIPAY_RETRY_SCHEDULE
        .iter()
        .map(|d| d.as_secs() / 60)
        .collect();
    assert_eq!(minutes, [4, 10, 10, 60, 120, 360, 900]);
    let total: Duration = ALIPAY_RETRY_SCHEDULE.iter().sum();
    assert_eq!(total, Duration::from_secs(24 * 3600 + 24 * 60));
}
