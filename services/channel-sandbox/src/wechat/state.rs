//! WeChat Pay trades held in memory: the state machine and the book of trades.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use paywire_channels::random_alphanumeric;
use paywire_domain::Fen;
use rand::Rng;
use serde::Serialize;

use crate::SandboxError;

/// `trade_state` of a Native trade (MICROPAY-only states are not modelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TradeState {
    #[serde(rename = "NOTPAY")]
    NotPay,
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "CLOSED")]
    Closed,
    /// Paid, then (partly) refunded.
    #[serde(rename = "REFUND")]
    Refund,
}

impl TradeState {
    pub const fn as_str(self) -> &'static str {
        match self {
            TradeState::NotPay => "NOTPAY",
            TradeState::Success => "SUCCESS",
            TradeState::Closed => "CLOSED",
            TradeState::Refund => "REFUND",
        }
    }

    /// `trade_state_desc` as WeChat Pay words it.
    pub const fn desc(self) -> &'static str {
        match self {
            TradeState::NotPay => "订单未支付",
            TradeState::Success => "支付成功",
            TradeState::Closed => "订单已关闭",
            TradeState::Refund => "转入退款",
        }
    }

    /// A declined or failed payment leaves NOTPAY; a refund turns SUCCESS into REFUND;
    /// CLOSED is final.
    pub const fn can_become(self, next: TradeState) -> bool {
        matches!(
            (self, next),
            (TradeState::NotPay, TradeState::Success)
                | (TradeState::NotPay, TradeState::Closed)
                | (TradeState::Success, TradeState::Refund)
        )
    }

    /// Paid (and maybe partly refunded already).
    pub const fn is_paid(self) -> bool {
        matches!(self, TradeState::Success | TradeState::Refund)
    }
}

/// A merchant order number: 6–32 characters of `[0-9A-Za-z_-|*]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutTradeNo(String);

