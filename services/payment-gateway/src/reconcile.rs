//! Daily reconciliation: each channel's statement of a day against our attempts and
//! refunds, one `reconciliation` row per discrepancy with what was done about it.
//!
//! * Paid at the channel, our attempt unpaid or closed: recorded by
//!   [`record_confirmed`](crate::payments::record::record_confirmed), the path of every
//!   callback, so the pay result flows through the outbox (or, for a closed order, the
//!   money is refunded as stray), in the same transaction as the discrepancy's row.
//! * Anything else that disagrees (an unknown trade, another amount or trade number, a
//!   payment or refund only we know of, a refund only the channel knows of, a refund we
//!   hold failed) is recorded `open`: no automatic answer is safe, an operator decides.
//!
//! Running a day again is idempotent: a discrepancy has a unique key (channel, day, kind,
//! reference), and one resolved by the first run no longer differs on the second.
//! Several instances are safe: a run first claims its `(channel, day)` row in
//! `reconciliation_runs` with one guarded upsert; a claim older than the lease is taken
//! over (its instance died).

use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Date, Double, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywire_channels::{ChannelError, ConfirmedPayment, Statement};
use paywire_contracts::reconciliation::{
    Discrepancy, DiscrepancyKind, ReconciliationRun, Resolution,
};
use paywire_domain::{Fen, PayChannel, PayNo, PaymentStatus, RefundNo, RefundStatus};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::create::channel_error;
use crate::payments::record::record_confirmed;
use crate::payments::store::{self, NotificationOutcome};
use crate::refunds::store as refund_store;

/// The daily job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReconciliationSettings {
    /// Run the daily job in this instance (any number of instances may).
    pub enabled: bool,
    /// Yesterday is reconciled from this second of today (China Standard Time): the
    /// channels publish a day's bill the next morning (WeChat from 09:00, advising 10:00).
    pub run_after_secs: u32,
    /// Days before yesterday still tried while not done (a channel that was down).
    pub lookback_days: u32,
    /// How often the job looks for a day to do.
    pub poll_interval_secs: u64,
    /// A run's claim is taken over after this long (its instance died mid-run).
    pub lease_secs: u32,
}

impl Default for ReconciliationSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            run_after_secs: 10 * 3600,
            lookback_days: 3,
            poll_interval_secs: 300,
            lease_secs: 600,
        }
    }
}

/// The channels whose daily statement Paywire reads (WeChat Pay v2's bill is not read yet).
pub fn has_statement(channel: PayChannel) -> bool {
    matches!(channel, PayChannel::Wechat | PayChannel::Alipay)
}

/// The channels' day: China Standard Time.
fn cst() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// `[start, end)` of `date` in China Standard Time.
pub fn day_bounds(date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = cst()
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    (start, start + chrono::Duration::days(1))
}

/// The days the job should have done by `now`: yesterday once it is past
/// `run_after_secs`, and the `lookback_days` before it.
pub fn due_dates(settings: &ReconciliationSettings, now: DateTime<Utc>) -> Vec<NaiveDate> {
    let local = now.with_timezone(&cst());
    let today = local.date_naive();
    let seconds = i64::from(chrono::Timelike::num_seconds_from_midnight(&local.time()));
    let first = if seconds >= i64::from(settings.run_after_secs) {
        1
    } else {
        2
    };
    (first..=1 + i64::from(settings.lookback_days))
        .map(|back| today - chrono::Duration::days(back))
        .collect()
}

