//! Direct database tests of the shared recording path, the claims, and refund states —
//! no channel involved.

use chrono::{Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payment_gateway::payments::record::record_confirmed;
use payment_gateway::payments::store::{self, NewPayment, PaidEdge};
use payment_gateway::refunds::worker::{RefundApplied, apply_refund_state};
use payment_gateway::refunds::{RefundStatus, store as refund_store};
use payment_gateway::{AppState, ChannelRegistry, MIGRATIONS, PaymentSettings, SweeperSettings};
use paywire_channels::{ConfirmedPayment, RefundState};
use paywire_domain::{
    BizType, Fen, IdGenerator, OrderId, PayChannel, PayNo, PaymentStatus, RefundNo, UserId,
};
use paywire_platform::config::DatabaseSettings;
use paywire_testkit::TestDatabase;

struct Db {
    state: AppState,
    _db: TestDatabase,
}

async fn db() -> Db {
    let db = TestDatabase::create("payment_gateway_store").await.unwrap();
    let mut settings = DatabaseSettings::local("unused");
    settings.url = db.url.clone();
    settings.max_connections = 8;
    let pool =
        paywire_platform::db::prepare(&settings, vec![paywire_messaging::MIGRATIONS, MIGRATIONS])
            .await
            .unwrap();
    Db {
        state: AppState {
            pool,
            channels: ChannelRegistry::default(),
            ids: IdGenerator::new(5).unwrap(),
            payment: PaymentSettings::default(),
            sweeper: SweeperSettings::default(),
            reconciliation: Default::default(),
            retry_budget: std::time::Duration::from_millis(settings.retry_budget_ms),
        },
        _db: db,
    }
}

impl Db {
    async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self._db.url).await.unwrap()
    }

    async fn attempt(&self, order: i64, amount: i64) -> PayNo {
        let now = Utc::now();
        let pay_no: PayNo = self.state.ids.next();
        let new = NewPayment {
            pay_no,
            order_id: OrderId::from(order),
            user_id: UserId::parse("s1").unwrap(),
            biz_type: BizType::Course,
            biz_id: "9".into(),
            channel: PayChannel::Wechat,
            amount: Fen::new(amount).unwrap(),
            description: "course".into(),
            expires_at: now + Duration::minutes(15),
            first_check_at: now - Duration::seconds(1),
        };
        store::insert(&mut self.conn().await, &new, now)
            .await
            .unwrap();
        pay_no
    }

    async fn record(&self, pay_no: PayNo, amount: i64, trade_no: &str) -> String {
        let confirmed = ConfirmedPayment {
            pay_no,
            channel_trade_no: trade_no.into(),
            amount: Fen::new(amount).unwrap(),
            paid_at: Utc::now(),
        };
        let mut conn = self.conn().await;
        let ids = &self.state.ids;
        conn.transaction::<_, payment_gateway::GatewayError, _>(async |conn| {
            record_confirmed(conn, ids, PayChannel::Wechat, &confirmed, Utc::now()).await
        })
        .await
        .unwrap()
        .outcome
        .as_text()
    }

    async fn status(&self, pay_no: PayNo) -> PaymentStatus {
        store::find(&mut self.conn().await, pay_no)
            .await
            .unwrap()
            .unwrap()
            .status
    }

    async fn count(&self, sql: &str) -> i64 {
        paywire_testkit::count(&mut self.conn().await, sql)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_decides_applied_duplicate_stray_and_rejected() {
    let d = db().await;
    let first = d.attempt(1, 800).await;
    let second = d.attempt(1, 800).await;

    assert_eq!(d.record(first, 801, "T1").await, "rejected:amount_mismatch");
    assert_eq!(d.status(first).await, PaymentStatus::Unpaid);
    assert_eq!(
        d.record(PayNo::from(12345), 800, "T1").await,
        "rejected:unknown_pay_no"
    );

    assert_eq!(d.record(first, 800, "T1").await, "applied");
    assert_eq!(d.record(first, 800, "T1").await, "duplicate");
    assert_eq!(
        d.record(first, 800, "T9").await,
        "rejected:trade_no_conflict"
    );
    assert_eq!(d.count("SELECT count(*) AS n FROM outbox").await, 1);

    // The order is settled: money on the other attempt is stray.
    assert_eq!(d.record(second, 800, "T2").await, "stray_payment");
    assert_eq!(d.status(second).await, PaymentStatus::Paid);
    assert_eq!(d.record(second, 800, "T2").await, "duplicate");
    assert_eq!(d.count("SELECT count(*) AS n FROM outbox").await, 1);
    assert_eq!(
        d.count("SELECT count(*) AS n FROM refunds WHERE reason = 'duplicate_payment'")
            .await,
        1
    );

    // A closed attempt of an unsettled order: refunded as order_closed.
    let closed = d.attempt(2, 500).await;
    assert!(
        store::transition(
            &mut d.conn().await,
            closed,
            PaymentStatus::Closed,
            Utc::now()
        )
        .await
        .unwrap()
    );
    assert_eq!(d.record(closed, 500, "T3").await, "stray_payment");
    assert_eq!(
        d.count("SELECT count(*) AS n FROM refunds WHERE reason = 'order_closed'")
            .await,
        1
    );
    // Stray money does not settle the order.
    assert!(
        store::settling_attempt(&mut d.conn().await, OrderId::from(2))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_never_share_an_attempt() {
    let d = db().await;
    for _ in 0..30 {
        d.attempt(3, 100).await;
    }
    let now = Utc::now();
    let claim = || async {
        let mut conn = d.conn().await;
        store::claim_due_checks(&mut conn, now, 7, |_, _| now + Duration::hours(1))
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.pay_no.get())
            .collect::<Vec<_>>()
    };
    let rounds = futures::future::join_all((0..8).map(|_| claim())).await;
    let mut all: Vec<i64> = rounds.into_iter().flatten().collect();
    let claimed = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), claimed, "an attempt was claimed twice");
    assert_eq!(claimed, 30);
    assert_eq!(
        d.count("SELECT count(*) AS n FROM payments WHERE check_attempts = 1")
            .await,
        30
    );
    // Nothing is due any more.
    assert!(claim().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_states_from_the_channel_move_refunds_forward_once() {
    let d = db().await;
    let first = d.attempt(4, 800).await;
    let second = d.attempt(4, 800).await;
    let third = d.attempt(4, 800).await;
    d.record(first, 800, "P1").await;
    d.record(second, 800, "P2").await;
    d.record(third, 800, "P3").await;
    #[derive(diesel::QueryableByName)]
    struct R {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        refund_no: i64,
    }
    let refunds: Vec<R> = diesel::sql_query("SELECT refund_no FROM refunds ORDER BY pay_no")
        .load(&mut d.conn().await)
        .await
        .unwrap();
    let (ok, bad) = (
        RefundNo::from(refunds[0].refund_no),
        RefundNo::from(refunds[1].refund_no),
    );

    let st = &d.state;
    assert_eq!(
        apply_refund_state(st, ok, RefundState::Processing)
            .await
            .unwrap(),
        RefundApplied::Processing
    );
    assert_eq!(
        apply_refund_state(st, ok, RefundState::Processing)
            .await
            .unwrap(),
        RefundApplied::Unchanged
    );
    let done = RefundState::Succeeded {
        channel_refund_id: "50300000001".into(),
        refunded_at: Utc::now(),
    };
    assert_eq!(
        apply_refund_state(st, ok, done.clone()).await.unwrap(),
        RefundApplied::Finished(RefundStatus::Succeeded)
    );
    // A repeated notification changes nothing and announces nothing.
    assert_eq!(
        apply_refund_state(st, ok, done).await.unwrap(),
        RefundApplied::Unchanged
    );
    assert_eq!(d.status(second).await, PaymentStatus::Refunded);

    let failed = RefundState::Failed {
        reason: "ABNORMAL".into(),
    };
    assert_eq!(
        apply_refund_state(st, bad, failed).await.unwrap(),
        RefundApplied::Finished(RefundStatus::Failed)
    );
    assert_eq!(d.status(third).await, PaymentStatus::Paid);
    let stored = refund_store::find(&mut d.conn().await, bad)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, RefundStatus::Failed);
    assert_eq!(stored.last_error.as_deref(), Some("ABNORMAL"));
    assert_eq!(
        apply_refund_state(st, RefundNo::from(1), RefundState::Processing)
            .await
            .unwrap(),
        RefundApplied::Unknown
    );
    assert_eq!(
        d.count("SELECT count(*) AS n FROM outbox WHERE event_type = 'refund.result.v1'")
            .await,
        2
    );
    assert_eq!(
        d.count("SELECT count(*) AS n FROM outbox WHERE event_type = 'pay.result.v1'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_edges_move_only_the_rows_their_declarations_allow() {
    let d = db().await;
    let now = Utc::now();
    let mut conn = d.conn().await;

    // SHOW_CODE: a QR code goes on an unpaid attempt once, never on a closed one.
    let open = d.attempt(7, 500).await;
    assert!(
        store::set_code_url(&mut conn, open, "weixin://a", now)
            .await
            .unwrap()
    );
    assert!(
        !store::set_code_url(&mut conn, open, "weixin://b", now)
            .await
            .unwrap()
    );
    let closed = d.attempt(7, 500).await;
    assert!(
        store::transition(&mut conn, closed, PaymentStatus::Closed, now)
            .await
            .unwrap()
    );
    assert!(
        !store::set_code_url(&mut conn, closed, "weixin://c", now)
            .await
            .unwrap()
    );
    assert_eq!(d.status(closed).await, PaymentStatus::Closed);
    let shown = store::find(&mut conn, open).await.unwrap().unwrap();
    assert_eq!(
        (shown.status, shown.code_url.as_deref()),
        (PaymentStatus::Unpaid, Some("weixin://a"))
    );

    // STRAY_PAID: the ordinary `mark_paid` refuses a closed attempt; the stray path takes it.
    assert!(
        !store::mark_paid(&mut conn, closed, PaidEdge::Settles, "S1", now, now)
            .await
            .unwrap()
    );
    assert!(
        store::mark_paid(&mut conn, closed, PaidEdge::Stray, "S1", now, now)
            .await
            .unwrap()
    );
    assert_eq!(d.status(closed).await, PaymentStatus::Paid);
    assert!(
        !store::mark_paid(&mut conn, closed, PaidEdge::Stray, "S1", now, now)
            .await
            .unwrap()
    );

    // RESEND: only a processing refund goes back to pending.
    let paid = d.attempt(8, 500).await;
    assert_eq!(d.record(paid, 500, "P7").await, "applied");
    let stray = d.attempt(8, 500).await;
    assert_eq!(d.record(stray, 500, "P8").await, "stray_payment");
    let refund = RefundNo::from(
        d.count(&format!(
            "SELECT refund_no AS n FROM refunds WHERE pay_no = {}",
            stray.get()
        ))
        .await,
    );
    let refund_status = async |conn: &mut AsyncPgConnection| {
        refund_store::find(conn, refund)
            .await
            .unwrap()
            .unwrap()
            .status
    };
    assert!(
        !refund_store::back_to_pending(&mut conn, refund, now)
            .await
            .unwrap()
    );
    assert!(
        refund_store::mark_processing(&mut conn, refund, now)
            .await
            .unwrap()
    );
    assert!(
        refund_store::back_to_pending(&mut conn, refund, now)
            .await
            .unwrap()
    );
    assert_eq!(refund_status(&mut conn).await, RefundStatus::Pending);
    assert!(
        refund_store::mark_final(
            &mut conn,
            refund,
            RefundStatus::Failed,
            None,
            None,
            Some("x"),
            now
        )
        .await
        .unwrap()
    );
    assert!(
        !refund_store::back_to_pending(&mut conn, refund, now)
            .await
            .unwrap()
    );
    assert_eq!(refund_status(&mut conn).await, RefundStatus::Failed);
}
