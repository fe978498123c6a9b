//! The gateway while its PostgreSQL is down (a private server, stopped and started; the
//! suite's shared one stays up): the channels' callbacks get their own "try again" reply
//! with 503, so the channel delivers again and the payment is recorded once the database
//! is back; readiness says not-ready (503, `Retry-After`, stable code) until the pool
//! works again.

use crate::support;

use std::time::Duration;

use paywire_testkit::postgres::{PrivatePostgres, Shutdown};
use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::{Value, json};
use support::{Harness, gateway_settings, start_sandbox_with};

const OUTAGE_BOUND: Duration = Duration::from_secs(60);

async fn ready_status(h: &Harness) -> (u16, Option<String>, Value) {
    let resp = h
        .client
        .get(format!("{}/health/ready", h.internal))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// The sandbox's delivery attempts of the trade's payment notification.
async fn delivery_attempts(h: &Harness, out_trade_no: &str) -> Vec<Value> {
    let trade = h.sandbox_trade(out_trade_no).await;
    trade["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["attempts"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_the_gateway_says_retry_and_the_channels_redeliver() {
    let server = PrivatePostgres::start().await.unwrap();
    let control = server.control().clone();
    let db = TestDatabase::create_on(&server.url(), "gw_outage")
        .await
        .unwrap();
    let vhost = TestVhost::create().unwrap();
    // Compressed channel retry schedules: WeChat Pay's 15 s, 15 s, 30 s, 3 min… become
    // 0.25 s, 0.25 s, 0.5 s, 3 s…; Alipay's 4 min, 10 min… become 4 s, 10 s….
    let sandbox = start_sandbox_with(|s| s.notify.time_compression = 60.0).await;
    let mut settings = gateway_settings(&db, &vhost, &sandbox);
    // Answer quickly while the server is down (the default waits a few seconds for it).
    settings.database.connect_patience_ms = 200;
    let h = Harness::with_settings(settings, sandbox, db, vhost).await;

    // Ready once the relay's broker session is up too.
    paywire_testkit::wait_for(|| async { (ready_status(&h).await.0 == 200).then_some(()) }).await;
    let wechat = h.new_attempt(9_170_001, 1999).await;
    let alipay: Value = {
        let resp = h
            .create_payment_body(json!({
                "order_id": "9170002",
                "user_id": "student-1",
                "amount_fen": 2999,
                "channel": "alipay",
                "description": "Rust 进阶课程",
                "biz_type": "course",
                "biz_id": "78",
            }))
            .await;
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    };

    control.stop(Shutdown::Fast).await.unwrap();

    // Readiness: not ready, with Retry-After and the stable code.
    let (status, retry_after, body) = ready_status(&h).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"], "database_unavailable");

    // The payer pays both; each channel notifies and is told to try again.
    for attempt in [&wechat, &alipay] {
        h.wallet_pay(attempt["code_url"].as_str().unwrap()).await;
    }
    for attempt in [&wechat, &alipay] {
        let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
        let answered = paywire_testkit::eventually(OUTAGE_BOUND, || {
            let pay_no = pay_no.clone();
            let h = &h;
            async move {
                let attempts = delivery_attempts(h, &pay_no).await;
                let answered: Vec<Value> = attempts
                    .into_iter()
                    .filter(|a| a["status"].is_number())
                    .collect();
                (!answered.is_empty()).then_some(answered)
            }
        })
        .await
        .unwrap();
        for a in &answered {
            assert_eq!(a["status"], 503, "{} answered {a}", attempt["channel"]);
            assert_eq!(a["acknowledged"], false);
        }
    }

    control.start().await.unwrap();

    // Ready again once the pool works, without a restart of the gateway.
    paywire_testkit::eventually(OUTAGE_BOUND, || async {
        (ready_status(&h).await.0 == 200).then_some(())
    })
    .await
    .unwrap();
    // The channels' next deliveries are acknowledged and the payments recorded once.
    for attempt in [&wechat, &alipay] {
        let pay_no = attempt["pay_no"].as_str().unwrap().to_owned();
        paywire_testkit::eventually(OUTAGE_BOUND, || {
            let pay_no = pay_no.clone();
            let h = &h;
            async move { (h.payment(&pay_no).await.status == "paid").then_some(()) }
        })
        .await
        .unwrap();
        let attempts = delivery_attempts(&h, &pay_no).await;
        assert!(
            attempts.iter().any(|a| a["acknowledged"] == true),
            "{attempts:?}"
        );
    }
    assert_eq!(h.events("pay.result.v1").await.len(), 2);
    drop(h);
    drop(server);
}