/// Claims `(channel, date)`: a new day, a failed run, or a claim older than the lease;
/// `force` (an operator's run) also takes a finished day. `false`: someone else holds it,
/// or (without `force`) it is done.
async fn claim(
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    date: NaiveDate,
    force: bool,
    lease_secs: u32,
) -> Result<bool, GatewayError> {
    let claimed = diesel::sql_query(
        "INSERT INTO reconciliation_runs (channel, bill_date, status, claimed_at) \
         VALUES ($1, $2, 'running', now()) \
         ON CONFLICT (channel, bill_date) DO UPDATE \
         SET status = 'running', claimed_at = now(), last_error = NULL \
         WHERE reconciliation_runs.status = 'failed' \
            OR ($3 AND reconciliation_runs.status = 'done') \
            OR (reconciliation_runs.status = 'running' \
                AND reconciliation_runs.claimed_at < now() - make_interval(secs => $4))",
    )
    .bind::<Text, _>(channel.as_str())
    .bind::<Date, _>(date)
    .bind::<Bool, _>(force)
    .bind::<Double, _>(f64::from(lease_secs))
    .execute(conn)
    .await?;
    Ok(claimed == 1)
}

async fn finish(
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    date: NaiveDate,
    outcome: Result<&Statement, &str>,
) -> Result<(), GatewayError> {
    let (status, payments, refunds, error) = match outcome {
        Ok(s) => (
            "done",
            i32::try_from(s.payments.len()).ok(),
            i32::try_from(s.refunds.len()).ok(),
            None,
        ),
        Err(e) => ("failed", None, None, Some(e)),
    };
    diesel::sql_query(
        "UPDATE reconciliation_runs SET status = $3, finished_at = now(), \
             payments = COALESCE($4, payments), refunds = COALESCE($5, refunds), last_error = $6 \
         WHERE channel = $1 AND bill_date = $2",
    )
    .bind::<Text, _>(channel.as_str())
    .bind::<Date, _>(date)
    .bind::<Text, _>(status)
    .bind::<Nullable<diesel::sql_types::Integer>, _>(payments)
    .bind::<Nullable<diesel::sql_types::Integer>, _>(refunds)
    .bind::<Nullable<Text>, _>(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// A discrepancy about to be stored.
#[derive(Debug, Clone)]
struct Found {
    kind: DiscrepancyKind,
    reference: String,
    pay_no: Option<PayNo>,
    refund_no: Option<RefundNo>,
    channel_trade_no: Option<String>,
    ours: Option<Fen>,
    theirs: Option<Fen>,
    detail: String,
    resolution: Resolution,
}

fn as_text<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Stores `found` unless the day already has it; `true` when stored now.
async fn insert(
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    date: NaiveDate,
    found: &Found,
) -> Result<bool, GatewayError> {
    let inserted = diesel::sql_query(
        "INSERT INTO reconciliation (channel, bill_date, kind, reference, pay_no, refund_no, \
             channel_trade_no, ours_fen, channel_fen, detail, resolution) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (channel, bill_date, kind, reference) DO NOTHING",
    )
    .bind::<Text, _>(channel.as_str())
    .bind::<Date, _>(date)
    .bind::<Text, _>(as_text(&found.kind))
    .bind::<Text, _>(&found.reference)
    .bind::<Nullable<BigInt>, _>(found.pay_no.map(PayNo::get))
    .bind::<Nullable<BigInt>, _>(found.refund_no.map(RefundNo::get))
    .bind::<Nullable<Text>, _>(found.channel_trade_no.as_deref())
    .bind::<Nullable<BigInt>, _>(found.ours.map(Fen::get))
    .bind::<Nullable<BigInt>, _>(found.theirs.map(Fen::get))
    .bind::<Text, _>(&found.detail)
    .bind::<Text, _>(as_text(&found.resolution))
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    reference: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pay_no: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    refund_no: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    channel_trade_no: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    ours_fen: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    channel_fen: Option<i64>,
    #[diesel(sql_type = Text)]
    detail: String,
    #[diesel(sql_type = Text)]
    resolution: String,
    #[diesel(sql_type = Timestamptz)]
    found_at: DateTime<Utc>,
}

fn parse_text<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, GatewayError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| GatewayError::CorruptRow(format!("reconciliation {text:?}: {e}")))
}

fn fen(v: Option<i64>) -> Result<Option<Fen>, GatewayError> {
    v.map(|f| Fen::new(f).map_err(|e| GatewayError::CorruptRow(format!("reconciliation: {e}"))))
        .transpose()
}

