//! The refund worker: claims due refunds (`SKIP LOCKED`, so several instances share the
//! work without doing it twice), calls the channel, and applies what it says.
//!
//! `pending` → `channel.refund` (same `refund_no` every time: the channel's idempotency
//! key) → `processing` or final; `processing` → `channel.query_refund` (or the channel's
//! refund notification) → final. A final state is applied in one transaction with the
//! `refund.result.v1` outbox row and, once the succeeded refunds add up to the amount
//! paid, the attempt's `paid → refunded`.

use std::time::Duration;

use actix_web::web;
use chrono::Utc;
use diesel_async::AsyncConnection;
use paywire_channels::{ChannelError, CreateRefund, RefundState};
use paywire_contracts::RefundResultV1;
use paywire_domain::topology::PAY_RESULT_EXCHANGE;
use paywire_domain::{PaymentStatus, RefundNo};
use paywire_messaging::outbox::{OutboxMessage, enqueue};

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::store as payment_store;
use crate::refunds::model::{Refund, RefundStatus};
use crate::refunds::store;

/// What applying a channel's refund state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundApplied {
    /// The refund reached this final state now (event queued).
    Finished(RefundStatus),
    /// Accepted by the channel, not final yet.
    Processing,
    /// Nothing to do: already in (or past) that state.
    Unchanged,
    /// We know no such refund.
    Unknown,
}

/// Applies a refund state the channel reported (worker call, query or notification).
#[tracing::instrument(skip_all, fields(refund_no = %refund_no, pay_no = tracing::field::Empty, order_id = tracing::field::Empty))]
pub async fn apply_refund_state(
    state: &AppState,
    refund_no: RefundNo,
    reported: RefundState,
) -> Result<RefundApplied, GatewayError> {
    let mut conn = state.pool.get().await?;
    let now = Utc::now();
    let applied = conn
        .transaction::<_, GatewayError, _>(async |conn| {
            let Some(refund) = store::find_for_update(conn, refund_no).await? else {
                tracing::warn!("refund state for an unknown refund_no");
                return Ok(RefundApplied::Unknown);
            };
            let span = tracing::Span::current();
            span.record("pay_no", tracing::field::display(refund.pay_no));
            span.record("order_id", tracing::field::display(refund.order_id));
            let (status, channel_refund_id, refunded_at, error) = match reported {
                RefundState::Processing => {
                    return Ok(if store::mark_processing(conn, refund_no, now).await? {
                        tracing::info!("refund accepted by the channel");
                        RefundApplied::Processing
                    } else {
                        RefundApplied::Unchanged
                    });
                }
                RefundState::Succeeded {
                    channel_refund_id,
                    refunded_at,
                } => (
                    RefundStatus::Succeeded,
                    Some(channel_refund_id),
                    Some(refunded_at),
                    None,
                ),
                RefundState::Failed { reason } => (RefundStatus::Failed, None, None, Some(reason)),
            };
            if !store::mark_final(
                conn,
                refund_no,
                status,
                channel_refund_id.as_deref(),
                refunded_at,
                error.as_deref(),
                now,
            )
            .await?
            {
                return Ok(RefundApplied::Unchanged);
            }
            if status == RefundStatus::Succeeded {
                // A partial refund leaves the attempt paid; the one that completes the amount
                // moves it to refunded.
                let payment = payment_store::find(conn, refund.pay_no)
                    .await?
                    .ok_or(GatewayError::PaymentNotFound(refund.pay_no))?;
                let refunded =
                    store::total_for_payment(conn, refund.pay_no, &[RefundStatus::Succeeded])
                        .await?;
                if refunded >= payment.amount
                    && !payment_store::transition(conn, refund.pay_no, PaymentStatus::Refunded, now)
                        .await?
                {
                    tracing::warn!("refunded payment was not in status paid");
                }
            }
            let event = RefundResultV1 {
                refund_no,
                pay_no: refund.pay_no,
                order_id: refund.order_id,
                channel: refund.channel,
                amount_fen: refund.amount,
                reason: refund.reason.into(),
                status: status.into(),
                refunded_at,
            }
            .into_envelope(state.ids.next(), now);
            let message =
                OutboxMessage::event(&event, PAY_RESULT_EXCHANGE, "", refund.order_id.to_string())?;
            enqueue(conn, &message).await?;
            if status == RefundStatus::Failed {
                tracing::error!(reason = ?error, "refund failed at the channel; needs a human");
            } else {
                tracing::info!(event_id = %event.event_id, "refund succeeded; result queued");
            }
            Ok(RefundApplied::Finished(status))
        })
        .await?;
    match applied {
        RefundApplied::Finished(status) => crate::metrics::refund(status.as_str()),
        RefundApplied::Processing => crate::metrics::refund("processing"),
        RefundApplied::Unchanged | RefundApplied::Unknown => {}
    }
    Ok(applied)
}

