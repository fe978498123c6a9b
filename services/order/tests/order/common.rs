//! Shared by the order service's black-box suites: the app runs in-process on port 0
//! against its own database and RabbitMQ vhost. The learning center and the payment
//! gateway are small actix servers started here that answer their internal endpoints
//! (HTTP peers, not stand-ins for a database); the real services are wired together in the
//! end-to-end suite.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use order::Settings;
use order::store;
use paywire_contracts::PayResultV1;
use paywire_domain::{OrderId, PayChannel, PayNo, UserId};
use paywire_platform::auth::{Authenticator, SERVICE_TOKEN_HEADER};
use paywire_platform::config::DEV_SERVICE_TOKEN;
use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::{Value, json};

pub const PRICE: i64 = 12_345;

// ---------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------

pub fn has_service_token(req: &HttpRequest) -> bool {
    req.headers()
        .get(SERVICE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        == Some(DEV_SERVICE_TOKEN)
}

pub fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"error": "unauthorized", "message": "token"}))
}

/// Starts an actix server on a free port; returns its base URL.
pub fn start_peer<F>(configure: F) -> String
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

/// The learning center's `GET /internal/choose-courses/{id}`.
#[derive(Clone, Default)]
pub struct LearningCenter {
    pub records: Arc<Mutex<HashMap<String, Value>>>,
    pub failing: Arc<AtomicBool>,
    /// The next this many calls answer `503 database_unavailable` (its database restarts).
    pub database_away: Arc<AtomicI64>,
    pub calls: Arc<AtomicI64>,
}

impl LearningCenter {
    pub fn add(&self, id: i64, user: &str, status: &str) {
        self.records.lock().unwrap().insert(
            id.to_string(),
            json!({
                "choose_course_id": id.to_string(), "user_id": user, "course_id": "55",
                "course_name": "Rust for payments", "price_fen": PRICE, "status": status,
            }),
        );
    }

    pub fn start(&self) -> String {
        let state = self.clone();
        start_peer(move |cfg| {
            cfg.app_data(web::Data::new(state.clone())).route(
                "/internal/choose-courses/{id}",
                web::get().to(
                    |req: HttpRequest, lc: web::Data<LearningCenter>, id: web::Path<String>| async move {
                        lc.calls.fetch_add(1, Ordering::SeqCst);
                        if !has_service_token(&req) {
                            return unauthorized();
                        }
                        if lc.failing.load(Ordering::SeqCst) {
                            return HttpResponse::InternalServerError().finish();
                        }
                        if lc.database_away.fetch_sub(1, Ordering::SeqCst) > 0 {
                            return HttpResponse::ServiceUnavailable()
                                .insert_header(("Retry-After", "1"))
                                .json(json!({"error": "database_unavailable", "message": "retry later"}));
                        }
                        match lc.records.lock().unwrap().get(id.as_str()) {
                            Some(r) => HttpResponse::Ok().json(r),
                            None => HttpResponse::NotFound()
                                .json(json!({"error": "not_found", "message": "no such record"})),
                        }
                    },
                ),
            );
        })
    }
}

/// The payment gateway's `POST /internal/payments`.
#[derive(Clone, Default)]
pub struct Gateway {
    pub requests: Arc<Mutex<Vec<Value>>>,
    /// Orders the gateway knows paid: refuses new attempts, `sync` says paid.
    pub paid_orders: Arc<Mutex<HashSet<String>>>,
    /// Orders the gateway closed on timeout: refuses new attempts with `order_closed`.
    pub closed_orders: Arc<Mutex<HashSet<String>>>,
    /// Answers of the next `payments/close` calls, in order; once used up, `Paid` for the
    /// orders in `paid_orders` and `Closed` for the others.
    pub close_script: Arc<Mutex<VecDeque<CloseAnswer>>>,
    pub close_calls: Arc<Mutex<Vec<String>>>,
    pub sync_calls: Arc<Mutex<Vec<String>>>,
    /// `payments/sync` answers 503 `channel_unavailable`.
    pub channel_down: Arc<AtomicBool>,
    /// `POST /internal/refunds` calls: the `Idempotency-Key` header and the body.
    pub refund_calls: Arc<Mutex<Vec<RefundCall>>>,
    /// `POST /internal/refunds` answers 409 `refund_not_allowed`.
    pub refuse_refunds: Arc<AtomicBool>,
}