/// Every discrepancy of the day, oldest first.
pub async fn discrepancies(
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    date: NaiveDate,
) -> Result<Vec<Discrepancy>, GatewayError> {
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT kind, reference, pay_no, refund_no, channel_trade_no, ours_fen, channel_fen, \
             detail, resolution, found_at \
         FROM reconciliation WHERE channel = $1 AND bill_date = $2 ORDER BY id",
    )
    .bind::<Text, _>(channel.as_str())
    .bind::<Date, _>(date)
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Discrepancy {
                kind: parse_text(&r.kind)?,
                reference: r.reference,
                pay_no: r.pay_no.map(PayNo::from),
                refund_no: r.refund_no.map(RefundNo::from),
                channel_trade_no: r.channel_trade_no,
                ours_fen: fen(r.ours_fen)?,
                channel_fen: fen(r.channel_fen)?,
                detail: r.detail,
                resolution: parse_text(&r.resolution)?,
                found_at: r.found_at,
            })
        })
        .collect()
}

#[derive(QueryableByName)]
struct Recorded {
    #[diesel(sql_type = BigInt)]
    no: i64,
    #[diesel(sql_type = BigInt)]
    amount_fen: i64,
}

/// Our attempts of `channel` paid within `[from, to)` (the channel's payment time) and
/// before the statement was fetched (an operator's run of the current day sees the day so
/// far).
async fn paid_between(
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    fetched_at: DateTime<Utc>,
) -> Result<Vec<Recorded>, GatewayError> {
    Ok(diesel::sql_query(
        "SELECT pay_no AS no, amount_fen FROM payments \
         WHERE channel = $1 AND paid_at >= $2 AND paid_at < LEAST($3, $4) ORDER BY pay_no",
    )
    .bind::<Text, _>(channel.as_str())
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Timestamptz, _>(fetched_at)
    .load(conn)
    .await?)
}

/// Our refunds of `channel` that succeeded within `[from, to)`, known to us as succeeded
/// before the statement was fetched (so the channel had made them by then; a refund that
/// completes while a run compares, a stray one it just queued say, is the next run's).
async fn refunded_between(
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    fetched_at: DateTime<Utc>,
) -> Result<Vec<Recorded>, GatewayError> {
    Ok(diesel::sql_query(
        "SELECT refund_no AS no, amount_fen FROM refunds \
         WHERE channel = $1 AND status = $4 AND refunded_at >= $2 AND refunded_at < $3 \
           AND updated_at < $5 \
         ORDER BY refund_no",
    )
    .bind::<Text, _>(channel.as_str())
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Text, _>(RefundStatus::Succeeded.as_str())
    .bind::<Timestamptz, _>(fetched_at)
    .load(conn)
    .await?)
}

/// Our number in a channel's reference, if it is one.
fn our_number(reference: &str) -> Option<i64> {
    reference.parse::<i64>().ok().filter(|n| *n > 0)
}

/// What one run did.
struct Tally {
    matched: u32,
    found_now: u32,
}

