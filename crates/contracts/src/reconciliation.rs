//! The payment gateway's reconciliation API (operators' credential): compare a day's
//! statement of each channel with the gateway's attempts and refunds
//! (`POST /internal/reconciliation`, what `cargo xtask reconcile` calls).

use chrono::{DateTime, NaiveDate, Utc};
use paywire_domain::{Fen, PayChannel, PayNo, RefundNo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /internal/reconciliation` body: one day (China Standard Time, the channels'
/// day), of one channel or of every enabled one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunReconciliation {
    #[schema(value_type = String, format = Date, examples("2026-12-01"))]
    pub date: NaiveDate,
    #[serde(default)]
    pub channel: Option<PayChannel>,
}

/// What a discrepancy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// Paid at the channel, our attempt still unpaid: no callback and no query told us.
    PaidNotRecorded,
    /// Paid at the channel, our attempt closed (or its order settled by another attempt):
    /// stray money.
    StatusMismatch,
    /// Paid at the channel for a trade number we never issued.
    UnknownTrade,
    /// The statement's amount is not the attempt's.
    AmountMismatch,
    /// Our paid attempt holds another channel trade number than the statement's.
    TradeNoMismatch,
    /// We recorded a payment that day the channel does not list.
    NotAtChannel,
    /// A refund at the channel that is none of ours.
    RefundNotRecorded,
    /// A refund we hold succeeded that day the channel does not list.
    RefundNotAtChannel,
    /// The statement's refund amount is not ours.
    RefundAmountMismatch,
    /// The channel lists a refund we hold as failed.
    RefundStatusMismatch,
}

/// What was done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Recorded as if its callback had come: the attempt is paid and its `pay.result.v1`
    /// is in the outbox.
    Recorded,
    /// Recorded as stray money: the attempt is marked paid and a refund is on its way.
    RefundQueued,
    /// Nothing automatic is safe: an operator decides.
    Open,
}

/// One row of the `reconciliation` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Discrepancy {
    pub kind: DiscrepancyKind,
    /// The trade (`out_trade_no`) or refund (`out_refund_no`) the line is about.
    pub reference: String,
    pub pay_no: Option<PayNo>,
    pub refund_no: Option<RefundNo>,
    pub channel_trade_no: Option<String>,
    /// Our amount, when we hold one.
    pub ours_fen: Option<Fen>,
    /// The statement's amount, when it lists one.
    pub channel_fen: Option<Fen>,
    pub detail: String,
    pub resolution: Resolution,
    /// When a run first found it.
    pub found_at: DateTime<Utc>,
}

/// One channel's day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationRun {
    pub channel: PayChannel,
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    /// Lines in the statement.
    pub statement_payments: u32,
    pub statement_refunds: u32,
    /// Statement lines that agree with our records.
    pub matched: u32,
    /// Discrepancies this run found for the first time (0 when the day is run again).
    pub found_now: u32,
    /// Every discrepancy of the day, found by this run or an earlier one.
    pub discrepancies: Vec<Discrepancy>,
}

/// `POST /internal/reconciliation` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationReport {
    pub runs: Vec<ReconciliationRun>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_wire;

    #[test]
    fn run_reconciliation_keeps_its_wire_format() {
        assert_wire(
            &RunReconciliation {
                date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
                channel: Some(PayChannel::Alipay),
            },
            r#"{"date":"2026-12-01","channel":"alipay"}"#,
        );
        let all: RunReconciliation = serde_json::from_str(r#"{"date":"2026-12-01"}"#).unwrap();
        assert_eq!(all.channel, None);
        assert!(serde_json::from_str::<RunReconciliation>(r#"{"date":"2026-12-1x"}"#).is_err());
    }

    #[test]
    fn kinds_and_resolutions_are_snake_case() {
        assert_eq!(
            serde_json::to_value(DiscrepancyKind::PaidNotRecorded).unwrap(),
            "paid_not_recorded"
        );
        assert_eq!(
            serde_json::to_value(Resolution::RefundQueued).unwrap(),
            "refund_queued"
        );
    }
}
