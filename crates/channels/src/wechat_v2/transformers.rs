//! WeChat Pay v2 wire values → Paywire domain values.
//!
//! * `return_code` is the transport verdict: `FAIL` answers are unsigned (only
//!   `return_msg`), so they are never read as "not found" or "paid", only as a refusal.
//! * `result_code` `FAIL` + `err_code` is the signed business verdict: `SYSTEMERROR`,
//!   `BIZERR_NEED_RETRY` and `FREQUENCY_LIMITED` are "try again" (`Unavailable`),
//!   `ORDERNOTEXIST`/`REFUNDNOTEXIST` are `NotFound`, everything else (`ORDERPAID`,
//!   `ORDERCLOSED`, `OUT_TRADE_NO_USED`, `NOTENOUGH`, …) a `Rejected` with its code, which
//!   the client reads per call (closing a paid trade says it is paid).
//! * `trade_state`: `SUCCESS` → `Paid`, `REFUND` → `Refunded`, `NOTPAY`/`USERPAYING` →
//!   `NotPaid`, `CLOSED`/`REVOKED`/`PAYERROR` → `Closed`, as in v3.
//! * Amounts are integer fen (`total_fee`); `fee_type`, when given, must be `CNY`.
//! * Times are Beijing time: `yyyyMMddHHmmss` for payments, `yyyy-MM-dd HH:mm:ss` for
//!   refunds.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use paywire_domain::{Fen, PayNo};

use super::wire::{
    ERR_BIZERR_NEED_RETRY, ERR_FREQUENCY_LIMITED, ERR_ORDERNOTEXIST, ERR_REFUNDNOTEXIST,
    ERR_SYSTEMERROR, FEE_TYPE_CNY, OrderFacts, RefundStatus, TradeState,
};
use super::xml::XmlMap;
use crate::{ChannelError, ConfirmedPayment, PaymentState, RefundState};

const PAY_TIME: &str = "%Y%m%d%H%M%S";
const REFUND_TIME: &str = "%Y-%m-%d %H:%M:%S";

fn beijing(naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    Shanghai
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// `yyyyMMddHHmmss`, Beijing time (`time_expire`, `time_end`).
pub fn format_pay_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Shanghai).format(PAY_TIME).to_string()
}

pub fn parse_pay_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() != 14 {
        return None;
    }
    beijing(NaiveDateTime::parse_from_str(s, PAY_TIME).ok()?)
}

/// `yyyy-MM-dd HH:mm:ss`, Beijing time (`refund_success_time_$n`, `success_time`).
pub fn format_refund_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Shanghai).format(REFUND_TIME).to_string()
}

pub fn parse_refund_time(s: &str) -> Option<DateTime<Utc>> {
    beijing(NaiveDateTime::parse_from_str(s, REFUND_TIME).ok()?)
}

/// Integer fen as WeChat Pay writes them: digits only, no sign, no leading zero.
pub fn parse_fee(s: &str) -> Result<Fen, String> {
    let digits_only = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (s.len() > 1 && s.starts_with('0')) {
        return Err(format!("fee {s:?} is not an integer number of fen"));
    }
    s.parse::<i64>()
        .ok()
        .and_then(|v| Fen::new(v).ok())
        .ok_or_else(|| format!("fee {s:?} out of range"))
}

/// The error of a verified `result_code=FAIL` answer.
pub fn business_error(answer: &XmlMap) -> ChannelError {
    let code = answer.non_empty("err_code").unwrap_or("FAIL").to_owned();
    let message = answer
        .non_empty("err_code_des")
        .or(answer.non_empty("return_msg"))
        .unwrap_or("")
        .to_owned();
    match code.as_str() {
        ERR_SYSTEMERROR | ERR_BIZERR_NEED_RETRY | ERR_FREQUENCY_LIMITED => {
            ChannelError::Unavailable(format!("{code}: {message}"))
        }
        ERR_ORDERNOTEXIST | ERR_REFUNDNOTEXIST => ChannelError::NotFound,
        _ => ChannelError::Rejected { code, message },
    }
}

/// The error of an unsigned `return_code=FAIL` answer: a refusal, never a fact.
pub fn transport_error(answer: &XmlMap) -> ChannelError {
    ChannelError::Rejected {
        code: "FAIL".into(),
        message: answer.non_empty("return_msg").unwrap_or("").to_owned(),
    }
}

