//! Alipay face-to-face trades in memory.
//!
//! A precreated QR code is not yet a trade: Alipay creates the trade when the buyer scans
//! (reference §2.3), so until then query and close answer `ACQ.TRADE_NOT_EXIST`. After the
//! scan: WAIT_BUYER_PAY → TRADE_SUCCESS (paid) or TRADE_CLOSED (closed, or fully refunded).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, FixedOffset, Utc};
use paywire_channels::random_alphanumeric;
use paywire_domain::Fen;
use rand::Rng;
use serde::Serialize;

use crate::SandboxError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlipayStatus {
    WaitBuyerPay,
    TradeSuccess,
    TradeClosed,
}

impl AlipayStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AlipayStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            AlipayStatus::TradeSuccess => "TRADE_SUCCESS",
            AlipayStatus::TradeClosed => "TRADE_CLOSED",
        }
    }

    pub const fn can_become(self, next: AlipayStatus) -> bool {
        matches!(
            (self, next),
            (AlipayStatus::WaitBuyerPay, AlipayStatus::TradeSuccess)
                | (AlipayStatus::WaitBuyerPay, AlipayStatus::TradeClosed)
                // A full refund closes a paid trade.
                | (AlipayStatus::TradeSuccess, AlipayStatus::TradeClosed)
        )
    }
}

