//! The end state, read from the three databases, the broker and the channel sandbox's own
//! records, and the invariants it must satisfy.

use std::collections::{BTreeMap, HashMap};

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct OrderRow {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub pay_no: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PaymentRow {
    pub pay_no: String,
    pub order_id: String,
    pub status: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RefundRow {
    pub pay_no: String,
    pub status: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct EnrolmentRow {
    pub user_id: String,
    pub n: i64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TradeRefund {
    pub amount_fen: i64,
    pub status: String,
}

/// One trade as `GET /sandbox/trades` shows it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Trade {
    pub channel: String,
    pub out_trade_no: String,
    pub amount_fen: i64,
    pub trade_state: String,
    pub pending: bool,
    pub success_time: Option<String>,
    #[serde(default)]
    pub refunds: Vec<TradeRefund>,
}

impl Trade {
    /// The payer's money was taken.
    pub fn paid(&self) -> bool {
        self.success_time.is_some()
    }

    /// All of it went back.
    pub fn fully_refunded(&self) -> bool {
        let back: i64 = self
            .refunds
            .iter()
            .filter(|r| r.status == "SUCCESS" || r.status == "REFUND_SUCCESS")
            .map(|r| r.amount_fen)
            .sum();
        self.paid() && back == self.amount_fen
    }

    pub fn closed(&self) -> bool {
        !self.paid()
            && !self.pending
            && matches!(self.trade_state.as_str(), "CLOSED" | "TRADE_CLOSED")
    }
}

/// Everything the checks look at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub orders: Vec<OrderRow>,
    pub payments: Vec<PaymentRow>,
    pub refunds: Vec<RefundRow>,
    pub enrolments: Vec<EnrolmentRow>,
    pub trades: Vec<Trade>,
    /// Unpublished outbox rows per database.
    pub unpublished: BTreeMap<String, i64>,
    /// Messages per queue of the run's vhost.
    pub queues: Vec<(String, u64)>,
}

/// Counts for the summary table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub paid: usize,
    pub refunded: usize,
    pub closed: usize,
    pub lost: usize,
    pub duplicated: usize,
}

impl Tally {
    /// The summary tables' rows, label and count.
    pub fn rows(&self) -> [(&'static str, usize); 5] {
        [
            ("paid (one order, one enrolment)", self.paid),
            ("refunded", self.refunded),
            ("closed orders", self.closed),
            ("lost", self.lost),
            ("duplicated", self.duplicated),
        ]
    }
}

#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub tally: Tally,
    pub violations: Vec<String>,
}

/// The invariants of the issue, each violation described.
pub fn verify(s: &Snapshot) -> Verdict {
    let mut v = Verdict::default();
    let payments: HashMap<&str, &PaymentRow> =
        s.payments.iter().map(|p| (p.pay_no.as_str(), p)).collect();
    let paid_order_by_pay: HashMap<&str, &OrderRow> = s
        .orders
        .iter()
        .filter(|o| o.status == "paid")
        .filter_map(|o| o.pay_no.as_deref().map(|p| (p, o)))
        .collect();
    let enrolments: HashMap<&str, i64> = s
        .enrolments
        .iter()
        .map(|e| (e.user_id.as_str(), e.n))
        .collect();
    let trades: HashMap<&str, &Trade> = s
        .trades
        .iter()
        .map(|t| (t.out_trade_no.as_str(), t))
        .collect();

    // Every payment the channel took: one paid order with one enrolment, or refunded.
    for t in s.trades.iter().filter(|t| t.paid()) {
        let pay = t.out_trade_no.as_str();
        if !payments.contains_key(pay) {
            v.violations.push(format!(
                "{} trade {pay} is unknown to the gateway",
                t.channel
            ));
        }
        match (paid_order_by_pay.get(pay), t.fully_refunded()) {
            (Some(order), false) => {
                if enrolments.get(order.user_id.as_str()).copied().unwrap_or(0) == 1 {
                    v.tally.paid += 1;
                } else {
                    v.tally.lost += 1;
                    v.violations.push(format!(
                        "order {} paid by {pay} but its student {} is not enrolled exactly once",
                        order.id, order.user_id
                    ));
                }
            }
            (None, true) => {
                v.tally.refunded += 1;
                if !s
                    .refunds
                    .iter()
                    .any(|r| r.pay_no == pay && r.status == "succeeded")
                {
                    v.violations.push(format!(
                        "payment {pay} refunded at the channel without a succeeded refund row"
                    ));
                }
            }
            (Some(order), true) => {
                v.tally.duplicated += 1;
                v.violations.push(format!(
                    "payment {pay} both pays order {} and was refunded",
                    order.id
                ));
            }
            (None, false) => {
                v.tally.lost += 1;
                v.violations.push(format!(
                    "{} payment {pay} ({} fen) neither pays an order nor was refunded (trade {}, refunds {:?})",
                    t.channel, t.amount_fen, t.trade_state, t.refunds
                ));
            }
        }
    }

    let mut paid_per_user: HashMap<&str, usize> = HashMap::new();
    for o in &s.orders {
        match o.status.as_str() {
            "paid" => {
                *paid_per_user.entry(o.user_id.as_str()).or_default() += 1;
                let pay = o.pay_no.as_deref().unwrap_or_default();
                if !trades.get(pay).is_some_and(|t| t.paid()) {
                    v.violations.push(format!(
                        "order {} is paid by {pay}, which the channel never took",
                        o.id
                    ));
                }
            }
            "closed" => {
                v.tally.closed += 1;
                // Closed locally and at the channel (or refunded when money came late).
                for p in s.payments.iter().filter(|p| p.order_id == o.id) {
                    if !matches!(p.status.as_str(), "closed" | "refunded") {
                        v.violations.push(format!(
                            "closed order {} has attempt {} in state {}",
                            o.id, p.pay_no, p.status
                        ));
                    }
                    match trades.get(p.pay_no.as_str()) {
                        Some(t) if t.closed() || t.fully_refunded() => {}
                        Some(t) => v.violations.push(format!(
                            "closed order {}: {} trade {} is {} (pending {})",
                            o.id, t.channel, p.pay_no, t.trade_state, t.pending
                        )),
                        None => {}
                    }
                }
            }
            other => v.violations.push(format!("order {} still {other}", o.id)),
        }
    }
    for (user, n) in &paid_per_user {
        if *n > 1 {
            v.tally.duplicated += 1;
            v.violations
                .push(format!("student {user} has {n} paid orders"));
        }
    }
    for e in &s.enrolments {
        if e.n > 1 {
            v.tally.duplicated += 1;
            v.violations
                .push(format!("student {} enrolled {} times", e.user_id, e.n));
        }
        if !paid_per_user.contains_key(e.user_id.as_str()) {
            v.violations.push(format!(
                "student {} enrolled without a paid order",
                e.user_id
            ));
        }
    }
    for r in &s.refunds {
        if r.status != "succeeded" {
            v.violations.push(format!(
                "refund of {} ({}) ended {}",
                r.pay_no, r.reason, r.status
            ));
        }
    }
    for (db, n) in &s.unpublished {
        if *n != 0 {
            v.violations
                .push(format!("outbox of {db} has {n} unpublished rows"));
        }
    }
    for (queue, n) in &s.queues {
        if *n != 0 {
            v.violations
                .push(format!("queue {queue} holds {n} messages"));
        }
    }
    v
}

#[derive(diesel::QueryableByName)]
struct Json {
    #[diesel(sql_type = Text)]
    j: String,
}

/// Rows of `sql` deserialized through `json_agg`.
pub async fn rows<T: DeserializeOwned>(url: &str, sql: &str) -> anyhow::Result<Vec<T>> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    let q = format!("SELECT coalesce(json_agg(t), '[]'::json)::text AS j FROM ({sql}) t");
    let row: Json = diesel::sql_query(q).get_result(&mut conn).await?;
    Ok(serde_json::from_str(&row.j)?)
}