/// Reconciles one channel's day (the caller holds the claim).
async fn compare(
    state: &AppState,
    channel: PayChannel,
    statement: &Statement,
    fetched_at: DateTime<Utc>,
) -> Result<Tally, GatewayError> {
    let date = statement.date;
    let mut tally = Tally {
        matched: 0,
        found_now: 0,
    };
    let mut conn = state.pool.get().await?;
    for line in &statement.payments {
        match payment_line(state, &mut conn, channel, date, line).await? {
            Line::Agrees => tally.matched += 1,
            Line::Stored(new) => tally.found_now += u32::from(new),
            Line::Differs(found) => {
                tally.found_now += u32::from(insert(&mut conn, channel, date, &found).await?);
            }
        }
    }
    let listed: std::collections::HashSet<&str> = statement
        .payments
        .iter()
        .map(|p| p.out_trade_no.as_str())
        .collect();
    for ours in paid_between(&mut conn, channel, day_bounds(date), fetched_at).await? {
        let reference = ours.no.to_string();
        if listed.contains(reference.as_str()) {
            continue;
        }
        let found = Found {
            kind: DiscrepancyKind::NotAtChannel,
            pay_no: Some(PayNo::from(ours.no)),
            refund_no: None,
            channel_trade_no: store::find(&mut conn, PayNo::from(ours.no))
                .await?
                .and_then(|p| p.channel_trade_no),
            ours: Fen::new(ours.amount_fen).ok(),
            theirs: None,
            detail: "recorded paid that day; the statement does not list it".into(),
            resolution: Resolution::Open,
            reference,
        };
        tally.found_now += u32::from(insert(&mut conn, channel, date, &found).await?);
    }
    for line in &statement.refunds {
        match refund_line(&mut conn, line).await? {
            None => tally.matched += 1,
            Some(found) => {
                tally.found_now += u32::from(insert(&mut conn, channel, date, &found).await?);
            }
        }
    }
    let listed: std::collections::HashSet<&str> = statement
        .refunds
        .iter()
        .map(|r| r.out_refund_no.as_str())
        .collect();
    for ours in refunded_between(&mut conn, channel, day_bounds(date), fetched_at).await? {
        let reference = ours.no.to_string();
        if listed.contains(reference.as_str()) {
            continue;
        }
        let refund = refund_store::find(&mut conn, RefundNo::from(ours.no)).await?;
        let found = Found {
            kind: DiscrepancyKind::RefundNotAtChannel,
            pay_no: refund.as_ref().map(|r| r.pay_no),
            refund_no: Some(RefundNo::from(ours.no)),
            channel_trade_no: None,
            ours: Fen::new(ours.amount_fen).ok(),
            theirs: None,
            detail: "refund succeeded that day; the statement does not list it".into(),
            resolution: Resolution::Open,
            reference,
        };
        tally.found_now += u32::from(insert(&mut conn, channel, date, &found).await?);
    }
    Ok(tally)
}

/// What one statement line came to.
enum Line {
    /// It agrees with our records.
    Agrees,
    /// A payment recorded here, its discrepancy stored in the same transaction (`true`:
    /// the row is new).
    Stored(bool),
    /// A discrepancy for the caller to store.
    Differs(Found),
}

