//! Reconciliation against the sandbox's statements (issue 13, item 4), on both channels:
//! a table of discrepancies injected through the sandbox's faults and into our records,
//! each found with its resolution; a second run of the day finds nothing new; a statement
//! that fails its check is refused and nothing is compared.

use std::collections::BTreeSet;

use chrono::Utc;
use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_platform::config::{DEV_OPERATOR_TOKEN, DEV_SERVICE_TOKEN};
use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::{Value, json};

use crate::support::{self, Harness, eventually, key_path};

fn next_order() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(130_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The channels' day now (China Standard Time).
fn today() -> String {
    (Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d")
        .to_string()
}

/// A gateway and a sandbox whose fault API (internal listener) the test drives.
struct World {
    h: Harness,
    faults: String,
}

async fn world() -> World {
    let mut s = channel_sandbox::Settings::default();
    s.http.port = 0;
    s.http.workers = 1;
    s.wechat.merchant_public_key_path = key_path("merchant_public_key.pem");
    s.wechat.wechatpay_private_key_path = key_path("wechatpay_private_key.pem");
    s.wechat_v2
        .use_test_keys_in(&paywire_testkit::test_key("wechat_v2"));
    let app = channel_sandbox::build(s).await.unwrap();
    let sandbox = format!("http://127.0.0.1:{}", app.port());
    let faults = format!(
        "http://127.0.0.1:{}/sandbox/admin/faults",
        app.internal_port()
    );
    tokio::spawn(app.run_until_stopped());
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let settings = support::gateway_settings(&db, &vhost, &sandbox);
    World {
        h: Harness::with_settings(settings, sandbox, db, vhost).await,
        faults,
    }
}

impl World {
    async fn fault(&self, spec: Value) {
        let resp = self
            .h
            .client
            .put(&self.faults)
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    /// A new attempt on `channel`: (order, pay_no, code).
    async fn attempt(&self, channel: &str, amount: i64) -> (i64, String, String) {
        let order = next_order();
        let resp = self
            .h
            .create_payment_body(json!({
                "order_id": order.to_string(), "user_id": "student-1", "amount_fen": amount,
                "channel": channel, "description": "Rust 入门课程", "biz_type": "course", "biz_id": "77",
            }))
            .await;
        assert_eq!(resp.status(), 201);
        let a: Value = resp.json().await.unwrap();
        (
            order,
            a["pay_no"].as_str().unwrap().to_owned(),
            a["code_url"].as_str().unwrap().to_owned(),
        )
    }

    /// Paid at the sandbox with its callback recorded.
    async fn paid(&self, channel: &str, amount: i64) -> (i64, String) {
        let (order, pay_no, code) = self.attempt(channel, amount).await;
        self.h.wallet_pay(&code).await;
        eventually(|| async { (self.h.payment(&pay_no).await.status == "paid").then_some(()) })
            .await;
        (order, pay_no)
    }

    /// Paid at the sandbox, but no notification and every query says unpaid.
    async fn paid_invisibly(&self, channel: &str, amount: i64) -> (i64, String) {
        let (order, pay_no, code) = self.attempt(channel, amount).await;
        self.fault(json!({
            "scope": {"channel": channel, "out_trade_no": pay_no},
            "pay_invisible": true,
        }))
        .await;
        self.h.wallet_pay(&code).await;
        (order, pay_no)
    }

    async fn reconcile(&self, channel: &str) -> reqwest::Response {
        self.h
            .client
            .post(format!("{}/internal/reconciliation", self.h.internal))
            .header(SERVICE_TOKEN_HEADER, DEV_OPERATOR_TOKEN)
            .json(&json!({"date": today(), "channel": channel}))
            .send()
            .await
            .unwrap()
    }

    async fn run(&self, channel: &str) -> Value {
        let resp = self.reconcile(channel).await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["runs"].as_array().unwrap().len(), 1, "{body}");
        body["runs"][0].clone()
    }

    async fn refund(&self, order: i64, pay_no: &str, amount: i64) -> String {
        let resp = self
            .h
            .client
            .post(format!("{}/internal/refunds", self.h.internal))
            .header(SERVICE_TOKEN_HEADER, DEV_SERVICE_TOKEN)
            .header("Idempotency-Key", format!("recon-{pay_no}"))
            .json(&json!({"order_id": order.to_string(), "pay_no": pay_no, "amount_fen": amount}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.unwrap();
        let refund_no = v["refund_no"].as_str().unwrap().to_owned();
        let until =
            format!("SELECT 1 FROM refunds WHERE refund_no = {refund_no} AND status = 'succeeded'");
        eventually(|| async { (self.count(&until).await == 1).then_some(()) }).await;
        refund_no
    }

    async fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel_async::RunQueryDsl;
        let rows: Vec<N> = diesel::sql_query(format!("SELECT count(*) AS n FROM ({sql}) q"))
            .load(&mut self.h.conn().await)
            .await
            .unwrap();
        rows[0].n
    }
}

/// `(kind, reference, resolution)` of every discrepancy of a run.
fn found(run: &Value) -> BTreeSet<(String, String, String)> {
    run["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["reference"].as_str().unwrap().to_owned(),
                d["resolution"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(kind: &str, reference: &str, resolution: &str) -> (String, String, String) {
    (kind.into(), reference.into(), resolution.into())
}

/// Every kind of discrepancy the sandbox or our records can be made to show, on
/// `channel`; then the same day again.
async fn injected_cases_are_found_once(channel: &str) {
    let w = world().await;
    // Paid at the channel without a word to us: only the statement tells.
    let (invisible_order, invisible) = w.paid_invisibly(channel, 1999).await;
    let sync: Value = w.h.sync(invisible_order).await.json().await.unwrap();
    assert_eq!(sync["paid"], false, "queries do not see it: {sync}");
    // Agrees.
    w.paid(channel, 500).await;
    // Paid invisibly for an attempt we had closed meanwhile: stray money, refunded.
    let (_, stray) = w.paid_invisibly(channel, 700).await;
    w.h.set_status(&stray, "closed").await;
    // Our amount is not the channel's.
    let (_, amount) = w.paid(channel, 800).await;
    w.h.sql(&format!(
        "UPDATE payments SET amount_fen = amount_fen + 1 WHERE pay_no = {amount}"
    ))
    .await;
    // Recorded paid here, never paid at the channel.
    let (_, ghost, _) = w.attempt(channel, 900).await;
    w.h.sql(&format!(
        "UPDATE payments SET status = 'paid', paid_at = now(), channel_trade_no = 'GHOST{ghost}' \
         WHERE pay_no = {ghost}"
    ))
    .await;
    // Paid at the channel for a trade number we no longer know.
    let (_, unknown) = w.paid_invisibly(channel, 1000).await;
    w.h.sql(&format!("DELETE FROM payments WHERE pay_no = {unknown}"))
        .await;
    // A refund at the channel that is none of ours.
    let (order, refunded) = w.paid(channel, 1100).await;
    let foreign_refund = w.refund(order, &refunded, 100).await;
    w.h.sql(&format!(
        "DELETE FROM refunds WHERE refund_no = {foreign_refund}"
    ))
    .await;
    // A refund we hold succeeded that the channel never made.
    let (order, paid_for_refund) = w.paid(channel, 1200).await;
    let ghost_refund = 990_000_000 + next_order();
    w.h.sql(&format!(
        "INSERT INTO refunds (refund_no, pay_no, order_id, channel, amount_fen, reason, status, \
             channel_refund_id, refunded_at) \
         VALUES ({ghost_refund}, {paid_for_refund}, {order}, '{channel}', 200, 'order_closed', \
             'succeeded', 'GHOST', now())"
    ))
    .await;

    let first = w.run(channel).await;
    let expected: BTreeSet<_> = [
        row("paid_not_recorded", &invisible, "recorded"),
        row("status_mismatch", &stray, "refund_queued"),
        row("amount_mismatch", &amount, "open"),
        row("not_at_channel", &ghost, "open"),
        row("unknown_trade", &unknown, "open"),
        row("refund_not_recorded", &foreign_refund, "open"),
        row("refund_not_at_channel", &ghost_refund.to_string(), "open"),
    ]
    .into_iter()
    .collect();
    assert_eq!(found(&first), expected, "{first}");
    assert_eq!(first["found_now"], 7, "{first}");
    // invisible, matched, stray, amount, unknown, refunded, paid_for_refund
    assert_eq!(first["statement_payments"], 7, "{first}");
    assert_eq!(first["statement_refunds"], 1, "{first}");
    // matched, refunded, paid_for_refund.
    assert_eq!(first["matched"], 3, "{first}");
    let detail = &first["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "amount_mismatch")
        .unwrap();
    assert_eq!(detail["ours_fen"], 801);
    assert_eq!(detail["channel_fen"], 800);

    // The invisible payment now flows like any other: paid, its pay result in the outbox.
    assert_eq!(w.h.payment(&invisible).await.status, "paid");
    let results = w.h.events("pay.result.v1").await;
    assert!(
        results
            .iter()
            .any(|e| e["data"]["pay_no"] == invisible.as_str()),
        "no pay result for {invisible}: {results:?}"
    );
    // The stray money is on its way back, and announced no pay result.
    assert!(
        !results
            .iter()
            .any(|e| e["data"]["pay_no"] == stray.as_str())
    );
    let stray_refunds = w
        .count(&format!("SELECT 1 FROM refunds WHERE pay_no = {stray}"))
        .await;
    assert_eq!(stray_refunds, 1);
    assert_eq!(w.count("SELECT 1 FROM reconciliation").await, 7);

    // The same day again: nothing new, the same rows, nothing recorded twice.
    let second = w.run(channel).await;
    assert_eq!(second["found_now"], 0, "{second}");
    assert_eq!(found(&second), expected, "{second}");
    assert_eq!(w.count("SELECT 1 FROM reconciliation").await, 7);
    let results = w.h.events("pay.result.v1").await;
    assert_eq!(
        results
            .iter()
            .filter(|e| e["data"]["pay_no"] == invisible.as_str())
            .count(),
        1
    );
    assert_eq!(
        w.count(&format!("SELECT 1 FROM refunds WHERE pay_no = {stray}"))
            .await,
        1
    );
}

#[tokio::test]
async fn wechat_discrepancies_are_found_resolved_and_found_once() {
    injected_cases_are_found_once("wechat").await;
}

#[tokio::test]
async fn alipay_discrepancies_are_found_resolved_and_found_once() {
    injected_cases_are_found_once("alipay").await;
}

/// A statement whose bytes do not match its check is refused: nothing compared, nothing
/// recorded, the run marked failed; once the channel serves it intact, the day goes through.
#[tokio::test]
async fn a_corrupt_statement_is_refused_on_both_channels() {
    let w = world().await;
    for channel in ["wechat", "alipay"] {
        w.paid_invisibly(channel, 300).await;
    }
    w.fault(json!({"scope": "global", "corrupt_statement": true}))
        .await;
    for channel in ["wechat", "alipay"] {
        let resp = w.reconcile(channel).await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 502, "{channel}: {body}");
        assert_eq!(body["error"], "statement_refused", "{channel}: {body}");
    }
    assert_eq!(w.count("SELECT 1 FROM reconciliation").await, 0);
    assert_eq!(
        w.count("SELECT 1 FROM reconciliation_runs WHERE status = 'failed'")
            .await,
        2
    );
    assert_eq!(
        w.count("SELECT 1 FROM payments WHERE status = 'paid'")
            .await,
        0
    );
    let clear = w.h.client.delete(&w.faults).send().await.unwrap();
    assert_eq!(clear.status(), 200);
    for channel in ["wechat", "alipay"] {
        let run = w.run(channel).await;
        assert_eq!(run["found_now"], 1, "{channel}: {run}");
    }
    assert_eq!(
        w.count("SELECT 1 FROM payments WHERE status = 'paid'")
            .await,
        2
    );
}

/// Operators only: the order service's credential is refused; a future day is refused;
/// a day without any trade is an empty statement, not an error.
#[tokio::test]
async fn only_operators_reconcile_and_an_empty_day_is_empty() {
    let w = world().await;
    let as_order =
        w.h.client
            .post(format!("{}/internal/reconciliation", w.h.internal))
            .header(SERVICE_TOKEN_HEADER, DEV_SERVICE_TOKEN)
            .json(&json!({"date": today()}))
            .send()
            .await
            .unwrap();
    assert_eq!(as_order.status(), 403);
    let future = (Utc::now() + chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    let resp =
        w.h.client
            .post(format!("{}/internal/reconciliation", w.h.internal))
            .header(SERVICE_TOKEN_HEADER, DEV_OPERATOR_TOKEN)
            .json(&json!({"date": future}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 400);
    let resp =
        w.h.client
            .post(format!("{}/internal/reconciliation", w.h.internal))
            .header(SERVICE_TOKEN_HEADER, DEV_OPERATOR_TOKEN)
            .json(&json!({"date": today()}))
            .send()
            .await
            .unwrap();
    let body: Value = resp.json().await.unwrap();
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{body}");
    for run in runs {
        assert_eq!(run["statement_payments"], 0, "{body}");
        assert_eq!(run["discrepancies"], json!([]), "{body}");
    }
}

/// Several instances: a day another run holds is not run twice (the job skips it, an
/// operator is told); a claim past its lease is taken over.
#[tokio::test]
async fn a_day_held_by_another_run_is_not_run_twice() {
    let w = world().await;
    w.h.sql(&format!(
        "INSERT INTO reconciliation_runs (channel, bill_date, status, claimed_at) \
         VALUES ('wechat', '{}', 'running', now())",
        today()
    ))
    .await;
    let resp = w.reconcile("wechat").await;
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "reconciliation_running");
    w.h.sql("UPDATE reconciliation_runs SET claimed_at = now() - interval '1 hour'")
        .await;
    let run = w.run("wechat").await;
    assert_eq!(run["found_now"], 0);
    assert_eq!(
        w.count("SELECT 1 FROM reconciliation_runs WHERE status = 'done'")
            .await,
        1
    );
}
