//! Recording a payment the channel confirmed — the one code path behind the callback
//! pipeline, the active sync of an order and the compensation sweeper, so a payment is
//! recorded the same way however we learnt about it.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use paywire_channels::ConfirmedPayment;
use paywire_contracts::PayResultV1;
use paywire_domain::topology::PAY_RESULT_EXCHANGE;
use paywire_domain::{IdGenerator, PayChannel, PaymentStatus};
use paywire_messaging::outbox::{OutboxMessage, enqueue};
use paywire_platform::telemetry;
use tracing::Instrument;

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::store::{self, NotificationOutcome, PaidEdge, Payment};
use crate::refunds::model::RefundReason;
use crate::refunds::store::{self as refund_store, NewRefund};

/// What recording decided, with a detail for the audit trail (never secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub outcome: NotificationOutcome,
    pub detail: Option<String>,
}

impl Recorded {
    fn new(outcome: NotificationOutcome, detail: Option<String>) -> Self {
        Self { outcome, detail }
    }
}

/// Records a confirmed payment inside the caller's transaction:
///
/// * attempt `unpaid`, order neither settled by another attempt nor closed →
///   `unpaid → paid` and a `pay.result.v1` in the outbox;
/// * attempt `closed`, or the order already settled by another attempt, or closed → the
///   attempt is marked paid too (the money is real) and a refund is recorded; no pay
///   result, so the student keeps exactly one enrolment;
/// * the same payment again → no-op (`Duplicate`);
/// * anything that does not match our record (pay_no, channel, amount, another trade
///   number on a paid attempt) → `Rejected`, nothing changes.
///
/// Takes the order lock before the attempt's row lock, the same order as every other
/// path that changes attempts, so two confirmations of one order are decided one after
/// the other.
pub async fn record_confirmed(
    conn: &mut AsyncPgConnection,
    ids: &IdGenerator,
    channel: PayChannel,
    confirmed: &ConfirmedPayment,
    now: DateTime<Utc>,
) -> Result<Recorded, GatewayError> {
    let Some(unlocked) = store::find(conn, confirmed.pay_no).await? else {
        tracing::warn!(pay_no = %confirmed.pay_no, "confirmation for an unknown pay_no");
        return Ok(Recorded::new(
            NotificationOutcome::Rejected("unknown_pay_no"),
            None,
        ));
    };
    tracing::Span::current().record("order_id", tracing::field::display(unlocked.order_id));
    // Channel and amount never change on an attempt: checking them before the locks is safe.
    if unlocked.channel != channel {
        tracing::error!(expected = %unlocked.channel, "confirmation from the wrong channel");
        return Ok(Recorded::new(
            NotificationOutcome::Rejected("channel_mismatch"),
            None,
        ));
    }
    if confirmed.amount != unlocked.amount {
        tracing::error!(
            expected_fen = unlocked.amount.get(),
            notified_fen = confirmed.amount.get(),
            "amount mismatch"
        );
        let detail = format!(
            "expected {} fen, notified {} fen",
            unlocked.amount.get(),
            confirmed.amount.get()
        );
        return Ok(Recorded::new(
            NotificationOutcome::Rejected("amount_mismatch"),
            Some(detail),
        ));
    }

    store::lock_order(conn, unlocked.order_id).await?;
    let payment = store::find_for_update(conn, confirmed.pay_no)
        .await?
        .ok_or(GatewayError::PaymentNotFound(confirmed.pay_no))?;
    let trade_no_detail = format!("channel_trade_no {}", confirmed.channel_trade_no);
    match payment.status {
        PaymentStatus::Paid | PaymentStatus::Refunded
            if payment.channel_trade_no.as_deref() == Some(confirmed.channel_trade_no.as_str()) =>
        {
            tracing::info!("payment already recorded");
            Ok(Recorded::new(
                NotificationOutcome::Duplicate,
                Some(trade_no_detail),
            ))
        }
        PaymentStatus::Paid | PaymentStatus::Refunded => {
            tracing::error!(
                recorded = ?payment.channel_trade_no,
                notified = %confirmed.channel_trade_no,
                "paid attempt confirmed with another channel trade number"
            );
            Ok(Recorded::new(
                NotificationOutcome::Rejected("trade_no_conflict"),
                Some(trade_no_detail),
            ))
        }
        PaymentStatus::Unpaid | PaymentStatus::Closed => {
            let settled_by = store::settling_attempt(conn, payment.order_id).await?;
            let order_closed = store::order_is_closed(conn, payment.order_id).await?;
            let stray = match (payment.status, &settled_by) {
                (_, Some(_)) => Some(RefundReason::DuplicatePayment),
                (PaymentStatus::Closed, None) => Some(RefundReason::OrderClosed),
                _ if order_closed => Some(RefundReason::OrderClosed),
                _ => None,
            };
            match stray {
                None => {
                    let span = paid_span(conn, &payment).await?;
                    apply_payment(conn, ids, &payment, confirmed, now)
                        .instrument(span)
                        .await?;
                    Ok(Recorded::new(
                        NotificationOutcome::Applied,
                        Some(trade_no_detail),
                    ))
                }
                Some(reason) => {
                    let refund_no =
                        record_stray(conn, ids, &payment, confirmed, reason, now).await?;
                    Ok(Recorded::new(
                        NotificationOutcome::StrayPayment,
                        Some(format!("{trade_no_detail}; refund {refund_no} ({reason})")),
                    ))
                }
            }
        }
    }
}