#[derive(Debug, Deserialize)]
struct Count {
    n: i64,
}

pub async fn count(url: &str, sql: &str) -> anyhow::Result<i64> {
    let r: Vec<Count> = rows(url, sql).await?;
    Ok(r.iter().map(|c| c.n).next().unwrap_or(0))
}

pub const ORDERS_SQL: &str =
    "SELECT id::text AS id, user_id, status, pay_no::text AS pay_no FROM orders";
pub const PAYMENTS_SQL: &str =
    "SELECT pay_no::text AS pay_no, order_id::text AS order_id, status FROM payments";
pub const REFUNDS_SQL: &str = "SELECT pay_no::text AS pay_no, status, reason FROM refunds";
pub const ENROLMENTS_SQL: &str =
    "SELECT user_id, count(*) AS n FROM course_tables GROUP BY user_id";
pub const UNPUBLISHED_SQL: &str = "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL";

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(no: &str, state: &str, paid: bool, refunded: Option<i64>) -> Trade {
        Trade {
            channel: "wechat".into(),
            out_trade_no: no.into(),
            amount_fen: 100,
            trade_state: state.into(),
            pending: false,
            success_time: paid.then(|| "2026-01-01T00:00:00Z".to_owned()),
            refunds: refunded
                .map(|a| {
                    vec![TradeRefund {
                        amount_fen: a,
                        status: "SUCCESS".into(),
                    }]
                })
                .unwrap_or_default(),
        }
    }

    fn order(id: &str, user: &str, status: &str, pay: Option<&str>) -> OrderRow {
        OrderRow {
            id: id.into(),
            user_id: user.into(),
            status: status.into(),
            pay_no: pay.map(str::to_owned),
        }
    }

    fn payment(pay: &str, order: &str, status: &str) -> PaymentRow {
        PaymentRow {
            pay_no: pay.into(),
            order_id: order.into(),
            status: status.into(),
        }
    }

    /// One paid order, one double payment refunded, one never-paid order closed.
    fn healthy() -> Snapshot {
        Snapshot {
            orders: vec![
                order("o1", "u1", "paid", Some("p1")),
                order("o2", "u2", "paid", Some("p2")),
                order("o3", "u3", "closed", None),
            ],
            payments: vec![
                payment("p1", "o1", "paid"),
                payment("p2", "o2", "paid"),
                payment("p2b", "o2", "refunded"),
                payment("p3", "o3", "closed"),
            ],
            refunds: vec![RefundRow {
                pay_no: "p2b".into(),
                status: "succeeded".into(),
                reason: "duplicate_payment".into(),
            }],
            enrolments: vec![
                EnrolmentRow {
                    user_id: "u1".into(),
                    n: 1,
                },
                EnrolmentRow {
                    user_id: "u2".into(),
                    n: 1,
                },
            ],
            trades: vec![
                trade("p1", "SUCCESS", true, None),
                trade("p2", "SUCCESS", true, None),
                trade("p2b", "REFUND", true, Some(100)),
                trade("p3", "CLOSED", false, None),
            ],
            unpublished: BTreeMap::from([("order".to_owned(), 0)]),
            queues: vec![("order.pay-result.dlq".into(), 0)],
        }
    }

    #[test]
    fn a_healthy_end_state_passes() {
        let v = verify(&healthy());
        assert_eq!(v.violations, Vec::<String>::new());
        assert_eq!(
            v.tally,
            Tally {
                paid: 2,
                refunded: 1,
                closed: 1,
                lost: 0,
                duplicated: 0
            }
        );
    }

    #[test]
    fn money_taken_without_order_or_refund_is_lost() {
        let mut s = healthy();
        s.trades[2].refunds.clear();
        let v = verify(&s);
        assert_eq!(v.tally.lost, 1);
        assert!(
            v.violations[0].contains("neither pays an order"),
            "{:?}",
            v.violations
        );
        // A partial refund is not a refund either.
        let mut s = healthy();
        s.trades[2].refunds[0].amount_fen = 50;
        assert_eq!(verify(&s).tally.lost, 1);
    }

    #[test]
    fn a_paid_order_without_enrolment_is_lost_and_double_enrolment_is_duplicated() {
        let mut s = healthy();
        s.enrolments.remove(0);
        let v = verify(&s);
        assert_eq!(v.tally.lost, 1);
        let mut s = healthy();
        s.enrolments[0].n = 2;
        let v = verify(&s);
        assert_eq!(v.tally.duplicated, 1);
        assert!(v.violations.iter().any(|m| m.contains("enrolled 2 times")));
    }

    #[test]
    fn paid_and_refunded_is_duplicated() {
        let mut s = healthy();
        s.trades[0].refunds = vec![TradeRefund {
            amount_fen: 100,
            status: "SUCCESS".into(),
        }];
        let v = verify(&s);
        assert_eq!(v.tally.duplicated, 1);
    }

    #[test]
    fn open_or_unclosed_orders_and_undrained_queues_fail() {
        let mut s = healthy();
        s.orders[2].status = "unpaid".into();
        assert!(
            verify(&s)
                .violations
                .iter()
                .any(|m| m.contains("still unpaid"))
        );

        let mut s = healthy();
        s.trades[3].trade_state = "NOTPAY".into();
        assert!(
            verify(&s)
                .violations
                .iter()
                .any(|m| m.contains("closed order o3"))
        );

        let mut s = healthy();
        s.payments[3].status = "unpaid".into();
        assert!(
            verify(&s)
                .violations
                .iter()
                .any(|m| m.contains("attempt p3"))
        );

        let mut s = healthy();
        s.queues[0].1 = 3;
        assert!(verify(&s).violations.iter().any(|m| m.contains("holds 3")));

        let mut s = healthy();
        s.unpublished.insert("payment".into(), 2);
        assert!(
            verify(&s)
                .violations
                .iter()
                .any(|m| m.contains("unpublished"))
        );

        let mut s = healthy();
        s.refunds[0].status = "failed".into();
        assert!(
            verify(&s)
                .violations
                .iter()
                .any(|m| m.contains("ended failed"))
        );
    }

    #[test]
    fn a_paid_order_the_channel_never_took_is_reported() {
        let mut s = healthy();
        s.trades[0].success_time = None;
        assert!(
            verify(&s)
                .violations
                .iter()
                .any(|m| m.contains("the channel never took"))
        );
    }
}
