//! What the payment gateway does with every fault the channel sandbox can inject, seen
//! through the public API, the sandbox's own record and the services' databases.
//!
//! Each test runs its own platform and buys the paid course on both channels. Notification
//! faults are set for one trade (its `out_trade_no` is the attempt's `pay_no`) between the
//! "pay" click and the wallet payment; API faults on creating a payment are global, as the
//! `pay_no` is not known before the call.

use paywire_e2e::{Options, Platform, SETTLE, Student, Tuning, count};
use serde_json::{Value, json};

const PAID_COURSE: &str = "1002";
const CHANNELS: [&str; 2] = ["wechat", "alipay"];

/// A student's order for the paid course with one payment attempt shown to them.
struct Purchase<'a> {
    student: Student<'a>,
    channel: &'static str,
    order_id: String,
    pay_no: String,
    code_url: String,
}

/// Chooses the paid course and orders it (no payment attempt yet).
async fn order<'a>(p: &'a Platform, name: &str) -> anyhow::Result<(Student<'a>, String)> {
    let student = p.student(name);
    let (status, chosen) = student.choose_course(PAID_COURSE).await?;
    anyhow::ensure!(status == 200, "choose-course answered {status}: {chosen}");
    let choose_id = chosen["choose_course_id"].as_str().unwrap_or_default();
    let (status, order) = student.create_order(choose_id).await?;
    anyhow::ensure!(status == 201, "create order answered {status}: {order}");
    let order_id = order["order_id"].as_str().unwrap_or_default().to_owned();
    Ok((student, order_id))
}

/// Orders the paid course and clicks "pay" with `channel`.
async fn purchase<'a>(
    p: &'a Platform,
    name: &str,
    channel: &'static str,
) -> anyhow::Result<Purchase<'a>> {
    let (student, order_id) = order(p, name).await?;
    let (status, pay) = student.pay(&order_id, channel).await?;
    anyhow::ensure!(status == 200, "pay answered {status}: {pay}");
    Ok(Purchase {
        student,
        channel,
        order_id,
        pay_no: pay["pay_no"].as_str().unwrap_or_default().to_owned(),
        code_url: pay["code_url"].as_str().unwrap_or_default().to_owned(),
    })
}

impl Purchase<'_> {
    /// Sets this trade's fault spec at the sandbox (`spec` without its `scope`).
    async fn fault(&self, p: &Platform, mut spec: Value) -> anyhow::Result<()> {
        spec["scope"] = json!({"channel": self.channel, "out_trade_no": self.pay_no});
        p.set_fault(spec).await?;
        Ok(())
    }

    async fn pay_in_wallet(&self, p: &Platform) -> anyhow::Result<()> {
        let resp = p.wallet_pay(&self.code_url).await?;
        anyhow::ensure!(resp.status().as_u16() == 200, "wallet: {}", resp.status());
        Ok(())
    }
}