/// [`record_confirmed`] in its own transaction (sync and sweeper; the callback pipeline
/// adds its audit row to the same transaction instead).
pub async fn record_confirmed_now(
    state: &AppState,
    channel: PayChannel,
    confirmed: &ConfirmedPayment,
) -> Result<Recorded, GatewayError> {
    let mut conn = state.pool.get().await?;
    let now = Utc::now();
    let recorded = conn
        .transaction::<_, GatewayError, _>(async |conn| {
            record_confirmed(conn, &state.ids, channel, confirmed, now).await
        })
        .await?;
    crate::metrics::payment_recorded(channel, confirmed.amount, &recorded.outcome);
    Ok(recorded)
}

/// Records the confirmation on the attempt, which is locked FOR UPDATE: a refused guard
/// means the guard and the status we read disagree, so refuse rather than publish a result
/// (or refund money) we did not record.
async fn mark_paid(
    conn: &mut AsyncPgConnection,
    payment: &Payment,
    confirmed: &ConfirmedPayment,
    edge: PaidEdge,
    now: DateTime<Utc>,
) -> Result<(), GatewayError> {
    let (trade_no, paid_at) = (&confirmed.channel_trade_no, confirmed.paid_at);
    if store::mark_paid(conn, payment.pay_no, edge, trade_no, paid_at, now).await? {
        Ok(())
    } else {
        Err(GatewayError::PaymentChanged(payment.pay_no))
    }
}

/// The span recording a paid attempt: it continues the trace of the request that created
/// the attempt (the purchase), linked to the one that brought the news (a channel's
/// callback, a sync, the sweeper), so the pay result written in it, and the relay and
/// consumers after it, are in the purchase's trace.
async fn paid_span(
    conn: &mut AsyncPgConnection,
    payment: &Payment,
) -> Result<tracing::Span, GatewayError> {
    let created_in = store::traceparent(conn, payment.pay_no).await?;
    let span = tracing::info_span!(
        "payment_paid",
        pay_no = %payment.pay_no,
        order_id = %payment.order_id,
        channel = %payment.channel,
    );
    if telemetry::continue_trace(&span, created_in.as_deref()) {
        telemetry::link_current(&span);
    }
    Ok(span)
}

async fn apply_payment(
    conn: &mut AsyncPgConnection,
    ids: &IdGenerator,
    payment: &Payment,
    confirmed: &ConfirmedPayment,
    now: DateTime<Utc>,
) -> Result<(), GatewayError> {
    mark_paid(conn, payment, confirmed, PaidEdge::Settles, now).await?;
    let event = PayResultV1 {
        pay_no: payment.pay_no,
        order_id: payment.order_id,
        user_id: payment.user_id.clone(),
        biz_type: payment.biz_type,
        biz_id: payment.biz_id.clone(),
        channel: payment.channel,
        amount_fen: payment.amount,
        channel_trade_no: confirmed.channel_trade_no.clone(),
        paid_at: confirmed.paid_at,
    }
    .into_envelope(ids.next(), now);
    let message = OutboxMessage::event(
        &event,
        PAY_RESULT_EXCHANGE,
        "",
        payment.order_id.to_string(),
    )?;
    enqueue(conn, &message).await?;
    tracing::info!(event_id = %event.event_id, "payment confirmed; pay result queued");
    Ok(())
}

async fn record_stray(
    conn: &mut AsyncPgConnection,
    ids: &IdGenerator,
    payment: &Payment,
    confirmed: &ConfirmedPayment,
    reason: RefundReason,
    now: DateTime<Utc>,
) -> Result<paywire_domain::RefundNo, GatewayError> {
    mark_paid(conn, payment, confirmed, PaidEdge::Stray, now).await?;
    let refund = NewRefund {
        refund_no: ids.next(),
        pay_no: payment.pay_no,
        order_id: payment.order_id,
        channel: payment.channel,
        amount: payment.amount,
        reason,
        request: None,
    };
    if !refund_store::insert(conn, &refund, now).await? {
        // Cannot happen while the attempt row is locked and was not paid; refuse rather
        // than leave a paid attempt without its refund.
        return Err(GatewayError::PaymentChanged(payment.pay_no));
    }
    tracing::warn!(
        refund_no = %refund.refund_no,
        %reason,
        channel_trade_no = %confirmed.channel_trade_no,
        "stray payment; refund recorded"
    );
    Ok(refund.refund_no)
}
