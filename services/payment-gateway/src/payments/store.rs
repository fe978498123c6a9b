//! Database access for payment attempts and the callback audit trail.
//!
//! Rows are parsed into [`Payment`] once, here; the rest of the crate only sees domain
//! types. Every status change is a guarded update that checks the rows it affected.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywire_domain::{BizType, Fen, OrderId, PayChannel, PayNo, PaymentStatus, UserId};

use crate::error::GatewayError;
use crate::refunds::model::RefundReason;
use crate::schema::{channel_notifications, closed_orders, payment_checks, payments, refunds};
use paywire_platform::db::{first_parsed, load_parsed};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = payments)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct PaymentRow {
    pay_no: i64,
    order_id: i64,
    user_id: String,
    biz_type: String,
    biz_id: String,
    channel: String,
    amount_fen: i64,
    description: String,
    status: String,
    code_url: Option<String>,
    expires_at: DateTime<Utc>,
    channel_trade_no: Option<String>,
    paid_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// One payment attempt at a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub biz_type: BizType,
    pub biz_id: String,
    pub channel: PayChannel,
    pub amount: Fen,
    pub description: String,
    pub status: PaymentStatus,
    pub code_url: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub channel_trade_no: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = GatewayError;

    fn try_from(row: PaymentRow) -> Result<Self, GatewayError> {
        let corrupt = |e: paywire_domain::ParseError| {
            GatewayError::CorruptRow(format!("payment {}: {e}", row.pay_no))
        };
        Ok(Payment {
            pay_no: PayNo::from(row.pay_no),
            order_id: OrderId::from(row.order_id),
            user_id: UserId::parse(&row.user_id).map_err(corrupt)?,
            biz_type: row.biz_type.parse().map_err(corrupt)?,
            channel: row.channel.parse().map_err(corrupt)?,
            amount: Fen::new(row.amount_fen).map_err(corrupt)?,
            status: row.status.parse().map_err(corrupt)?,
            biz_id: row.biz_id,
            description: row.description,
            code_url: row.code_url,
            expires_at: row.expires_at,
            channel_trade_no: row.channel_trade_no,
            paid_at: row.paid_at,
            created_at: row.created_at,
        })
    }
}

/// A fresh attempt, before it exists at the channel (`code_url` is filled in later).
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub biz_type: BizType,
    pub biz_id: String,
    pub channel: PayChannel,
    pub amount: Fen,
    pub description: String,
    pub expires_at: DateTime<Utc>,
    /// When the compensation sweeper first asks the channel, in case no callback came.
    pub first_check_at: DateTime<Utc>,
}

/// Serialises every attempt-creating transaction of one order until it commits, so two
/// concurrent "pay" clicks cannot both decide to create a new attempt.
pub async fn lock_order(conn: &mut AsyncPgConnection, order: OrderId) -> Result<(), GatewayError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(order.get())
        .execute(conn)
        .await?;
    Ok(())
}

/// Every attempt of an order, newest first.
pub async fn attempts_for_order(
    conn: &mut AsyncPgConnection,
    order: OrderId,
) -> Result<Vec<Payment>, GatewayError> {
    load_parsed(
        conn,
        payments::table
            .filter(payments::order_id.eq(order.get()))
            .order(payments::created_at.desc())
            .select(PaymentRow::as_select()),
    )
    .await
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewPayment,
    now: DateTime<Utc>,
) -> Result<Payment, GatewayError> {
    let row = PaymentRow {
        pay_no: new.pay_no.get(),
        order_id: new.order_id.get(),
        user_id: new.user_id.as_str().to_owned(),
        biz_type: new.biz_type.as_str().to_owned(),
        biz_id: new.biz_id.clone(),
        channel: new.channel.as_str().to_owned(),
        amount_fen: new.amount.get(),
        description: new.description.clone(),
        status: PaymentStatus::Unpaid.as_str().to_owned(),
        code_url: None,
        expires_at: new.expires_at,
        channel_trade_no: None,
        paid_at: None,
        created_at: now,
        updated_at: now,
    };
    let stored: PaymentRow = diesel::insert_into(payments::table)
        .values(&row)
        .returning(PaymentRow::as_returning())
        .get_result(conn)
        .await?;
    diesel::update(payment_checks::table.find(new.pay_no.get()))
        .set((
            payment_checks::next_check_at.eq(new.first_check_at),
            payment_checks::traceparent.eq(paywire_platform::telemetry::current_traceparent()),
        ))
        .execute(conn)
        .await?;
    Payment::try_from(stored)
}

/// The trace context of the request that created the attempt (see [`insert`]).
pub async fn traceparent(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
) -> Result<Option<String>, GatewayError> {
    Ok(payment_checks::table
        .find(pay_no.get())
        .select(payment_checks::traceparent)
        .first::<Option<String>>(conn)
        .await
        .optional()?
        .flatten())
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
) -> Result<Option<Payment>, GatewayError> {
    first_parsed(
        conn,
        payments::table
            .find(pay_no.get())
            .select(PaymentRow::as_select()),
    )
    .await
}