/// One payment line of the statement.
async fn payment_line(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    channel: PayChannel,
    date: NaiveDate,
    line: &paywire_channels::StatementPayment,
) -> Result<Line, GatewayError> {
    let open = |kind, pay_no, ours, detail: String| Found {
        kind,
        reference: line.out_trade_no.clone(),
        pay_no,
        refund_no: None,
        channel_trade_no: Some(line.channel_trade_no.clone()),
        ours,
        theirs: Some(line.amount),
        detail,
        resolution: Resolution::Open,
    };
    let attempt = match our_number(&line.out_trade_no) {
        Some(no) => store::find(conn, PayNo::from(no)).await?,
        None => None,
    };
    let Some(attempt) = attempt.filter(|a| a.channel == channel) else {
        let found = open(
            DiscrepancyKind::UnknownTrade,
            None,
            None,
            "paid at the channel for a trade number we did not issue on this channel".into(),
        );
        return Ok(Line::Differs(found));
    };
    let pay_no = Some(attempt.pay_no);
    if attempt.amount != line.amount {
        let detail = format!(
            "the attempt is {} fen, the statement {} fen",
            attempt.amount.get(),
            line.amount.get()
        );
        let found = open(
            DiscrepancyKind::AmountMismatch,
            pay_no,
            Some(attempt.amount),
            detail,
        );
        return Ok(Line::Differs(found));
    }
    match attempt.status {
        PaymentStatus::Paid | PaymentStatus::Refunded => {
            if attempt.channel_trade_no.as_deref() == Some(line.channel_trade_no.as_str()) {
                return Ok(Line::Agrees);
            }
            let detail = format!(
                "the attempt holds channel trade number {:?}",
                attempt.channel_trade_no
            );
            let found = open(
                DiscrepancyKind::TradeNoMismatch,
                pay_no,
                Some(attempt.amount),
                detail,
            );
            Ok(Line::Differs(found))
        }
        PaymentStatus::Unpaid | PaymentStatus::Closed => {
            let confirmed = ConfirmedPayment {
                pay_no: attempt.pay_no,
                channel_trade_no: line.channel_trade_no.clone(),
                amount: line.amount,
                paid_at: line.paid_at,
            };
            let now = Utc::now();
            let was = attempt.status;
            let (line_result, outcome) = conn
                .transaction::<_, GatewayError, _>(async |conn| {
                    let recorded =
                        record_confirmed(conn, &state.ids, channel, &confirmed, now).await?;
                    let (kind, resolution) = match &recorded.outcome {
                        NotificationOutcome::Applied => {
                            (DiscrepancyKind::PaidNotRecorded, Resolution::Recorded)
                        }
                        NotificationOutcome::StrayPayment => {
                            (DiscrepancyKind::StatusMismatch, Resolution::RefundQueued)
                        }
                        // A callback recorded it between our read and now.
                        NotificationOutcome::Duplicate => {
                            return Ok((Line::Agrees, recorded.outcome));
                        }
                        _ if was == PaymentStatus::Closed => {
                            (DiscrepancyKind::StatusMismatch, Resolution::Open)
                        }
                        _ => (DiscrepancyKind::PaidNotRecorded, Resolution::Open),
                    };
                    let mut detail = format!(
                        "paid at the channel, attempt {was}; recorded: {}",
                        recorded.outcome.as_text()
                    );
                    if let Some(more) = &recorded.detail {
                        detail.push_str("; ");
                        detail.push_str(more);
                    }
                    let found = Found {
                        kind,
                        resolution,
                        ..open(kind, pay_no, Some(attempt.amount), detail)
                    };
                    let new = insert(conn, channel, date, &found).await?;
                    tracing::warn!(?kind, ?resolution, reference = %found.reference, "reconciliation recorded a payment");
                    Ok((Line::Stored(new), recorded.outcome))
                })
                .await?;
            crate::metrics::payment_recorded(channel, line.amount, &outcome);
            Ok(line_result)
        }
    }
}

/// One refund line: `None` when it agrees with our refund.
async fn refund_line(
    conn: &mut AsyncPgConnection,
    line: &paywire_channels::StatementRefund,
) -> Result<Option<Found>, GatewayError> {
    let found = |kind, refund_no, pay_no, ours, detail: String| Found {
        kind,
        reference: line.out_refund_no.clone(),
        pay_no,
        refund_no,
        channel_trade_no: Some(line.channel_trade_no.clone()),
        ours,
        theirs: Some(line.amount),
        detail,
        resolution: Resolution::Open,
    };
    let refund = match our_number(&line.out_refund_no) {
        Some(no) => refund_store::find(conn, RefundNo::from(no)).await?,
        None => None,
    };
    let Some(refund) = refund else {
        return Ok(Some(found(
            DiscrepancyKind::RefundNotRecorded,
            None,
            None,
            None,
            format!(
                "a refund ({}) at the channel that is none of ours",
                line.status
            ),
        )));
    };
    let ids = (Some(refund.refund_no), Some(refund.pay_no));
    if refund.amount != line.amount {
        return Ok(Some(found(
            DiscrepancyKind::RefundAmountMismatch,
            ids.0,
            ids.1,
            Some(refund.amount),
            format!(
                "our refund is {} fen, the statement's {} fen",
                refund.amount.get(),
                line.amount.get()
            ),
        )));
    }
    if refund.status == RefundStatus::Failed {
        return Ok(Some(found(
            DiscrepancyKind::RefundStatusMismatch,
            ids.0,
            ids.1,
            Some(refund.amount),
            format!("we hold it failed; the channel lists it {}", line.status),
        )));
    }
    Ok(None)
}

