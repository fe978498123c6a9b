//! Black-box tests: the gateway on port 0 with its own database and vhost, the channel
//! sandbox as WeChat Pay.

use crate::support;

use chrono::{DateTime, Utc};
use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::{Value, json};
use support::{Harness, Notify, eventually, gateway_settings};

fn next_order() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(1_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_attempt_has_a_code_url_and_is_reused_while_live() {
    let h = Harness::start().await;
    let order = next_order();
    let before = Utc::now();
    let first = h.new_attempt(order, 1999).await;
    assert!(str_field(&first, "code_url").starts_with("weixin://wxpay/bizpayurl?pr="));
    assert_eq!(first["status"], "unpaid");
    assert_eq!(first["channel"], "wechat");
    assert_eq!(first["order_id"], order.to_string());
    let expires: DateTime<Utc> = str_field(&first, "expires_at").parse().unwrap();
    let ttl = (expires - before).num_seconds();
    assert!((898..=901).contains(&ttl), "ttl {ttl}");
    assert_eq!(expires.timestamp_subsec_nanos(), 0);

    // Same order, same channel, same amount: the live attempt comes back.
    let again = h.create_payment(order, 1999).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["pay_no"], first["pay_no"]);
    assert_eq!(again["code_url"], first["code_url"]);

    // A different amount cannot reuse it: a fresh attempt with a fresh pay_no.
    let other = h.new_attempt(order, 2999).await;
    assert_ne!(other["pay_no"], first["pay_no"]);

    let row = h.payment(str_field(&first, "pay_no")).await;
    assert_eq!(row.status, "unpaid");
    assert_eq!(row.code_url.as_deref(), first["code_url"].as_str());

    // The lookup endpoint shows the same attempt.
    let got: Value = h
        .client
        .get(format!(
            "{}/internal/payments/{}",
            h.internal,
            str_field(&first, "pay_no")
        ))
        .header(
            SERVICE_TOKEN_HEADER,
            paywire_platform::config::DEV_SERVICE_TOKEN,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["pay_no"], first["pay_no"]);
}

