//! A fake platform for the demo's tests: the public endpoints of learning-center, order
//! and the sandbox wallet on one port, following the documented contract.

use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, web};
use paywire_platform::auth::Authenticator;
use paywire_platform::config::{AuthSettings, HttpSettings};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything works; the order reads `unpaid` once after the wallet paid.
    Happy,
    /// The catalogue has only free courses.
    NoPaidCourse,
    /// choose-course answers 409 with an error body.
    ChooseConflict,
    /// The wallet pays but no pay result ever arrives.
    NeverPaid,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    wallet_paid: bool,
    order_reads: u32,
    /// Every user the bearer tokens named, in request order.
    users: Vec<String>,
}

type Shared = web::Data<Mutex<State>>;

pub struct Fake {
    /// The public listener: the APIs `cargo xtask demo` calls.
    pub base_url: String,
    /// The internal listener: health and metrics.
    pub internal_url: String,
    state: Arc<Mutex<State>>,
    handles: [actix_web::dev::ServerHandle; 2],
}

impl Fake {
    pub fn users(&self) -> Vec<String> {
        self.state.lock().unwrap().users.clone()
    }

    pub async fn stop(self) {
        for handle in &self.handles {
            handle.stop(false).await;
        }
    }
}

pub fn start(mode: Mode) -> Fake {
    let state = web::Data::new(Mutex::new(State {
        mode,
        wallet_paid: false,
        order_reads: 0,
        users: Vec::new(),
    }));
    let shared = state.clone().into_inner();
    let listeners = paywire_platform::http::bind(&HttpSettings::on_port(0)).unwrap();
    let port = listeners.public.local_addr().unwrap().port();
    let internal_port = listeners.internal.local_addr().unwrap().port();
    let auth = web::Data::new(Authenticator::new(&AuthSettings::default()).unwrap());
    let routes = paywire_platform::http::public_only(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state.clone())
            .app_data(auth.clone())
            .route("/api/learning/courses", web::get().to(courses))
            .route("/api/learning/choose-course", web::post().to(choose))
            .route(
                "/api/learning/learn-status/{course_id}",
                web::get().to(learn_status),
            )
            .route("/api/orders", web::post().to(create_order))
            .route("/api/orders/{order_id}", web::get().to(get_order))
            .route("/api/orders/{order_id}/pay", web::post().to(pay))
            .route("/sandbox/wallet/pay", web::post().to(wallet_pay));
    });
    let servers = paywire_platform::http::serve(listeners, 1, routes).unwrap();
    let handles = [servers.public.handle(), servers.internal.handle()];
    tokio::spawn(servers.public);
    tokio::spawn(servers.internal);
    Fake {
        base_url: format!("http://127.0.0.1:{port}"),
        internal_url: format!("http://127.0.0.1:{internal_port}"),
        state: shared,
        handles,
    }
}

/// Verifies the bearer token like the real services and records its user.
fn authorized(req: &HttpRequest, state: &Shared) -> bool {
    let auth = req.app_data::<web::Data<Authenticator>>().unwrap();
    let user = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| auth.verify(token).ok());
    match user {
        Some(user) => {
            state.lock().unwrap().users.push(user.to_string());
            true
        }
        None => false,
    }
}

async fn courses(req: HttpRequest, state: Shared) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut list = vec![
        json!({"id": "11", "name": "Intro", "charge": "free", "price_fen": 0, "valid_days": 365}),
    ];
    if state.lock().unwrap().mode != Mode::NoPaidCourse {
        list.push(json!({"id": "12", "name": "Rust", "charge": "paid", "price_fen": 9900, "valid_days": 365}));
    }
    HttpResponse::Ok().json(list)
}

async fn choose(req: HttpRequest, state: Shared, body: web::Json<Value>) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    if state.lock().unwrap().mode == Mode::ChooseConflict {
        return HttpResponse::Conflict()
            .json(json!({"error": "course_unavailable", "message": "no longer sold"}));
    }
    assert_eq!(body["course_id"], "12");
    HttpResponse::Ok().json(json!({
        "choose_course_id": "21", "status": "awaiting_payment",
        "learn_status": "not_chosen_or_unpaid"
    }))
}

async fn create_order(req: HttpRequest, state: Shared, body: web::Json<Value>) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    assert_eq!(body.0, json!({"biz_type": "course", "biz_id": "21"}));
    HttpResponse::Created().json(json!({"order_id": "31", "status": "unpaid", "total_fen": 9900}))
}

async fn pay(req: HttpRequest, state: Shared, body: web::Json<Value>) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    assert_eq!(req.match_info().get("order_id"), Some("31"));
    HttpResponse::Ok().json(json!({
        "pay_no": "41", "channel": body["channel"], "code_url": "weixin://wxpay/bizpayurl?pr=41",
        "expires_at": "2030-01-01T00:00:00Z"
    }))
}

async fn wallet_pay(state: Shared, body: web::Json<Value>) -> HttpResponse {
    assert_eq!(body["code"], "weixin://wxpay/bizpayurl?pr=41");
    state.lock().unwrap().wallet_paid = true;
    HttpResponse::Ok().json(json!({"paid": true}))
}

async fn get_order(req: HttpRequest, state: Shared) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut s = state.lock().unwrap();
    s.order_reads += 1;
    // The first read after payment still sees `unpaid`: the pay result is asynchronous.
    let paid = s.mode == Mode::Happy && s.wallet_paid && s.order_reads > 1;
    let status = if paid { "paid" } else { "unpaid" };
    HttpResponse::Ok().json(json!({"order_id": "31", "status": status, "total_fen": 9900}))
}

async fn learn_status(req: HttpRequest, state: Shared) -> HttpResponse {
    if !authorized(&req, &state) {
        return HttpResponse::Unauthorized().finish();
    }
    assert_eq!(req.match_info().get("course_id"), Some("12"));
    HttpResponse::Ok().json(json!({"learn_status": "can_learn"}))
}
