//! Refunds: the internal route forwards the order's full refund to the gateway, and
//! `refund.result.v1` (requested, succeeded) marks the order refunded once; refunds of
//! stray money never touch the order (harness and gateway stand-in in `common`).

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use common::*;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use order::pay_result::{MarkRefunded, RefundResultV1, mark_refunded};
use order::store;
use paywire_contracts::{Lenient, PayResultV1};
use paywire_domain::topology::PAY_RESULT_EXCHANGE;
use paywire_domain::{EventId, Fen, OrderId, OrderStatus, PayChannel, PayNo, RefundNo};
use paywire_messaging::schema::processed_messages;
use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_platform::config::{DEV_OPERATOR_TOKEN, DEV_SERVICE_TOKEN};
use paywire_testkit::eventually;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);
const PAY_NO: i64 = 80;

async fn order(h: &Harness, id: OrderId) -> store::Order {
    let mut conn = h.conn().await;
    store::find(&mut conn, id).await.unwrap().unwrap()
}

/// A paid order of alice (pay result for attempt 80 through the broker).
async fn paid_order(h: &Harness, biz: i64) -> OrderId {
    let id = h.order_for("alice", biz).await;
    let o = order(h, id).await;
    let event = pay_result(&o, PAY_NO).into_envelope(EventId::from(biz * 10), Utc::now());
    h.vhost
        .publish(
            PAY_RESULT_EXCHANGE,
            &(biz * 10).to_string(),
            PayResultV1::EVENT_TYPE,
            &serde_json::to_vec(&event).unwrap(),
        )
        .await;
    eventually(WAIT, || async {
        (order(h, id).await.status == OrderStatus::Paid).then_some(())
    })
    .await
    .unwrap();
    id
}

