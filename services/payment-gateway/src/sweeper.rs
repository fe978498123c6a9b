//! Compensation for missing callbacks: a background task that asks the channel about
//! attempts still unpaid some time after their creation, with a doubling delay, and once
//! more after their expiry — then closes them at the channel and locally.
//!
//! Safe on several instances at once: each round claims due rows with
//! `FOR UPDATE SKIP LOCKED` and moves their next check forward before the claim commits,
//! so an attempt is checked by one instance at a time; recording a payment is idempotent
//! anyway. An unreachable channel leaves the attempt for its next scheduled check.

use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};

use crate::payments::active::{Found, close_attempt, query_attempt};
use crate::payments::store::{self, Payment};
use crate::{AppState, SweeperSettings};

/// When to check an attempt next, given that this is check number `done + 1`.
///
/// Before expiry: `first · 2^(done+1)` capped at `max_backoff`, but never later than the
/// final check at `expires_at + after_expiry`. At or after expiry (the final check, which
/// closes): retried after the capped delay if it fails.
pub fn next_check_at(
    settings: &SweeperSettings,
    payment: &Payment,
    done: i32,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let first = u64::from(settings.first_check_secs.max(1));
    let exponent = u32::try_from(done.saturating_add(1).clamp(0, 20)).unwrap_or(20);
    let delay_secs = first
        .saturating_mul(2u64.saturating_pow(exponent))
        .min(u64::from(settings.max_backoff_secs.max(1)));
    let delay = chrono::Duration::seconds(i64::try_from(delay_secs).unwrap_or(i64::MAX / 1000));
    let next = now + delay;
    let final_check =
        payment.expires_at + chrono::Duration::seconds(i64::from(settings.after_expiry_secs));
    if now < final_check && next > final_check {
        final_check
    } else {
        next
    }
}

/// Runs forever: one round, then a pause when there was nothing more to claim.
pub async fn run_sweeper(state: web::Data<AppState>) {
    let idle = Duration::from_millis(state.sweeper.poll_interval_ms.max(1));
    loop {
        match sweep_once(&state).await {
            Ok(n) if n as u32 >= state.sweeper.batch_size.max(1) => {}
            Ok(_) => tokio::time::sleep(idle).await,
            Err(e) => {
                tracing::warn!(error = %e, "sweeper round failed");
                tokio::time::sleep(idle).await;
            }
        }
    }
}

/// Claims due attempts and checks each one. Returns how many were claimed.
pub async fn sweep_once(state: &AppState) -> Result<usize, crate::GatewayError> {
    let now = Utc::now();
    let settings = &state.sweeper;
    let claimed = {
        let mut conn = state.pool.get().await?;
        store::claim_due_checks(
            &mut conn,
            now,
            i64::from(settings.batch_size.max(1)),
            |p, done| next_check_at(settings, p, done, now),
        )
        .await?
    };
    let count = claimed.len();
    crate::metrics::sweeper_claimed(count);
    for payment in claimed {
        check(state, &payment, now).await;
    }
    Ok(count)
}

#[tracing::instrument(skip_all, fields(pay_no = %payment.pay_no, order_id = %payment.order_id, channel = %payment.channel))]
async fn check(state: &AppState, payment: &Payment, now: DateTime<Utc>) {
    let result = if now >= payment.expires_at {
        close_attempt(state, payment).await
    } else {
        query_attempt(state, payment).await
    };
    match result {
        Ok(Found::Paid(recorded)) => {
            tracing::info!(
                outcome = recorded.outcome.as_text(),
                "sweeper found a payment"
            );
            crate::metrics::sweeper_check(recorded.outcome.as_text());
        }
        Ok(Found::Closed) if now < payment.expires_at => {
            crate::metrics::sweeper_check("closed".into());
            // Closed at the channel by someone else: follow it locally.
            if let Err(e) = close_attempt(state, payment).await {
                tracing::warn!(error = %e, "could not close the attempt locally");
            }
        }
        Ok(Found::Closed) => {
            crate::metrics::sweeper_check("closed".into());
            tracing::info!("expired attempt closed");
        }
        Ok(Found::NotPaid) => {
            crate::metrics::sweeper_check("not_paid".into());
            tracing::debug!("still unpaid");
        }
        Err(e) => {
            crate::metrics::sweeper_check("failed".into());
            tracing::warn!(error = %e, "check failed; retried at the next check");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_domain::{BizType, Fen, OrderId, PayChannel, PaymentStatus, UserId};

    fn payment(expires_in: i64, now: DateTime<Utc>) -> Payment {
        Payment {
            pay_no: 1.into(),
            order_id: OrderId::from(2),
            user_id: UserId::parse("s1").unwrap(),
            biz_type: BizType::Course,
            biz_id: "3".into(),
            channel: PayChannel::Wechat,
            amount: Fen::new(100).unwrap(),
            description: "x".into(),
            status: PaymentStatus::Unpaid,
            code_url: None,
            expires_at: now + chrono::Duration::seconds(expires_in),
            channel_trade_no: None,
            paid_at: None,
            created_at: now,
        }
    }

    #[test]
    fn checks_back_off_then_land_after_expiry() {
        let now = Utc::now();
        let s = SweeperSettings::default();
        let p = payment(900, now);
        let secs = |t: DateTime<Utc>| (t - now).num_seconds();
        assert_eq!(secs(next_check_at(&s, &p, 0, now)), 120);
        assert_eq!(secs(next_check_at(&s, &p, 1, now)), 240);
        assert_eq!(secs(next_check_at(&s, &p, 2, now)), 480);
        assert_eq!(secs(next_check_at(&s, &p, 3, now)), 600);
        assert_eq!(secs(next_check_at(&s, &p, 30, now)), 600);
        // Never past the final check after expiry.
        let soon = payment(100, now);
        assert_eq!(secs(next_check_at(&s, &soon, 3, now)), 130);
        // The final check failed: retried after the capped delay.
        let expired = payment(-100, now);
        assert_eq!(secs(next_check_at(&s, &expired, 5, now)), 600);
    }
}
