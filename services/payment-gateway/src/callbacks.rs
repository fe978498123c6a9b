//! The channel notification pipeline, the same for every channel:
//!
//! 1. the channel verifies and parses the raw request (signature, clock, decryption,
//!    merchant) — nothing in an unverified body is trusted;
//! 2. one transaction records the confirmed payment exactly as the sync and the sweeper do
//!    ([`record_confirmed`]: checks against our record, `unpaid → paid` + pay result, or
//!    stray money → refund) and records what happened in `channel_notifications`; a refund
//!    notification moves the refund instead. A notification refused in step 1 is only
//!    counted (`refused_notifications`, one row per reason and minute);
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
use paywire_domain::{PayChannel, PayNo};
use paywire_platform::db::DbError;

use crate::error::GatewayError;
use crate::payments::record::record_confirmed;
use crate::payments::store::{self, NotificationOutcome};
use crate::{AppState, refunds};

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
        NotifyError::Internal(_) => "internal",
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
        Ok(Notification::RefundUpdated {
            refund_no,
            pay_no,
            state: refund_state,
        }) => {
            tracing::Span::current().record("pay_no", tracing::field::display(pay_no));
            return match refunds::worker::apply_refund_state(state, refund_no, refund_state).await {
                Ok(_) => {
                    crate::metrics::notification(channel.channel(), "refund");
                    channel.acknowledge(&Ok(()))
                }
                Err(e) => {
                    tracing::error!(error = %e, %refund_no, "refund notification not applied");
                    server_failure_reply(channel.as_ref(), &e)
                }
            };
        }
        Ok(Notification::TradeClosed { pay_no }) => {
            tracing::Span::current().record("pay_no", tracing::field::display(pay_no));
            // Recorded, nothing moves: closing and refunding are ours to drive.
            let recorded = async {
                let mut conn = state.pool.get().await?;
                store::record_notification(
                    &mut conn,
                    channel.channel(),
                    Some(pay_no),
                    &NotificationOutcome::TradeClosed,
                    None,
                )
                .await
            }
            .await;
            return match recorded {
                Ok(()) => {
                    crate::metrics::notification(channel.channel(), "trade_closed");
                    channel.acknowledge(&Ok(()))
                }
                Err(e) => {
                    tracing::error!(error = %e, "trade-closed notification not recorded");
                    server_failure_reply(channel.as_ref(), &e)
                }
            };
        }
        Err(e) => {
            let reason = notify_reason(&e);
            tracing::warn!(error = %e, body_len = body.len(), "notification refused");
            // Counted, not kept: one row per reason and minute, so unsigned floods cost no
            // storage to speak of. Only the reason and the size: an unverified body is not
            // worth keeping and may carry data we must not store.
            let detail = format!("{e}; body {} bytes", body.len());
            count_refused(state, channel.channel(), reason, &detail).await;
            return channel.acknowledge(&Err(e));
        }
    };
    tracing::Span::current().record("pay_no", tracing::field::display(confirmed.pay_no));

    match apply(state, channel.channel(), &confirmed, now).await {
        Ok(NotificationOutcome::Rejected(reason)) => {
            channel.acknowledge(&Err(NotifyError::Malformed(reason.to_owned())))
        }
        Ok(_) => channel.acknowledge(&Ok(())),
        Err(GatewayError::Db(DbError::Query(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _,
        )))) => {
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
            // Nothing was committed: answer "try again" so the channel delivers it again.
            tracing::error!(error = %e, "notification not applied");
            server_failure_reply(channel.as_ref(), &e)
        }
    }
}

/// The channel's own "try again" reply: its failure body (WeChat Pay `{"code":"FAIL"}`,
/// Alipay anything but `success`) with a server status. The notification itself was fine
/// and nothing was committed; any non-2xx makes every channel deliver it again. The status
/// is the API's for the same error (the one mapping): `503` for an unreachable or busy
/// database (an outage, not a defect), else `500`.
fn server_failure_reply(channel: &dyn PaymentChannel, error: &GatewayError) -> NotificationReply {
    use paywire_platform::api_error::ApiError as _;
    let mut reply = channel.acknowledge(&Err(NotifyError::Internal(
        "temporarily unable to process".into(),
    )));
    reply.status = if error.reply().status.as_u16() == 503 {
        503
    } else {
        500
    };
    reply
}

/// Records a verified payment confirmation and its audit row in one transaction.
async fn apply(
    state: &AppState,
    channel: PayChannel,
    confirmed: &ConfirmedPayment,
    now: DateTime<Utc>,
) -> Result<NotificationOutcome, GatewayError> {
    let mut conn = state.pool.get().await?;
    let outcome = conn
        .transaction::<_, GatewayError, _>(async |conn| {
            let recorded = record_confirmed(conn, &state.ids, channel, confirmed, now).await?;
            store::record_notification(
                conn,
                channel,
                Some(confirmed.pay_no),
                &recorded.outcome,
                recorded.detail.as_deref(),
            )
            .await?;
            Ok(recorded.outcome)
        })
        .await?;
    crate::metrics::payment_recorded(channel, confirmed.amount, &outcome);
    crate::metrics::notification(channel, &outcome.as_text());
    Ok(outcome)
}

/// Counts a notification the channel layer refused ([`store::count_refused_notification`])
/// and in `paywire_payment_notifications_total{outcome="rejected:<reason>"}`. Best effort,
/// like [`record_separately`]; the metric counts even when the database is away.
async fn count_refused(state: &AppState, channel: PayChannel, reason: &'static str, detail: &str) {
    crate::metrics::notification(channel, &NotificationOutcome::Rejected(reason).as_text());
    let result = async {
        let mut conn = state.pool.get().await?;
        store::count_refused_notification(&mut conn, channel, reason, detail).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not count the refused notification");
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
        let mut conn = state.pool.get().await?;
        store::record_notification(&mut conn, channel, pay_no, outcome, Some(detail)).await
    }
    .await;
    match result {
        Ok(()) => crate::metrics::notification(channel, &outcome.as_text()),
        Err(e) => tracing::error!(error = %e, "could not record notification outcome"),
    }
}