impl OutTradeNo {
    pub fn parse(s: &str) -> Result<Self, SandboxError> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*');
        if (6..=32).contains(&s.len()) && s.bytes().all(allowed) {
            Ok(Self(s.to_owned()))
        } else {
            Err(SandboxError::ParamError(format!(
                "out_trade_no 须为6-32位数字、大小写字母、_-|*: {s:?}"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything the merchant sent at prepay that a repeated prepay must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepayParams {
    pub appid: String,
    pub description: String,
    pub notify_url: String,
    pub total: Fen,
    pub attach: Option<String>,
    pub time_expire: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub transaction_id: String,
    pub success_time: DateTime<Utc>,
    pub openid: String,
}

#[derive(Debug, Clone)]
pub struct Trade {
    pub mchid: String,
    pub out_trade_no: OutTradeNo,
    pub params: PrepayParams,
    pub code_url: String,
    pub created_at: DateTime<Utc>,
    /// The last moment the payer can pay (`time_expire` after WeChat's clamping).
    pub pay_before: DateTime<Utc>,
    pub state: TradeState,
    pub payment: Option<Payment>,
    pub declines: Vec<DateTime<Utc>>,
    /// Ids of the notifications sent for this trade (see `notify`).
    pub notifications: Vec<String>,
    pub refunds: Vec<Refund>,
    /// Paid, yet shown unpaid to queries (the `pay_invisible` fault): only the statement
    /// tells.
    pub hidden: bool,
}

impl Trade {
    /// The trade as queries see it: a hidden payment is not there.
    pub fn as_seen(&self) -> Trade {
        let mut seen = self.clone();
        if seen.hidden {
            seen.state = TradeState::NotPay;
            seen.payment = None;
        }
        seen
    }
}

/// What the merchant asked for in a refund; a repeat with the same `out_refund_no` must
/// match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundParams {
    pub out_refund_no: String,
    pub refund: Fen,
    pub total: Fen,
    pub reason: Option<String>,
    pub notify_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Processing,
    Success,
}

#[derive(Debug, Clone)]
pub struct Refund {
    pub refund_id: String,
    pub params: RefundParams,
    pub status: RefundStatus,
    pub created_at: DateTime<Utc>,
    pub success_time: Option<DateTime<Utc>>,
}

impl Refund {
    /// The refund object of refund responses and queries.
    pub fn json(&self, trade: &Trade) -> serde_json::Value {
        let refund = self.params.refund;
        let total = self.params.total;
        let json = serde_json::json!({
            "refund_id": self.refund_id,
            "out_refund_no": self.params.out_refund_no,
            "transaction_id": trade.payment.as_ref().map(|p| p.transaction_id.as_str()).unwrap_or(""),
            "out_trade_no": trade.out_trade_no.as_str(),
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": rfc3339_cst(self.created_at),
            "status": self.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": total, "refund": refund, "from": [],
                "payer_total": total, "payer_refund": refund,
                "settlement_refund": refund, "settlement_total": total,
                "discount_refund": 0, "currency": "CNY", "refund_fee": 0,
            },
            "promotion_detail": [],
        });
        self.with_success_time(json)
    }

    /// `success_time` only once the refund succeeded: WeChat Pay omits the field (it
    /// does not send `null`) while a refund is processing.
    fn with_success_time(&self, mut json: serde_json::Value) -> serde_json::Value {
        if let (Some(at), Some(map)) = (self.success_time, json.as_object_mut()) {
            map.insert("success_time".into(), rfc3339_cst(at).into());
        }
        json
    }

    /// The decrypted resource of a `REFUND.*` notification.
    pub fn notification_resource(&self, trade: &Trade) -> serde_json::Value {
        let json = serde_json::json!({
            "mchid": trade.mchid,
            "transaction_id": trade.payment.as_ref().map(|p| p.transaction_id.as_str()).unwrap_or(""),
            "out_trade_no": trade.out_trade_no.as_str(),
            "refund_id": self.refund_id,
            "out_refund_no": self.params.out_refund_no,
            "refund_status": self.status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": self.params.total, "refund": self.params.refund,
                "payer_total": self.params.total, "payer_refund": self.params.refund,
            },
        });
        self.with_success_time(json)
    }
}

/// How a refund names its trade.
#[derive(Debug, Clone)]
pub enum TradeRef {
    OutTradeNo(String),
    TransactionId(String),
}

/// Unpaid orders without `time_expire` cannot be paid after 7 days.
const DEFAULT_VALIDITY_DAYS: i64 = 7;
/// `time_expire` is raised to at least creation + 1 minute and cut to 90 days.
const MIN_VALIDITY_MINUTES: i64 = 1;
const MAX_VALIDITY_DAYS: i64 = 90;

/// China Standard Time: WeChat Pay writes every timestamp with `+08:00`.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// RFC 3339 in China Standard Time, whole seconds (`2026-11-22T10:34:56+08:00`).
pub fn rfc3339_cst(at: DateTime<Utc>) -> String {
    at.with_timezone(&cst())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn new_code_url() -> String {
    format!("weixin://wxpay/bizpayurl?pr={}", random_alphanumeric(12))
}

/// 28 digits like WeChat's: `4200001234`, the date, then 10 digits.
fn new_transaction_id(now: DateTime<Utc>, sequence: u64) -> String {
    let day = now.with_timezone(&cst()).format("%Y%m%d");
    let salt: u32 = rand::thread_rng().gen_range(0..10_000);
    format!("4200001234{day}{salt:04}{:06}", sequence % 1_000_000)
}

/// WeChat refund ids: `50` + 30 digits (date first).
fn new_refund_id(now: DateTime<Utc>) -> String {
    let day = now.with_timezone(&cst()).format("%Y%m%d");
    let salt: u64 = rand::thread_rng().gen_range(0..100_000_000_000_000_000);
    format!("50300{day}{salt:019}")
}

/// A payer's openid: 28 characters starting `o`.
pub fn new_openid() -> String {
    format!("o{}", random_alphanumeric(27))
}

type TradeKey = (String, String);

#[derive(Debug, Default)]
struct Book {
    trades: HashMap<TradeKey, Trade>,
    by_code: HashMap<String, TradeKey>,
    /// `(mchid, out_refund_no)` → trade.
    refunds: HashMap<TradeKey, TradeKey>,
    payments: u64,
}

/// All trades of the sandbox, keyed by `(mchid, out_trade_no)` and by `code_url`.
#[derive(Debug, Default)]
pub struct TradeBook {
    inner: Mutex<Book>,
}

impl TradeBook {
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the trade, or returns its `code_url` again for an identical repeat.
    pub fn prepay(
        &self,
        mchid: &str,
        out_trade_no: OutTradeNo,
        params: PrepayParams,
        now: DateTime<Utc>,
    ) -> Result<String, SandboxError> {
        let key = (mchid.to_owned(), out_trade_no.as_str().to_owned());
        let mut book = self.lock();
        if let Some(existing) = book.trades.get(&key) {
            return match existing.state {
                TradeState::Closed => Err(SandboxError::OrderClosed),
                // Paid: the number is spent, whatever the parameters.
                TradeState::Success | TradeState::Refund => Err(SandboxError::OutTradeNoUsed),
                TradeState::NotPay if existing.params == params => Ok(existing.code_url.clone()),
                TradeState::NotPay => Err(SandboxError::OutTradeNoUsed),
            };
        }
        let requested = params
            .time_expire
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now + Duration::days(DEFAULT_VALIDITY_DAYS));
        let pay_before = requested.clamp(
            now + Duration::minutes(MIN_VALIDITY_MINUTES),
            now + Duration::days(MAX_VALIDITY_DAYS),
        );
        let code_url = new_code_url();
        book.by_code.insert(code_url.clone(), key.clone());
        book.trades.insert(
            key,
            Trade {
                mchid: mchid.to_owned(),
                out_trade_no,
                params,
                code_url: code_url.clone(),
                created_at: now,
                pay_before,
                state: TradeState::NotPay,
                payment: None,
                declines: Vec::new(),
                notifications: Vec::new(),
                refunds: Vec::new(),
                hidden: false,
            },
        );
        Ok(code_url)
    }

    pub fn get(&self, mchid: &str, out_trade_no: &str) -> Option<Trade> {
        self.lock()
            .trades
            .get(&(mchid.to_owned(), out_trade_no.to_owned()))
            .cloned()
    }

    /// NOTPAY → CLOSED; closing a closed trade again is fine.
    pub fn close(&self, mchid: &str, out_trade_no: &str) -> Result<(), SandboxError> {
        let mut book = self.lock();
        let trade = book
            .trades
            .get_mut(&(mchid.to_owned(), out_trade_no.to_owned()))
            .ok_or(SandboxError::OrderNotExist)?;
        match trade.state {
            TradeState::Closed => Ok(()),
            TradeState::Success | TradeState::Refund => Err(SandboxError::OrderPaid),
            s if s.can_become(TradeState::Closed) => {
                trade.state = TradeState::Closed;
                Ok(())
            }
            _ => Err(SandboxError::OrderPaid),
        }
    }

    fn by_code<'a>(book: &'a mut Book, code: &str) -> Result<&'a mut Trade, SandboxError> {
        let key = book
            .by_code
            .get(code)
            .ok_or(SandboxError::UnknownCode)?
            .clone();
        book.trades.get_mut(&key).ok_or(SandboxError::UnknownCode)
    }