async fn n(db: &paywire_testkit::TestDatabase, sql: &str) -> i64 {
    count(db, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Waits until `sql` counts `want`.
async fn wait_count(db: &paywire_testkit::TestDatabase, sql: &str, want: i64) {
    let seen = paywire_testkit::eventually(SETTLE, || async {
        (count(db, sql).await.ok() == Some(want)).then_some(())
    })
    .await;
    if seen.is_err() {
        panic!("{sql} never counted {want}; last {}", n(db, sql).await);
    }
}

/// Gateway callbacks about this attempt with this outcome (`applied`, `duplicate`, ...).
fn callbacks(pay_no: &str, outcome: &str) -> String {
    format!(
        "SELECT count(*) AS n FROM channel_notifications WHERE pay_no = {pay_no} AND outcome = '{outcome}'"
    )
}

/// Waits until the sandbox's record of the trade satisfies `ok`.
async fn wait_trade(p: &Platform, pay_no: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let found = paywire_testkit::eventually(SETTLE, || async {
        p.sandbox_trade(pay_no).await.ok().filter(|t| ok(t))
    })
    .await;
    match found {
        Ok(trade) => trade,
        Err(_) => panic!(
            "sandbox trade {pay_no} never got there: {:?}",
            p.sandbox_trade(pay_no).await.ok()
        ),
    }
}

/// The fault kinds the sandbox injected for a trade.
fn fault_kinds(trade: &Value) -> Vec<String> {
    trade["faults"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["kind"].as_str().map(str::to_owned))
        .collect()
}

/// The purchase ends paid exactly once: the order is paid with this attempt, the student
/// can learn, one pay result left the gateway, one enrolment, no refund.
async fn paid_once(p: &Platform, buy: &Purchase<'_>) -> anyhow::Result<()> {
    buy.student
        .wait_for_order_status(&buy.order_id, "paid")
        .await?;
    buy.student
        .wait_for_learn_status(PAID_COURSE, "can_learn")
        .await?;
    let (_, order) = buy.student.order(&buy.order_id).await?;
    assert_eq!(order["pay_no"], buy.pay_no.as_str(), "{order}");
    let pay_no = &buy.pay_no;
    let results = format!(
        "SELECT count(*) AS n FROM outbox WHERE event_type = 'pay.result.v1' \
         AND payload->'data'->>'pay_no' = '{pay_no}'"
    );
    wait_count(
        &p.gateway_db,
        &format!("{results} AND published_at IS NOT NULL"),
        1,
    )
    .await;
    assert_eq!(n(&p.gateway_db, &results).await, 1);
    let status = format!(
        "SELECT count(*) AS n FROM payments WHERE pay_no = {pay_no} AND status = 'paid' \
         AND channel_trade_no IS NOT NULL"
    );
    assert_eq!(n(&p.gateway_db, &status).await, 1);
    let refunds = format!(
        "SELECT count(*) AS n FROM refunds WHERE order_id = {}",
        buy.order_id
    );
    assert_eq!(n(&p.gateway_db, &refunds).await, 0);
    let enrolments = format!(
        "SELECT count(*) AS n FROM course_tables WHERE user_id = '{}'",
        buy.student.user
    );
    assert_eq!(n(&p.learning_db, &enrolments).await, 1);
    Ok(())
}

/// Nothing moved for this purchase: the attempt and the order are unpaid, no pay result.
async fn still_unpaid(p: &Platform, buy: &Purchase<'_>) -> anyhow::Result<()> {
    let pay_no = &buy.pay_no;
    let unpaid =
        format!("SELECT count(*) AS n FROM payments WHERE pay_no = {pay_no} AND status = 'unpaid'");
    assert_eq!(n(&p.gateway_db, &unpaid).await, 1, "attempt {pay_no}");
    let results =
        format!("SELECT count(*) AS n FROM outbox WHERE payload->'data'->>'pay_no' = '{pay_no}'");
    assert_eq!(n(&p.gateway_db, &results).await, 0);
    let (_, order) = buy.student.order(&buy.order_id).await?;
    assert_eq!(order["status"], "unpaid", "{order}");
    assert_eq!(
        buy.student.learn_status(PAID_COURSE).await?,
        "not_chosen_or_unpaid"
    );
    Ok(())
}

/// A sweeper that asks the channel a second after an attempt is created, then every second.
fn fast_sweeper() -> Tuning {
    Tuning {
        sweeper: Some(payment_gateway::SweeperSettings {
            poll_interval_ms: 200,
            first_check_secs: 1,
            max_backoff_secs: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_drop_is_compensated_by_the_sweeper() -> anyhow::Result<()> {
    let p = Platform::start_tuned(Options::default(), fast_sweeper()).await?;
    for channel in CHANNELS {
        let buy = purchase(&p, "drop", channel).await?;
        buy.fault(&p, json!({"notify": {"drop": true}})).await?;
        buy.pay_in_wallet(&p).await?;

        // Nobody clicks "I have paid": only the sweeper's query can find the money.
        paid_once(&p, &buy).await?;
        let trade = p.sandbox_trade(&buy.pay_no).await?;
        assert!(
            trade["transaction_id"].is_string(),
            "paid at the channel: {trade}"
        );
        assert_eq!(trade["notifications"][0]["dropped"], true, "{trade}");
        assert_eq!(trade["notifications"][0]["attempts"], json!([]), "{trade}");
        assert_eq!(fault_kinds(&trade), ["drop"]);
        let any_callback = format!(
            "SELECT count(*) AS n FROM channel_notifications WHERE pay_no = {}",
            buy.pay_no
        );
        assert_eq!(n(&p.gateway_db, &any_callback).await, 0, "{channel}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_drop_first_is_retried_until_acknowledged_and_paid_once() -> anyhow::Result<()> {
    // A day of retry schedule in seconds.
    let p = Platform::start_tuned(
        Options::default(),
        Tuning {
            notify_time_compression: Some(1000.0),
            ..Default::default()
        },
    )
    .await?;
    for channel in CHANNELS {
        let buy = purchase(&p, "dropfirst", channel).await?;
        buy.fault(&p, json!({"notify": {"drop_first": 2}})).await?;
        buy.pay_in_wallet(&p).await?;
        paid_once(&p, &buy).await?;

        let trade = wait_trade(&p, &buy.pay_no, |t| {
            t["notifications"][0]["finished"] == true
        })
        .await;
        let attempts = trade["notifications"][0]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 3, "{trade}");
        for lost in &attempts[..2] {
            assert_eq!(lost["injected"], "drop_first", "{trade}");
            assert_eq!(lost["acknowledged"], false, "{trade}");
        }
        assert_eq!(attempts[2]["acknowledged"], true, "{trade}");
        assert_eq!(fault_kinds(&trade), ["drop_first"]);
        // Only the third attempt reached the gateway, and it was applied.
        assert_eq!(
            n(&p.gateway_db, &callbacks(&buy.pay_no, "applied")).await,
            1
        );
        let all = format!(
            "SELECT count(*) AS n FROM channel_notifications WHERE pay_no = {}",
            buy.pay_no
        );
        assert_eq!(n(&p.gateway_db, &all).await, 1);
    }

    // With probability 0 the fault never fires: the first attempt is applied.
    let buy = purchase(&p, "lucky", "wechat").await?;
    buy.fault(&p, json!({"notify": {"drop_first": 2}, "probability": 0.0}))
        .await?;
    buy.pay_in_wallet(&p).await?;
    paid_once(&p, &buy).await?;
    let trade = wait_trade(&p, &buy.pay_no, |t| {
        t["notifications"][0]["finished"] == true
    })
    .await;
    assert_eq!(
        trade["notifications"][0]["attempts"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{trade}"
    );
    assert!(fault_kinds(&trade).is_empty(), "{trade}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_duplicate_is_acknowledged_every_time_and_applied_once() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for channel in CHANNELS {
        let buy = purchase(&p, "dup", channel).await?;
        buy.fault(&p, json!({"notify": {"duplicate": 3}})).await?;
        buy.pay_in_wallet(&p).await?;

        let trade = wait_trade(&p, &buy.pay_no, |t| {
            t["notifications"][0]["finished"] == true
        })
        .await;
        let attempts = trade["notifications"][0]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 4, "{trade}");
        // Every copy is acknowledged, so the channel stops sending it.
        assert!(
            attempts.iter().all(|a| a["acknowledged"] == true),
            "{trade}"
        );
        assert_eq!(fault_kinds(&trade), ["duplicate"]);
        wait_count(&p.gateway_db, &callbacks(&buy.pay_no, "duplicate"), 3).await;
        assert_eq!(
            n(&p.gateway_db, &callbacks(&buy.pay_no, "applied")).await,
            1
        );
        paid_once(&p, &buy).await?;
    }
    // Each consumer applied one pay result per purchase.
    assert_eq!(
        n(
            &p.learning_db,
            "SELECT count(*) AS n FROM processed_messages"
        )
        .await,
        2
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_delay_is_applied_when_it_arrives_and_once() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for channel in CHANNELS {
        let buy = purchase(&p, "delay", channel).await?;
        buy.fault(&p, json!({"notify": {"delay_ms": 1500}})).await?;
        buy.pay_in_wallet(&p).await?;
        paid_once(&p, &buy).await?;

        let trade = wait_trade(&p, &buy.pay_no, |t| {
            t["notifications"][0]["finished"] == true
        })
        .await;
        assert_eq!(fault_kinds(&trade), ["delay"]);
        assert_eq!(
            n(&p.gateway_db, &callbacks(&buy.pay_no, "applied")).await,
            1
        );
        // The callback came at least the delay after the channel's payment time.
        let late = format!(
            "SELECT count(*) AS n FROM channel_notifications c JOIN payments p USING (pay_no) \
             WHERE c.pay_no = {} AND c.received_at >= p.paid_at + interval '1 second'",
            buy.pay_no
        );
        assert_eq!(n(&p.gateway_db, &late).await, 1, "{channel}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_reorder_overtaken_notifications_each_pay_once() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for channel in CHANNELS {
        let first = purchase(&p, "first", channel).await?;
        let second = purchase(&p, "second", channel).await?;
        first
            .fault(&p, json!({"notify": {"reorder": true}}))
            .await?;
        first.pay_in_wallet(&p).await?;
        second.pay_in_wallet(&p).await?;
        paid_once(&p, &first).await?;
        paid_once(&p, &second).await?;

        let trade = p.sandbox_trade(&first.pay_no).await?;
        assert_eq!(fault_kinds(&trade), ["reorder"]);
        // The gateway saw the second payment's callback first.
        let order = format!(
            "SELECT count(*) AS n FROM channel_notifications a, channel_notifications b \
             WHERE a.pay_no = {} AND b.pay_no = {} AND a.outcome = 'applied' \
             AND b.outcome = 'applied' AND b.id < a.id",
            first.pay_no, second.pay_no
        );
        assert_eq!(n(&p.gateway_db, &order).await, 1, "{channel}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pay_without_notify_is_found_by_i_have_paid() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for channel in CHANNELS {
        let buy = purchase(&p, "silent", channel).await?;
        buy.fault(&p, json!({"pay_without_notify": true})).await?;
        buy.pay_in_wallet(&p).await?;
        let trade = p.sandbox_trade(&buy.pay_no).await?;
        assert_eq!(trade["notifications"], json!([]), "{trade}");
        assert_eq!(fault_kinds(&trade), ["pay_without_notify"]);

        // "I have paid": the gateway asks the channel and records what it says.
        let (status, result) = buy.student.pay_result(&buy.order_id).await?;
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["paid"], true, "{result}");
        paid_once(&p, &buy).await?;
        let sync = format!(
            "SELECT count(*) AS n FROM channel_notifications WHERE pay_no = {}",
            buy.pay_no
        );
        assert_eq!(n(&p.gateway_db, &sync).await, 0, "no callback ever came");

        // Asking again changes nothing.
        let (status, again) = buy.student.pay_result(&buy.order_id).await?;
        assert_eq!((status, &again["paid"]), (200, &json!(true)), "{again}");
        assert_eq!(again["status"], "paid");
        paid_once(&p, &buy).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_bad_signature_is_refused_and_the_money_found_by_query() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for (channel, refusal) in [("wechat", 401), ("alipay", 400)] {
        let buy = purchase(&p, "forged", channel).await?;
        buy.fault(&p, json!({"notify": {"bad_signature": true}}))
            .await?;
        buy.pay_in_wallet(&p).await?;

        // The gateway refuses the delivery the way the channel understands (so it would be
        // retried) and records why, without trusting anything in it.
        let trade = wait_trade(&p, &buy.pay_no, |t| {
            t["notifications"][0]["attempts"][0]["status"].is_u64()
        })
        .await;
        let attempt = &trade["notifications"][0]["attempts"][0];
        assert_eq!(attempt["status"], refusal, "{trade}");
        assert_eq!(attempt["acknowledged"], false, "{trade}");
        assert_eq!(fault_kinds(&trade), ["notify_bad_signature"]);
        // Counted per reason and minute, not stored one row each (issue 9).
        let rejected = format!(
            "SELECT coalesce(sum(refused), 0)::bigint AS n FROM refused_notifications \
             WHERE channel = '{channel}' AND reason = 'bad_signature'"
        );
        assert!(n(&p.gateway_db, &rejected).await >= 1, "{channel}");
        still_unpaid(&p, &buy).await?;

        // The money is real: asking the channel finds it.
        let (status, result) = buy.student.pay_result(&buy.order_id).await?;
        assert_eq!((status, &result["paid"]), (200, &json!(true)), "{result}");
        paid_once(&p, &buy).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_status_5xx_is_unavailable_and_nothing_is_guessed() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for channel in CHANNELS {
        // Creating the payment: the channel answers 500 and did nothing.
        let (student, order_id) = order(&p, "fivexx").await?;
        p.set_fault(json!({"scope": "global", "api": {"status_5xx": true}}))
            .await?;
        let (status, body) = student.pay(&order_id, channel).await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "upstream_unavailable", "{body}");
        assert!(body.get("code_url").is_none(), "{body}");
        let attempts = format!("SELECT count(*) AS n FROM payments WHERE order_id = {order_id}");
        let without_code = format!("{attempts} AND status = 'unpaid' AND code_url IS NULL");
        assert_eq!(n(&p.gateway_db, &attempts).await, 1);
        assert_eq!(n(&p.gateway_db, &without_code).await, 1);
        let stray = format!("SELECT max(pay_no) AS n FROM payments WHERE order_id = {order_id}");
        let stray = n(&p.gateway_db, &stray).await.to_string();
        assert!(
            p.sandbox_trade(&stray).await.is_err(),
            "no trade at the channel"
        );

        // Cleared: paying works, with a fresh attempt.
        p.clear_faults().await?;
        let (status, pay) = student.pay(&order_id, channel).await?;
        assert_eq!(status, 200, "{pay}");
        assert_ne!(pay["pay_no"], stray.as_str());
        let buy = Purchase {
            student,
            channel,
            order_id,
            pay_no: pay["pay_no"].as_str().unwrap().to_owned(),
            code_url: pay["code_url"].as_str().unwrap().to_owned(),
        };

        // Querying: "I have paid" while the channel answers 500 changes nothing.
        buy.fault(
            &p,
            json!({"pay_without_notify": true, "api": {"status_5xx": true}}),
        )
        .await?;
        buy.pay_in_wallet(&p).await?;
        let (status, body) = buy.student.pay_result(&buy.order_id).await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "upstream_unavailable", "{body}");
        still_unpaid(&p, &buy).await?;
        p.clear_faults().await?;
        let (status, result) = buy.student.pay_result(&buy.order_id).await?;
        assert_eq!((status, &result["paid"]), (200, &json!(true)), "{result}");
        paid_once(&p, &buy).await?;
        assert_eq!(n(&p.gateway_db, &attempts).await, 2);
    }
    let injected: Value = p
        .client()
        .get(format!("{}/sandbox/admin/faults", p.sandbox_internal_url))
        .send()
        .await?
        .json()
        .await?;
    let fired = injected["injected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "status_5xx")
        .count();
    assert!(fired >= 4, "{injected}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_timeout_is_unavailable_even_though_the_channel_did_the_work() -> anyhow::Result<()> {
    // The gateway gives up on the channel after half a second; the sandbox answers after two.
    let p = Platform::start_tuned(
        Options::default(),
        Tuning {
            channel_timeout_ms: Some(500),
            ..Default::default()
        },
    )
    .await?;
    for channel in CHANNELS {
        let (student, order_id) = order(&p, "slow").await?;
        p.set_fault(json!({"scope": "global", "api": {"timeout_ms": 2000}}))
            .await?;
        let (status, body) = student.pay(&order_id, channel).await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "upstream_unavailable", "{body}");
        let first = format!("SELECT max(pay_no) AS n FROM payments WHERE order_id = {order_id}");
        let first = n(&p.gateway_db, &first).await.to_string();
        // The channel created the trade; the gateway never learned its code.
        let trade = p.sandbox_trade(&first).await?;
        assert_eq!(fault_kinds(&trade), ["timeout"], "{trade}");
        let no_code = format!(
            "SELECT count(*) AS n FROM payments WHERE pay_no = {first} \
             AND status = 'unpaid' AND code_url IS NULL"
        );
        assert_eq!(n(&p.gateway_db, &no_code).await, 1);

        p.clear_faults().await?;
        let (status, pay) = student.pay(&order_id, channel).await?;
        assert_eq!(status, 200, "{pay}");
        assert_ne!(pay["pay_no"], first.as_str());
        let buy = Purchase {
            student,
            channel,
            order_id,
            pay_no: pay["pay_no"].as_str().unwrap().to_owned(),
            code_url: pay["code_url"].as_str().unwrap().to_owned(),
        };

        // A query that times out: "I have paid" is unavailable, nothing is guessed.
        buy.fault(
            &p,
            json!({"pay_without_notify": true, "api": {"timeout_ms": 2000}}),
        )
        .await?;
        buy.pay_in_wallet(&p).await?;
        let (status, body) = buy.student.pay_result(&buy.order_id).await?;
        assert_eq!(status, 503, "{body}");
        still_unpaid(&p, &buy).await?;
        p.clear_faults().await?;
        let (status, result) = buy.student.pay_result(&buy.order_id).await?;
        assert_eq!((status, &result["paid"]), (200, &json!(true)), "{result}");
        paid_once(&p, &buy).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_bad_signature_is_never_trusted() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for channel in CHANNELS {
        // Creating the payment: an unverifiable answer carries no usable code.
        let (student, order_id) = order(&p, "unsigned").await?;
        p.set_fault(json!({"scope": "global", "api": {"bad_signature": true}}))
            .await?;
        let (status, body) = student.pay(&order_id, channel).await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "upstream_unavailable", "{body}");
        let without_code = format!(
            "SELECT count(*) AS n FROM payments WHERE order_id = {order_id} AND code_url IS NULL"
        );
        assert_eq!(n(&p.gateway_db, &without_code).await, 1);
        p.clear_faults().await?;
        let (status, pay) = student.pay(&order_id, channel).await?;
        assert_eq!(status, 200, "{pay}");
        let buy = Purchase {
            student,
            channel,
            order_id,
            pay_no: pay["pay_no"].as_str().unwrap().to_owned(),
            code_url: pay["code_url"].as_str().unwrap().to_owned(),
        };

        // Querying: the channel's "paid" is not believed without its signature.
        buy.fault(
            &p,
            json!({"pay_without_notify": true, "api": {"bad_signature": true}}),
        )
        .await?;
        buy.pay_in_wallet(&p).await?;
        let sync = format!("/internal/orders/{}/payments/sync", buy.order_id);
        let (status, body) = p.gateway_internal(&sync).await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "channel_unavailable", "{body}");
        let (status, body) = buy.student.pay_result(&buy.order_id).await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "upstream_unavailable", "{body}");
        still_unpaid(&p, &buy).await?;
        let trade = p.sandbox_trade(&buy.pay_no).await?;
        assert!(
            fault_kinds(&trade).iter().any(|k| k == "bad_signature"),
            "{trade}"
        );

        p.clear_faults().await?;
        let (status, body) = p.gateway_internal(&sync).await?;
        assert_eq!((status, &body["paid"]), (200, &json!(true)), "{body}");
        assert_eq!(body["pay_no"], buy.pay_no.as_str(), "{body}");
        paid_once(&p, &buy).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_status_5xx_during_sweeps_and_close_defers_until_the_channel_answers()
-> anyhow::Result<()> {
    let p = Platform::start_tuned(Options::default(), fast_sweeper()).await?;
    for channel in CHANNELS {
        // The sweeper's queries fail: the attempt stays as it is and is asked again.
        let buy = purchase(&p, "sweep5xx", channel).await?;
        buy.fault(
            &p,
            json!({"pay_without_notify": true, "api": {"status_5xx": true}}),
        )
        .await?;
        buy.pay_in_wallet(&p).await?;
        let failed_queries = |t: &Value| {
            fault_kinds(t)
                .iter()
                .filter(|k| k.as_str() == "status_5xx")
                .count()
        };
        wait_trade(&p, &buy.pay_no, |t| failed_queries(t) >= 2).await;
        still_unpaid(&p, &buy).await?;
        let checked = format!(
            "SELECT count(*) AS n FROM payments WHERE pay_no = {} AND check_attempts >= 2",
            buy.pay_no
        );
        assert_eq!(n(&p.gateway_db, &checked).await, 1);
        p.clear_faults().await?;
        paid_once(&p, &buy).await?;

        // The order timeout's close: refused while the channel is down, never guessed.
        let buy = purchase(&p, "close5xx", channel).await?;
        buy.fault(&p, json!({"api": {"status_5xx": true}})).await?;
        let close = format!("/internal/orders/{}/payments/close", buy.order_id);
        let (status, body) = p.gateway_internal(&close).await?;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "channel_unavailable", "{body}");
        let closed_order = format!(
            "SELECT count(*) AS n FROM closed_orders WHERE order_id = {}",
            buy.order_id
        );
        assert_eq!(n(&p.gateway_db, &closed_order).await, 0);
        still_unpaid(&p, &buy).await?;

        p.clear_faults().await?;
        let (status, body) = p.gateway_internal(&close).await?;
        assert_eq!(
            (status, &body["outcome"]),
            (200, &json!("closed")),
            "{body}"
        );
        assert_eq!(n(&p.gateway_db, &closed_order).await, 1);
        let closed = format!(
            "SELECT count(*) AS n FROM payments WHERE pay_no = {} AND status = 'closed'",
            buy.pay_no
        );
        assert_eq!(n(&p.gateway_db, &closed).await, 1);
        if channel == "wechat" {
            let trade = p.sandbox_trade(&buy.pay_no).await?;
            assert_eq!(trade["trade_state"], "CLOSED", "{trade}");
        }
    }
    Ok(())
}
