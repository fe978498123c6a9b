//! Order timeout through the real delay queue, the "I have paid" active query, and event
//! types the order service does not handle (harness and peers in `common`).

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use common::*;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use order::Settings;
use order::pay_result::{MarkPaid, mark_paid};
use order::store;
use paywire_contracts::PayResultV1;
use paywire_domain::topology::{ORDER_PAY_RESULT_QUEUE, PAY_RESULT_EXCHANGE};
use paywire_domain::{EventId, OrderId, OrderStatus, PayNo};
use paywire_messaging::schema::{outbox, processed_messages};
use paywire_messaging::topology::dead_letter_queue_name;
use paywire_testkit::eventually;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(40);

/// A one- or two-second order TTL (the attempt TTL below it, as validation demands) and a
/// one-second first retry.
async fn harness(ttl_secs: u64) -> Harness {
    Harness::start_with(|s| {
        s.timeout.order_ttl_secs = ttl_secs;
        s.timeout.payment_attempt_ttl_secs = 0;
        s.timeout.retry_delays_secs = vec![1, 1, 1];
    })
    .await
}

async fn order(h: &Harness, id: OrderId) -> store::Order {
    let mut conn = h.conn().await;
    store::find(&mut conn, id).await.unwrap().unwrap()
}

/// Whether the timeout consumer has finished with a message about `id` (applied and
/// acknowledged, whatever it decided).
async fn timeout_handled(h: &Harness, id: OrderId) -> bool {
    let mut conn = h.conn().await;
    let message_ids: Vec<String> = outbox::table
        .filter(outbox::aggregate_id.eq(id.to_string()))
        .filter(outbox::event_type.eq("order.timeout.v1"))
        .select(outbox::id)
        .load::<i64>(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(i64::to_string)
        .collect();
    let handled: i64 = processed_messages::table
        .filter(processed_messages::consumer.eq(order::timeout::CONSUMER_NAME))
        .filter(processed_messages::message_id.eq_any(&message_ids))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    !message_ids.is_empty() && handled == i64::try_from(message_ids.len()).unwrap()
}

async fn publish_pay_result(h: &Harness, order: &store::Order, event_id: i64) {
    let event = pay_result(order, 80).into_envelope(EventId::from(event_id), Utc::now());
    let body = serde_json::to_vec(&event).unwrap();
    h.vhost
        .publish(
            PAY_RESULT_EXCHANGE,
            &event_id.to_string(),
            PayResultV1::EVENT_TYPE,
            &body,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_order_is_closed_by_the_delay_queue_and_can_be_ordered_again() {
    let h = harness(1).await;
    let id = h.order_for("alice", 501).await;

    // The timeout was scheduled in the create transaction, addressed to the delay queue.
    let mut conn = h.conn().await;
    let (exchange, routing_key, payload): (String, String, serde_json::Value) = outbox::table
        .filter(outbox::aggregate_id.eq(id.to_string()))
        .select((outbox::exchange, outbox::routing_key, outbox::payload))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(exchange, "");
    assert_eq!(routing_key, "order.timeout.delay.1s");
    assert_eq!(payload["event_type"], "order.timeout.v1");
    assert_eq!(payload["data"]["order_id"], id.to_string());
    assert!(payload["data"]["created_at"].is_string());

    let closed = eventually(WAIT, || async {
        let o = order(&h, id).await;
        (o.status == OrderStatus::Closed).then_some(o)
    })
    .await
    .unwrap();
    assert!(closed.closed_at.is_some());
    assert_eq!(closed.pay_no, None);
    // The gateway settled the attempts before the order was closed here.
    assert_eq!(h.gw.close_calls(), vec![id.to_string()]);
    let (_, body) = h.get("alice", &format!("/api/orders/{id}")).await;
    assert_eq!(body["status"], "closed");

    // The course choice still awaits payment: ordering it again makes a new order, and that
    // one is answered again on repeat (one open order per record).
    let (status, again) = h.create("alice", "501").await;
    assert_eq!(status, 201, "{again}");
    let new_id = again["order_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id.to_string());
    assert_eq!(again["status"], "unpaid");
    let (status, repeat) = h.create("alice", "501").await;
    assert_eq!((status, repeat["order_id"].as_str()), (200, Some(&*new_id)));

    // The old order stays closed, and paying it is refused without asking the gateway.
    let (status, body) = h
        .post(
            "alice",
            &format!("/api/orders/{id}/pay"),
            json!({"channel": "wechat"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("order_closed"))
    );
    assert!(h.gw.requests().is_empty());
    assert_eq!(h.vhost.queue_depth("order.timeout.dlq").unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_is_left_alone_when_its_timeout_fires() {
    let h = harness(3).await;
    let id = h.order_for("alice", 502).await;
    // Paid well before the timeout fires (straight through the consumer's code path).
    let mut conn = h.conn().await;
    let paid = mark_paid(&mut conn, &pay_result(&order(&h, id).await, 80))
        .await
        .unwrap();
    assert_eq!(paid, MarkPaid::Applied);
    h.gw.paid_orders.lock().unwrap().insert(id.to_string());

    eventually(WAIT, || async {
        timeout_handled(&h, id).await.then_some(())
    })
    .await
    .unwrap();
    let after = order(&h, id).await;
    assert_eq!(after.status, OrderStatus::Paid);
    assert_eq!(after.pay_no, Some(PayNo::from(80)));
    assert!(
        h.gw.close_calls().is_empty(),
        "a paid order needs no gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_gateway_finds_paid_waits_for_its_pay_result() {
    let h = harness(1).await;
    h.gw.script_close(&[CloseAnswer::Paid]);
    let id = h.order_for("alice", 503).await;
    eventually(WAIT, || async {
        timeout_handled(&h, id).await.then_some(())
    })
    .await
    .unwrap();
    assert_eq!(h.gw.close_calls(), vec![id.to_string()]);
    // Not closed: the pay result the gateway emits is what marks it paid.
    assert_eq!(order(&h, id).await.status, OrderStatus::Unpaid);
    publish_pay_result(&h, &order(&h, id).await, 9102).await;
    eventually(WAIT, || async {
        (order(&h, id).await.status == OrderStatus::Paid).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_channel_is_retried_later_never_guessed() {
    let h = harness(1).await;
    h.gw.script_close(&[CloseAnswer::Unavailable, CloseAnswer::Unavailable]);
    let id = h.order_for("alice", 504).await;
    let closed = eventually(WAIT, || async {
        let o = order(&h, id).await;
        (o.status == OrderStatus::Closed).then_some(o)
    })
    .await
    .unwrap();
    assert!(closed.closed_at.is_some());
    // Two refusals, each followed by a retry through the retry queues, then the close.
    assert_eq!(h.gw.close_calls().len(), 3);
    assert_eq!(h.vhost.queue_depth("order.timeout.dlq").unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_unreachable_past_every_retry_parks_the_timeout_and_keeps_the_order() {
    let h = harness(1).await;
    h.gw.script_close(&[CloseAnswer::Unavailable; 4]);
    let id = h.order_for("alice", 505).await;
    eventually(WAIT, || async {
        (h.vhost.queue_depth("order.timeout.dlq").ok()? == 1).then_some(())
    })
    .await
    .unwrap();
    // First delivery plus three retries; the order was never closed on a guess.
    assert_eq!(h.gw.close_calls().len(), 4);
    assert_eq!(order(&h, id).await.status, OrderStatus::Unpaid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_have_paid_asks_the_gateway_only_for_unpaid_orders() {
    // The default TTL: no timeout fires during this test.
    let h = Harness::start().await;
    let id = h.order_for("alice", 601).await;
    let path = format!("/api/orders/{id}/pay-result");

    let (status, body) = h.get("alice", &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"order_id": id.to_string(), "status": "unpaid", "paid": false})
    );
    assert_eq!(h.gw.sync_calls(), vec![id.to_string()]);

    // The channel says paid; the order row follows when the pay result arrives.
    h.gw.paid_orders.lock().unwrap().insert(id.to_string());
    let (status, body) = h.get("alice", &path).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"order_id": id.to_string(), "status": "unpaid", "paid": true})
    );

    // Someone else's order does not exist, and costs no channel query.
    let (status, body) = h.get("bob", &path).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("order_not_found"))
    );
    let (status, _) = h.get("alice", "/api/orders/424242/pay-result").await;
    assert_eq!(status, 404);
    assert_eq!(h.gw.sync_calls().len(), 2);

    publish_pay_result(&h, &order(&h, id).await, 9103).await;
    eventually(WAIT, || async {
        (order(&h, id).await.status == OrderStatus::Paid).then_some(())
    })
    .await
    .unwrap();
    let (_, body) = h.get("alice", &path).await;
    assert_eq!(
        body,
        json!({"order_id": id.to_string(), "status": "paid", "paid": true})
    );
    assert_eq!(h.gw.sync_calls().len(), 2, "a paid order needs no query");

    // A closed order is not paid, and is not asked about either.
    let closed = h.order_for("alice", 602).await;
    let mut conn = h.conn().await;
    assert!(store::close(&mut conn, closed).await.unwrap());
    let (_, body) = h
        .get("alice", &format!("/api/orders/{closed}/pay-result"))
        .await;
    assert_eq!(
        body,
        json!({"order_id": closed.to_string(), "status": "closed", "paid": false})
    );
    assert_eq!(h.gw.sync_calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_have_paid_is_503_when_the_channel_or_the_gateway_is_unreachable() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 603).await;
    h.gw.channel_down.store(true, Ordering::SeqCst);
    let (status, body) = h
        .get("alice", &format!("/api/orders/{id}/pay-result"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("upstream_unavailable"))
    );

    let h = Harness::start_with(|s| s.upstream.payment_gateway_url = dead_url()).await;
    let id = h.order_for("alice", 604).await;
    let (status, body) = h
        .get("alice", &format!("/api/orders/{id}/pay-result"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("upstream_unavailable"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_an_order_the_gateway_already_closed_is_409() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 605).await;
    h.gw.closed_orders.lock().unwrap().insert(id.to_string());
    let (status, body) = h
        .post(
            "alice",
            &format!("/api/orders/{id}/pay"),
            json!({"channel": "wechat"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("order_closed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_types_the_order_service_does_not_handle_are_acknowledged() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 701).await;
    let refund = json!({
        "event_id": "9201", "event_type": "refund.result.v1",
        "occurred_at": "2026-11-22T10:00:00Z",
        "data": {"refund_no": "1", "pay_no": "2", "order_id": id.to_string(), "channel": "wechat",
                 "amount_fen": PRICE, "reason": "stray", "status": "succeeded",
                 "refunded_at": "2026-11-22T10:00:00Z"},
    });
    h.vhost
        .publish(
            PAY_RESULT_EXCHANGE,
            "9201",
            "refund.result.v1",
            &serde_json::to_vec(&refund).unwrap(),
        )
        .await;
    publish_pay_result(&h, &order(&h, id).await, 9202).await;
    eventually(WAIT, || async {
        (order(&h, id).await.status == OrderStatus::Paid).then_some(())
    })
    .await
    .unwrap();

    // Consumed (recorded in the inbox, acknowledged), not parked and not applied.
    let mut conn = h.conn().await;
    let seen: i64 = processed_messages::table
        .filter(processed_messages::message_id.eq("9201"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(seen, 1);
    let dlq = dead_letter_queue_name(ORDER_PAY_RESULT_QUEUE);
    assert_eq!(h.vhost.queue_depth(&dlq).unwrap(), 0);
    assert_eq!(h.vhost.queue_depth(ORDER_PAY_RESULT_QUEUE).unwrap(), 0);
}

#[tokio::test]
async fn an_order_ttl_not_above_the_attempt_ttl_is_refused_at_start() {
    let mut s = Settings::default();
    s.timeout.order_ttl_secs = 600;
    let err = order::build(s).await.unwrap_err();
    assert!(err.to_string().contains("order_ttl_secs"), "{err}");
}
