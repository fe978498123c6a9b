//! Active sync, the order timeout's close, the compensation sweeper and refunds of stray
//! money — black-box, with the channel sandbox as WeChat Pay. Callbacks are sent to a port
//! where nothing listens unless a test wants them, so only active queries can find a
//! payment.

use crate::support;

use payment_gateway::Settings;
use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::Value;
use support::{Harness, eventually, gateway_settings, nowhere, start_sandbox};

fn next_order() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(50_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// A port where nothing listens.
fn dead_base() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
}

/// Gateway settings whose callbacks never arrive, with the sweeper idle unless asked.
fn quiet(db: &TestDatabase, vhost: &TestVhost, sandbox: &str) -> Settings {
    let mut settings = gateway_settings(db, vhost, sandbox);
    settings.wechat.notify_url = nowhere();
    settings.sweeper.first_check_secs = 3600;
    settings.sweeper.max_backoff_secs = 3600;
    settings
}

async fn quiet_harness() -> Harness {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = start_sandbox().await;
    let settings = quiet(&db, &vhost, &sandbox);
    Harness::with_settings(settings, sandbox, db, vhost).await
}

/// A second gateway instance on the same database and vhost (another worker id); answers
/// its internal listener's base URL.
async fn second_instance(h: &Harness, api_base: &str, sweeper: bool) -> String {
    let mut settings = quiet(&h.db, &h.vhost, api_base);
    settings.ids.worker_id = 77;
    settings.sweeper.enabled = sweeper;
    let app = payment_gateway::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.internal_port());
    tokio::spawn(app.run_until_stopped());
    base
}