/// A `POST /internal/refunds` call: its `Idempotency-Key` header and its body.
pub type RefundCall = (Option<String>, Value);

/// What the gateway stand-in answers to `POST /internal/orders/{id}/payments/close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAnswer {
    Closed,
    Paid,
    /// 503 `channel_unavailable`.
    Unavailable,
}

pub fn channel_unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .json(json!({"error": "channel_unavailable", "message": "channel timed out"}))
}

impl Gateway {
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    pub fn close_calls(&self) -> Vec<String> {
        self.close_calls.lock().unwrap().clone()
    }

    pub fn sync_calls(&self) -> Vec<String> {
        self.sync_calls.lock().unwrap().clone()
    }

    pub fn refund_calls(&self) -> Vec<RefundCall> {
        self.refund_calls.lock().unwrap().clone()
    }

    /// Like the gateway: 201 for a new idempotency key, 200 with the same refund for a
    /// key seen before.
    pub async fn refund(
        req: HttpRequest,
        gw: web::Data<Gateway>,
        body: web::Json<Value>,
    ) -> HttpResponse {
        if !has_service_token(&req) {
            return unauthorized();
        }
        let key = req
            .headers()
            .get("Idempotency-Key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = body.into_inner();
        let seen = {
            let mut calls = gw.refund_calls.lock().unwrap();
            let seen = calls.iter().any(|(k, _)| k.is_some() && *k == key);
            calls.push((key, body.clone()));
            seen
        };
        if gw.refuse_refunds.load(Ordering::SeqCst) {
            return HttpResponse::Conflict().json(
                json!({"error": "refund_not_allowed", "message": "payment 80 is refunded, not paid"}),
            );
        }
        let view = json!({
            "refund_no": "9900", "pay_no": body["pay_no"], "order_id": body["order_id"],
            "channel": "wechat", "amount_fen": body["amount_fen"], "reason": "requested",
            "status": if seen { "succeeded" } else { "pending" },
            "request_id": null, "refunded_at": null,
        });
        if seen {
            HttpResponse::Ok().json(view)
        } else {
            HttpResponse::Created().json(view)
        }
    }

    pub fn script_close(&self, answers: &[CloseAnswer]) {
        self.close_script.lock().unwrap().extend(answers);
    }

    pub async fn create_payment(
        req: HttpRequest,
        gw: web::Data<Gateway>,
        body: web::Json<Value>,
    ) -> HttpResponse {
        if !has_service_token(&req) {
            return unauthorized();
        }
        let body = body.into_inner();
        gw.requests.lock().unwrap().push(body.clone());
        let order_id = body["order_id"].as_str().unwrap_or_default().to_owned();
        if gw.paid_orders.lock().unwrap().contains(&order_id) {
            return HttpResponse::Conflict()
                .json(json!({"error": "order_already_paid", "message": "paid"}));
        }
        if gw.closed_orders.lock().unwrap().contains(&order_id) {
            return HttpResponse::Conflict()
                .json(json!({"error": "order_closed", "message": "closed"}));
        }
        HttpResponse::Created().json(json!({
            "pay_no": "777", "order_id": order_id, "channel": body["channel"],
            "code_url": format!("weixin://wxpay/bizpayurl?pr={order_id}"),
            "expires_at": "2030-01-01T00:15:00Z", "status": "unpaid",
        }))
    }

    pub async fn sync(
        req: HttpRequest,
        gw: web::Data<Gateway>,
        id: web::Path<String>,
    ) -> HttpResponse {
        if !has_service_token(&req) {
            return unauthorized();
        }
        let id = id.into_inner();
        gw.sync_calls.lock().unwrap().push(id.clone());
        if gw.channel_down.load(Ordering::SeqCst) {
            return channel_unavailable();
        }
        if gw.paid_orders.lock().unwrap().contains(&id) {
            HttpResponse::Ok().json(json!({"order_id": id, "paid": true, "pay_no": "777"}))
        } else {
            HttpResponse::Ok().json(json!({"order_id": id, "paid": false, "pay_no": null}))
        }
    }

    pub async fn close(
        req: HttpRequest,
        gw: web::Data<Gateway>,
        id: web::Path<String>,
    ) -> HttpResponse {
        if !has_service_token(&req) {
            return unauthorized();
        }
        let id = id.into_inner();
        gw.close_calls.lock().unwrap().push(id.clone());
        let scripted = gw.close_script.lock().unwrap().pop_front();
        let answer = scripted.unwrap_or_else(|| {
            if gw.paid_orders.lock().unwrap().contains(&id) {
                CloseAnswer::Paid
            } else {
                CloseAnswer::Closed
            }
        });
        match answer {
            CloseAnswer::Closed => {
                gw.closed_orders.lock().unwrap().insert(id.clone());
                HttpResponse::Ok()
                    .json(json!({"order_id": id, "outcome": "closed", "pay_no": null}))
            }
            CloseAnswer::Paid => {
                HttpResponse::Ok().json(json!({"order_id": id, "outcome": "paid", "pay_no": "777"}))
            }
            CloseAnswer::Unavailable => channel_unavailable(),
        }
    }

    pub fn start(&self) -> String {
        let state = self.clone();
        start_peer(move |cfg| {
            cfg.app_data(web::Data::new(state.clone()))
                .route(
                    "/internal/payments",
                    web::post().to(Gateway::create_payment),
                )
                .route(
                    "/internal/orders/{order_id}/payments/sync",
                    web::post().to(Gateway::sync),
                )
                .route(
                    "/internal/orders/{order_id}/payments/close",
                    web::post().to(Gateway::close),
                )
                .route("/internal/refunds", web::post().to(Gateway::refund));
        })
    }
}

/// A port nothing listens on.
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

pub struct Harness {
    /// The public listener (the students' API).
    pub base: String,
    /// The internal listener (`/internal/*`, health, metrics).
    pub internal: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    pub vhost: TestVhost,
    pub lc: LearningCenter,
    pub gw: Gateway,
    pub auth: Authenticator,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDatabase::create("order").await.unwrap();
        let vhost = TestVhost::create().unwrap();
        let lc = LearningCenter::default();
        let gw = Gateway::default();
        let mut s = Settings::default();
        s.http.port = 0;
        s.http.workers = 1;
        s.database.url = db.url.clone();
        s.database.max_connections = 4;
        s.amqp.url = vhost.amqp_url.clone();
        s.upstream.learning_center_url = lc.start();
        s.upstream.payment_gateway_url = gw.start();
        s.upstream.timeout_ms = 3000;
        tweak(&mut s);
        let auth = Authenticator::new(&s.auth).unwrap();
        let app = order::build(s).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let internal = format!("http://127.0.0.1:{}", app.internal_port());
        tokio::spawn(app.run_until_stopped());
        Self {
            base,
            internal,
            client: reqwest::Client::new(),
            db,
            vhost,
            lc,
            gw,
            auth,
        }
    }