/// The payment facts of a paid trade (`orderquery` or notification) for `pay_no`.
pub fn confirmed_payment(pay_no: PayNo, facts: &OrderFacts) -> Result<ConfirmedPayment, String> {
    if facts.out_trade_no.as_deref() != Some(pay_no.to_string().as_str()) {
        return Err("out_trade_no is not the trade asked about".into());
    }
    let channel_trade_no = facts
        .transaction_id
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or("missing transaction_id")?;
    let amount = parse_fee(facts.total_fee.as_deref().ok_or("missing total_fee")?)?;
    // Fen are only fen in CNY; v2 leaves fee_type out for CNY.
    if let Some(fee_type) = facts.fee_type.as_deref().filter(|f| !f.is_empty())
        && fee_type != FEE_TYPE_CNY
    {
        return Err(format!("fee_type {fee_type}, expected {FEE_TYPE_CNY}"));
    }
    let paid_at = parse_pay_time(facts.time_end.as_deref().ok_or("missing time_end")?)
        .ok_or("time_end is not yyyyMMddHHmmss")?;
    Ok(ConfirmedPayment {
        pay_no,
        channel_trade_no,
        amount,
        paid_at,
    })
}

/// The trade's state for `pay_no` from a verified `orderquery` answer.
pub fn payment_state(pay_no: PayNo, facts: &OrderFacts) -> Result<PaymentState, ChannelError> {
    let bad = |m: String| ChannelError::UnexpectedResponse(format!("orderquery: {m}"));
    if facts
        .out_trade_no
        .as_deref()
        .is_some_and(|t| t != pay_no.to_string())
    {
        return Err(bad("answered for another out_trade_no".into()));
    }
    let state = facts.trade_state.as_deref().unwrap_or("");
    Ok(match TradeState::parse(state) {
        Some(TradeState::Success) => {
            PaymentState::Paid(confirmed_payment(pay_no, facts).map_err(bad)?)
        }
        Some(TradeState::Refund) => {
            PaymentState::Refunded(confirmed_payment(pay_no, facts).map_err(bad)?)
        }
        Some(TradeState::NotPay | TradeState::UserPaying) => PaymentState::NotPaid,
        Some(TradeState::Closed | TradeState::Revoked | TradeState::PayError) => {
            PaymentState::Closed
        }
        None => return Err(bad(format!("trade_state {state:?}"))),
    })
}

