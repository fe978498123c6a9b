//! Black-box tests of the learning center: the app runs in-process on port 0 against its own
//! database and RabbitMQ vhost. Pay-result logic is also exercised directly on a database
//! (`apply_pay_result`), and once end to end through the broker.

use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use learning_center::error::LearningError;
use learning_center::pay_result::{Applied, apply_pay_result};
use learning_center::refund_result::{RefundApplied, apply_refund_result};
use learning_center::store;
use learning_center::{MIGRATIONS, Settings};
use paywire_contracts::{PayResultV1, RefundResultV1};
use paywire_domain::topology::{LEARNING_PAY_RESULT_QUEUE, PAY_RESULT_EXCHANGE};
use paywire_domain::{
    BizType, ChooseCourseId, ChooseCourseStatus, CourseId, EnrolmentStatus, EventId, Fen, OrderId,
    PayChannel, PayNo, RefundNo, RefundReason, RefundStatus, UserId,
};
use paywire_messaging::topology::dead_letter_queue_name;
use paywire_platform::auth::{Authenticator, SERVICE_TOKEN_HEADER};
use paywire_platform::config::{AuthSettings, DEV_SERVICE_TOKEN};
use paywire_platform::db::Transience;
use paywire_testkit::postgres::{PrivatePostgres, Shutdown};
use paywire_testkit::{TestDatabase, TestVhost, eventually};
use secrecy::SecretString;
use serde_json::{Value, json};

const FREE: &str = "1001";
const PAID: &str = "1002";
const PAID_PRICE: i64 = 19_900;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

struct Harness {
    /// The public listener (the students' API).
    base: String,
    /// The internal listener (`/internal/*`, health, metrics).
    internal_base: String,
    client: reqwest::Client,
    db: TestDatabase,
    vhost: TestVhost,
    auth: Authenticator,
}

impl Harness {
    async fn start() -> Self {
        let db = TestDatabase::create("learning").await.unwrap();
        Self::start_with(db, TestVhost::create().unwrap(), |_| {}).await
    }

    /// On `db` (e.g. on a private server), with settings adjusted by `tune`.
    async fn start_with(
        db: TestDatabase,
        vhost: TestVhost,
        tune: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut s = Settings::default();
        s.http.port = 0;
        s.http.workers = 1;
        s.database.url = db.url.clone();
        s.database.max_connections = 8;
        s.amqp.url = vhost.amqp_url.clone();
        tune(&mut s);
        let auth = Authenticator::new(&s.auth).unwrap();
        let app = learning_center::build(s).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let internal_base = format!("http://127.0.0.1:{}", app.internal_port());
        tokio::spawn(app.run_until_stopped());
        Self {
            base,
            internal_base,
            client: reqwest::Client::new(),
            db,
            vhost,
            auth,
        }
    }

    fn token(&self, user: &str) -> String {
        self.auth
            .issue(&UserId::parse(user).unwrap(), chrono::Duration::minutes(5))
    }

    async fn answer(resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, user: &str, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap();
        Self::answer(resp).await
    }

    async fn choose(&self, user: &str, course_id: &str) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/api/learning/choose-course", self.base))
            .bearer_auth(self.token(user))
            .json(&json!({ "course_id": course_id }))
            .send()
            .await
            .unwrap();
        Self::answer(resp).await
    }

    async fn learn_status(&self, user: &str, course_id: &str) -> String {
        let (status, body) = self
            .get(user, &format!("/api/learning/learn-status/{course_id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["course_id"], course_id);
        body["learn_status"].as_str().unwrap().to_owned()
    }

    async fn internal(&self, id: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(format!(
            "{}/internal/choose-courses/{id}",
            self.internal_base
        ));
        if let Some(token) = token {
            req = req.header(SERVICE_TOKEN_HEADER, token);
        }
        Self::answer(req.send().await.unwrap()).await
    }

    async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db.url).await.unwrap()
    }
}

/// A migrated database without the app, for the pay-result logic alone.
async fn db_only() -> (TestDatabase, AsyncPgConnection) {
    let db = TestDatabase::create("learning_db").await.unwrap();
    paywire_platform::db::migrate(&db.url, vec![paywire_messaging::MIGRATIONS, MIGRATIONS])
        .await
        .unwrap();
    let conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    (db, conn)
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    paywire_testkit::count(conn, sql).await.unwrap()
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap();
}

fn user(u: &str) -> UserId {
    UserId::parse(u).unwrap()
}

/// A pending choice of the paid course 1002 for `student`, written through the store.
async fn pending_choice(conn: &mut AsyncPgConnection, id: i64, student: &str) -> ChooseCourseId {
    let course = store::find_course(conn, CourseId::from(1002))
        .await
        .unwrap()
        .unwrap();
    store::insert_pending(conn, ChooseCourseId::from(id), &user(student), &course)
        .await
        .unwrap()
        .unwrap()
        .id
}