    fn payable(trade: &Trade, now: DateTime<Utc>) -> Result<(), SandboxError> {
        match trade.state {
            TradeState::Success | TradeState::Refund => Err(SandboxError::AlreadyPaid),
            TradeState::Closed => Err(SandboxError::TradeClosed),
            TradeState::NotPay if now > trade.pay_before => Err(SandboxError::TradeExpired),
            TradeState::NotPay => Ok(()),
        }
    }

    /// The payer pays: NOTPAY (and not expired) → SUCCESS with a fresh transaction id.
    pub fn pay(&self, code: &str, openid: &str, now: DateTime<Utc>) -> Result<Trade, SandboxError> {
        let mut book = self.lock();
        book.payments += 1;
        let sequence = book.payments;
        let trade = Self::by_code(&mut book, code)?;
        Self::payable(trade, now)?;
        if !trade.state.can_become(TradeState::Success) {
            return Err(SandboxError::AlreadyPaid);
        }
        trade.state = TradeState::Success;
        trade.payment = Some(Payment {
            transaction_id: new_transaction_id(now, sequence),
            // WeChat reports whole seconds.
            success_time: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
            openid: openid.to_owned(),
        });
        Ok(trade.clone())
    }

    /// The payer looks at the QR code and declines: the trade stays NOTPAY.
    pub fn decline(&self, code: &str, now: DateTime<Utc>) -> Result<Trade, SandboxError> {
        let mut book = self.lock();
        let trade = Self::by_code(&mut book, code)?;
        Self::payable(trade, now)?;
        trade.declines.push(now);
        Ok(trade.clone())
    }