/// A refund's state from its status, id and success time (query or notification).
pub fn refund_state(
    status: &str,
    refund_id: Option<&str>,
    success_time: Option<&str>,
) -> Result<RefundState, String> {
    Ok(match RefundStatus::parse(status) {
        Some(RefundStatus::Success) => RefundState::Succeeded {
            channel_refund_id: refund_id
                .filter(|r| !r.is_empty())
                .ok_or("successful refund without refund_id")?
                .to_owned(),
            refunded_at: parse_refund_time(
                success_time.ok_or("successful refund without its success time")?,
            )
            .ok_or("refund success time is not yyyy-MM-dd HH:mm:ss")?,
        },
        Some(RefundStatus::Processing) => RefundState::Processing,
        Some(RefundStatus::RefundClose) => RefundState::Failed {
            reason: "REFUNDCLOSE: the refund was closed".into(),
        },
        Some(RefundStatus::Change) => RefundState::Failed {
            reason: "CHANGE: the payer's account could not take the refund".into(),
        },
        None => return Err(format!("refund_status {status:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay_no() -> PayNo {
        "7301234567890123456".parse().unwrap()
    }

    fn facts(state: &str) -> OrderFacts {
        OrderFacts {
            out_trade_no: Some("7301234567890123456".into()),
            transaction_id: Some("4200000001202603011234567890".into()),
            trade_state: Some(state.into()),
            total_fee: Some("10099".into()),
            fee_type: Some("CNY".into()),
            time_end: Some("20260301100500".into()),
        }
    }

    fn confirmed() -> ConfirmedPayment {
        ConfirmedPayment {
            pay_no: pay_no(),
            channel_trade_no: "4200000001202603011234567890".into(),
            amount: Fen::new(10099).unwrap(),
            paid_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 5, 0).unwrap(),
        }
    }

    #[test]
    fn every_trade_state_maps() {
        let s = |state: &str| payment_state(pay_no(), &facts(state)).unwrap();
        assert_eq!(s("SUCCESS"), PaymentState::Paid(confirmed()));
        assert_eq!(s("REFUND"), PaymentState::Refunded(confirmed()));
        assert_eq!(s("NOTPAY"), PaymentState::NotPaid);
        assert_eq!(s("USERPAYING"), PaymentState::NotPaid);
        for closed in ["CLOSED", "REVOKED", "PAYERROR"] {
            assert_eq!(s(closed), PaymentState::Closed);
        }
        assert!(payment_state(pay_no(), &facts("PAID")).is_err());
    }

    #[test]
    fn paid_without_facts_or_for_another_trade_is_unexpected() {
        let cases: [fn(&mut OrderFacts); 9] = [
            |f| f.transaction_id = None,
            |f| f.total_fee = None,
            |f| f.total_fee = Some("100.99".into()),
            |f| f.total_fee = Some("-1".into()),
            |f| f.total_fee = Some("0100".into()),
            |f| f.fee_type = Some("USD".into()),
            |f| f.time_end = None,
            |f| f.time_end = Some("2026-03-01 10:05:00".into()),
            |f| f.out_trade_no = Some("42".into()),
        ];
        for (i, spoil) in cases.into_iter().enumerate() {
            let mut f = facts("SUCCESS");
            spoil(&mut f);
            assert!(
                matches!(
                    payment_state(pay_no(), &f),
                    Err(ChannelError::UnexpectedResponse(_))
                ),
                "case {i}"
            );
        }
        let mut no_fee_type = facts("SUCCESS");
        no_fee_type.fee_type = None;
        assert_eq!(
            payment_state(pay_no(), &no_fee_type).unwrap(),
            PaymentState::Paid(confirmed())
        );
    }

    #[test]
    fn times_are_beijing_time() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 2, 30, 0).unwrap();
        assert_eq!(format_pay_time(t), "20260301103000");
        assert_eq!(parse_pay_time("20260301103000"), Some(t));
        assert_eq!(format_refund_time(t), "2026-03-01 10:30:00");
        assert_eq!(parse_refund_time("2026-03-01 10:30:00"), Some(t));
        assert_eq!(parse_pay_time("2026030110300"), None);
        assert_eq!(parse_pay_time("20260230103000"), None);
    }

    #[test]
    fn error_codes_map() {
        let fail = |code: &str| -> XmlMap {
            [
                ("return_code", "SUCCESS"),
                ("result_code", "FAIL"),
                ("err_code", code),
                ("err_code_des", "des"),
            ]
            .into_iter()
            .collect()
        };
        for retry in ["SYSTEMERROR", "BIZERR_NEED_RETRY", "FREQUENCY_LIMITED"] {
            let e = business_error(&fail(retry));
            assert!(matches!(e, ChannelError::Unavailable(_)), "{retry}");
            assert!(e.is_retryable());
        }
        for nf in ["ORDERNOTEXIST", "REFUNDNOTEXIST"] {
            assert!(matches!(business_error(&fail(nf)), ChannelError::NotFound));
        }
        for code in [
            "ORDERPAID",
            "ORDERCLOSED",
            "OUT_TRADE_NO_USED",
            "NOTENOUGH",
            "SIGNERROR",
        ] {
            assert!(
                matches!(business_error(&fail(code)), ChannelError::Rejected { code: c, message } if c == code && message == "des")
            );
        }
        let unsigned: XmlMap = [("return_code", "FAIL"), ("return_msg", "签名错误")]
            .into_iter()
            .collect();
        assert!(matches!(
            transport_error(&unsigned),
            ChannelError::Rejected { code, message } if code == "FAIL" && message == "签名错误"
        ));
    }

    #[test]
    fn refund_states_map() {
        assert_eq!(
            refund_state(
                "SUCCESS",
                Some("50000000382019052709732678859"),
                Some("2026-03-01 10:06:00")
            )
            .unwrap(),
            RefundState::Succeeded {
                channel_refund_id: "50000000382019052709732678859".into(),
                refunded_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 6, 0).unwrap(),
            }
        );
        assert_eq!(
            refund_state("PROCESSING", None, None).unwrap(),
            RefundState::Processing
        );
        assert!(matches!(
            refund_state("REFUNDCLOSE", None, None),
            Ok(RefundState::Failed { .. })
        ));
        assert!(matches!(
            refund_state("CHANGE", None, None),
            Ok(RefundState::Failed { .. })
        ));
        assert!(refund_state("SUCCESS", None, Some("2026-03-01 10:06:00")).is_err());
        assert!(refund_state("SUCCESS", Some("5"), None).is_err());
        assert!(refund_state("DONE", None, None).is_err());
        for (s, fen) in [("1", 1), ("29", 29), ("10099", 10099)] {
            assert_eq!(parse_fee(s).unwrap().get(), fen);
        }
        for bad in [
            "",
            "0.29",
            "-1",
            "+1",
            " 1",
            "01",
            "1e3",
            "99999999999999999999",
        ] {
            assert!(parse_fee(bad).is_err(), "{bad:?}");
        }
    }
}