async fn json(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_finds_a_payment_whose_callback_never_came() {
    let h = quiet_harness().await;
    let order = next_order();
    let attempt = h.new_attempt(order, 1999).await;
    let pay_no = s(&attempt, "pay_no");

    // Not paid yet: the channel says so, nothing changes.
    let body = json(h.sync(order).await, 200).await;
    assert_eq!(body["paid"], false);
    assert_eq!(body["pay_no"], Value::Null);
    assert_eq!(body["order_id"], order.to_string());
    assert_eq!(h.payment(pay_no).await.status, "unpaid");

    let scan = h.wallet_pay(s(&attempt, "code_url")).await;
    let body = json(h.sync(order).await, 200).await;
    assert_eq!(body["paid"], true);
    assert_eq!(body["pay_no"], pay_no);
    let row = h.payment(pay_no).await;
    assert_eq!(row.status, "paid");
    assert_eq!(
        row.channel_trade_no.as_deref(),
        scan["transaction_id"].as_str()
    );
    let results = h.events("pay.result.v1").await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["data"]["pay_no"], pay_no);
    assert_eq!(
        results[0]["data"]["channel_trade_no"],
        scan["transaction_id"]
    );

    // Asking again answers the same and publishes nothing more.
    let again = json(h.sync(order).await, 200).await;
    assert_eq!(again, body);
    assert_eq!(h.events("pay.result.v1").await.len(), 1);
    assert!(h.refunds().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_close_need_the_service_credential() {
    let h = quiet_harness().await;
    for path in ["sync", "close"] {
        let resp = h
            .client
            .post(format!("{}/internal/orders/1/payments/{path}", h.internal))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // An order without attempts: nothing to find, and closing it needs no channel.
    let order = next_order();
    let body = json(h.sync(order).await, 200).await;
    assert_eq!(body["paid"], false);
    let body = json(h.close(order).await, 200).await;
    assert_eq!(body["outcome"], "closed");
    let resp = h.create_payment(order, 100).await;
    assert_eq!(json(resp, 409).await["error"], "order_closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_closes_unpaid_attempts_at_the_channel_then_locally_and_refuses_new_ones() {
    let h = quiet_harness().await;
    let order = next_order();
    let first = h.new_attempt(order, 800).await;
    // A second live attempt (another amount) must be closed too.
    let second = h.new_attempt(order, 900).await;

    let body = json(h.close(order).await, 200).await;
    assert_eq!(body["outcome"], "closed");
    assert_eq!(body["pay_no"], Value::Null);
    for attempt in [&first, &second] {
        let pay_no = s(attempt, "pay_no");
        assert_eq!(h.payment(pay_no).await.status, "closed");
        assert_eq!(h.sandbox_trade(pay_no).await["trade_state"], "CLOSED");
    }
    assert!(h.outbox().await.is_empty());

    // Closed for good: no new attempt, and closing again answers the same.
    let resp = h.create_payment(order, 800).await;
    assert_eq!(json(resp, 409).await["error"], "order_closed");
    assert_eq!(json(h.close(order).await, 200).await["outcome"], "closed");
    assert_eq!(json(h.sync(order).await, 200).await["paid"], false);
    // Other orders are not affected.
    h.new_attempt(next_order(), 800).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_records_a_payment_the_channel_already_took() {
    let h = quiet_harness().await;
    let order = next_order();
    let attempt = h.new_attempt(order, 800).await;
    let pay_no = s(&attempt, "pay_no");
    h.wallet_pay(s(&attempt, "code_url")).await;

    let body = json(h.close(order).await, 200).await;
    assert_eq!(body["outcome"], "paid");
    assert_eq!(body["pay_no"], pay_no);
    assert_eq!(h.payment(pay_no).await.status, "paid");
    assert_eq!(h.sandbox_trade(pay_no).await["trade_state"], "SUCCESS");
    assert_eq!(h.events("pay.result.v1").await.len(), 1);
    // The order is paid, not closed: a new attempt is refused as paid.
    let resp = h.create_payment(order, 800).await;
    assert_eq!(json(resp, 409).await["error"], "order_already_paid");
    assert_eq!(json(h.close(order).await, 200).await["outcome"], "paid");
    assert_eq!(h.events("pay.result.v1").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_channel_makes_sync_and_close_fail_and_changes_nothing() {
    let h = quiet_harness().await;
    let order = next_order();
    let attempt = h.new_attempt(order, 800).await;
    let pay_no = s(&attempt, "pay_no");
    h.wallet_pay(s(&attempt, "code_url")).await;

    // Another instance on the same database whose channel cannot be reached.
    let cut_off = second_instance(&h, &dead_base(), false).await;
    let post = |path: &'static str| {
        let url = format!("{cut_off}/internal/orders/{order}/payments/{path}");
        let client = h.client.clone();
        async move {
            client
                .post(url)
                .header(
                    paywire_platform::auth::SERVICE_TOKEN_HEADER,
                    paywire_platform::config::DEV_SERVICE_TOKEN,
                )
                .send()
                .await
                .unwrap()
        }
    };
    for path in ["sync", "close"] {
        let body = json(post(path).await, 503).await;
        assert_eq!(body["error"], "channel_unavailable");
    }
    assert_eq!(h.payment(pay_no).await.status, "unpaid");
    assert!(h.outbox().await.is_empty());
    // Not closed: the order still takes attempts, and the reachable instance finds the
    // payment.
    assert_eq!(json(h.close(order).await, 200).await["outcome"], "paid");
    assert_eq!(h.events("pay.result.v1").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_recover_a_missed_callback_exactly_once() {
    let h = quiet_harness().await;
    second_instance(&h, &h.sandbox, true).await;
    let order = next_order();
    let attempt = h.new_attempt(order, 800).await;
    let pay_no = s(&attempt, "pay_no").to_owned();
    h.wallet_pay(s(&attempt, "code_url")).await;
    assert_eq!(h.check_attempts(&pay_no).await, 0);

    // Make the check due now: both instances' sweepers race for it.
    h.sql(&format!(
        "UPDATE payments SET next_check_at = now() WHERE pay_no = {pay_no}"
    ))
    .await;
    eventually(|| async { (h.payment(&pay_no).await.status == "paid").then_some(()) }).await;
    assert_eq!(h.events("pay.result.v1").await.len(), 1);
    // Claimed by exactly one sweeper.
    assert_eq!(h.check_attempts(&pay_no).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_backs_off_an_unpaid_attempt_and_closes_it_after_expiry() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = start_sandbox().await;
    let mut settings = quiet(&db, &vhost, &sandbox);
    settings.payment.attempt_ttl_secs = 3;
    settings.payment.reuse_margin_secs = 0;
    settings.sweeper.first_check_secs = 1;
    settings.sweeper.max_backoff_secs = 1;
    settings.sweeper.after_expiry_secs = 1;
    let h = Harness::with_settings(settings, sandbox, db, vhost).await;
    let order = next_order();
    let attempt = h.new_attempt(order, 800).await;
    let pay_no = s(&attempt, "pay_no").to_owned();

    eventually(|| async { (h.payment(&pay_no).await.status == "closed").then_some(()) }).await;
    assert_eq!(h.sandbox_trade(&pay_no).await["trade_state"], "CLOSED");
    // Checked before expiry without closing, then closed by the final check.
    assert!(h.check_attempts(&pay_no).await >= 2);
    assert!(h.outbox().await.is_empty());
    // Only the attempt is closed, not the order: the student may pay again.
    h.new_attempt(order, 800).await;
}