    /// The trade behind a scanned `code_url`.
    pub fn by_code_url(&self, code: &str) -> Result<Trade, SandboxError> {
        let mut book = self.lock();
        Self::by_code(&mut book, code).map(|t| t.clone())
    }

    /// The trade a refund names, if any.
    pub fn find(&self, mchid: &str, trade: &TradeRef) -> Option<Trade> {
        let book = self.lock();
        match trade {
            TradeRef::OutTradeNo(otn) => book.trades.get(&(mchid.to_owned(), otn.clone())),
            TradeRef::TransactionId(id) => book.trades.values().find(|t| {
                t.mchid == mchid && t.payment.as_ref().is_some_and(|p| &p.transaction_id == id)
            }),
        }
        .cloned()
    }

    /// Starts a refund (status PROCESSING; the trade becomes REFUND). A repeat with the
    /// same `out_refund_no` and parameters returns the existing refund and `false`.
    pub fn refund(
        &self,
        mchid: &str,
        trade_ref: &TradeRef,
        params: RefundParams,
        now: DateTime<Utc>,
    ) -> Result<(Trade, Refund, bool), SandboxError> {
        let trade_key = self
            .find(mchid, trade_ref)
            .map(|t| (t.mchid, t.out_trade_no.as_str().to_owned()))
            .ok_or(SandboxError::OrderNotExist)?;
        let refund_key = (mchid.to_owned(), params.out_refund_no.clone());
        let mut book = self.lock();
        if let Some(existing_trade) = book.refunds.get(&refund_key).cloned() {
            let trade = book
                .trades
                .get(&existing_trade)
                .ok_or_else(|| SandboxError::Internal("refund of a lost trade".into()))?;
            let refund = trade
                .refunds
                .iter()
                .find(|r| r.params.out_refund_no == params.out_refund_no)
                .ok_or_else(|| SandboxError::Internal("lost refund".into()))?;
            if existing_trade != trade_key || refund.params != params {
                return Err(SandboxError::OutRefundNoUsed);
            }
            return Ok((trade.clone(), refund.clone(), false));
        }
        let trade = book
            .trades
            .get_mut(&trade_key)
            .ok_or(SandboxError::OrderNotExist)?;
        match trade.state {
            TradeState::NotPay => {
                return Err(SandboxError::RefundNotAllowed("订单未支付，不能退款"));
            }
            TradeState::Closed => {
                return Err(SandboxError::RefundNotAllowed("订单已关闭，不能退款"));
            }
            TradeState::Success | TradeState::Refund => {}
        }
        if params.total != trade.params.total {
            return Err(SandboxError::ParamError(
                "amount.total 与订单金额不一致".into(),
            ));
        }
        let refunded = trade
            .refunds
            .iter()
            .try_fold(Fen::ZERO, |sum, r| sum.checked_add(r.params.refund))
            .ok_or(SandboxError::RefundExceeds)?;
        let after = refunded
            .checked_add(params.refund)
            .ok_or(SandboxError::RefundExceeds)?;
        if params.refund.is_zero() || after > trade.params.total {
            return Err(SandboxError::RefundExceeds);
        }
        let refund = Refund {
            refund_id: new_refund_id(now),
            params,
            status: RefundStatus::Processing,
            created_at: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
            success_time: None,
        };
        trade.refunds.push(refund.clone());
        if trade.state.can_become(TradeState::Refund) {
            trade.state = TradeState::Refund;
        }
        let trade = trade.clone();
        book.refunds.insert(refund_key, trade_key);
        Ok((trade, refund, true))
    }