fn pay_result(choice: ChooseCourseId, student: &str, amount: i64) -> PayResultV1 {
    PayResultV1 {
        pay_no: PayNo::from(700 + choice.get()),
        order_id: OrderId::from(800 + choice.get()),
        user_id: user(student),
        biz_type: BizType::Course,
        biz_id: choice.to_string(),
        channel: PayChannel::Wechat,
        amount_fen: Fen::new(amount).unwrap(),
        channel_trade_no: format!("42000{choice}"),
        paid_at: "2026-11-22T10:00:00Z".parse().unwrap(),
    }
}

// ---------------------------------------------------------------------------------------
// Catalogue
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_is_public_and_lists_the_seeded_courses() {
    let h = Harness::start().await;
    let resp = h
        .client
        .get(format!("{}/api/learning/courses", h.base))
        .send()
        .await
        .unwrap();
    let (status, body) = Harness::answer(resp).await;
    assert_eq!(status, 200, "{body}");
    let courses = body.as_array().unwrap();
    let ids: Vec<&str> = courses.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1001", "1002", "1003", "1004", "1005"]);
    assert_eq!(
        courses[1],
        json!({"id": "1002", "name": "支付系统实战 / Payments in practice", "charge": "paid",
               "price_fen": PAID_PRICE, "valid_days": 365})
    );
    assert_eq!(courses[0]["charge"], "free");
    assert_eq!(courses[0]["price_fen"], 0);
    assert_eq!(courses[4]["price_fen"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_constraints_keep_charge_and_price_consistent() {
    let (_db, mut conn) = db_only().await;
    for bad in [
        "INSERT INTO courses VALUES (9001, 'x', 'free', 100, 30)",
        "INSERT INTO courses VALUES (9002, 'x', 'paid', 0, 30)",
        "INSERT INTO courses VALUES (9003, 'x', 'paid', -1, 30)",
        "INSERT INTO courses VALUES (9004, 'x', 'paid', 100, 0)",
        "INSERT INTO courses VALUES (9005, 'x', 'gift', 100, 30)",
    ] {
        assert!(
            diesel::sql_query(bad).execute(&mut conn).await.is_err(),
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Choosing courses
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_course_enrols_at_once_and_choosing_again_adds_nothing() {
    let h = Harness::start().await;
    assert_eq!(h.learn_status("alice", FREE).await, "not_chosen_or_unpaid");
    let (status, first) = h.choose("alice", FREE).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "chosen");
    assert_eq!(first["learn_status"], "can_learn");
    assert_eq!(first["course_id"], FREE);
    assert_eq!(first["price_fen"], 0);
    assert!(
        first["choose_course_id"].is_string(),
        "ids travel as strings"
    );
    assert_eq!(h.learn_status("alice", FREE).await, "can_learn");

    let (status, again) = h.choose("alice", FREE).await;
    assert_eq!(status, 200);
    assert_eq!(again["choose_course_id"], first["choose_course_id"]);
    assert_eq!(again["learn_status"], "can_learn");

    let mut conn = h.conn().await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM choose_courses").await,
        1
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        1
    );

    let (status, mine) = h.get("alice", "/api/learning/my-courses").await;
    assert_eq!(status, 200);
    let courses = mine["courses"].as_array().unwrap();
    assert_eq!(courses.len(), 1);
    assert_eq!(courses[0]["course_id"], FREE);
    assert_eq!(courses[0]["course_name"], "Rust 入门 / Rust basics");
    assert_eq!(courses[0]["choose_course_id"], first["choose_course_id"]);
    assert_eq!(courses[0]["learn_status"], "can_learn");
    let from: chrono::DateTime<Utc> = courses[0]["valid_from"].as_str().unwrap().parse().unwrap();
    let until: chrono::DateTime<Utc> = courses[0]["valid_until"].as_str().unwrap().parse().unwrap();
    assert_eq!(until - from, chrono::Duration::days(365));
    assert_eq!(mine["awaiting_payment"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_course_awaits_payment_and_repeating_returns_the_same_record() {
    let h = Harness::start().await;
    let (status, first) = h.choose("alice", PAID).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "awaiting_payment");
    assert_eq!(first["learn_status"], "not_chosen_or_unpaid");
    assert_eq!(first["price_fen"], PAID_PRICE);
    let (status, again) = h.choose("alice", PAID).await;
    assert_eq!(status, 200);
    assert_eq!(again["choose_course_id"], first["choose_course_id"]);
    assert_eq!(h.learn_status("alice", PAID).await, "not_chosen_or_unpaid");

    let (_, mine) = h.get("alice", "/api/learning/my-courses").await;
    assert_eq!(mine["courses"], json!([]));
    assert_eq!(
        mine["awaiting_payment"],
        json!([{"choose_course_id": first["choose_course_id"], "course_id": PAID,
                "course_name": "支付系统实战 / Payments in practice", "price_fen": PAID_PRICE}])
    );
    let mut conn = h.conn().await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM choose_courses").await,
        1
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_choices_create_one_record() {
    let h = Harness::start().await;
    for course in [PAID, FREE] {
        let answers = futures::future::join_all(
            (0..8)
                .map(|_| h.choose("alice", course))
                .collect::<Vec<_>>(),
        )
        .await;
        let first = &answers[0].1;
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(body["choose_course_id"], first["choose_course_id"]);
        }
    }
    let mut conn = h.conn().await;
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM choose_courses WHERE course_id = 1002"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM choose_courses WHERE course_id = 1001"
        )
        .await,
        1,
        "losing free choices leave no orphan records"
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_malformed_courses_are_refused() {
    let h = Harness::start().await;
    let (status, body) = h.choose("alice", "999999").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "course_not_found");
    let (status, body) = h.get("alice", "/api/learning/learn-status/999999").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "course_not_found");
    let (status, body) = h.choose("alice", "abc").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_body");
    let (status, body) = h.get("alice", "/api/learning/learn-status/-1").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_path");
    let mut conn = h.conn().await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM choose_courses").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_endpoints_need_a_valid_token() {
    let h = Harness::start().await;
    let foreign = Authenticator::new(&AuthSettings {
        jwt_secret: SecretString::from("someone-elses-key"),
        service_token: SecretString::from(DEV_SERVICE_TOKEN),
        ..AuthSettings::default()
    })
    .unwrap()
    .issue(&user("alice"), chrono::Duration::minutes(5));
    let expired = h.auth.issue(&user("alice"), chrono::Duration::minutes(-10));
    let requests = [
        ("POST", "/api/learning/choose-course"),
        ("GET", "/api/learning/learn-status/1001"),
        ("GET", "/api/learning/my-courses"),
    ];
    for (method, path) in requests {
        for token in [
            None,
            Some("not-a-jwt"),
            Some(foreign.as_str()),
            Some(expired.as_str()),
        ] {
            let url = format!("{}{path}", h.base);
            let mut req = match method {
                "POST" => h.client.post(url).json(&json!({"course_id": FREE})),
                _ => h.client.get(url),
            };
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let (status, body) = Harness::answer(req.send().await.unwrap()).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert_eq!(body["error"], "unauthorized");
        }
    }
    let mut conn = h.conn().await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM choose_courses").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn students_are_independent() {
    let h = Harness::start().await;
    h.choose("alice", FREE).await;
    h.choose("alice", PAID).await;
    assert_eq!(h.learn_status("alice", FREE).await, "can_learn");
    assert_eq!(h.learn_status("bob", FREE).await, "not_chosen_or_unpaid");
    let (_, mine) = h.get("bob", "/api/learning/my-courses").await;
    assert_eq!(mine, json!({"courses": [], "awaiting_payment": []}));
    // Bob's own pending choice is his, not Alice's.
    let (_, alice) = h.choose("alice", PAID).await;
    let (_, bob) = h.choose("bob", PAID).await;
    assert_ne!(alice["choose_course_id"], bob["choose_course_id"]);
}

// ---------------------------------------------------------------------------------------
// Internal API
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_record_needs_the_service_token_and_carries_the_price() {
    let h = Harness::start().await;
    let (_, chosen) = h.choose("alice", PAID).await;
    let id = chosen["choose_course_id"].as_str().unwrap();

    for token in [None, Some("wrong"), Some("")] {
        let (status, body) = h.internal(id, token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"], "unauthorized");
    }
    // A user's JWT is not a service credential.
    let resp = h
        .client
        .get(format!("{}/internal/choose-courses/{id}", h.internal_base))
        .bearer_auth(h.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    let (status, body) = h.internal(id, Some(DEV_SERVICE_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"choose_course_id": id, "user_id": "alice", "course_id": PAID,
               "course_name": "支付系统实战 / Payments in practice", "price_fen": PAID_PRICE,
               "status": "awaiting_payment"})
    );

    let (status, body) = h.internal("123456789", Some(DEV_SERVICE_TOKEN)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "choose_course_not_found");
}

// ---------------------------------------------------------------------------------------
// Pay results
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_result_enrols_once() {
    let (_db, mut conn) = db_only().await;
    let id = pending_choice(&mut conn, 11, "alice").await;
    let event = pay_result(id, "alice", PAID_PRICE);

    let before = Utc::now();
    let applied = apply_pay_result(&mut conn, &event).await.unwrap();
    let Applied::Enrolled {
        choose_course_id,
        valid_until,
    } = applied
    else {
        panic!("expected enrolment, got {applied:?}");
    };
    assert_eq!(choose_course_id, id);
    assert!(valid_until >= before + chrono::Duration::days(365));

    let choice = store::find_choice(&mut conn, id).await.unwrap().unwrap();
    assert_eq!(choice.status, ChooseCourseStatus::Chosen);
    let enrolment = store::find_enrolment(&mut conn, &user("alice"), CourseId::from(1002))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(enrolment.choose_course_id, id);
    assert_eq!(enrolment.valid_until, valid_until);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        1
    );

    // A second application (another relay copy, another consumer instance) is a no-op.
    let again = apply_pay_result(&mut conn, &event).await.unwrap();
    assert_eq!(again, Applied::AlreadyApplied);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        1
    );
    let unchanged = store::find_enrolment(&mut conn, &user("alice"), CourseId::from(1002))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged, enrolment);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_results_that_contradict_the_choice_change_nothing() {
    let (_db, mut conn) = db_only().await;
    let id = pending_choice(&mut conn, 12, "alice").await;

    let wrong_user = pay_result(id, "mallory", PAID_PRICE);
    let err = apply_pay_result(&mut conn, &wrong_user).await.unwrap_err();
    assert!(
        matches!(&err, LearningError::PayResultMismatch { choose_course_id, reason }
            if *choose_course_id == id && reason.contains("mallory")),
        "{err}"
    );
    assert!(!err.is_transient(), "parked, not retried");

    let wrong_amount = pay_result(id, "alice", 1);
    let err = apply_pay_result(&mut conn, &wrong_amount)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LearningError::PayResultMismatch { reason, .. } if reason.contains("amount")),
        "{err}"
    );

    let choice = store::find_choice(&mut conn, id).await.unwrap().unwrap();
    assert_eq!(choice.status, ChooseCourseStatus::AwaitingPayment);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_results_for_unknown_or_malformed_records_are_permanent_errors() {
    let (_db, mut conn) = db_only().await;
    let unknown = pay_result(ChooseCourseId::from(424_242), "alice", PAID_PRICE);
    let err = apply_pay_result(&mut conn, &unknown).await.unwrap_err();
    assert!(
        matches!(err, LearningError::ChooseCourseNotFound(id) if id.get() == 424_242),
        "{err}"
    );
    assert!(!err.is_transient());

    let mut bad = unknown.clone();
    bad.biz_id = "not-an-id".into();
    let err = apply_pay_result(&mut conn, &bad).await.unwrap_err();
    assert!(matches!(err, LearningError::InvalidBizId(_)), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_result_for_a_free_choice_is_not_applied_twice() {
    // A chosen record (free, or already paid) never takes a payment again.
    let h = Harness::start().await;
    let (_, chosen) = h.choose("alice", FREE).await;
    let id: ChooseCourseId = chosen["choose_course_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut conn = h.conn().await;
    let before = store::find_enrolment(&mut conn, &user("alice"), CourseId::from(1001))
        .await
        .unwrap()
        .unwrap();
    let applied = apply_pay_result(&mut conn, &pay_result(id, "alice", 0))
        .await
        .unwrap();
    assert_eq!(applied, Applied::AlreadyApplied);
    let after = store::find_enrolment(&mut conn, &user("alice"), CourseId::from(1001))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, before);
}

// ---------------------------------------------------------------------------------------
// Expiry and renewal
// ---------------------------------------------------------------------------------------

async fn expire(conn: &mut AsyncPgConnection, student: &str, course: &str) {
    exec(
        conn,
        &format!(
            "UPDATE course_tables SET valid_from = now() - interval '400 days', \
             valid_until = now() - interval '1 day' \
             WHERE user_id = '{student}' AND course_id = {course}"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_free_course_is_renewed_by_choosing_it_again() {
    let h = Harness::start().await;
    let (_, first) = h.choose("alice", FREE).await;
    let mut conn = h.conn().await;
    expire(&mut conn, "alice", FREE).await;
    assert_eq!(h.learn_status("alice", FREE).await, "expired");
    let (_, mine) = h.get("alice", "/api/learning/my-courses").await;
    assert_eq!(mine["courses"][0]["learn_status"], "expired");

    let (status, renewed) = h.choose("alice", FREE).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["status"], "chosen");
    assert_eq!(renewed["learn_status"], "can_learn");
    assert_ne!(renewed["choose_course_id"], first["choose_course_id"]);
    assert_eq!(h.learn_status("alice", FREE).await, "can_learn");
    // Renewed in place: still one row, now pointing at the new choice.
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        1
    );
    let enrolment = store::find_enrolment(&mut conn, &user("alice"), CourseId::from(1001))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        enrolment.choose_course_id.to_string(),
        renewed["choose_course_id"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_paid_course_needs_a_new_payment() {
    let h = Harness::start().await;
    let (_, first) = h.choose("alice", PAID).await;
    let first_id: ChooseCourseId = first["choose_course_id"].as_str().unwrap().parse().unwrap();
    let mut conn = h.conn().await;
    apply_pay_result(&mut conn, &pay_result(first_id, "alice", PAID_PRICE))
        .await
        .unwrap();
    assert_eq!(h.learn_status("alice", PAID).await, "can_learn");

    // While it can be learned, choosing again answers the paid record.
    let (_, again) = h.choose("alice", PAID).await;
    assert_eq!(again["choose_course_id"], first["choose_course_id"]);
    assert_eq!(again["status"], "chosen");
    assert_eq!(again["learn_status"], "can_learn");

    expire(&mut conn, "alice", PAID).await;
    assert_eq!(h.learn_status("alice", PAID).await, "expired");
    let (_, renewal) = h.choose("alice", PAID).await;
    assert_eq!(renewal["status"], "awaiting_payment");
    assert_eq!(renewal["learn_status"], "expired");
    assert_ne!(renewal["choose_course_id"], first["choose_course_id"]);
    let renewal_id: ChooseCourseId = renewal["choose_course_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let applied = apply_pay_result(&mut conn, &pay_result(renewal_id, "alice", PAID_PRICE))
        .await
        .unwrap();
    assert!(matches!(applied, Applied::Enrolled { .. }), "{applied:?}");
    assert_eq!(h.learn_status("alice", PAID).await, "can_learn");
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        1
    );
}

// ---------------------------------------------------------------------------------------
// Through the broker
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_results_from_the_broker_enrol_once_and_bad_ones_are_parked() {
    let h = Harness::start().await;
    let (_, chosen) = h.choose("alice", PAID).await;
    let id: ChooseCourseId = chosen["choose_course_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let event = pay_result(id, "alice", PAID_PRICE).into_envelope(EventId::from(9001), Utc::now());
    let body = serde_json::to_vec(&event).unwrap();
    h.vhost
        .publish(PAY_RESULT_EXCHANGE, "9001", PayResultV1::EVENT_TYPE, &body)
        .await;
    // The at-least-once relay may publish it twice: applied once.
    h.vhost
        .publish(PAY_RESULT_EXCHANGE, "9001", PayResultV1::EVENT_TYPE, &body)
        .await;

    eventually(Duration::from_secs(20), || async {
        (h.learn_status("alice", PAID).await == "can_learn").then_some(())
    })
    .await
    .unwrap();
    let (_, mine) = h.get("alice", "/api/learning/my-courses").await;
    assert_eq!(mine["courses"][0]["choose_course_id"], id.to_string());
    assert_eq!(mine["awaiting_payment"], json!([]));

    // Bob's payment claimed by a result naming Mallory, and garbage: both parked.
    let (_, bob) = h.choose("bob", PAID).await;
    let bob_id: ChooseCourseId = bob["choose_course_id"].as_str().unwrap().parse().unwrap();
    let forged =
        pay_result(bob_id, "mallory", PAID_PRICE).into_envelope(EventId::from(9002), Utc::now());
    h.vhost
        .publish(
            PAY_RESULT_EXCHANGE,
            "9002",
            PayResultV1::EVENT_TYPE,
            &serde_json::to_vec(&forged).unwrap(),
        )
        .await;
    h.vhost
        .publish(
            PAY_RESULT_EXCHANGE,
            "9003",
            PayResultV1::EVENT_TYPE,
            b"{not json",
        )
        .await;
    let dlq = dead_letter_queue_name(LEARNING_PAY_RESULT_QUEUE);
    eventually(Duration::from_secs(20), || async {
        (h.vhost.queue_depth(&dlq).ok()? == 2).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(h.learn_status("bob", PAID).await, "not_chosen_or_unpaid");

    let mut conn = h.conn().await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        1
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM processed_messages").await,
        1,
        "only the applied message is recorded; the duplicate was skipped"
    );
}

/// While its PostgreSQL restarts (a private server; the suite's stays up), the service
/// repeats requests inside itself instead of answering 503, for as long as
/// `database.retry_budget_ms` allows; with no budget the same outage is a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_database_restart_are_repeated_inside_the_service() {
    let server = PrivatePostgres::start().await.unwrap();
    let db = TestDatabase::create_on(&server.url(), "learning_outage")
        .await
        .unwrap();
    // The pool gives up on a new connection after 200 ms; only the repeat can wait longer.
    let patient = Harness::start_with(db, TestVhost::create().unwrap(), |s| {
        s.database.connect_patience_ms = 200;
        s.database.retry_budget_ms = 60_000;
    })
    .await;
    let impatient = Harness::start_with(
        TestDatabase::create_on(&server.url(), "learning_outage")
            .await
            .unwrap(),
        TestVhost::create().unwrap(),
        |s| {
            s.database.connect_patience_ms = 200;
            s.database.retry_budget_ms = 0;
        },
    )
    .await;
    assert_eq!(patient.get("s1", "/api/learning/courses").await.0, 200);
    assert_eq!(impatient.get("s1", "/api/learning/courses").await.0, 200);

    server.control().stop(Shutdown::Immediate).await.unwrap();
    let learn_status = format!("/api/learning/learn-status/{FREE}");
    let during = tokio::join!(
        patient.get("s1", "/api/learning/courses"),
        patient.choose("s1", PAID),
        patient.get("s1", "/api/learning/my-courses"),
        patient.get("s1", &learn_status),
        async {
            let refused = impatient.get("s2", "/api/learning/courses").await;
            // Longer than the pool's patience before the server comes back.
            tokio::time::sleep(Duration::from_millis(800)).await;
            server.control().start().await.unwrap();
            refused
        },
    );
    let (courses, chosen, mine, learn, refused) = during;
    assert_eq!(
        (refused.0, refused.1["error"].as_str()),
        (503, Some("database_unavailable")),
        "{refused:?}"
    );
    for (what, (status, body)) in [
        ("courses", &courses),
        ("choose", &chosen),
        ("my-courses", &mine),
        ("learn-status", &learn),
    ] {
        assert_eq!(*status, 200, "{what}: {body}");
    }
    assert_eq!(chosen.1["status"], "awaiting_payment");
    // The choice repeated inside the service exists once.
    let (status, again) = patient.choose("s1", PAID).await;
    assert_eq!(status, 200);
    assert_eq!(again["choose_course_id"], chosen.1["choose_course_id"]);
    let (_, mine) = patient.get("s1", "/api/learning/my-courses").await;
    assert_eq!(
        mine["awaiting_payment"].as_array().map(Vec::len),
        Some(1),
        "{mine}"
    );
    drop((patient, impatient));
    drop(server);
}

// ---------------------------------------------------------------------------------------
// Readiness
// ---------------------------------------------------------------------------------------

impl Harness {
    async fn ready(&self) -> (u16, Option<String>, Value) {
        let resp = self
            .client
            .get(format!("{}/health/ready", self.internal_base))
            .send()
            .await
            .unwrap();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = Self::answer(resp).await;
        (status, retry_after, body)
    }

    /// This instance's listeners as a deployment configures them (`<service> ready`
    /// must ask the internal one).
    fn http_settings(&self) -> paywire_platform::config::HttpSettings {
        let port = |base: &str| base.rsplit(':').next().unwrap().parse().unwrap();
        paywire_platform::config::HttpSettings {
            internal_port: Some(port(&self.internal_base)),
            ..paywire_platform::config::HttpSettings::on_port(port(&self.base))
        }
    }

    /// Polls readiness until it answers `status`; returns the body.
    async fn ready_becomes(&self, status: u16) -> Value {
        paywire_testkit::wait_for(|| async {
            let (got, retry_after, body) = self.ready().await;
            if got != status {
                return None;
            }
            // Every not-ready answer tells the caller when to ask again.
            assert_eq!(retry_after.is_some(), status == 503, "{body}");
            Some(body)
        })
        .await
    }
}

/// Issue 9: the order service's question, health and metrics live on the internal
/// listener only; the students' API on the public one only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_and_metrics_answer_404_on_the_public_listener() {
    let h = Harness::start().await;
    paywire_testkit::listeners::assert_split(
        &h.base,
        &h.internal_base,
        &[("GET", "/internal/choose-courses/1")],
        &[
            ("GET", "/api/learning/courses"),
            ("POST", "/api/learning/choose-course"),
            ("GET", "/api/learning/learn-status/1"),
            ("GET", "/api/learning/my-courses"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_consumers_broker_session() {
    let h = Harness::start().await;
    let body = h.ready_becomes(200).await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["database"], "up", "{body}");
    assert_eq!(body["checks"]["migrations"], "up", "{body}");
    let consumer = format!("consumer:{LEARNING_PAY_RESULT_QUEUE}");
    assert_eq!(body["checks"][&consumer], "up", "{body}");

    // The broker refuses the consumer (permissions withdrawn, connections closed): the
    // instance stops taking traffic and says which part is down, without internals.
    paywire_testkit::rabbitmq::rabbitmqctl(&["clear_permissions", "-p", &h.vhost.name, "guest"])
        .unwrap();
    h.vhost.close_all_connections().unwrap();
    let body = h.ready_becomes(503).await;
    assert_eq!(body["error"], "not_ready", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{consumer} is down")),
        "{message}"
    );
    assert!(!message.contains("amqp://"), "{message}");
    // Liveness is not readiness: the process still answers.
    let live = h
        .client
        .get(format!("{}/health/live", h.internal_base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    // The broker takes it back: so does readiness, by itself.
    paywire_testkit::rabbitmq::rabbitmqctl(&[
        "set_permissions",
        "-p",
        &h.vhost.name,
        "guest",
        ".*",
        ".*",
        ".*",
    ])
    .unwrap();
    let body = h.ready_becomes(200).await;
    assert_eq!(body["checks"][&consumer], "up", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_migrations_of_this_build() {
    // A deployment that starts instances before its `migrate` step has run.
    let db = TestDatabase::create("learning_unmigrated").await.unwrap();
    let url = db.url.clone();
    let h = Harness::start_with(db, TestVhost::create().unwrap(), |s| {
        s.database.migrate = false;
    })
    .await;
    let body = h.ready_becomes(503).await;
    assert_eq!(body["error"], "migrations_pending", "{body}");
    // What a container engine runs (`<service> ready`) says the same with its exit status.
    let probe = paywire_platform::health::probe(&h.http_settings()).await;
    assert!(
        probe
            .unwrap_err()
            .to_string()
            .contains("migrations_pending")
    );

    // Only the messaging tables: still not every migration of this build.
    paywire_platform::db::migrate(&url, vec![paywire_messaging::MIGRATIONS])
        .await
        .unwrap();
    let (status, _, body) = h.ready().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "migrations_pending", "{body}");

    paywire_platform::db::migrate(&url, vec![paywire_messaging::MIGRATIONS, MIGRATIONS])
        .await
        .unwrap();
    let body = h.ready_becomes(200).await;
    assert_eq!(body["checks"]["migrations"], "up", "{body}");
    paywire_platform::health::probe(&h.http_settings())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Refunds (policy: `paywire_domain::EnrolmentStatus`)
// ---------------------------------------------------------------------------------------

/// A succeeded requested refund of the attempt that `pay_result(choice, …)` paid with.
fn refund_result(choice: ChooseCourseId, refund_no: i64, amount: i64) -> RefundResultV1 {
    RefundResultV1 {
        refund_no: RefundNo::from(refund_no),
        pay_no: PayNo::from(700 + choice.get()),
        order_id: OrderId::from(800 + choice.get()),
        channel: PayChannel::Wechat,
        amount_fen: Fen::new(amount).unwrap(),
        reason: RefundReason::Requested.into(),
        status: RefundStatus::Succeeded.into(),
        refunded_at: Some("2026-11-23T10:00:00Z".parse().unwrap()),
    }
}

async fn course_table_status(conn: &mut AsyncPgConnection, student: &str) -> EnrolmentStatus {
    store::find_enrolment(conn, &user(student), CourseId::from(1002))
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_refund_revokes_once_and_the_course_can_be_bought_again() {
    let h = Harness::start().await;
    let (_, first) = h.choose("alice", PAID).await;
    let first_id: ChooseCourseId = first["choose_course_id"].as_str().unwrap().parse().unwrap();
    let mut conn = h.conn().await;
    apply_pay_result(&mut conn, &pay_result(first_id, "alice", PAID_PRICE))
        .await
        .unwrap();
    assert_eq!(h.learn_status("alice", PAID).await, "can_learn");

    let refund = refund_result(first_id, 51, PAID_PRICE);
    assert_eq!(
        apply_refund_result(&mut conn, &refund).await.unwrap(),
        RefundApplied::Revoked {
            choose_course_id: first_id,
            revoked: true
        }
    );
    // The same refund again (a redelivery, or a second copy under another message id).
    assert_eq!(
        apply_refund_result(&mut conn, &refund).await.unwrap(),
        RefundApplied::AlreadyApplied
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_refunds").await,
        1
    );
    let choice = store::find_choice(&mut conn, first_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(choice.status, ChooseCourseStatus::Refunded);
    assert_eq!(
        course_table_status(&mut conn, "alice").await,
        EnrolmentStatus::Revoked
    );
    assert_eq!(h.learn_status("alice", PAID).await, "refunded");
    let (_, mine) = h.get("alice", "/api/learning/my-courses").await;
    assert_eq!(mine["courses"][0]["learn_status"], "refunded", "{mine}");
    assert!(mine["courses"][0]["refunded_at"].is_string(), "{mine}");

    // Choosing again opens a new choice to pay for (a new biz_id, so a new order).
    let (status, again) = h.choose("alice", PAID).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "awaiting_payment");
    assert_eq!(again["learn_status"], "refunded");
    assert_ne!(again["choose_course_id"], first["choose_course_id"]);
    let again_id: ChooseCourseId = again["choose_course_id"].as_str().unwrap().parse().unwrap();
    let applied = apply_pay_result(&mut conn, &pay_result(again_id, "alice", PAID_PRICE))
        .await
        .unwrap();
    assert!(matches!(applied, Applied::Enrolled { .. }), "{applied:?}");
    assert_eq!(h.learn_status("alice", PAID).await, "can_learn");
    assert_eq!(
        course_table_status(&mut conn, "alice").await,
        EnrolmentStatus::Active
    );
    let (_, mine) = h.get("alice", "/api/learning/my-courses").await;
    assert_eq!(mine["courses"][0]["refunded_at"], Value::Null, "{mine}");
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_tables").await,
        1
    );

    // A late refund of the first payment (over its price) leaves the new purchase alone.
    assert_eq!(
        apply_refund_result(&mut conn, &refund_result(first_id, 52, 1))
            .await
            .unwrap(),
        RefundApplied::AlreadyApplied
    );
    assert_eq!(h.learn_status("alice", PAID).await, "can_learn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_refund_keeps_access_until_the_refunds_reach_the_price() {
    let (_db, mut conn) = db_only().await;
    let id = pending_choice(&mut conn, 21, "alice").await;
    apply_pay_result(&mut conn, &pay_result(id, "alice", PAID_PRICE))
        .await
        .unwrap();

    let part = refund_result(id, 61, 5_000);
    assert_eq!(
        apply_refund_result(&mut conn, &part).await.unwrap(),
        RefundApplied::Partial {
            choose_course_id: id,
            refunded: Fen::new(5_000).unwrap()
        }
    );
    assert_eq!(
        apply_refund_result(&mut conn, &part).await.unwrap(),
        RefundApplied::AlreadyApplied,
        "counted once"
    );
    // A failed refund, and a refund of stray money from another attempt: no effect.
    let failed = RefundResultV1 {
        refund_no: RefundNo::from(62),
        status: RefundStatus::Failed.into(),
        refunded_at: None,
        ..refund_result(id, 62, PAID_PRICE)
    };
    let stray = RefundResultV1 {
        pay_no: PayNo::from(999_999),
        reason: RefundReason::DuplicatePayment.into(),
        ..refund_result(id, 63, PAID_PRICE)
    };
    // Even naming the attempt that enrolled: stray money never bought the course.
    let stray_same_attempt = RefundResultV1 {
        reason: RefundReason::OrderClosed.into(),
        ..refund_result(id, 66, PAID_PRICE)
    };
    for ignored in [failed, stray, stray_same_attempt] {
        assert_eq!(
            apply_refund_result(&mut conn, &ignored).await.unwrap(),
            RefundApplied::Ignored
        );
    }
    let choice = store::find_choice(&mut conn, id).await.unwrap().unwrap();
    assert_eq!(choice.status, ChooseCourseStatus::Chosen);
    assert_eq!(
        course_table_status(&mut conn, "alice").await,
        EnrolmentStatus::Active
    );

    // A succeeded refund without its time is malformed: parked, not guessed.
    let untimed = RefundResultV1 {
        refunded_at: None,
        ..refund_result(id, 64, 1)
    };
    let err = apply_refund_result(&mut conn, &untimed).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");

    // The partial refunds that complete the price revoke.
    assert_eq!(
        apply_refund_result(&mut conn, &refund_result(id, 65, PAID_PRICE - 5_000))
            .await
            .unwrap(),
        RefundApplied::Revoked {
            choose_course_id: id,
            revoked: true
        }
    );
    assert_eq!(
        course_table_status(&mut conn, "alice").await,
        EnrolmentStatus::Revoked
    );
    let enrolment = store::find_enrolment(&mut conn, &user("alice"), CourseId::from(1002))
        .await
        .unwrap()
        .unwrap();
    assert!(enrolment.revoked_at.is_some());
    assert_eq!(
        enrolment.learn_status(Utc::now()),
        paywire_domain::LearnStatus::Refunded
    );
    // Statuses outside the machines are refused by the database too.
    assert!(
        diesel::sql_query("UPDATE course_tables SET status = 'gone'")
            .execute(&mut conn)
            .await
            .is_err()
    );
    assert!(
        diesel::sql_query("UPDATE course_tables SET revoked_at = NULL")
            .execute(&mut conn)
            .await
            .is_err(),
        "a revoked row keeps its time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_results_from_the_broker_revoke_once() {
    let h = Harness::start().await;
    let (_, chosen) = h.choose("alice", PAID).await;
    let id: ChooseCourseId = chosen["choose_course_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let paid = pay_result(id, "alice", PAID_PRICE).into_envelope(EventId::from(9101), Utc::now());
    h.vhost
        .publish(
            PAY_RESULT_EXCHANGE,
            "9101",
            PayResultV1::EVENT_TYPE,
            &serde_json::to_vec(&paid).unwrap(),
        )
        .await;
    eventually(Duration::from_secs(20), || async {
        (h.learn_status("alice", PAID).await == "can_learn").then_some(())
    })
    .await
    .unwrap();

    // The same refund result three times: twice under one message id (a relay's
    // republish), once under another (an event written twice).
    let refund = refund_result(id, 71, PAID_PRICE);
    for event_id in [9102, 9102, 9103] {
        let env = refund
            .clone()
            .into_envelope(EventId::from(event_id), Utc::now());
        h.vhost
            .publish(
                PAY_RESULT_EXCHANGE,
                &event_id.to_string(),
                RefundResultV1::EVENT_TYPE,
                &serde_json::to_vec(&env).unwrap(),
            )
            .await;
    }
    let mut conn = h.conn().await;
    eventually(Duration::from_secs(20), || async {
        let mut conn = h.conn().await;
        (count(&mut conn, "SELECT count(*) AS n FROM processed_messages").await == 3).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(h.learn_status("alice", PAID).await, "refunded");
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM course_refunds").await,
        1
    );
    let dlq = dead_letter_queue_name(LEARNING_PAY_RESULT_QUEUE);
    assert_eq!(h.vhost.queue_depth(&dlq).unwrap(), 0);
}
