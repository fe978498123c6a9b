//! The gateway's business metrics, named once and recorded where the fact is known, after
//! its transaction committed (a rolled-back decision is not counted):
//!
//! * `paywire_payment_attempts_created_total{channel}`, `paywire_payment_attempts_closed_total{channel}`;
//! * `paywire_payments_paid_total{channel}` and `paywire_payments_paid_fen_total{channel}`
//!   (a pay result queued), `paywire_payments_stray_total{channel}` (money taken for a
//!   closed or already paid order, refunded);
//! * `paywire_payment_notifications_total{channel,outcome}`: what a channel notification
//!   did (`applied`, `duplicate`, `stray_payment`, `trade_closed`, `refund`,
//!   `rejected:<reason>`);
//! * `paywire_sweeper_claimed_total`, `paywire_sweeper_checks_total{result}`: `applied` is a
//!   payment the channel had taken and no callback had recorded;
//! * `paywire_sync_skipped_total{channel}`: an "I have paid" sync that did not ask the
//!   channel about an attempt because it was asked about moments ago;
//! * `paywire_refunds_total{status}`: refunds reaching `processing`, `succeeded`, `failed`;
//! * `paywire_reconciliation_discrepancies_total{channel,kind,resolution}`: discrepancies
//!   reconciliation found for the first time, and `paywire_reconciliation_open{channel}`:
//!   how many of the last reconciled day wait for an operator.

use paywire_contracts::reconciliation::{Discrepancy, Resolution};
use paywire_domain::{Fen, PayChannel};

use crate::payments::store::NotificationOutcome;

pub fn attempt_created(channel: PayChannel) {
    metrics::counter!("paywire_payment_attempts_created_total", "channel" => channel.as_str())
        .increment(1);
}

pub fn attempt_closed(channel: PayChannel) {
    metrics::counter!("paywire_payment_attempts_closed_total", "channel" => channel.as_str())
        .increment(1);
}

/// A confirmed payment recorded (callback, sync, timeout or sweeper).
pub fn payment_recorded(channel: PayChannel, amount: Fen, outcome: &NotificationOutcome) {
    match outcome {
        NotificationOutcome::Applied => {
            metrics::counter!("paywire_payments_paid_total", "channel" => channel.as_str())
                .increment(1);
            metrics::counter!("paywire_payments_paid_fen_total", "channel" => channel.as_str())
                .increment(u64::try_from(amount.get()).unwrap_or(0));
        }
        NotificationOutcome::StrayPayment => {
            metrics::counter!("paywire_payments_stray_total", "channel" => channel.as_str())
                .increment(1);
        }
        _ => {}
    }
}

pub fn notification(channel: PayChannel, outcome: &str) {
    metrics::counter!(
        "paywire_payment_notifications_total",
        "channel" => channel.as_str(),
        "outcome" => outcome.to_owned(),
    )
    .increment(1);
}

pub fn sweeper_claimed(n: usize) {
    metrics::counter!("paywire_sweeper_claimed_total").increment(n as u64);
}

pub fn sweeper_check(result: String) {
    metrics::counter!("paywire_sweeper_checks_total", "result" => result).increment(1);
}

pub fn refund(status: &'static str) {
    metrics::counter!("paywire_refunds_total", "status" => status).increment(1);
}

pub fn sync_skipped(channel: PayChannel) {
    metrics::counter!("paywire_sync_skipped_total", "channel" => channel.as_str()).increment(1);
}

/// A reconciled day: its new discrepancies counted, its open ones as a gauge.
pub fn reconciled(channel: PayChannel, discrepancies: &[Discrepancy], found_now: u32) {
    let fresh = discrepancies.len().saturating_sub(found_now as usize);
    for d in discrepancies.iter().skip(fresh) {
        let text = |v: serde_json::Value| v.as_str().unwrap_or("").to_owned();
        metrics::counter!(
            "paywire_reconciliation_discrepancies_total",
            "channel" => channel.as_str(),
            "kind" => text(serde_json::to_value(d.kind).unwrap_or_default()),
            "resolution" => text(serde_json::to_value(d.resolution).unwrap_or_default()),
        )
        .increment(1);
    }
    let open = discrepancies
        .iter()
        .filter(|d| d.resolution == Resolution::Open)
        .count();
    metrics::gauge!("paywire_reconciliation_open", "channel" => channel.as_str()).set(open as f64);
}