    /// PROCESSING → SUCCESS; `None` if unknown or already final.
    pub fn complete_refund(
        &self,
        mchid: &str,
        out_refund_no: &str,
        now: DateTime<Utc>,
    ) -> Option<(Trade, Refund)> {
        let mut book = self.lock();
        let key = book
            .refunds
            .get(&(mchid.to_owned(), out_refund_no.to_owned()))?
            .clone();
        let trade = book.trades.get_mut(&key)?;
        let refund = trade
            .refunds
            .iter_mut()
            .find(|r| r.params.out_refund_no == out_refund_no)?;
        if refund.status != RefundStatus::Processing {
            return None;
        }
        refund.status = RefundStatus::Success;
        refund.success_time = Some(DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now));
        let refund = refund.clone();
        Some((trade.clone(), refund))
    }

    pub fn get_refund(&self, mchid: &str, out_refund_no: &str) -> Option<(Trade, Refund)> {
        let book = self.lock();
        let key = book
            .refunds
            .get(&(mchid.to_owned(), out_refund_no.to_owned()))?;
        let trade = book.trades.get(key)?;
        let refund = trade
            .refunds
            .iter()
            .find(|r| r.params.out_refund_no == out_refund_no)?;
        Some((trade.clone(), refund.clone()))
    }

    /// Hides a paid trade from queries (the `pay_invisible` fault).
    pub fn hide(&self, mchid: &str, out_trade_no: &str) {
        if let Some(trade) = self
            .lock()
            .trades
            .get_mut(&(mchid.to_owned(), out_trade_no.to_owned()))
        {
            trade.hidden = true;
        }
    }

    pub fn add_notification(&self, mchid: &str, out_trade_no: &str, id: String) {
        if let Some(trade) = self
            .lock()
            .trades
            .get_mut(&(mchid.to_owned(), out_trade_no.to_owned()))
        {
            trade.notifications.push(id);
        }
    }

    /// Every trade, oldest first.
    pub fn all(&self) -> Vec<Trade> {
        let mut trades: Vec<Trade> = self.lock().trades.values().cloned().collect();
        trades.sort_by(|a, b| {
            (a.created_at, a.out_trade_no.as_str()).cmp(&(b.created_at, b.out_trade_no.as_str()))
        });
        trades
    }
}

/// The Transaction object of query responses and payment notifications.
#[derive(Debug, Serialize)]
pub struct Transaction<'a> {
    pub appid: &'a str,
    pub mchid: &'a str,
    pub out_trade_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<&'a str>,
    pub trade_type: &'static str,
    pub trade_state: TradeState,
    pub trade_state_desc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_type: Option<&'static str>,
    pub attach: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer<'a>>,
    pub amount: TransactionAmount,
}

#[derive(Debug, Serialize)]
pub struct Payer<'a> {
    pub openid: &'a str,
}

#[derive(Debug, Serialize)]
pub struct TransactionAmount {
    pub total: Fen,
    /// What the payer paid; only once paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<Fen>,
    pub currency: &'static str,
    pub payer_currency: &'static str,
}

