//! Black-box tests of the order service's API and pay-result consumer (harness and peers in
//! `common`).

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use common::*;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use order::MIGRATIONS;
use order::error::OrderError;
use order::pay_result::{MarkPaid, mark_paid};
use order::store;
use order::timeout::ScheduleTimeout;
use paywire_contracts::PayResultV1;
use paywire_domain::topology::{ORDER_PAY_RESULT_QUEUE, PAY_RESULT_EXCHANGE};
use paywire_domain::{
    BizType, ChooseCourseId, CourseId, EventId, Fen, OrderId, OrderStatus, PayChannel, PayNo,
    UserId,
};
use paywire_messaging::topology::dead_letter_queue_name;
use paywire_platform::auth::Authenticator;
use paywire_platform::config::AuthSettings;
use paywire_platform::db::Transience;
use paywire_testkit::{TestDatabase, eventually};
use secrecy::SecretString;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Creating orders
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_takes_the_price_from_the_learning_center_not_the_client() {
    let h = Harness::start().await;
    h.lc.add(101, "alice", "awaiting_payment");
    let (status, body) = h
        .post(
            "alice",
            "/api/orders",
            json!({"biz_type": "course", "biz_id": "101", "total_fen": 1, "price_fen": 1,
                   "items": [{"price_fen": 1}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["total_fen"], PRICE);
    assert_eq!(body["status"], "unpaid");
    assert_eq!(body["biz_type"], "course");
    assert_eq!(body["biz_id"], "101");
    assert_eq!(body["description"], "Rust for payments");
    assert!(body["order_id"].is_string(), "ids travel as strings");
    assert!(body["pay_no"].is_null() && body["paid_at"].is_null());

    let id: OrderId = body["order_id"].as_str().unwrap().parse().unwrap();
    let mut conn = h.conn().await;
    let order = store::find(&mut conn, id).await.unwrap().unwrap();
    assert_eq!(order.total.get(), PRICE);
    assert_eq!(order.user_id.as_str(), "alice");
    let items = store::items(&mut conn, id).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (
            items[0].goods_type.as_str(),
            items[0].goods_id.as_str(),
            items[0].price_fen,
            items[0].quantity
        ),
        ("course", "55", PRICE, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_create_returns_the_same_order() {
    let h = Harness::start().await;
    h.lc.add(102, "alice", "awaiting_payment");
    let (first, a) = h.create("alice", "102").await;
    let (second, b) = h.create("alice", "102").await;
    // Another spelling of the same id is the same record, not a second order.
    let (third, c) = h.create("alice", "0102").await;
    assert_eq!((first, second, third), (201, 200, 200), "{a} {b} {c}");
    assert_eq!(a["order_id"], b["order_id"]);
    assert_eq!(a["order_id"], c["order_id"]);
    assert_eq!(
        h.lc.calls.load(Ordering::SeqCst),
        1,
        "existing orders need no upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_make_one_order() {
    let h = Arc::new(Harness::start().await);
    h.lc.add(103, "alice", "awaiting_payment");
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.create("alice", "103").await })
        })
        .collect();
    let mut created = 0;
    let mut ids = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert!(status == 201 || status == 200, "{status} {body}");
        created += usize::from(status == 201);
        ids.insert(body["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_business_record_is_not_found() {
    let h = Harness::start().await;
    h.lc.add(104, "bob", "awaiting_payment");
    let (status, body) = h.create("alice", "104").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "biz_not_found");

    // Once bob has an order for it, alice still learns nothing.
    let (status, _) = h.create("bob", "104").await;
    assert_eq!(status, 201);
    let (status, body) = h.create("alice", "104").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "biz_not_found");
    assert!(body.get("order_id").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_unpayable_records_are_refused() {
    let h = Harness::start().await;
    let (status, body) = h.create("alice", "999").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("biz_not_found"))
    );

    h.lc.add(105, "alice", "chosen");
    let (status, body) = h.create("alice", "105").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("biz_not_payable"))
    );

    let mut conn = h.conn().await;
    for biz in ["999", "105"] {
        assert!(
            store::find_open_by_biz(&mut conn, BizType::Course, biz)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_create_requests_are_400() {
    let h = Harness::start().await;
    for body in [
        json!({"biz_type": "course", "biz_id": "abc"}),
        json!({"biz_type": "course", "biz_id": "-1"}),
        json!({"biz_type": "course", "biz_id": "0"}),
        json!({"biz_type": "membership", "biz_id": "1"}),
        json!({"biz_id": "1"}),
    ] {
        let (status, resp) = h.post("alice", "/api/orders", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {resp}");
        assert!(resp["error"].is_string());
    }
    assert_eq!(h.lc.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_center_down_or_failing_is_503() {
    let h = Harness::start_with(|s| s.upstream.learning_center_url = dead_url()).await;
    let (status, body) = h.create("alice", "106").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "upstream_unavailable");

    let h = Harness::start().await;
    h.lc.add(106, "alice", "awaiting_payment");
    h.lc.failing.store(true, Ordering::SeqCst);
    let (status, body) = h.create("alice", "106").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "upstream_unavailable");
    // Recovered upstream: the same request now works (nothing half-created before).
    h.lc.failing.store(false, Ordering::SeqCst);
    let (status, _) = h.create("alice", "106").await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learning_center_whose_database_restarts_costs_latency_not_a_failure() {
    let h = Harness::start().await;
    h.lc.add(107, "alice", "awaiting_payment");
    h.lc.database_away.store(2, Ordering::SeqCst);
    let (status, body) = h.create("alice", "107").await;
    assert_eq!(status, 201, "{body}");
    // Two 503 database_unavailable answers, repeated inside the order service.
    assert_eq!(h.lc.calls.load(Ordering::SeqCst), 3);

    // An outage longer than the retry budget is passed on as 503, never 500.
    h.lc.database_away.store(1000, Ordering::SeqCst);
    h.lc.add(108, "alice", "awaiting_payment");
    let (status, body) = h.create("alice", "108").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "upstream_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_service_token_upstream_is_not_a_success() {
    let h = Harness::start_with(|s| {
        s.auth = AuthSettings {
            service_token: SecretString::from("not-the-shared-token"),
            ..AuthSettings::default()
        }
    })
    .await;
    h.lc.add(107, "alice", "awaiting_payment");
    let (status, body) = h.create("alice", "107").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "upstream_error");
}

// ---------------------------------------------------------------------------------------
// Authentication and ownership
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_need_a_valid_user_token() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 201).await;
    let foreign = Authenticator::new(&AuthSettings {
        jwt_secret: SecretString::from("some-other-key"),
        ..AuthSettings::default()
    })
    .unwrap()
    .issue(
        &UserId::parse("alice").unwrap(),
        chrono::Duration::minutes(5),
    );
    let routes = [
        ("POST", "/api/orders".to_owned()),
        ("GET", format!("/api/orders/{id}")),
        ("POST", format!("/api/orders/{id}/pay")),
    ];
    for (method, path) in &routes {
        for token in [None, Some("garbage".to_owned()), Some(foreign.clone())] {
            let url = format!("{}{path}", h.base);
            let mut req = if *method == "GET" {
                h.client.get(url)
            } else {
                h.client
                    .post(url)
                    .json(&json!({"biz_type": "course", "biz_id": "201", "channel": "wechat"}))
            };
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 401, "{method} {path} {token:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
    assert!(h.gw.requests().is_empty());
}

/// With an identity provider configured (its JWKS fetched over HTTP), the provider's RS256
/// and EdDSA tokens are accepted, and development HS256 tokens are refused; the service is
/// ready only once the key set has arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_tokens_replace_development_tokens() {
    use paywire_testkit::idp::{self, TestIdp};
    let provider = TestIdp::serve();
    let h = Harness::start_with(|s| provider.configure(&mut s.auth)).await;
    let mut ready = Value::Null;
    for _ in 0..300 {
        let (status, body) = readiness(&h).await;
        if status == 200 {
            ready = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready["checks"]["identity-provider-keys"], "up", "{ready}");

    h.lc.add(203, "alice", "awaiting_payment");
    let order = json!({"biz_type": "course", "biz_id": "203"});
    let created = h
        .client
        .post(format!("{}/api/orders", h.base))
        .bearer_auth(idp::token("alice", jsonwebtoken::Algorithm::EdDSA))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let id = created.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = |token: String| {
        h.client
            .get(format!("{}/api/orders/{id}", h.base))
            .bearer_auth(token)
            .send()
    };
    let by_rsa = read(idp::token("alice", jsonwebtoken::Algorithm::RS256))
        .await
        .unwrap();
    assert_eq!(by_rsa.status().as_u16(), 200);
    // The development token for the same user, signed with the (default) HS256 secret.
    let dev = read(h.token("alice")).await.unwrap();
    assert_eq!(dev.status().as_u16(), 401);
    assert_eq!(dev.json::<Value>().await.unwrap()["error"], "unauthorized");
}

async fn readiness(h: &Harness) -> (u16, Value) {
    let resp = h
        .client
        .get(format!("{}/health/ready", h.internal))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Until the identity provider's key set has arrived no user can be verified: the
/// instance says it is not ready, naming the missing part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_identity_provider_keeps_the_service_not_ready() {
    // A port nothing listens on: bound, then dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Harness::start_with(|s| {
        s.auth.jwks = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
        s.auth.issuer = paywire_testkit::idp::ISSUER.into();
        s.auth.audience = paywire_testkit::idp::AUDIENCE.into();
    })
    .await;
    // Long enough for the relay and consumers to be up, so only the keys are missing.
    let mut last = Value::Null;
    for _ in 0..50 {
        let (status, body) = readiness(&h).await;
        assert_eq!(status, 503, "{body}");
        last = body;
        if last["message"] == "not ready: identity-provider-keys is starting" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(last["error"], "not_ready", "{last}");
    assert_eq!(
        last["message"], "not ready: identity-provider-keys is starting",
        "{last}"
    );
}

/// Issue 9: the refund route, health and metrics live on the internal listener only; the
/// students' API on the public one only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_and_metrics_answer_404_on_the_public_listener() {
    let h = Harness::start().await;
    paywire_testkit::listeners::assert_split(
        &h.base,
        &h.internal,
        &[("POST", "/internal/orders/1/refund")],
        &[
            ("POST", "/api/orders"),
            ("GET", "/api/orders/1"),
            ("POST", "/api/orders/1/pay"),
            ("GET", "/api/orders/1/pay-result"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_order_is_not_found() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 202).await;
    let (status, body) = h.get("mallory", &format!("/api/orders/{id}")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("order_not_found"))
    );
    let (status, body) = h
        .post(
            "mallory",
            &format!("/api/orders/{id}/pay"),
            json!({"channel": "wechat"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("order_not_found"))
    );
    assert!(h.gw.requests().is_empty(), "nothing forwarded for mallory");

    let (status, body) = h.get("alice", &format!("/api/orders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["order_id"], id.to_string());
    let (status, _) = h.get("alice", "/api/orders/123456").await;
    assert_eq!(status, 404);
    let (status, _) = h.get("alice", "/api/orders/not-an-id").await;
    assert_eq!(status, 400);
}

// ---------------------------------------------------------------------------------------
// Paying
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_forwards_the_order_amount_and_returns_the_code_url() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 301).await;
    let (status, body) = h
        .post(
            "alice",
            &format!("/api/orders/{id}/pay"),
            json!({"channel": "wechat", "amount_fen": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pay_no"], "777");
    assert_eq!(body["channel"], "wechat");
    assert_eq!(
        body["code_url"],
        format!("weixin://wxpay/bizpayurl?pr={id}")
    );
    assert!(
        body["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2030-01-01T00:15:00")
    );

    let sent = h.gw.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0],
        json!({
            "order_id": id.to_string(), "user_id": "alice", "amount_fen": PRICE,
            "channel": "wechat", "description": "Rust for payments",
            "biz_type": "course", "biz_id": "301",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_channels_are_400() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 302).await;
    for body in [
        json!({"channel": "paypal"}),
        json!({"channel": "WECHAT"}),
        json!({}),
    ] {
        let (status, resp) = h
            .post("alice", &format!("/api/orders/{id}/pay"), body.clone())
            .await;
        assert_eq!(status, 400, "{body} -> {resp}");
    }
    let (_, resp) = h
        .post(
            "alice",
            &format!("/api/orders/{id}/pay"),
            json!({"channel": "paypal"}),
        )
        .await;
    assert_eq!(resp["error"], "invalid_channel");
    assert!(h.gw.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_or_closed_orders_cannot_be_paid_again() {
    let h = Harness::start().await;
    let paid = h.order_for("alice", 303).await;
    let closed = h.order_for("alice", 304).await;
    let mut conn = h.conn().await;
    let order = store::find(&mut conn, paid).await.unwrap().unwrap();
    assert_eq!(
        mark_paid(&mut conn, &pay_result(&order, 9)).await.unwrap(),
        MarkPaid::Applied
    );
    assert!(store::close(&mut conn, closed).await.unwrap());

    let (status, body) = h
        .post(
            "alice",
            &format!("/api/orders/{paid}/pay"),
            json!({"channel": "alipay"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("order_already_paid"))
    );
    let (status, body) = h
        .post(
            "alice",
            &format!("/api/orders/{closed}/pay"),
            json!({"channel": "wechat"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("order_closed"))
    );
    assert!(h.gw.requests().is_empty());

    // The paid order shows how it was paid.
    let (status, body) = h.get("alice", &format!("/api/orders/{paid}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "paid");
    assert_eq!(body["pay_no"], "9");
    assert_eq!(body["channel"], "wechat");
    assert!(
        body["paid_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-22T10:00:00")
    );
    let (_, body) = h.get("alice", &format!("/api/orders/{closed}")).await;
    assert_eq!(body["status"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refusals_and_outages_are_passed_on() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 305).await;
    // The gateway knows of a paid attempt the pay result has not brought here yet.
    h.gw.paid_orders.lock().unwrap().insert(id.to_string());
    let (status, body) = h
        .post(
            "alice",
            &format!("/api/orders/{id}/pay"),
            json!({"channel": "wechat"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("order_already_paid"))
    );

    let h = Harness::start_with(|s| s.upstream.payment_gateway_url = dead_url()).await;
    let id = h.order_for("alice", 306).await;
    let (status, body) = h
        .post(
            "alice",
            &format!("/api/orders/{id}/pay"),
            json!({"channel": "wechat"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("upstream_unavailable"))
    );
}

// ---------------------------------------------------------------------------------------
// Pay results: mark_paid against the database, and through the broker
// ---------------------------------------------------------------------------------------

/// The timeout an order inserted straight through the store schedules.
fn schedule(event_id: i64) -> ScheduleTimeout {
    ScheduleTimeout {
        event_id: EventId::from(event_id),
        delay_queue: "order.timeout.delay.1800s".into(),
    }
}

/// A migrated database with one unpaid order, without HTTP or broker.
async fn db_with_order(biz: i64) -> (TestDatabase, AsyncPgConnection, store::Order) {
    let db = TestDatabase::create("order").await.unwrap();
    paywire_platform::db::migrate(&db.url, vec![paywire_messaging::MIGRATIONS, MIGRATIONS])
        .await
        .unwrap();
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    let order = store::insert_course_order(
        &mut conn,
        &store::NewCourseOrder {
            id: OrderId::from(1000 + biz),
            item_id: 2000 + biz,
            user_id: UserId::parse("alice").unwrap(),
            choose_course_id: ChooseCourseId::from(biz),
            course_id: CourseId::from(55),
            course_name: "Rust for payments".into(),
            price: Fen::new(PRICE).unwrap(),
        },
        &schedule(3000 + biz),
    )
    .await
    .unwrap()
    .expect("fresh database");
    (db, conn, order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_paid_applies_once_and_redeliveries_are_no_ops() {
    let (_db, mut conn, order) = db_with_order(1).await;
    let event = pay_result(&order, 50);
    assert_eq!(
        mark_paid(&mut conn, &event).await.unwrap(),
        MarkPaid::Applied
    );
    let paid = store::find(&mut conn, order.id).await.unwrap().unwrap();
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(paid.pay_no, Some(PayNo::from(50)));
    assert_eq!(paid.channel, Some(PayChannel::Wechat));
    assert_eq!(paid.channel_trade_no.as_deref(), Some("4200050"));
    assert_eq!(paid.paid_at, Some(event.paid_at));

    assert_eq!(
        mark_paid(&mut conn, &event).await.unwrap(),
        MarkPaid::AlreadyApplied
    );
    let again = store::find(&mut conn, order.id).await.unwrap().unwrap();
    assert_eq!(again.pay_no, paid.pay_no);
    assert_eq!(again.updated_at, paid.updated_at, "a no-op writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatching_pay_results_are_refused_and_change_nothing() {
    let (_db, mut conn, order) = db_with_order(2).await;
    let mut wrong_amount = pay_result(&order, 51);
    wrong_amount.amount_fen = Fen::new(1).unwrap();
    let mut wrong_user = pay_result(&order, 52);
    wrong_user.user_id = UserId::parse("mallory").unwrap();
    let mut wrong_biz = pay_result(&order, 53);
    wrong_biz.biz_id = "999".into();
    for event in [wrong_amount, wrong_user, wrong_biz] {
        let err = mark_paid(&mut conn, &event).await.unwrap_err();
        assert!(matches!(err, OrderError::PayResultMismatch { .. }), "{err}");
        assert!(!err.is_transient(), "a mismatch is never retried");
    }
    let unchanged = store::find(&mut conn, order.id).await.unwrap().unwrap();
    assert_eq!(unchanged, order);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_orders_stay_closed_and_second_payments_are_stray() {
    let (_db, mut conn, order) = db_with_order(3).await;
    assert!(store::close(&mut conn, order.id).await.unwrap());
    let outcome = mark_paid(&mut conn, &pay_result(&order, 60)).await.unwrap();
    assert_eq!(
        outcome,
        MarkPaid::Stray {
            status: OrderStatus::Closed
        }
    );
    let closed = store::find(&mut conn, order.id).await.unwrap().unwrap();
    assert_eq!(closed.status, OrderStatus::Closed);
    assert_eq!(closed.pay_no, None);

    let (_db2, mut conn, order) = db_with_order(4).await;
    assert_eq!(
        mark_paid(&mut conn, &pay_result(&order, 61)).await.unwrap(),
        MarkPaid::Applied
    );
    // A second attempt of the same order was paid too: money to refund, not to apply.
    assert_eq!(
        mark_paid(&mut conn, &pay_result(&order, 62)).await.unwrap(),
        MarkPaid::Stray {
            status: OrderStatus::Paid
        }
    );
    let paid = store::find(&mut conn, order.id).await.unwrap().unwrap();
    assert_eq!(paid.pay_no, Some(PayNo::from(61)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_results_for_unknown_orders_are_errors() {
    let (_db, mut conn, order) = db_with_order(5).await;
    let mut event = pay_result(&order, 70);
    event.order_id = OrderId::from(424242);
    let err = mark_paid(&mut conn, &event).await.unwrap_err();
    assert!(matches!(err, OrderError::OrderNotFound(id) if id == event.order_id));
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_results_from_the_broker_mark_orders_paid() {
    let h = Harness::start().await;
    let id = h.order_for("alice", 401).await;
    let mut conn = h.conn().await;
    let order = store::find(&mut conn, id).await.unwrap().unwrap();
    let event = pay_result(&order, 80).into_envelope(EventId::from(9001), Utc::now());
    let body = serde_json::to_vec(&event).unwrap();
    h.vhost
        .publish(PAY_RESULT_EXCHANGE, "9001", PayResultV1::EVENT_TYPE, &body)
        .await;
    // Redelivered by an at-least-once relay: applied once, nothing parked.
    h.vhost
        .publish(PAY_RESULT_EXCHANGE, "9001", PayResultV1::EVENT_TYPE, &body)
        .await;

    let paid = eventually(Duration::from_secs(20), || async {
        let (_, body) = h.get("alice", &format!("/api/orders/{id}")).await;
        (body["status"] == "paid").then_some(body)
    })
    .await
    .unwrap();
    assert_eq!(paid["pay_no"], "80");

    // Garbage is parked in the dead-letter queue, not retried forever.
    h.vhost
        .publish(PAY_RESULT_EXCHANGE, "9002", "pay.result.v1", b"{not json")
        .await;
    let dlq = dead_letter_queue_name(ORDER_PAY_RESULT_QUEUE);
    eventually(Duration::from_secs(20), || async {
        (h.vhost.queue_depth(&dlq).ok()? == 1).then_some(())
    })
    .await
    .unwrap();
    let still = store::find(&mut conn, id).await.unwrap().unwrap();
    assert_eq!(still.pay_no, Some(PayNo::from(80)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_insert_for_the_same_record_yields_to_the_first() {
    let (_db, mut conn, order) = db_with_order(6).await;
    let loser = store::NewCourseOrder {
        id: OrderId::from(77_777),
        item_id: 88_888,
        user_id: UserId::parse("alice").unwrap(),
        choose_course_id: ChooseCourseId::from(6),
        course_id: CourseId::from(55),
        course_name: "Rust for payments".into(),
        price: Fen::new(1).unwrap(),
    };
    assert!(
        store::insert_course_order(&mut conn, &loser, &schedule(99_999))
            .await
            .unwrap()
            .is_none()
    );
    // Neither the order nor its item was written; the winner is untouched.
    assert!(store::find(&mut conn, loser.id).await.unwrap().is_none());
    assert!(store::items(&mut conn, loser.id).await.unwrap().is_empty());
    let winner = store::find_open_by_biz(&mut conn, BizType::Course, "6")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(winner, order);
}