/// Reads an attempt and locks its row until the surrounding transaction ends, so two
/// deliveries of the same callback are decided one after the other.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
) -> Result<Option<Payment>, GatewayError> {
    first_parsed(
        conn,
        payments::table
            .find(pay_no.get())
            .select(PaymentRow::as_select())
            .for_update(),
    )
    .await
}

/// Stores the channel's QR code on an attempt that is still payable and has none yet
/// ([`PaymentStatus::SHOW_CODE`]). Returns `false` when the attempt moved on meanwhile.
pub async fn set_code_url(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
    code_url: &str,
    now: DateTime<Utc>,
) -> Result<bool, GatewayError> {
    let edge = PaymentStatus::SHOW_CODE;
    let rows = diesel::update(
        payments::table
            .filter(payments::pay_no.eq(pay_no.get()))
            .filter(payments::status.eq_any(edge.source_names()))
            .filter(payments::code_url.is_null()),
    )
    .set((
        payments::status.eq(edge.to.as_str()),
        payments::code_url.eq(code_url),
        payments::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// The edge an attempt takes to `paid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidEdge {
    /// `unpaid → paid`, guarded by the state machine: the money settles the order.
    Settles,
    /// Money the channel took for an attempt that must not settle its order, along the side
    /// edge [`PaymentStatus::STRAY_PAID`] (`unpaid` or `closed` → `paid`): only the path
    /// that creates a refund in the same transaction may take it.
    Stray,
}

/// Records the channel's confirmation on the attempt along `edge`. Returns `false` when
/// the row was not in one of the edge's source statuses (someone else decided first).
pub async fn mark_paid(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
    edge: PaidEdge,
    channel_trade_no: &str,
    paid_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, GatewayError> {
    let sources = match edge {
        PaidEdge::Settles => PaymentStatus::Paid.source_names(),
        PaidEdge::Stray => PaymentStatus::STRAY_PAID.source_names(),
    };
    let rows = diesel::update(
        payments::table
            .filter(payments::pay_no.eq(pay_no.get()))
            .filter(payments::status.eq_any(sources)),
    )
    .set((
        payments::status.eq(PaymentStatus::Paid.as_str()),
        payments::channel_trade_no.eq(channel_trade_no),
        payments::paid_at.eq(paid_at),
        payments::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// Guarded status change with no other column — `unpaid → closed` after the channel
/// confirmed the trade can no longer be paid, `paid → refunded` once it confirmed the
/// refund: moves the attempt to `to` only from a status the state machine allows; `false`
/// when another writer got there first. `paid` carries the channel's facts: [`mark_paid`].
pub async fn transition(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
    to: PaymentStatus,
    now: DateTime<Utc>,
) -> Result<bool, GatewayError> {
    debug_assert_ne!(to, PaymentStatus::Paid, "paid goes through mark_paid");
    let rows = diesel::update(
        payments::table
            .filter(payments::pay_no.eq(pay_no.get()))
            .filter(payments::status.eq_any(to.source_names())),
    )
    .set((
        payments::status.eq(to.as_str()),
        payments::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// The attempt that settled the order: paid (or later refunded by someone else) and not
/// stray money that we refund ourselves.
pub async fn settling_attempt(
    conn: &mut AsyncPgConnection,
    order: OrderId,
) -> Result<Option<Payment>, GatewayError> {
    let settled = [
        PaymentStatus::Paid.as_str(),
        PaymentStatus::Refunded.as_str(),
    ];
    let query = payments::table
        .filter(payments::order_id.eq(order.get()))
        .filter(payments::status.eq_any(settled))
        // Requested refunds do not make the attempt stray: it still settled the order.
        .filter(diesel::dsl::not(diesel::dsl::exists(
            refunds::table
                .filter(refunds::pay_no.eq(payments::pay_no))
                .filter(refunds::reason.ne(RefundReason::Requested.as_str())),
        )))
        .order(payments::paid_at.asc())
        .select(PaymentRow::as_select());
    first_parsed(conn, query).await
}

/// Whether the order timeout closed this order for good.
pub async fn order_is_closed(
    conn: &mut AsyncPgConnection,
    order: OrderId,
) -> Result<bool, GatewayError> {
    let found: Option<i64> = closed_orders::table
        .find(order.get())
        .select(closed_orders::order_id)
        .first(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}

/// Closes the order for good (idempotent). Call under [`lock_order`].
pub async fn close_order(
    conn: &mut AsyncPgConnection,
    order: OrderId,
    now: DateTime<Utc>,
) -> Result<(), GatewayError> {
    diesel::insert_into(closed_orders::table)
        .values((
            closed_orders::order_id.eq(order.get()),
            closed_orders::closed_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Claims up to `limit` unpaid attempts whose check is due, for one sweeper: the rows are
/// locked with `SKIP LOCKED` (a concurrent sweeper takes others) and their next check is
/// pushed to `next_check_at(check_attempts)` before the claim commits, so no other
/// instance picks them up while this one talks to the channel.
pub async fn claim_due_checks(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
    next_check_at: impl Fn(&Payment, i32) -> DateTime<Utc> + Sync,
) -> Result<Vec<Payment>, GatewayError> {
    conn.transaction::<_, GatewayError, _>(async |conn| {
        let due: Vec<(i64, i32)> = payment_checks::table
            .filter(payment_checks::status.eq(PaymentStatus::Unpaid.as_str()))
            .filter(payment_checks::next_check_at.le(now))
            .order(payment_checks::next_check_at.asc())
            .limit(limit)
            .select((payment_checks::pay_no, payment_checks::check_attempts))
            .for_update()
            .skip_locked()
            .load(conn)
            .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for (pay_no, attempts) in due {
            let Some(payment) = find(conn, PayNo::from(pay_no)).await? else {
                continue;
            };
            let next = next_check_at(&payment, attempts);
            diesel::update(payment_checks::table.find(pay_no))
                .set((
                    payment_checks::next_check_at.eq(next),
                    payment_checks::check_attempts.eq(attempts.saturating_add(1)),
                ))
                .execute(conn)
                .await?;
            claimed.push(payment);
        }
        Ok(claimed)
    })
    .await
}

/// What the gateway did with one channel callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// The attempt moved to `paid` and a pay result was queued.
    Applied,
    /// The attempt was already paid by this very channel transaction.
    Duplicate,
    /// The channel took money for an attempt we had already closed.
    StrayPayment,
    /// The channel reports the trade closed (Alipay `TRADE_CLOSED`); nothing moved.
    TradeClosed,
    /// Refused; the reason is a stable snake_case code.
    Rejected(&'static str),
}

impl NotificationOutcome {
    pub fn as_text(&self) -> String {
        match self {
            NotificationOutcome::Applied => "applied".into(),
            NotificationOutcome::Duplicate => "duplicate".into(),
            NotificationOutcome::StrayPayment => "stray_payment".into(),
            NotificationOutcome::TradeClosed => "trade_closed".into(),
            NotificationOutcome::Rejected(reason) => format!("rejected:{reason}"),
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = channel_notifications)]
struct NewNotification<'a> {
    channel: &'a str,
    pay_no: Option<i64>,
    outcome: String,
    detail: Option<&'a str>,
}

/// Appends to the callback audit trail. `detail` must never carry secrets or raw bodies.
pub async fn record_notification(
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    pay_no: Option<PayNo>,
    outcome: &NotificationOutcome,
    detail: Option<&str>,
) -> Result<(), GatewayError> {
    diesel::insert_into(channel_notifications::table)
        .values(NewNotification {
            channel: channel.as_str(),
            pay_no: pay_no.map(PayNo::get),
            outcome: outcome.as_text(),
            detail,
        })
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts a notification the channel layer refused (nothing in it could be trusted): one
/// `refused_notifications` row per channel, reason and minute of the database's clock, its
/// counter incremented, so a flood of unsigned requests costs one row a minute per reason.
/// `detail` (the refusal and the body's size, never the body) replaces the row's last one.
pub async fn count_refused_notification(
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    reason: &str,
    detail: &str,
) -> Result<(), GatewayError> {
    diesel::sql_query(
        "INSERT INTO refused_notifications \
             (channel, reason, bucket_start, refused, last_detail, last_at) \
         VALUES ($1, $2, date_trunc('minute', now()), 1, $3, now()) \
         ON CONFLICT (channel, reason, bucket_start) DO UPDATE \
         SET refused = refused_notifications.refused + 1, \
             last_detail = EXCLUDED.last_detail, last_at = EXCLUDED.last_at",
    )
    .bind::<Text, _>(channel.as_str())
    .bind::<Text, _>(reason)
    .bind::<Text, _>(detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims the right to ask the channel about the unpaid attempt `pay_no` now: moves its
/// `last_synced_at` to the database's `now()` unless that was less than `min_interval_secs`
/// ago. One guarded UPDATE, so of any number of concurrent callers on any number of
/// instances exactly one wins per interval; `false` means someone asked recently (or the
/// attempt is no longer unpaid).
pub async fn claim_sync(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
    min_interval_secs: u32,
) -> Result<bool, GatewayError> {
    let claimed = diesel::sql_query(
        "UPDATE payments SET last_synced_at = now() \
         WHERE pay_no = $1 AND status = $3 \
           AND (last_synced_at IS NULL \
                OR last_synced_at <= now() - make_interval(secs => $2))",
    )
    .bind::<BigInt, _>(pay_no.get())
    .bind::<Double, _>(f64::from(min_interval_secs))
    .bind::<Text, _>(PaymentStatus::Unpaid.as_str())
    .execute(conn)
    .await?;
    Ok(claimed == 1)
}
