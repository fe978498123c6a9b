//! The channel notification pipeline, the same for every channel:
//!
//! 1. the channel verifies and parses the raw request (signature, clock, decryption,
//!    merchant) — nothing in an unverified body is trusted;
//! 2. one transaction locks the attempt, checks it against our record (pay_no, channel,
//!    amount), applies `unpaid → paid` with a guarded update and queues the pay result in
//!    the outbox, and records what happened in `channel_notifications`;
//! 3. the channel's own acknowledgement is returned: success only once the effect is
//!    committed, so a failure makes the channel deliver again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection;
use paywire_channels::{
    ConfirmedPayment, Notification, NotificationReply, NotificationRequest, NotifyError,
    PaymentChannel,
};
use paywire_domain::topology::PAY_RESULT_EXCHANGE;
use paywire_domain::{PayChannel, PayNo, PayResultV1, PaymentStatus};
use paywire_messaging::outbox::{OutboxMessage, enqueue};

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::store::{self, NotificationOutcome};

/// Stable snake_case reason for a notification the channel layer refused.
fn notify_reason(e: &NotifyError) -> &'static str {
    match e {
        NotifyError::BadSignature => "bad_signature",
        NotifyError::StaleTimestamp => "stale_timestamp",
        NotifyError::UnknownSerial => "unknown_serial",
        NotifyError::Malformed(_) => "malformed",
        NotifyError::Decrypt => "decrypt_failed",
        NotifyError::WrongMerchant => "wrong_merchant",
        NotifyError::Unsupported(_) => "unsupported_event",
    }
}

/// Handles one notification and returns the exact reply the channel expects.
#[tracing::instrument(
    skip_all,
    fields(channel = %channel.channel(), pay_no = tracing::field::Empty, order_id = tracing::field::Empty)
)]
pub async fn handle_notification(
    state: &AppState,
    channel: &Arc<dyn PaymentChannel>,
    headers: &[(String, String)],
    body: &[u8],
) -> NotificationReply {
    let now = Utc::now();
    let parsed = channel.parse_notification(&NotificationRequest { headers, body, now });
    let confirmed = match parsed {
        Ok(Notification::PaymentSucceeded(p)) => p,
        Err(e) => {
            let outcome = NotificationOutcome::Rejected(notify_reason(&e));
            tracing::warn!(error = %e, body_len = body.len(), "notification refused");
            // Only the reason and the size: an unverified body is not worth keeping and may
            // carry data we must not store.
            let detail = format!("{e}; body {} bytes", body.len());
            record_separately(state, channel.channel(), None, &outcome, &detail).await;
            return channel.acknowledge(&Err(e));
        }
    };
    tracing::Span::current().record("pay_no", tracing::field::display(confirmed.pay_no));

    match apply(state, channel.channel(), &confirmed, now).await {
        Ok(NotificationOutcome::Rejected(reason)) => {
            channel.acknowledge(&Err(NotifyError::Malformed(reason.to_owned())))
        }
        Ok(_) => channel.acknowledge(&Ok(())),
        Err(GatewayError::Database(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _,
        ))) => {
            // Another attempt already holds this channel transaction number.
            let outcome = NotificationOutcome::Rejected("trade_no_conflict");
            tracing::error!(channel_trade_no = %confirmed.channel_trade_no, "channel trade number already used by another attempt");
            record_separately(
                state,
                channel.channel(),
                Some(confirmed.pay_no),
                &outcome,
                &format!("channel_trade_no {}", confirmed.channel_trade_no),
            )
            .await;
            channel.acknowledge(&Err(NotifyError::Malformed("trade_no_conflict".into())))
        }
        Err(e) => {
            // Nothing was committed: answer with a server error so the channel retries.
            tracing::error!(error = %e, "notification not applied");
            server_failure_reply(channel.as_ref())
        }
    }
}

/// The channel's failure reply, forced to a server error: the notification itself was
/// fine, we could not process it, and a 5xx makes every channel deliver it again.
fn server_failure_reply(channel: &dyn PaymentChannel) -> NotificationReply {
    let mut reply = channel.acknowledge(&Err(NotifyError::Malformed(
        "temporarily unable to process".into(),
    )));
    reply.status = 500;
    reply
}