/// Reconciles `channel`'s `date`. `force`: an operator's run, which also repeats a
/// finished day; `Ok(None)`: the job's run found the day done or held by another instance.
#[tracing::instrument(skip(state), fields(%channel, %date))]
pub async fn reconcile_day(
    state: &AppState,
    channel: PayChannel,
    date: NaiveDate,
    force: bool,
) -> Result<Option<ReconciliationRun>, GatewayError> {
    let client = state
        .channels
        .get(channel)
        .cloned()
        .ok_or(GatewayError::ChannelNotEnabled(channel))?;
    {
        let mut conn = state.pool.get().await?;
        if !claim(
            &mut conn,
            channel,
            date,
            force,
            state.reconciliation.lease_secs,
        )
        .await?
        {
            return if force {
                Err(GatewayError::ReconciliationRunning(channel, date))
            } else {
                Ok(None)
            };
        }
    }
    let fetched_at = Utc::now();
    let result = match client.statement(date).await {
        Ok(statement) => compare(state, channel, &statement, fetched_at)
            .await
            .map(|tally| (statement, tally)),
        Err(ChannelError::BadStatement(why)) => {
            tracing::error!(%why, "statement refused");
            Err(GatewayError::StatementRefused(why))
        }
        Err(e) => Err(channel_error(e)),
    };
    let mut conn = state.pool.get().await?;
    let (statement, tally) = match result {
        Ok(done) => done,
        Err(e) => {
            finish(&mut conn, channel, date, Err(&e.to_string())).await?;
            return Err(e);
        }
    };
    finish(&mut conn, channel, date, Ok(&statement)).await?;
    let discrepancies = discrepancies(&mut conn, channel, date).await?;
    tracing::info!(
        payments = statement.payments.len(),
        refunds = statement.refunds.len(),
        matched = tally.matched,
        found_now = tally.found_now,
        open = discrepancies
            .iter()
            .filter(|d| d.resolution == Resolution::Open)
            .count(),
        "reconciled"
    );
    crate::metrics::reconciled(channel, &discrepancies, tally.found_now);
    Ok(Some(ReconciliationRun {
        channel,
        date,
        statement_payments: u32::try_from(statement.payments.len()).unwrap_or(u32::MAX),
        statement_refunds: u32::try_from(statement.refunds.len()).unwrap_or(u32::MAX),
        matched: tally.matched,
        found_now: tally.found_now,
        discrepancies,
    }))
}

/// The job's round: every due day of every enabled channel not done yet.
pub async fn run_due(state: &AppState, now: DateTime<Utc>) -> usize {
    let mut done = 0;
    for date in due_dates(&state.reconciliation, now) {
        let channels: Vec<_> = state
            .channels
            .enabled()
            .filter(|c| has_statement(*c))
            .collect();
        for channel in channels {
            match reconcile_day(state, channel, date, false).await {
                Ok(Some(_)) => done += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, %channel, %date, "reconciliation failed; retried next round")
                }
            }
        }
    }
    done
}

/// Runs forever: a round every `poll_interval_secs`.
pub async fn run_scheduler(state: web::Data<AppState>) {
    let pause = Duration::from_secs(state.reconciliation.poll_interval_secs.max(1));
    loop {
        run_due(&state, Utc::now()).await;
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yesterday_is_due_from_ten_oclock_china_time_and_earlier_days_always() {
        let s = ReconciliationSettings::default();
        // 2026-12-02 09:59:59 +08:00: yesterday's bill is not out yet.
        let before: DateTime<Utc> = "2026-12-02T01:59:59Z".parse().unwrap();
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        let dec1 = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(due_dates(&s, before), vec![d(30), d(29), d(28)]);
        let after: DateTime<Utc> = "2026-12-02T02:00:00Z".parse().unwrap();
        assert_eq!(due_dates(&s, after), vec![dec1, d(30), d(29), d(28)]);
    }

    #[test]
    fn a_day_is_the_china_standard_time_day() {
        let (from, to) = day_bounds(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert_eq!(from.to_rfc3339(), "2026-11-30T16:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-12-01T16:00:00+00:00");
        assert_eq!(our_number("7001"), Some(7001));
        assert_eq!(our_number("ORDER-1"), None);
        assert_eq!(our_number("-5"), None);
    }
}
