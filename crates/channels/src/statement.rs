//! A channel's daily statement (WeChat Pay 交易账单, Alipay 业务明细), read into one shape
//! for reconciliation. Each channel's module parses its own file format; what comes out
//! is the channel's word on what moved that day, already verified (WeChat's SHA1 of the
//! bill, the zip's CRC-32 of each Alipay file) and with amounts in exact fen.

use chrono::{DateTime, NaiveDate, Utc};
use paywire_domain::Fen;

/// One day at one channel: every payment that succeeded and every refund accepted that
/// day (China Standard Time, the channels' day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub date: NaiveDate,
    pub payments: Vec<StatementPayment>,
    pub refunds: Vec<StatementRefund>,
}

impl Statement {
    /// A day the channel has no statement for (no trade at all).
    pub fn empty(date: NaiveDate) -> Self {
        Self {
            date,
            payments: Vec::new(),
            refunds: Vec::new(),
        }
    }
}

/// A payment line. `out_trade_no` is the merchant's number as the channel holds it (ours
/// are `pay_no`s, but a statement may list trades of other systems on the same account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementPayment {
    pub out_trade_no: String,
    pub channel_trade_no: String,
    pub amount: Fen,
    pub paid_at: DateTime<Utc>,
}

/// A refund line. `out_refund_no` is our `refund_no` (WeChat `out_refund_no`, Alipay
/// `out_request_no`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRefund {
    pub out_trade_no: String,
    pub channel_trade_no: String,
    pub out_refund_no: String,
    pub amount: Fen,
    /// The refund's state when the bill was made (WeChat `SUCCESS`/`PROCESSING`…;
    /// Alipay lists only refunds that went through: `SUCCESS`).
    pub status: String,
}

/// A decimal-yuan amount of a statement, exactly; a leading `-` (Alipay writes refunds
/// as negative receipts) is dropped, the line's kind says which way the money went.
pub(crate) fn statement_amount(field: &str, text: &str) -> Result<Fen, String> {
    let t = text.trim();
    let t = t.strip_prefix('-').unwrap_or(t);
    Fen::from_yuan_str(t).map_err(|_| format!("{field} {text:?} is not a decimal-yuan amount"))
}