/// Decides and applies a verified payment confirmation in one transaction.
async fn apply(
    state: &AppState,
    channel: PayChannel,
    confirmed: &ConfirmedPayment,
    now: DateTime<Utc>,
) -> Result<NotificationOutcome, GatewayError> {
    let mut conn = state.conn().await?;
    conn.transaction::<_, GatewayError, _>(async |conn| {
        let (outcome, detail) = decide_and_apply(state, conn, channel, confirmed, now).await?;
        store::record_notification(
            conn,
            channel,
            Some(confirmed.pay_no),
            &outcome,
            detail.as_deref(),
        )
        .await?;
        Ok(outcome)
    })
    .await
}

async fn decide_and_apply(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    channel: PayChannel,
    confirmed: &ConfirmedPayment,
    now: DateTime<Utc>,
) -> Result<(NotificationOutcome, Option<String>), GatewayError> {
    let Some(payment) = store::find_for_update(conn, confirmed.pay_no).await? else {
        tracing::warn!("notification for an unknown pay_no");
        return Ok((NotificationOutcome::Rejected("unknown_pay_no"), None));
    };
    tracing::Span::current().record("order_id", tracing::field::display(payment.order_id));
    if payment.channel != channel {
        tracing::error!(expected = %payment.channel, "notification from the wrong channel");
        return Ok((NotificationOutcome::Rejected("channel_mismatch"), None));
    }
    if confirmed.amount != payment.amount {
        tracing::error!(
            expected_fen = payment.amount.get(),
            notified_fen = confirmed.amount.get(),
            "amount mismatch"
        );
        let detail = format!(
            "expected {} fen, notified {} fen",
            payment.amount.get(),
            confirmed.amount.get()
        );
        return Ok((
            NotificationOutcome::Rejected("amount_mismatch"),
            Some(detail),
        ));
    }
    let trade_no_detail = Some(format!("channel_trade_no {}", confirmed.channel_trade_no));
    match payment.status {
        PaymentStatus::Unpaid => {
            if !store::mark_paid(
                conn,
                payment.pay_no,
                &confirmed.channel_trade_no,
                confirmed.paid_at,
                now,
            )
            .await?
            {
                // The row is locked FOR UPDATE, so this means the guard and the status we
                // read disagree: refuse rather than publish a result we did not record.
                return Err(GatewayError::PaymentChanged(payment.pay_no));
            }
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
            .into_envelope(state.ids.next(), now);
            let message = OutboxMessage::event(
                &event,
                PAY_RESULT_EXCHANGE,
                "",
                payment.order_id.to_string(),
            )?;
            enqueue(conn, &message).await?;
            tracing::info!(event_id = %event.event_id, "payment confirmed; pay result queued");
            Ok((NotificationOutcome::Applied, trade_no_detail))
        }
        PaymentStatus::Paid | PaymentStatus::Refunded
            if payment.channel_trade_no.as_deref() == Some(confirmed.channel_trade_no.as_str()) =>
        {
            tracing::info!("duplicate notification");
            Ok((NotificationOutcome::Duplicate, trade_no_detail))
        }
        PaymentStatus::Paid | PaymentStatus::Refunded => {
            tracing::error!(
                recorded = ?payment.channel_trade_no,
                notified = %confirmed.channel_trade_no,
                "paid attempt notified with another channel trade number"
            );
            Ok((
                NotificationOutcome::Rejected("trade_no_conflict"),
                trade_no_detail,
            ))
        }
        PaymentStatus::Closed => {
            // The student paid an attempt we had already closed: the money is real and must
            // be returned. Refunds arrive in a later issue; until then this audit row (and
            // the error log) is how operations find these payments. Acknowledge, since
            // redelivery would not change anything.
            tracing::error!(
                channel_trade_no = %confirmed.channel_trade_no,
                "stray payment on a closed attempt; needs a refund"
            );
            Ok((NotificationOutcome::StrayPayment, trade_no_detail))
        }
    }
}

/// Records an outcome outside the (rolled back or never started) effect transaction.
/// Best effort: the audit row must not turn a reply into a different one.
async fn record_separately(
    state: &AppState,
    channel: PayChannel,
    pay_no: Option<PayNo>,
    outcome: &NotificationOutcome,
    detail: &str,
) {
    let result = async {
        let mut conn = state.conn().await?;
        store::record_notification(&mut conn, channel, pay_no, outcome, Some(detail)).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not record notification outcome");
    }
}