/// What the merchant sent at precreate; a repeat must match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecreateParams {
    pub subject: String,
    pub total: Fen,
    pub notify_url: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buyer {
    pub user_id: String,
    pub logon_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlipayRefund {
    pub out_request_no: String,
    pub amount: Fen,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AlipayTrade {
    pub out_trade_no: String,
    pub params: PrecreateParams,
    pub qr_code: String,
    pub created_at: DateTime<Utc>,
    /// `None` until the buyer scans: the trade does not exist at Alipay yet.
    pub status: Option<AlipayStatus>,
    /// Alipay's trade number, given at the scan.
    pub trade_no: Option<String>,
    pub scanned_at: Option<DateTime<Utc>>,
    pub buyer: Option<Buyer>,
    pub paid_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub refunds: Vec<AlipayRefund>,
    pub declines: Vec<DateTime<Utc>>,
    pub notifications: Vec<String>,
    /// Paid, yet shown waiting to queries (the `pay_invisible` fault): only the statement
    /// tells.
    pub hidden: bool,
}

impl AlipayTrade {
    /// The trade as queries see it: a hidden payment is not there.
    pub fn as_seen(&self) -> AlipayTrade {
        let mut seen = self.clone();
        if seen.hidden {
            seen.status = Some(AlipayStatus::WaitBuyerPay);
            seen.paid_at = None;
        }
        seen
    }

    pub fn refunded(&self) -> Fen {
        self.refunds
            .iter()
            .fold(Fen::ZERO, |sum, r| sum.checked_add(r.amount).unwrap_or(sum))
    }

    /// The trade as Alipay knows it (scanned), or `ACQ.TRADE_NOT_EXIST`.
    fn existing(&self) -> Result<AlipayStatus, SandboxError> {
        self.status.ok_or_else(not_exist)
    }
}

/// What `alipay.trade.cancel` did.
#[derive(Debug)]
pub enum CancelOutcome {
    /// Never scanned, so unknown to Alipay: nothing undone (no `action`).
    NotCreated(AlipayTrade),
    /// Unpaid: closed (`action: close`).
    Closed(AlipayTrade),
    /// Paid: refunded in full (`action: refund`).
    Refunded(RefundOutcome),
}

pub fn not_exist() -> SandboxError {
    SandboxError::AlipayBusiness("ACQ.TRADE_NOT_EXIST", "交易不存在")
}

/// China Standard Time: Alipay writes `yyyy-MM-dd HH:mm:ss` in GMT+8.
pub fn alipay_time(at: DateTime<Utc>) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    at.with_timezone(&cst)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Alipay's QR codes and masked logon ids are lower case.
fn random_lowercase(len: usize) -> String {
    random_alphanumeric(len).to_ascii_lowercase()
}

fn random_digits(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// Like `https://qr.alipay.com/bax03431ljhokirwl38f00a7`.
fn new_qr_code() -> String {
    format!("https://qr.alipay.com/bax0{}", random_lowercase(20))
}

/// 28 digits: date, `22001`, then 15 digits.
fn new_trade_no(now: DateTime<Utc>) -> String {
    let cst = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    format!(
        "{}22001{}",
        now.with_timezone(&cst).format("%Y%m%d"),
        random_digits(15)
    )
}

fn new_buyer() -> Buyer {
    Buyer {
        user_id: format!("2088{}", random_digits(12)),
        logon_id: format!("{}***@example.com", random_lowercase(3)),
    }
}

/// How a request names its trade.
#[derive(Debug, Clone)]
pub enum AlipayRef {
    OutTradeNo(String),
    TradeNo(String),
}

#[derive(Debug, Default)]
struct Book {
    trades: HashMap<String, AlipayTrade>,
    by_code: HashMap<String, String>,
    by_trade_no: HashMap<String, String>,
}

impl Book {
    fn key(&self, r: &AlipayRef) -> Option<String> {
        match r {
            AlipayRef::OutTradeNo(otn) => self.trades.contains_key(otn).then(|| otn.clone()),
            AlipayRef::TradeNo(no) => self.by_trade_no.get(no).cloned(),
        }
    }

    fn get_mut(&mut self, r: &AlipayRef) -> Result<&mut AlipayTrade, SandboxError> {
        let key = self.key(r).ok_or_else(not_exist)?;
        self.trades.get_mut(&key).ok_or_else(not_exist)
    }

    fn by_code(&mut self, code: &str) -> Result<&mut AlipayTrade, SandboxError> {
        let key = self
            .by_code
            .get(code)
            .cloned()
            .ok_or(SandboxError::UnknownCode)?;
        self.trades.get_mut(&key).ok_or(SandboxError::UnknownCode)
    }
}

/// What a refund call did.
#[derive(Debug, Clone)]
pub struct RefundOutcome {
    pub trade: AlipayTrade,
    pub refund: AlipayRefund,
    /// Money moved by this call (`fund_change = "Y"`); `false` for a repeat.
    pub fund_change: bool,
}

#[derive(Debug, Default)]
pub struct AlipayBook {
    inner: Mutex<Book>,
}

impl AlipayBook {
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a QR code, or the same one again for an identical repeat.
    pub fn precreate(
        &self,
        out_trade_no: &str,
        params: PrecreateParams,
        now: DateTime<Utc>,
    ) -> Result<AlipayTrade, SandboxError> {
        let mut book = self.lock();
        if let Some(existing) = book.trades.get(out_trade_no) {
            return match existing.status {
                Some(AlipayStatus::TradeSuccess) => Err(SandboxError::AlipayBusiness(
                    "ACQ.TRADE_HAS_SUCCESS",
                    "交易已被支付",
                )),
                Some(AlipayStatus::TradeClosed) => Err(SandboxError::AlipayBusiness(
                    "ACQ.TRADE_HAS_CLOSE",
                    "交易已经关闭",
                )),
                _ if existing.params == params => Ok(existing.clone()),
                _ => Err(SandboxError::AlipayBusiness(
                    "ACQ.CONTEXT_INCONSISTENT",
                    "交易信息被篡改",
                )),
            };
        }
        let trade = AlipayTrade {
            out_trade_no: out_trade_no.to_owned(),
            params,
            qr_code: new_qr_code(),
            created_at: now,
            status: None,
            trade_no: None,
            scanned_at: None,
            buyer: None,
            paid_at: None,
            closed_at: None,
            refunds: Vec::new(),
            declines: Vec::new(),
            notifications: Vec::new(),
            hidden: false,
        };
        book.by_code
            .insert(trade.qr_code.clone(), out_trade_no.to_owned());
        book.trades.insert(out_trade_no.to_owned(), trade.clone());
        Ok(trade)
    }

    /// The buyer scans: the trade comes into existence (WAIT_BUYER_PAY).
    pub fn scan(&self, code: &str, now: DateTime<Utc>) -> Result<AlipayTrade, SandboxError> {
        let mut book = self.lock();
        let trade = book.by_code(code)?;
        if trade.status.is_none() && trade.closed_at.is_some() {
            return Err(SandboxError::TradeClosed);
        }
        let created = Self::scan_trade(trade, now);
        let trade = trade.clone();
        if let (true, Some(no)) = (created, &trade.trade_no) {
            book.by_trade_no
                .insert(no.clone(), trade.out_trade_no.clone());
        }
        Ok(trade)
    }

    /// Returns whether the scan created the trade.
    fn scan_trade(trade: &mut AlipayTrade, now: DateTime<Utc>) -> bool {
        if trade.status.is_some() {
            return false;
        }
        trade.status = Some(AlipayStatus::WaitBuyerPay);
        trade.trade_no = Some(new_trade_no(now));
        trade.scanned_at = Some(now);
        trade.buyer = Some(new_buyer());
        true
    }

    fn payable(trade: &AlipayTrade) -> Result<(), SandboxError> {
        match trade.status {
            Some(AlipayStatus::TradeSuccess) => Err(SandboxError::AlreadyPaid),
            Some(AlipayStatus::TradeClosed) => Err(SandboxError::TradeClosed),
            // Cancelled before anyone scanned it: its code can no longer be paid.
            None if trade.closed_at.is_some() => Err(SandboxError::TradeClosed),
            _ => Ok(()),
        }
    }

    /// The buyer pays (scanning first if needed): → TRADE_SUCCESS.
    pub fn pay(&self, code: &str, now: DateTime<Utc>) -> Result<AlipayTrade, SandboxError> {
        let mut book = self.lock();
        let trade = book.by_code(code)?;
        Self::payable(trade)?;
        let created = Self::scan_trade(trade, now);
        trade.status = Some(AlipayStatus::TradeSuccess);
        // Alipay reports whole seconds.
        trade.paid_at = Some(DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now));
        let trade = trade.clone();
        if let (true, Some(no)) = (created, &trade.trade_no) {
            book.by_trade_no
                .insert(no.clone(), trade.out_trade_no.clone());
        }
        Ok(trade)
    }

    /// The buyer scans and declines: the trade stays WAIT_BUYER_PAY.
    pub fn decline(&self, code: &str, now: DateTime<Utc>) -> Result<AlipayTrade, SandboxError> {
        let mut book = self.lock();
        let trade = book.by_code(code)?;
        Self::payable(trade)?;
        let created = Self::scan_trade(trade, now);
        trade.declines.push(now);
        let trade = trade.clone();
        if let (true, Some(no)) = (created, &trade.trade_no) {
            book.by_trade_no
                .insert(no.clone(), trade.out_trade_no.clone());
        }
        Ok(trade)
    }

    /// Hides a paid trade from queries (the `pay_invisible` fault).
    pub fn hide(&self, out_trade_no: &str) {
        if let Some(trade) = self.lock().trades.get_mut(out_trade_no) {
            trade.hidden = true;
        }
    }

    /// `alipay.trade.query`: only scanned trades exist.
    pub fn query(&self, r: &AlipayRef) -> Result<AlipayTrade, SandboxError> {
        let mut book = self.lock();
        let trade = book.get_mut(r)?;
        trade.existing()?;
        Ok(trade.clone())
    }

    /// The out_trade_no a reference names, scanned or not (for fault scoping).
    pub fn out_trade_no(&self, r: &AlipayRef) -> Option<String> {
        self.lock().key(r)
    }

    /// `alipay.trade.close`: WAIT_BUYER_PAY → TRADE_CLOSED; closing again is fine; a paid
    /// trade cannot be closed.
    pub fn close(&self, r: &AlipayRef, now: DateTime<Utc>) -> Result<AlipayTrade, SandboxError> {
        let mut book = self.lock();
        let trade = book.get_mut(r)?;
        match trade.existing()? {
            AlipayStatus::TradeClosed => {}
            AlipayStatus::TradeSuccess => {
                return Err(SandboxError::AlipayBusiness(
                    "ACQ.TRADE_STATUS_ERROR",
                    "交易状态不合法",
                ));
            }
            AlipayStatus::WaitBuyerPay => {
                trade.status = Some(AlipayStatus::TradeClosed);
                trade.closed_at = Some(now);
            }
        }
        Ok(trade.clone())
    }

    /// `alipay.trade.refund`: paid trades only; refunds add up to at most the total; the
    /// same `out_request_no` again answers the earlier refund without moving money.
    pub fn refund(
        &self,
        r: &AlipayRef,
        out_request_no: &str,
        amount: Fen,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<RefundOutcome, SandboxError> {
        let mut book = self.lock();
        let trade = book.get_mut(r)?;
        let status = trade.existing()?;
        if let Some(done) = trade
            .refunds
            .iter()
            .find(|x| x.out_request_no == out_request_no)
        {
            if done.amount != amount {
                return Err(SandboxError::AlipayBusiness(
                    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                    "退款金额与原请求不一致",
                ));
            }
            let refund = done.clone();
            return Ok(RefundOutcome {
                trade: trade.clone(),
                refund,
                fund_change: false,
            });
        }
        if status != AlipayStatus::TradeSuccess {
            return Err(SandboxError::AlipayBusiness(
                "ACQ.TRADE_STATUS_ERROR",
                "交易状态不合法",
            ));
        }
        let after = trade.refunded().checked_add(amount);
        if amount.is_zero() || after.is_none_or(|a| a > trade.params.total) {
            return Err(SandboxError::AlipayBusiness(
                "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                "退款金额超限",
            ));
        }
        let refund = AlipayRefund {
            out_request_no: out_request_no.to_owned(),
            amount,
            reason,
            at: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
        };
        trade.refunds.push(refund.clone());
        if after == Some(trade.params.total) {
            trade.status = Some(AlipayStatus::TradeClosed);
            trade.closed_at = Some(now);
        }
        Ok(RefundOutcome {
            trade: trade.clone(),
            refund,
            fund_change: true,
        })
    }

    /// `alipay.trade.cancel`: undoes a trade whose outcome the merchant does not know. An
    /// unpaid trade is closed; a paid one is refunded in full (out_request_no = the
    /// out_trade_no, as a refund without one); a trade nobody scanned yet does not exist
    /// at Alipay, so there is nothing to undo, but its code can no longer be paid. A trade
    /// with a refund already is refused (`ACQ.REASON_TRADE_REFUND_FEE_ERR`).
    pub fn cancel(&self, r: &AlipayRef, now: DateTime<Utc>) -> Result<CancelOutcome, SandboxError> {
        let total = {
            let mut book = self.lock();
            let trade = book.get_mut(r)?;
            if !trade.refunds.is_empty() {
                return Err(SandboxError::AlipayBusiness(
                    "ACQ.REASON_TRADE_REFUND_FEE_ERR",
                    "退款金额无效",
                ));
            }
            match trade.status {
                None => {
                    trade.closed_at.get_or_insert(now);
                    return Ok(CancelOutcome::NotCreated(trade.clone()));
                }
                Some(AlipayStatus::WaitBuyerPay) => {
                    trade.status = Some(AlipayStatus::TradeClosed);
                    trade.closed_at = Some(now);
                    return Ok(CancelOutcome::Closed(trade.clone()));
                }
                Some(AlipayStatus::TradeClosed) => {
                    return Ok(CancelOutcome::Closed(trade.clone()));
                }
                Some(AlipayStatus::TradeSuccess) => trade.params.total,
            }
        };
        let out_request_no = self.out_trade_no(r).ok_or_else(not_exist)?;
        self.refund(r, &out_request_no, total, None, now)
            .map(CancelOutcome::Refunded)
    }

    /// `alipay.trade.fastpay.refund.query`: the trade, and the refund if there is one.
    pub fn refund_query(
        &self,
        r: &AlipayRef,
        out_request_no: &str,
    ) -> Result<(AlipayTrade, Option<AlipayRefund>), SandboxError> {
        let mut book = self.lock();
        let trade = book.get_mut(r)?;
        trade.existing()?;
        let refund = trade
            .refunds
            .iter()
            .find(|x| x.out_request_no == out_request_no)
            .cloned();
        Ok((trade.clone(), refund))
    }

    pub fn add_notification(&self, out_trade_no: &str, id: String) {
        if let Some(trade) = self.lock().trades.get_mut(out_trade_no) {
            trade.notifications.push(id);
        }
    }

    pub fn all(&self) -> Vec<AlipayTrade> {
        let mut trades: Vec<AlipayTrade> = self.lock().trades.values().cloned().collect();
        trades
            .sort_by(|a, b| (a.created_at, &a.out_trade_no).cmp(&(b.created_at, &b.out_trade_no)));
        trades
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(total: i64) -> PrecreateParams {
        PrecreateParams {
            subject: "course".into(),
            total: Fen::new(total).unwrap(),
            notify_url: None,
            body: None,
        }
    }

    fn otn(s: &str) -> AlipayRef {
        AlipayRef::OutTradeNo(s.into())
    }

    fn sub_code(r: Result<impl std::fmt::Debug, SandboxError>) -> &'static str {
        match r {
            Err(SandboxError::AlipayBusiness(code, _)) => code,
            other => panic!("expected a business error, got {other:?}"),
        }
    }

    #[test]
    fn transitions() {
        use AlipayStatus::*;
        assert!(WaitBuyerPay.can_become(TradeSuccess));
        assert!(WaitBuyerPay.can_become(TradeClosed));
        assert!(TradeSuccess.can_become(TradeClosed));
        assert!(!TradeClosed.can_become(TradeSuccess));
        assert!(!TradeSuccess.can_become(WaitBuyerPay));
    }

    #[test]
    fn the_trade_exists_only_after_the_scan() {
        let book = AlipayBook::default();
        let now = Utc::now();
        let t = book.precreate("o1", params(100), now).unwrap();
        assert!(t.qr_code.starts_with("https://qr.alipay.com/bax0"));
        assert_eq!(
            book.precreate("o1", params(100), now).unwrap().qr_code,
            t.qr_code
        );
        assert_eq!(
            sub_code(book.precreate("o1", params(101), now)),
            "ACQ.CONTEXT_INCONSISTENT"
        );
        assert_eq!(sub_code(book.query(&otn("o1"))), "ACQ.TRADE_NOT_EXIST");
        assert_eq!(sub_code(book.close(&otn("o1"), now)), "ACQ.TRADE_NOT_EXIST");
        let scanned = book.scan(&t.qr_code, now).unwrap();
        assert_eq!(scanned.status, Some(AlipayStatus::WaitBuyerPay));
        let no = scanned.trade_no.clone().unwrap();
        assert_eq!(no.len(), 28);
        assert_eq!(
            book.query(&AlipayRef::TradeNo(no)).unwrap().out_trade_no,
            "o1"
        );
        // A second scan changes nothing.
        assert_eq!(
            book.scan(&t.qr_code, now).unwrap().trade_no,
            scanned.trade_no
        );
    }

    #[test]
    fn pay_then_refunds_add_up_and_a_full_refund_closes() {
        let book = AlipayBook::default();
        let now = Utc::now();
        let t = book.precreate("o2", params(1000), now).unwrap();
        let paid = book.pay(&t.qr_code, now).unwrap();
        assert_eq!(paid.status, Some(AlipayStatus::TradeSuccess));
        assert!(matches!(
            book.pay(&t.qr_code, now),
            Err(SandboxError::AlreadyPaid)
        ));
        assert_eq!(
            sub_code(book.close(&otn("o2"), now)),
            "ACQ.TRADE_STATUS_ERROR"
        );
        assert_eq!(
            sub_code(book.precreate("o2", params(1000), now)),
            "ACQ.TRADE_HAS_SUCCESS"
        );
        let r1 = book
            .refund(&otn("o2"), "r1", Fen::new(300).unwrap(), None, now)
            .unwrap();
        assert!(r1.fund_change);
        assert_eq!(r1.trade.status, Some(AlipayStatus::TradeSuccess));
        let again = book
            .refund(&otn("o2"), "r1", Fen::new(300).unwrap(), None, now)
            .unwrap();
        assert!(!again.fund_change);
        assert_eq!(again.trade.refunded(), Fen::new(300).unwrap());
        assert_eq!(
            sub_code(book.refund(&otn("o2"), "r2", Fen::new(701).unwrap(), None, now)),
            "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
        );
        let r2 = book
            .refund(&otn("o2"), "r2", Fen::new(700).unwrap(), None, now)
            .unwrap();
        assert_eq!(r2.trade.status, Some(AlipayStatus::TradeClosed));
        let (_, found) = book.refund_query(&otn("o2"), "r2").unwrap();
        assert_eq!(found.unwrap().amount, Fen::new(700).unwrap());
        assert!(book.refund_query(&otn("o2"), "r9").unwrap().1.is_none());
    }

    #[test]
    fn unpaid_trades_close_and_cannot_be_refunded_or_paid_after() {
        let book = AlipayBook::default();
        let now = Utc::now();
        let t = book.precreate("o3", params(5), now).unwrap();
        book.decline(&t.qr_code, now).unwrap();
        assert_eq!(
            sub_code(book.refund(&otn("o3"), "r", Fen::new(5).unwrap(), None, now)),
            "ACQ.TRADE_STATUS_ERROR"
        );
        book.close(&otn("o3"), now).unwrap();
        book.close(&otn("o3"), now).unwrap();
        assert!(matches!(
            book.pay(&t.qr_code, now),
            Err(SandboxError::TradeClosed)
        ));
        assert!(matches!(
            book.pay("https://qr.alipay.com/nope", now),
            Err(SandboxError::UnknownCode)
        ));
        assert_eq!(
            sub_code(book.precreate("o3", params(5), now)),
            "ACQ.TRADE_HAS_CLOSE"
        );
    }
}
