//! Database access for refunds. Status changes are guarded updates that check the rows
//! they affected; workers claim due rows with `FOR UPDATE SKIP LOCKED`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywire_domain::{Fen, OrderId, PayChannel, PayNo, RefundNo};

use crate::error::GatewayError;
use crate::refunds::model::{Refund, RefundReason, RefundStatus};
use crate::schema::refunds;
use paywire_platform::db::first_parsed;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refunds)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct RefundRow {
    refund_no: i64,
    pay_no: i64,
    order_id: i64,
    channel: String,
    amount_fen: i64,
    reason: String,
    status: String,
    channel_refund_id: Option<String>,
    attempts: i32,
    last_error: Option<String>,
    refunded_at: Option<DateTime<Utc>>,
    request_id: Option<String>,
    note: Option<String>,
}

impl TryFrom<RefundRow> for Refund {
    type Error = GatewayError;

    fn try_from(row: RefundRow) -> Result<Self, GatewayError> {
        let corrupt = |e: paywire_domain::ParseError| {
            GatewayError::CorruptRow(format!("refund {}: {e}", row.refund_no))
        };
        Ok(Refund {
            refund_no: RefundNo::from(row.refund_no),
            pay_no: PayNo::from(row.pay_no),
            order_id: OrderId::from(row.order_id),
            channel: row.channel.parse().map_err(corrupt)?,
            amount: Fen::new(row.amount_fen).map_err(corrupt)?,
            reason: row.reason.parse().map_err(corrupt)?,
            status: row.status.parse().map_err(corrupt)?,
            channel_refund_id: row.channel_refund_id,
            attempts: row.attempts,
            last_error: row.last_error,
            refunded_at: row.refunded_at,
            request_id: row.request_id,
            note: row.note,
        })
    }
}

/// A pending refund to record: of stray money (`reason` says why), or one the order
/// service asked for (`reason` [`RefundReason::Requested`], with its `request`).
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub refund_no: RefundNo,
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub channel: PayChannel,
    pub amount: Fen,
    pub reason: RefundReason,
    pub request: Option<RefundRequestKey>,
}

/// What the order service sent with a refund it asked for.
#[derive(Debug, Clone)]
pub struct RefundRequestKey {
    /// The caller's idempotency key.
    pub request_id: String,
    /// What the payer sees at the channel.
    pub note: Option<String>,
}

/// Records a pending refund, due at once. Returns `false` when one with the same key
/// exists: for stray money, a refund of the same payment (a stray payment is refunded
/// once, whichever path found it); for a request, one with the same `request_id` (the
/// caller reads it with [`find_by_request_id`]; a concurrent insert of the same key waits
/// for the other transaction instead of failing).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewRefund,
    now: DateTime<Utc>,
) -> Result<bool, GatewayError> {
    let request = new.request.as_ref();
    let insert = diesel::insert_into(refunds::table).values((
        refunds::refund_no.eq(new.refund_no.get()),
        refunds::pay_no.eq(new.pay_no.get()),
        refunds::order_id.eq(new.order_id.get()),
        refunds::channel.eq(new.channel.as_str()),
        refunds::amount_fen.eq(new.amount.get()),
        refunds::reason.eq(new.reason.as_str()),
        refunds::status.eq(RefundStatus::Pending.as_str()),
        refunds::request_id.eq(request.map(|r| r.request_id.as_str())),
        refunds::note.eq(request.and_then(|r| r.note.as_deref())),
        refunds::next_attempt_at.eq(now),
        refunds::created_at.eq(now),
        refunds::updated_at.eq(now),
    ));
    let rows = if request.is_some() {
        insert
            .on_conflict(refunds::request_id)
            .do_nothing()
            .execute(conn)
            .await?
    } else {
        // request_id is NULL, so only another stray refund of the payment conflicts.
        insert
            .on_conflict(diesel::upsert::on_constraint("refunds_stray_pay_no_key"))
            .do_nothing()
            .execute(conn)
            .await?
    };
    Ok(rows == 1)
}

pub async fn find_by_request_id(
    conn: &mut AsyncPgConnection,
    request_id: &str,
) -> Result<Option<Refund>, GatewayError> {
    first_parsed(
        conn,
        refunds::table
            .filter(refunds::request_id.eq(request_id))
            .select(RefundRow::as_select()),
    )
    .await
}