    pub fn token(&self, user: &str) -> String {
        self.auth
            .issue(&UserId::parse(user).unwrap(), chrono::Duration::minutes(5))
    }

    pub async fn post(&self, user: &str, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, user: &str, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn create(&self, user: &str, biz_id: &str) -> (u16, Value) {
        self.post(
            user,
            "/api/orders",
            json!({"biz_type": "course", "biz_id": biz_id}),
        )
        .await
    }

    /// A new unpaid order of `user` for choose-course `biz`.
    pub async fn order_for(&self, user: &str, biz: i64) -> OrderId {
        self.lc.add(biz, user, "awaiting_payment");
        let (status, body) = self.create(user, &biz.to_string()).await;
        assert_eq!(status, 201, "{body}");
        body["order_id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db.url).await.unwrap()
    }
}

pub fn pay_result(order: &store::Order, pay_no: i64) -> PayResultV1 {
    PayResultV1 {
        pay_no: PayNo::from(pay_no),
        order_id: order.id,
        user_id: order.user_id.clone(),
        biz_type: order.biz_type,
        biz_id: order.biz_id.clone(),
        channel: PayChannel::Wechat,
        amount_fen: order.total,
        channel_trade_no: format!("42000{pay_no}"),
        paid_at: "2026-11-22T10:00:00Z".parse().unwrap(),
    }
}