/// Issue 9: the callbacks are the only public route; the order service's API, health and
/// metrics answer on the internal listener only, so exposing the callbacks to the
/// channels exposes nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_and_metrics_answer_404_on_the_public_listener() {
    let h = Harness::start().await;
    paywire_testkit::listeners::assert_split(
        &h.base,
        &h.internal,
        &[
            ("POST", "/internal/payments"),
            ("GET", "/internal/payments/1"),
            ("POST", "/internal/orders/1/payments/sync"),
            ("POST", "/internal/orders/1/payments/close"),
            ("POST", "/internal/refunds"),
            ("GET", "/internal/refunds/1"),
        ],
        &[
            ("POST", "/api/callback/wechat"),
            ("POST", "/api/callback/alipay"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_close_to_expiry_is_not_reused() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = support::start_sandbox().await;
    let mut settings = gateway_settings(&db, &vhost, &sandbox);
    // Every attempt is born inside the reuse margin.
    settings.payment.attempt_ttl_secs = 120;
    settings.payment.reuse_margin_secs = 300;
    let h = Harness::with_settings(settings, sandbox, db, vhost).await;
    let order = next_order();
    let first = h.new_attempt(order, 500).await;
    let second = h.new_attempt(order, 500).await;
    assert_ne!(first["pay_no"], second["pay_no"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_api_needs_the_service_credential_and_a_valid_body() {
    let h = Harness::start().await;
    let body = json!({
        "order_id": "42", "user_id": "s1", "amount_fen": 100, "channel": "wechat",
        "description": "course", "biz_type": "course", "biz_id": "1"
    });
    let missing = h
        .client
        .post(format!("{}/internal/payments", h.internal))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let wrong = h
        .client
        .post(format!("{}/internal/payments", h.internal))
        .header(SERVICE_TOKEN_HEADER, "guess")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let lookup = h
        .client
        .get(format!("{}/internal/payments/1", h.internal))
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status(), 401);

    let mut bad = body.clone();
    bad["channel"] = json!("paypal");
    let resp = h.create_payment_body(bad).await;
    assert_eq!(resp.status(), 400);

    let mut zero = body.clone();
    zero["amount_fen"] = json!(0);
    let resp = h.create_payment_body(zero).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "invalid_request");

    // Nothing of the refused requests reached the database.
    let mut conn = h.conn().await;
    let count = paywire_testkit::count(&mut conn, "SELECT count(*) AS n FROM payments")
        .await
        .unwrap();
    assert_eq!(count, 0);

    let unknown = h
        .client
        .get(format!("{}/internal/payments/999", h.internal))
        .header(
            SERVICE_TOKEN_HEADER,
            paywire_platform::config::DEV_SERVICE_TOKEN,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_channel_gives_503_and_leaves_the_attempt_unpaid() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let mut settings = gateway_settings(&db, &vhost, &dead);
    settings.wechat.timeout_ms = 2000;
    let h = Harness::with_settings(settings, dead, db, vhost).await;
    let resp = h.create_payment(next_order(), 100).await;
    assert_eq!(resp.status(), 503);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "channel_unavailable");
    // Issue 9: the channel's URL and the client library's text stay in the log.
    for leak in ["127.0.0.1", "http", "error sending"] {
        assert!(!err.to_string().contains(leak), "{leak} in {err}");
    }

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        code_url: Option<String>,
    }
    let rows: Vec<Row> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT status, code_url FROM payments"),
        &mut h.conn().await,
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "unpaid");
    assert_eq!(rows[0].code_url, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_in_the_wallet_marks_the_attempt_paid_and_publishes_one_result() {
    let h = Harness::start().await;
    let order = next_order();
    let attempt = h.new_attempt(order, 1999).await;
    let pay_no = str_field(&attempt, "pay_no").to_owned();

    let paid = h
        .client
        .post(format!("{}/sandbox/wallet/pay", h.sandbox))
        .json(&json!({"code": attempt["code_url"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let paid: Value = paid.json().await.unwrap();
    let transaction_id = str_field(&paid, "transaction_id").to_owned();

    let row = eventually(|| async {
        let row = h.payment(&pay_no).await;
        (row.status == "paid").then_some(row)
    })
    .await;
    assert_eq!(
        row.channel_trade_no.as_deref(),
        Some(transaction_id.as_str())
    );

    let outbox = h.outbox().await;
    assert_eq!(outbox.len(), 1);
    let msg = &outbox[0];
    assert_eq!(msg.exchange, paywire_domain::topology::PAY_RESULT_EXCHANGE);
    assert_eq!(msg.routing_key, "");
    assert_eq!(msg.aggregate_id, order.to_string());
    assert_eq!(msg.event_type, "pay.result.v1");
    assert_eq!(msg.payload["event_id"], msg.id.to_string());
    let data = &msg.payload["data"];
    assert_eq!(data["pay_no"], pay_no.as_str());
    assert_eq!(data["order_id"], order.to_string());
    assert_eq!(data["user_id"], "student-1");
    assert_eq!(data["biz_type"], "course");
    assert_eq!(data["biz_id"], "77");
    assert_eq!(data["channel"], "wechat");
    assert_eq!(data["amount_fen"], 1999);
    assert_eq!(data["channel_trade_no"], transaction_id.as_str());

    // The relay delivers it to every subscriber queue declared at start-up.
    for queue in paywire_domain::topology::PAY_RESULT_SUBSCRIBERS {
        eventually(|| async { (h.vhost.queue_depth(queue).unwrap() == 1).then_some(()) }).await;
    }

    // The order is settled: no new attempt for it.
    let again = h.create_payment(order, 1999).await;
    assert_eq!(again.status(), 409);
    let err: Value = again.json().await.unwrap();
    assert_eq!(err["error"], "order_already_paid");

    // The same confirmation again (a channel retry): acknowledged, nothing new.
    let mut replay = Notify::new(&pay_no, 1999);
    replay.transaction_id = transaction_id.clone();
    let (headers, body) = replay.build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(h.outbox().await.len(), 1);
    assert_eq!(h.payment(&pay_no).await.status, "paid");

    let outcomes = h.outcomes().await;
    assert_eq!(outcomes, ["applied", "duplicate", "duplicate"]);
}

/// A live attempt plus everything needed to assert "nothing changed".
async fn unpaid_attempt(h: &Harness, amount: i64) -> String {
    let attempt = h.new_attempt(next_order(), amount).await;
    str_field(&attempt, "pay_no").to_owned()
}

/// `expected_outcome` is the one notification recorded: an audit row when our records
/// refused a verified notification, a counted refusal when the channel layer refused it.
async fn assert_untouched(h: &Harness, pay_no: &str, expected_outcome: &str) {
    let row = h.payment(pay_no).await;
    assert_eq!(row.status, "unpaid");
    assert_eq!(row.channel_trade_no, None);
    assert!(h.outbox().await.is_empty());
    let mut outcomes = h.outcomes().await;
    outcomes.extend(h.refusals().await.0);
    assert_eq!(outcomes, [expected_outcome]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_applies_once_and_replays_are_acknowledged() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    let (headers, body) = Notify::new(&pay_no, 800).build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 204);
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(h.payment(&pay_no).await.status, "paid");
    assert_eq!(h.outbox().await.len(), 1);
    let notes = h.notifications().await;
    let outcomes: Vec<&str> = notes.iter().map(|n| n.outcome.as_str()).collect();
    assert_eq!(outcomes, ["applied", "duplicate"]);
    assert!(
        notes
            .iter()
            .all(|n| n.pay_no == Some(pay_no.parse().unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    let (headers, mut body) = Notify::new(&pay_no, 800).build();
    // One byte changed after signing.
    let last = body.len() - 1;
    body[last] = b' ';
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 401);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["code"], "FAIL");
    assert_untouched(&h, &pay_no, "rejected:bad_signature").await;
    let detail = h.refusals().await.1.unwrap();
    assert!(
        detail.contains(&format!("{} bytes", body.len())),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_notification_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    let mut notify = Notify::new(&pay_no, 800);
    notify.timestamp -= 301;
    let (headers, body) = notify.build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 401);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["code"], "FAIL");
    assert_untouched(&h, &pay_no, "rejected:stale_timestamp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amount_mismatch_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    let (headers, body) = Notify::new(&pay_no, 1).build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 400);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["code"], "FAIL");
    assert_untouched(&h, &pay_no, "rejected:amount_mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pay_no_or_merchant_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    let (headers, body) = Notify::new("123456789", 800).build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 400);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["code"], "FAIL");
    assert_untouched(&h, &pay_no, "rejected:unknown_pay_no").await;

    let mut foreign = Notify::new(&pay_no, 800);
    foreign.mchid = "1900000001".into();
    let (headers, body) = foreign.build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    // The channel layer answers 500 for a foreign merchant: still a refusal.
    assert_eq!(resp.status(), 500);
    assert_eq!(h.payment(&pay_no).await.status, "unpaid");
    assert_eq!(
        h.refusals().await.0.last().unwrap(),
        "rejected:wrong_merchant"
    );

    // Issue 9: fen are CNY fen; a signed notification in another currency pays nothing.
    let mut dollars = Notify::new(&pay_no, 800);
    dollars.currency = "USD".into();
    let (headers, body) = dollars.build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(h.payment(&pay_no).await.status, "unpaid");
    assert_eq!(h.refusals().await.0.last().unwrap(), "rejected:malformed");

    // Only channels in the registry have a callback.
    let resp = h.post_callback("paypal", &headers, &body).await;
    assert_eq!(resp.status(), 404);
    assert!(h.outbox().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_channel_takes_no_attempts_and_has_no_callback() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let sandbox = support::start_sandbox().await;
    let mut settings = gateway_settings(&db, &vhost, &sandbox);
    settings.alipay.enabled = false;
    let h = Harness::with_settings(settings, sandbox, db, vhost).await;
    let resp = h
        .create_payment_body(json!({
            "order_id": "42", "user_id": "s1", "amount_fen": 100, "channel": "alipay",
            "description": "course", "biz_type": "course", "biz_id": "1"
        }))
        .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "channel_not_enabled");
    let resp = h
        .post_callback("alipay", &[], b"trade_status=TRADE_SUCCESS")
        .await;
    assert_eq!(resp.status(), 404);
    // WeChat still works beside it.
    h.new_attempt(next_order(), 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_channel_key_stops_the_gateway_from_starting() {
    let db = TestDatabase::create("payment_gateway").await.unwrap();
    let vhost = TestVhost::create().unwrap();
    let mut settings = gateway_settings(&db, &vhost, "http://127.0.0.1:9");
    settings.alipay.app_private_key_path = "/nonexistent/app_private_key.pem".into();
    let err = payment_gateway::build(settings).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("Alipay"), "{text}");
    assert!(text.contains("/nonexistent/app_private_key.pem"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_for_a_closed_attempt_is_recorded_as_stray_with_a_refund_and_acknowledged() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    h.set_status(&pay_no, "closed").await;
    let (headers, body) = Notify::new(&pay_no, 800).build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 204);
    // The money is real: the attempt records it, and a refund is on its way.
    let row = h.payment(&pay_no).await;
    assert_ne!(row.status, "closed");
    assert!(row.channel_trade_no.is_some());
    let refunds = h.refunds().await;
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].pay_no.to_string(), pay_no);
    assert_eq!(refunds[0].reason, "order_closed");
    assert_eq!(refunds[0].amount_fen, 800);
    // No pay result: the order is not settled by stray money.
    assert!(
        h.outbox()
            .await
            .iter()
            .all(|m| m.event_type != "pay.result.v1")
    );
    // A redelivery changes nothing.
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(h.refunds().await.len(), 1);
    let outcomes = h.outcomes().await;
    assert_eq!(outcomes, ["stray_payment", "duplicate"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_attempt_notified_with_another_trade_number_is_refused() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    let (headers, body) = Notify::new(&pay_no, 800).build();
    assert_eq!(
        h.post_callback("wechat", &headers, &body).await.status(),
        204
    );
    let mut other = Notify::new(&pay_no, 800);
    other.transaction_id = "4200009999202611229999999999".into();
    let (headers, body) = other.build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(h.outbox().await.len(), 1);
    let outcomes = h.outcomes().await;
    assert_eq!(outcomes, ["applied", "rejected:trade_no_conflict"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_confirmation_apply_once() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    let (headers, body) = Notify::new(&pay_no, 800).build();
    let replies =
        futures::future::join_all((0..6).map(|_| h.post_callback("wechat", &headers, &body))).await;
    for r in &replies {
        assert_eq!(r.status(), 204);
    }
    assert_eq!(h.outbox().await.len(), 1);
    let mut outcomes: Vec<String> = h
        .notifications()
        .await
        .into_iter()
        .map(|n| n.outcome)
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "applied",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_outbox_write_fails_nothing_is_committed_and_the_channel_retries() {
    let h = Harness::start().await;
    let pay_no = unpaid_attempt(&h, 800).await;
    let mut conn = h.conn().await;
    use diesel_async::RunQueryDsl;
    diesel::sql_query("ALTER TABLE outbox RENAME TO outbox_away")
        .execute(&mut conn)
        .await
        .unwrap();
    let (headers, body) = Notify::new(&pay_no, 800).build();
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 500);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["code"], "FAIL");
    // The status change rolled back together with the failed outbox insert.
    let row = h.payment(&pay_no).await;
    assert_eq!(row.status, "unpaid");
    assert_eq!(row.channel_trade_no, None);
    assert!(h.notifications().await.is_empty());

    diesel::sql_query("ALTER TABLE outbox_away RENAME TO outbox")
        .execute(&mut conn)
        .await
        .unwrap();
    // The channel's retry of the very same request now applies.
    let resp = h.post_callback("wechat", &headers, &body).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(h.payment(&pay_no).await.status, "paid");
    assert_eq!(h.outbox().await.len(), 1);
}