/// The sum of the payment's refunds in the given statuses.
pub async fn total_for_payment(
    conn: &mut AsyncPgConnection,
    pay_no: PayNo,
    statuses: &[RefundStatus],
) -> Result<Fen, GatewayError> {
    let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    // SUM(BIGINT) is NUMERIC; amounts are bounded by the payment's, so BIGINT holds it.
    let sum: Option<i64> = refunds::table
        .filter(refunds::pay_no.eq(pay_no.get()))
        .filter(refunds::status.eq_any(names))
        .select(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        >("CAST(SUM(amount_fen) AS BIGINT)"))
        .first(conn)
        .await?;
    Fen::new(sum.unwrap_or(0))
        .map_err(|e| GatewayError::CorruptRow(format!("refund total of {pay_no}: {e}")))
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    refund_no: RefundNo,
) -> Result<Option<Refund>, GatewayError> {
    first_parsed(
        conn,
        refunds::table
            .find(refund_no.get())
            .select(RefundRow::as_select()),
    )
    .await
}

pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    refund_no: RefundNo,
) -> Result<Option<Refund>, GatewayError> {
    first_parsed(
        conn,
        refunds::table
            .find(refund_no.get())
            .select(RefundRow::as_select())
            .for_update(),
    )
    .await
}

/// Claims up to `limit` open refunds that are due, for one worker (`SKIP LOCKED`), and
/// pushes their next attempt to `retry_at(attempts)` before the claim commits, so another
/// instance does not pick them up while this one talks to the channel.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
    retry_at: impl Fn(i32) -> DateTime<Utc> + Sync,
) -> Result<Vec<Refund>, GatewayError> {
    let open = [
        RefundStatus::Pending.as_str(),
        RefundStatus::Processing.as_str(),
    ];
    conn.transaction::<_, GatewayError, _>(async |conn| {
        let rows: Vec<RefundRow> = refunds::table
            .filter(refunds::status.eq_any(open))
            .filter(refunds::next_attempt_at.le(now))
            .order(refunds::next_attempt_at.asc())
            .limit(limit)
            .select(RefundRow::as_select())
            .for_update()
            .skip_locked()
            .load(conn)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let attempts = row.attempts.saturating_add(1);
            diesel::update(refunds::table.find(row.refund_no))
                .set((
                    refunds::attempts.eq(attempts),
                    refunds::next_attempt_at.eq(retry_at(attempts)),
                ))
                .execute(conn)
                .await?;
            let mut refund = Refund::try_from(row)?;
            refund.attempts = attempts;
            claimed.push(refund);
        }
        Ok(claimed)
    })
    .await
}

/// `pending → processing`: the channel accepted the refund.
pub async fn mark_processing(
    conn: &mut AsyncPgConnection,
    refund_no: RefundNo,
    now: DateTime<Utc>,
) -> Result<bool, GatewayError> {
    let rows = diesel::update(
        refunds::table
            .filter(refunds::refund_no.eq(refund_no.get()))
            .filter(refunds::status.eq_any(RefundStatus::Processing.source_names())),
    )
    .set((
        refunds::status.eq(RefundStatus::Processing.as_str()),
        refunds::last_error.eq(None::<String>),
        refunds::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// `processing → pending` along the side edge [`RefundStatus::RESEND`]: the channel does
/// not know the refund after all, so it is sent again (same `refund_no`: the channel's
/// idempotency key).
pub async fn back_to_pending(
    conn: &mut AsyncPgConnection,
    refund_no: RefundNo,
    now: DateTime<Utc>,
) -> Result<bool, GatewayError> {
    let edge = RefundStatus::RESEND;
    let rows = diesel::update(
        refunds::table
            .filter(refunds::refund_no.eq(refund_no.get()))
            .filter(refunds::status.eq_any(edge.source_names())),
    )
    .set((
        refunds::status.eq(edge.to.as_str()),
        refunds::next_attempt_at.eq(now),
        refunds::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// Open → `succeeded`/`failed`. Returns `false` when the refund was already final.
pub async fn mark_final(
    conn: &mut AsyncPgConnection,
    refund_no: RefundNo,
    status: RefundStatus,
    channel_refund_id: Option<&str>,
    refunded_at: Option<DateTime<Utc>>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, GatewayError> {
    let rows = diesel::update(
        refunds::table
            .filter(refunds::refund_no.eq(refund_no.get()))
            .filter(refunds::status.eq_any(status.source_names())),
    )
    .set((
        refunds::status.eq(status.as_str()),
        refunds::channel_refund_id.eq(channel_refund_id),
        refunds::refunded_at.eq(refunded_at),
        refunds::last_error.eq(error),
        refunds::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(rows == 1)
}

/// Keeps the last channel error for operations; the refund stays open.
pub async fn record_error(
    conn: &mut AsyncPgConnection,
    refund_no: RefundNo,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), GatewayError> {
    diesel::update(refunds::table.find(refund_no.get()))
        .set((refunds::last_error.eq(error), refunds::updated_at.eq(now)))
        .execute(conn)
        .await?;
    Ok(())
}
