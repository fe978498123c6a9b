//! The payment-channel abstraction the gateway talks to.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use paywire_domain::{Fen, PayChannel, PayNo, RefundNo};

use crate::{ChannelError, NotifyError, Statement};

/// Ask the channel for a QR-code payment of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePayment {
    pub pay_no: PayNo,
    pub amount: Fen,
    pub description: String,
    pub expires_at: DateTime<Utc>,
    pub attach: Option<String>,
}

/// What the payer scans: WeChat `code_url` / Alipay `qr_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedPayment {
    pub code_url: String,
}

/// What the channel says about a trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentState {
    /// Confirmed paid.
    Paid(ConfirmedPayment),
    /// Exists (or not yet, for Alipay) and is unpaid: still waiting.
    NotPaid,
    /// Confirmed closed: will never be paid.
    Closed,
    /// Paid, then (partly) refunded.
    Refunded(ConfirmedPayment),
}

/// A payment the channel vouches for. The caller still checks `pay_no` and `amount`
/// against its own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedPayment {
    pub pay_no: PayNo,
    pub channel_trade_no: String,
    pub amount: Fen,
    pub paid_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The trade is closed (now or before): it will never be paid.
    Closed,
    /// Too late: the channel says it is paid (or refunded). Query it to record the payment.
    AlreadyPaid,
}

/// An incoming notification as the HTTP layer received it.
#[derive(Debug, Clone, Copy)]
pub struct NotificationRequest<'a> {
    /// Header names lower-cased.
    pub headers: &'a [(String, String)],
    /// The raw body bytes, exactly as received (signatures cover them).
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
}

/// Ask the channel to give (part of) a confirmed payment back. `refund_no` is our
/// idempotency key at the channel: the same `refund_no` never refunds twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRefund {
    pub refund_no: RefundNo,
    pub pay_no: PayNo,
    /// The channel's number of the payment (WeChat `transaction_id`, Alipay `trade_no`).
    pub channel_trade_no: String,
    pub refund_amount: Fen,
    /// The payment's total: WeChat wants it with every refund.
    pub total_amount: Fen,
    pub reason: String,
}

/// What the channel says about one refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundState {
    /// Money is on its way back to the payer: final.
    Succeeded {
        channel_refund_id: String,
        refunded_at: DateTime<Utc>,
    },
    /// Accepted, not final yet: wait for the callback or query again later.
    Processing,
    /// Final failure (WeChat `CLOSED`/`ABNORMAL`): needs a human or a new refund.
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    PaymentSucceeded(ConfirmedPayment),
    /// A refund reached a state the channel reports (WeChat `REFUND.*`, Alipay
    /// notifications carrying `out_biz_no`/`refund_fee`).
    RefundUpdated {
        refund_no: RefundNo,
        pay_no: PayNo,
        state: RefundState,
    },
    /// The channel closed the trade (Alipay `TRADE_CLOSED`: unpaid after a timeout, or
    /// fully refunded). Nothing moves on it: closing and refunding are driven by our side
    /// and confirmed by queries; the notification is recorded as what it is.
    TradeClosed {
        pay_no: PayNo,
    },
}

/// The exact HTTP reply a channel expects for a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

#[async_trait]
pub trait PaymentChannel: Send + Sync + std::fmt::Debug {
    fn channel(&self) -> PayChannel;
    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ChannelError>;
    /// `Err(NotFound)` when the channel does not know the trade; the caller decides
    /// what that means for its attempt.
    async fn query_payment(&self, pay_no: PayNo) -> Result<PaymentState, ChannelError>;
    async fn close_payment(&self, pay_no: PayNo) -> Result<CloseOutcome, ChannelError>;
    /// Starts (or, for a `refund_no` already sent, re-reads) a refund.
    async fn refund(&self, req: &CreateRefund) -> Result<RefundState, ChannelError>;
    /// `Err(NotFound)` when the channel does not know the refund.
    async fn query_refund(
        &self,
        refund_no: RefundNo,
        pay_no: PayNo,
    ) -> Result<RefundState, ChannelError>;
    /// The channel's verified statement of `date` (China Standard Time): every payment
    /// and refund of that day; empty when the channel has no bill for the day.
    async fn statement(&self, date: NaiveDate) -> Result<Statement, ChannelError> {
        Err(ChannelError::Config(format!(
            "{} serves no statement of {date}",
            self.channel()
        )))
    }
    /// Verifies and parses an incoming notification from the raw HTTP request.
    fn parse_notification(
        &self,
        req: &NotificationRequest<'_>,
    ) -> Result<Notification, NotifyError>;
    /// The exact reply the channel expects.
    fn acknowledge(&self, result: &Result<(), NotifyError>) -> NotificationReply;
}