/// Delay before the `attempts`-th retry: `base · 2^(attempts-1)`, at most `max`.
pub fn backoff(base: Duration, max: Duration, attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    base.saturating_mul(2u32.saturating_pow(exponent)).min(max)
}

/// Runs forever: claims due refunds and drives each one step further.
pub async fn run_refund_worker(state: web::Data<AppState>) {
    let settings = state.sweeper.clone();
    let base = Duration::from_secs(u64::from(settings.refund_retry_secs.max(1)));
    let max = Duration::from_secs(u64::from(settings.max_backoff_secs.max(1)));
    let idle = Duration::from_millis(settings.poll_interval_ms.max(1));
    let batch = i64::from(settings.batch_size.max(1));
    loop {
        let now = Utc::now();
        let claimed = async {
            let mut conn = state.pool.get().await?;
            store::claim_due(&mut conn, now, batch, |attempts| {
                now + chrono::Duration::from_std(backoff(base, max, attempts))
                    .unwrap_or(chrono::Duration::MAX)
            })
            .await
        }
        .await;
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "refund worker could not claim refunds");
                tokio::time::sleep(idle).await;
                continue;
            }
        };
        let full = claimed.len() as i64 == batch;
        for refund in claimed {
            if let Err(e) = drive(&state, &refund).await {
                tracing::warn!(refund_no = %refund.refund_no, error = %e, "refund step failed; retried later");
            }
        }
        if !full {
            tokio::time::sleep(idle).await;
        }
    }
}

/// One step of one claimed refund.
#[tracing::instrument(skip_all, fields(refund_no = %refund.refund_no, pay_no = %refund.pay_no, order_id = %refund.order_id))]
pub async fn drive(state: &AppState, refund: &Refund) -> Result<RefundApplied, GatewayError> {
    let channel = state
        .channels
        .get(refund.channel)
        .cloned()
        .ok_or(GatewayError::ChannelNotEnabled(refund.channel))?;
    let result = match refund.status {
        RefundStatus::Pending => {
            let payment = {
                let mut conn = state.pool.get().await?;
                payment_store::find(&mut conn, refund.pay_no)
                    .await?
                    .ok_or(GatewayError::PaymentNotFound(refund.pay_no))?
            };
            let channel_trade_no = payment.channel_trade_no.clone().ok_or_else(|| {
                GatewayError::CorruptRow(format!(
                    "refunded payment {} has no trade no",
                    payment.pay_no
                ))
            })?;
            channel
                .refund(&CreateRefund {
                    refund_no: refund.refund_no,
                    pay_no: refund.pay_no,
                    channel_trade_no,
                    refund_amount: refund.amount,
                    total_amount: payment.amount,
                    reason: refund.payer_text().to_owned(),
                })
                .await
        }
        RefundStatus::Processing => {
            match channel.query_refund(refund.refund_no, refund.pay_no).await {
                Err(ChannelError::NotFound) => {
                    // Never reached the channel: send it again (same refund_no).
                    let mut conn = state.pool.get().await?;
                    store::back_to_pending(&mut conn, refund.refund_no, Utc::now()).await?;
                    return Ok(RefundApplied::Unchanged);
                }
                other => other,
            }
        }
        RefundStatus::Succeeded | RefundStatus::Failed => return Ok(RefundApplied::Unchanged),
    };
    match result {
        Ok(reported) => apply_refund_state(state, refund.refund_no, reported).await,
        Err(e) => {
            let mut conn = state.pool.get().await?;
            store::record_error(&mut conn, refund.refund_no, &e.to_string(), Utc::now()).await?;
            Err(crate::payments::create::channel_error(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        assert_eq!(backoff(base, max, 1), Duration::from_secs(10));
        assert_eq!(backoff(base, max, 2), Duration::from_secs(20));
        assert_eq!(backoff(base, max, 4), Duration::from_secs(80));
        assert_eq!(backoff(base, max, 7), Duration::from_secs(600));
        assert_eq!(backoff(base, max, i32::MAX), Duration::from_secs(600));
        assert_eq!(backoff(base, max, 0), Duration::from_secs(10));
    }
}