async fn internal_refund(h: &Harness, id: OrderId, token: Option<&str>) -> (u16, Value) {
    let mut req = h
        .client
        .post(format!("{}/internal/orders/{id}/refund", h.internal));
    if let Some(token) = token {
        req = req.header(SERVICE_TOKEN_HEADER, token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn refund_event(id: OrderId, pay_no: i64, reason: &str, status: &str, amount: i64) -> Value {
    json!({
        "event_id": "0", "event_type": "refund.result.v1",
        "occurred_at": "2026-11-22T11:00:00Z",
        "data": {"refund_no": "9900", "pay_no": pay_no.to_string(), "order_id": id.to_string(),
                 "channel": "wechat", "amount_fen": amount, "reason": reason, "status": status,
                 "refunded_at": if status == "succeeded" { json!("2026-11-22T11:00:00Z") } else { Value::Null }},
    })
}

async fn publish_refund(h: &Harness, message_id: &str, event: &Value) {
    let mut event = event.clone();
    event["event_id"] = message_id.into();
    h.vhost
        .publish(
            PAY_RESULT_EXCHANGE,
            message_id,
            "refund.result.v1",
            &serde_json::to_vec(&event).unwrap(),
        )
        .await;
}

async fn handled(h: &Harness, message_id: &str) -> bool {
    let mut conn = h.conn().await;
    let n: i64 = processed_messages::table
        .filter(processed_messages::message_id.eq(message_id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_route_forwards_the_full_refund_of_the_paying_attempt_idempotently() {
    let h = Harness::start().await;
    let id = paid_order(&h, 801).await;

    let (status, body) = internal_refund(&h, id, Some(DEV_OPERATOR_TOKEN)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["refund_no"], "9900");
    assert_eq!(body["order_id"], id.to_string());
    assert_eq!(body["pay_no"], PAY_NO.to_string());
    assert_eq!(body["amount_fen"], PRICE);
    assert_eq!(body["status"], "pending");
    let calls = h.gw.refund_calls();
    assert_eq!(calls.len(), 1);
    let (key, sent) = &calls[0];
    assert_eq!(
        key.as_deref(),
        Some(format!("order-{id}-full-refund").as_str())
    );
    assert_eq!(sent["order_id"], id.to_string());
    assert_eq!(sent["pay_no"], PAY_NO.to_string());
    assert_eq!(sent["amount_fen"], PRICE);
    assert!(sent["reason"].as_str().is_some_and(|r| !r.is_empty()));

    // Asked again: the same key, so the gateway answers the same refund.
    let (status, again) = internal_refund(&h, id, Some(DEV_OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["refund_no"], "9900");
    let calls = h.gw.refund_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, calls[1].0);
    // The order follows the refund result, not the request.
    assert_eq!(order(&h, id).await.status, OrderStatus::Paid);
}

async fn refund_with(h: &Harness, id: OrderId, body: &str) -> (u16, Value) {
    let resp = h
        .client
        .post(format!("{}/internal/orders/{id}/refund", h.internal))
        .header(SERVICE_TOKEN_HEADER, DEV_OPERATOR_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `cargo xtask refund <order> --amount-fen N --reason …`: a partial refund with its own
/// key (per order and amount, or per `request_id`), the payer's text forwarded; a body
/// that does not parse refunds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refund_route_takes_an_amount_a_reason_and_a_request_id() {
    let h = Harness::start().await;
    let id = paid_order(&h, 802).await;

    let (status, body) = refund_with(&h, id, r#"{"amount_fen": 100, "reason": "goodwill"}"#).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["amount_fen"], 100);
    let (status, _) = refund_with(&h, id, r#"{"amount_fen": 100, "request_id": "second"}"#).await;
    assert_eq!(status, 201);
    // The same amount again (a repeated command) answers the first one.
    let (status, _) = refund_with(&h, id, r#"{"amount_fen": 100}"#).await;
    assert_eq!(status, 200);
    // The full amount, given or not, is the full refund's key.
    let (status, _) = refund_with(&h, id, &format!(r#"{{"amount_fen": {PRICE}}}"#)).await;
    assert_eq!(status, 201);
    let (status, _) = refund_with(&h, id, "").await;
    assert_eq!(status, 200);
    let calls = h.gw.refund_calls();
    let keys: Vec<String> = calls.iter().map(|(k, _)| k.clone().unwrap()).collect();
    assert_eq!(
        keys,
        [
            format!("order-{id}-refund-100-fen"),
            format!("order-{id}-refund-second"),
            format!("order-{id}-refund-100-fen"),
            format!("order-{id}-full-refund"),
            format!("order-{id}-full-refund"),
        ]
    );
    assert_eq!(calls[0].1["reason"], "goodwill");
    assert_eq!(calls[0].1["amount_fen"], 100);
    assert_eq!(calls[3].1["amount_fen"], PRICE);

    for bad in [
        r#"{"amount_fen": 0}"#,
        r#"{"amount_fen": -1}"#,
        r#"{"amount": 100}"#,
        r#"{"request_id": "a b"}"#,
        "{not json",
    ] {
        let (status, body) = refund_with(&h, id, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_request", "{bad}");
    }
    let long = format!(r#"{{"reason": "{}"}}"#, "退".repeat(81));
    assert_eq!(refund_with(&h, id, &long).await.0, 400);
    assert_eq!(
        h.gw.refund_calls().len(),
        5,
        "refused bodies never reach the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refund_route_needs_the_operators_credential_and_a_paid_order() {
    let h = Harness::start().await;
    let id = paid_order(&h, 802).await;
    assert_eq!(internal_refund(&h, id, None).await.0, 401);
    assert_eq!(internal_refund(&h, id, Some("wrong-token")).await.0, 401);
    // The order service's own credential is valid, but refunds are the operators' call.
    let (status, body) = internal_refund(&h, id, Some(DEV_SERVICE_TOKEN)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("caller_not_admitted"))
    );
    // A student's token is no service credential, and students have no refund route.
    let resp = h
        .client
        .post(format!("{}/internal/orders/{id}/refund", h.internal))
        .bearer_auth(h.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (status, _) = h
        .post("alice", &format!("/api/orders/{id}/refund"), json!({}))
        .await;
    assert_eq!(status, 404);
    assert!(h.gw.refund_calls().is_empty());

    let unpaid = h.order_for("alice", 803).await;
    let (status, body) = internal_refund(&h, unpaid, Some(DEV_OPERATOR_TOKEN)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("order_not_paid"))
    );
    let (status, body) = internal_refund(&h, OrderId::from(4242), Some(DEV_OPERATOR_TOKEN)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("order_not_found"))
    );
    assert!(h.gw.refund_calls().is_empty());

    // The gateway's refusal is passed on.
    h.gw.refuse_refunds.store(true, Ordering::SeqCst);
    let (status, body) = internal_refund(&h, id, Some(DEV_OPERATOR_TOKEN)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("refund_not_allowed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_refund_that_succeeded_marks_the_order_refunded_once() {
    let h = Harness::start().await;
    let id = paid_order(&h, 804).await;
    let event = refund_event(id, PAY_NO, "requested", "succeeded", PRICE);
    publish_refund(&h, "8041", &event).await;
    let refunded = eventually(WAIT, || async {
        let o = order(&h, id).await;
        (o.status == OrderStatus::Refunded).then_some(o)
    })
    .await
    .unwrap();
    assert_eq!(refunded.pay_no, Some(PayNo::from(PAY_NO)));
    assert_eq!(
        refunded.refunded_at,
        Some("2026-11-22T11:00:00Z".parse().unwrap())
    );
    // The same result again (another delivery id): consumed, nothing moves.
    publish_refund(&h, "8042", &event).await;
    eventually(WAIT, || async { handled(&h, "8042").await.then_some(()) })
        .await
        .unwrap();
    assert_eq!(order(&h, id).await, refunded);

    // A refunded order cannot be paid again; "I have paid" reports it.
    let (status, body) = h
        .post(
            "alice",
            &format!("/api/orders/{id}/pay"),
            json!({"channel": "wechat"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("order_refunded"))
    );
    let (status, body) = h
        .get("alice", &format!("/api/orders/{id}/pay-result"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "refunded");
    assert_eq!(body["paid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_of_stray_money_do_not_change_the_order() {
    let h = Harness::start().await;
    let id = paid_order(&h, 805).await;
    // Another attempt's money for this order went back (duplicate payment), and one for
    // the paying attempt's number with a stray reason.
    let events = [
        (
            "8051",
            refund_event(id, PAY_NO + 1, "duplicate_payment", "succeeded", PRICE),
        ),
        (
            "8052",
            refund_event(id, PAY_NO, "order_closed", "succeeded", PRICE),
        ),
        (
            "8053",
            refund_event(id, PAY_NO, "requested", "failed", PRICE),
        ),
    ];
    for (message_id, event) in &events {
        publish_refund(&h, message_id, event).await;
    }
    for (message_id, _) in &events {
        eventually(WAIT, || async {
            handled(&h, message_id).await.then_some(())
        })
        .await
        .unwrap();
    }
    let o = order(&h, id).await;
    assert_eq!(o.status, OrderStatus::Paid);
    assert_eq!(o.refunded_at, None);
}

fn direct(
    order_id: OrderId,
    pay_no: i64,
    reason: &str,
    status: &str,
    amount: i64,
) -> RefundResultV1 {
    RefundResultV1 {
        refund_no: RefundNo::from(1),
        pay_no: PayNo::from(pay_no),
        order_id,
        channel: PayChannel::Wechat,
        amount_fen: Fen::new(amount).unwrap(),
        reason: Lenient::parse(reason),
        status: Lenient::parse(status),
        refunded_at: (status == "succeeded").then(Utc::now),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_full_refund_of_the_paying_attempt_is_applied() {
    let h = Harness::start().await;
    let id = paid_order(&h, 806).await;
    let unpaid = h.order_for("alice", 807).await;
    let mut conn = h.conn().await;
    for (event, what) in [
        (
            direct(id, PAY_NO, "requested", "succeeded", PRICE - 1),
            "partial",
        ),
        (
            direct(id, PAY_NO + 1, "requested", "succeeded", PRICE),
            "another attempt",
        ),
        (
            direct(id, PAY_NO, "duplicate_payment", "succeeded", PRICE),
            "stray",
        ),
        (direct(id, PAY_NO, "requested", "failed", PRICE), "failed"),
        (
            direct(unpaid, PAY_NO, "requested", "succeeded", PRICE),
            "unpaid order",
        ),
    ] {
        assert_eq!(
            mark_refunded(&mut conn, &event).await.unwrap(),
            MarkRefunded::Ignored,
            "{what}"
        );
    }
    assert_eq!(order(&h, id).await.status, OrderStatus::Paid);
    assert_eq!(order(&h, unpaid).await.status, OrderStatus::Unpaid);
    let full = direct(id, PAY_NO, "requested", "succeeded", PRICE);
    assert_eq!(
        mark_refunded(&mut conn, &full).await.unwrap(),
        MarkRefunded::Applied
    );
    assert_eq!(
        mark_refunded(&mut conn, &full).await.unwrap(),
        MarkRefunded::AlreadyApplied
    );
    assert_eq!(order(&h, id).await.status, OrderStatus::Refunded);
    // A succeeded refund without its time is the gateway's bug: refused, not applied.
    let mut broken = direct(id, PAY_NO, "requested", "succeeded", PRICE);
    broken.refunded_at = None;
    assert!(mark_refunded(&mut conn, &broken).await.is_err());
}