impl Trade {
    /// Unpaid trades carry no transaction id, payer, bank or success time, as on WeChat.
    pub fn transaction(&self) -> Transaction<'_> {
        let payment = self.payment.as_ref();
        Transaction {
            appid: &self.params.appid,
            mchid: &self.mchid,
            out_trade_no: self.out_trade_no.as_str(),
            transaction_id: payment.map(|p| p.transaction_id.as_str()),
            trade_type: "NATIVE",
            trade_state: self.state,
            trade_state_desc: self.state.desc(),
            bank_type: payment.map(|_| "OTHERS"),
            attach: self.params.attach.as_deref().unwrap_or(""),
            success_time: payment.map(|p| rfc3339_cst(p.success_time)),
            payer: payment.map(|p| Payer { openid: &p.openid }),
            amount: TransactionAmount {
                total: self.params.total,
                payer_total: payment.map(|_| self.params.total),
                currency: "CNY",
                payer_currency: "CNY",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(total: i64) -> PrepayParams {
        PrepayParams {
            appid: "wx1".into(),
            description: "course".into(),
            notify_url: "http://127.0.0.1:1/notify".into(),
            total: Fen::new(total).unwrap(),
            attach: None,
            time_expire: None,
        }
    }

    /// Neither paying nor declining `code` at `at` goes through: both fail like `expected`.
    fn assert_payer_refused(
        book: &TradeBook,
        code: &str,
        at: DateTime<Utc>,
        expected: SandboxError,
    ) {
        let refusals = [book.pay(code, "o", at), book.decline(code, at)];
        for refusal in refusals {
            assert!(
                matches!(&refusal, Err(e) if std::mem::discriminant(e) == std::mem::discriminant(&expected)),
                "{refusal:?}"
            );
        }
    }

    fn otn(s: &str) -> OutTradeNo {
        OutTradeNo::parse(s).unwrap()
    }

    #[test]
    fn state_machine_allows_only_notpay_to_success_or_closed() {
        use TradeState::*;
        for (from, to, ok) in [
            (NotPay, Success, true),
            (NotPay, Closed, true),
            (Success, Closed, false),
            (Closed, Success, false),
            (Success, NotPay, false),
            (Closed, NotPay, false),
            (NotPay, NotPay, false),
        ] {
            assert_eq!(from.can_become(to), ok, "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn out_trade_no_rules() {
        for good in ["123456", "a_b-c|d*e", &"x".repeat(32)] {
            assert!(OutTradeNo::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "12345",
            &"x".repeat(33),
            "abc def",
            "订单号123456",
            "abc/def",
            "",
        ] {
            assert!(
                matches!(OutTradeNo::parse(bad), Err(SandboxError::ParamError(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn repeat_prepay_same_params_same_code_other_params_refused() {
        let book = TradeBook::default();
        let now = Utc::now();
        let code = book.prepay("m", otn("order1"), params(100), now).unwrap();
        assert!(code.starts_with("weixin://wxpay/bizpayurl?pr="));
        assert!(code.len() >= "weixin://wxpay/bizpayurl?pr=".len() + 10);
        assert_eq!(
            book.prepay("m", otn("order1"), params(100), now).unwrap(),
            code
        );
        assert!(matches!(
            book.prepay("m", otn("order1"), params(101), now),
            Err(SandboxError::OutTradeNoUsed)
        ));
        // Another merchant's number space is separate.
        assert_ne!(
            book.prepay("n", otn("order1"), params(5), now).unwrap(),
            code
        );
    }

    #[test]
    fn prepay_on_closed_or_paid_trade_is_refused() {
        let book = TradeBook::default();
        let now = Utc::now();
        book.prepay("m", otn("closed1"), params(1), now).unwrap();
        book.close("m", "closed1").unwrap();
        assert!(matches!(
            book.prepay("m", otn("closed1"), params(1), now),
            Err(SandboxError::OrderClosed)
        ));
        let code = book.prepay("m", otn("paid01"), params(1), now).unwrap();
        book.pay(&code, "o1", now).unwrap();
        assert!(matches!(
            book.prepay("m", otn("paid01"), params(1), now),
            Err(SandboxError::OutTradeNoUsed)
        ));
    }

    #[test]
    fn time_expire_is_clamped_between_one_minute_and_ninety_days() {
        let book = TradeBook::default();
        let now = Utc::now();
        let mut p = params(1);
        p.time_expire = Some((now - Duration::hours(1)).with_timezone(&cst()));
        book.prepay("m", otn("early1"), p, now).unwrap();
        assert_eq!(
            book.get("m", "early1").unwrap().pay_before,
            now + Duration::minutes(1)
        );
        let mut p = params(1);
        p.time_expire = Some((now + Duration::days(400)).with_timezone(&cst()));
        book.prepay("m", otn("late01"), p, now).unwrap();
        assert_eq!(
            book.get("m", "late01").unwrap().pay_before,
            now + Duration::days(90)
        );
        book.prepay("m", otn("none01"), params(1), now).unwrap();
        assert_eq!(
            book.get("m", "none01").unwrap().pay_before,
            now + Duration::days(7)
        );
    }

    #[test]
    fn payment_after_expiry_is_refused_and_the_trade_stays_notpay() {
        let book = TradeBook::default();
        let now = Utc::now();
        let mut p = params(1);
        p.time_expire = Some((now + Duration::minutes(15)).with_timezone(&cst()));
        let code = book.prepay("m", otn("exp001"), p, now).unwrap();
        let later = now + Duration::minutes(16);
        assert_payer_refused(&book, &code, later, SandboxError::TradeExpired);
        assert_eq!(book.get("m", "exp001").unwrap().state, TradeState::NotPay);
        // Just before the deadline it still works.
        let paid = book.pay(&code, "o", now + Duration::minutes(14)).unwrap();
        assert_eq!(paid.state, TradeState::Success);
    }

    #[test]
    fn pay_once_then_refuse_close_and_second_pay() {
        let book = TradeBook::default();
        let now = Utc::now();
        let code = book.prepay("m", otn("pay001"), params(250), now).unwrap();
        let paid = book.pay(&code, "openid-1", now).unwrap();
        let payment = paid.payment.clone().unwrap();
        assert_eq!(payment.transaction_id.len(), 28);
        assert!(payment.transaction_id.bytes().all(|b| b.is_ascii_digit()));
        assert!(payment.transaction_id.starts_with("4200001234"));
        assert_payer_refused(&book, &code, now, SandboxError::AlreadyPaid);
        assert!(matches!(
            book.close("m", "pay001"),
            Err(SandboxError::OrderPaid)
        ));
        assert!(matches!(
            book.pay("weixin://nope", "o", now),
            Err(SandboxError::UnknownCode)
        ));
        assert_eq!(book.get("m", "pay001").unwrap().payment, Some(payment));
    }

    #[test]
    fn close_is_idempotent_and_blocks_payment() {
        let book = TradeBook::default();
        let now = Utc::now();
        let code = book.prepay("m", otn("close1"), params(1), now).unwrap();
        book.close("m", "close1").unwrap();
        book.close("m", "close1").unwrap();
        assert!(matches!(
            book.pay(&code, "o", now),
            Err(SandboxError::TradeClosed)
        ));
        assert!(matches!(
            book.close("m", "absent"),
            Err(SandboxError::OrderNotExist)
        ));
    }

    #[test]
    fn decline_is_recorded_and_leaves_notpay() {
        let book = TradeBook::default();
        let now = Utc::now();
        let code = book.prepay("m", otn("decl01"), params(1), now).unwrap();
        let t = book.decline(&code, now).unwrap();
        assert_eq!(t.declines, vec![now]);
        assert_eq!(t.state, TradeState::NotPay);
        assert!(book.pay(&code, "o", now).is_ok());
    }

    #[test]
    fn transaction_json_unpaid_and_paid() {
        let book = TradeBook::default();
        let now: DateTime<Utc> = "2026-11-22T02:34:56Z".parse().unwrap();
        let mut p = params(1999);
        p.attach = Some("a=1".into());
        let code = book.prepay("m", otn("json01"), p, now).unwrap();
        let unpaid = serde_json::to_value(book.get("m", "json01").unwrap().transaction()).unwrap();
        assert_eq!(
            unpaid,
            serde_json::json!({
                "appid": "wx1", "mchid": "m", "out_trade_no": "json01", "trade_type": "NATIVE",
                "trade_state": "NOTPAY", "trade_state_desc": "订单未支付", "attach": "a=1",
                "amount": {"total": 1999, "currency": "CNY", "payer_currency": "CNY"}
            })
        );
        let paid = book.pay(&code, "oPayer", now).unwrap();
        let json = serde_json::to_value(paid.transaction()).unwrap();
        assert_eq!(json["trade_state"], "SUCCESS");
        assert_eq!(json["trade_state_desc"], "支付成功");
        assert_eq!(json["success_time"], "2026-11-22T10:34:56+08:00");
        assert_eq!(json["payer"]["openid"], "oPayer");
        assert_eq!(json["bank_type"], "OTHERS");
        assert_eq!(json["amount"]["payer_total"], 1999);
        assert_eq!(
            json["transaction_id"],
            paid.payment.unwrap().transaction_id.as_str()
        );
        assert!(json["transaction_id"].as_str().unwrap()[10..].starts_with("20261122"));
    }
}
