//! Alipay wire values → Paywire domain values.
//!
//! Decisions (documented here because the wire allows several readings):
//! * `WAIT_BUYER_PAY` → `NotPaid`; `TRADE_SUCCESS` and `TRADE_FINISHED` → `Paid` (a
//!   partial refund keeps `TRADE_SUCCESS`; the gateway tracks its refunds itself).
//! * `TRADE_CLOSED` is both "closed unpaid" and "fully refunded". A closed trade that
//!   carries a payment time (`send_pay_date`) was paid, so it maps to `Refunded` with the
//!   payment facts; without one it is `Closed`.
//! * `ACQ.TRADE_NOT_EXIST` maps to [`ChannelError::NotFound`] here; the client turns it
//!   into `NotPaid` (query) and `Closed` (close), because a precreated trade only exists
//!   at Alipay once the buyer scans the code.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use paywire_domain::{Fen, PayNo};

use super::wire::{
    CODE_UNAVAILABLE, ResponseStatus, SUB_SYSTEM_ERROR, SUB_TRADE_NOT_EXIST, TradeQueryResponse,
    TradeStatus,
};
use crate::{ChannelError, ConfirmedPayment, PaymentState};

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Formats a time the way Alipay writes it: `yyyy-MM-dd HH:mm:ss`, Beijing time.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Shanghai).format(TIME_FORMAT).to_string()
}

/// Parses `yyyy-MM-dd HH:mm:ss` (optionally with fractional seconds, as in `gmt_refund`)
/// in Beijing time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    Shanghai
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// A decimal-yuan amount, exactly (`"0.29"` is 29 fen; never through floats).
pub fn parse_amount(s: &str) -> Result<Fen, String> {
    Fen::from_yuan_str(s).map_err(|_| format!("amount {s:?} is not a decimal-yuan amount"))
}

/// Maps a non-success status (`code` other than 10000) to a [`ChannelError`]. `signed`
/// says whether the status came from a verified `*_response`: an unsigned
/// `error_response` can never mean "not found", only "retry" or "refused".
pub fn status_error(status: &ResponseStatus, signed: bool) -> ChannelError {
    let sub_code = status.sub_code.as_deref().unwrap_or("");
    let text = format!(
        "{} {}: {} {}",
        status.code,
        status.msg,
        sub_code,
        status.sub_msg.as_deref().unwrap_or("")
    );
    if status.code == CODE_UNAVAILABLE || sub_code == SUB_SYSTEM_ERROR {
        return ChannelError::Unavailable(text.trim().to_owned());
    }
    if signed && sub_code == SUB_TRADE_NOT_EXIST {
        return ChannelError::NotFound;
    }
    ChannelError::Rejected {
        code: if sub_code.is_empty() {
            status.code.clone()
        } else {
            sub_code.to_owned()
        },
        message: status
            .sub_msg
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| status.msg.clone()),
    }
}

/// The trade's state for `pay_no` as the domain sees it (see the module docs).
pub fn payment_state(
    pay_no: PayNo,
    resp: &TradeQueryResponse,
) -> Result<PaymentState, ChannelError> {
    if resp
        .out_trade_no
        .as_deref()
        .is_some_and(|t| t != pay_no.to_string())
    {
        return Err(ChannelError::UnexpectedResponse(
            "trade is for another out_trade_no".into(),
        ));
    }
    Ok(match resp.trade_status {
        TradeStatus::WaitBuyerPay => PaymentState::NotPaid,
        TradeStatus::TradeSuccess | TradeStatus::TradeFinished => {
            PaymentState::Paid(confirmed_payment(pay_no, resp)?)
        }
        TradeStatus::TradeClosed if resp.send_pay_date.is_some() => {
            PaymentState::Refunded(confirmed_payment(pay_no, resp)?)
        }
        TradeStatus::TradeClosed => PaymentState::Closed,
    })
}

/// The payment facts of a paid trade: `trade_no`, `total_amount`, `send_pay_date`.
pub fn confirmed_payment(
    pay_no: PayNo,
    resp: &TradeQueryResponse,
) -> Result<ConfirmedPayment, ChannelError> {
    let bad = |what: String| ChannelError::UnexpectedResponse(format!("paid trade: {what}"));
    let channel_trade_no = resp
        .trade_no
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("missing trade_no".into()))?;
    let amount = resp
        .total_amount
        .as_deref()
        .ok_or_else(|| bad("missing total_amount".into()))
        .and_then(|a| parse_amount(a).map_err(bad))?;
    let paid_at = resp
        .send_pay_date
        .as_deref()
        .ok_or_else(|| bad("missing send_pay_date".into()))
        .and_then(|t| parse_time(t).ok_or_else(|| bad("send_pay_date is not a time".into())))?;
    Ok(ConfirmedPayment {
        pay_no,
        channel_trade_no,
        amount,
        paid_at,
    })
}

/// Alipay has no refund id of its own: the trade number plus our request number
/// identifies a refund uniquely.
pub fn channel_refund_id(trade_no: &str, out_request_no: &str) -> String {
    format!("{trade_no}:{out_request_no}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay_no() -> PayNo {
        "7301234567890123456".parse().unwrap()
    }

    fn query(status: TradeStatus) -> TradeQueryResponse {
        TradeQueryResponse {
            trade_no: Some("2026030122001400000000000001".into()),
            out_trade_no: Some("7301234567890123456".into()),
            buyer_logon_id: Some("159****5620".into()),
            trade_status: status,
            total_amount: Some("19.90".into()),
            receipt_amount: Some("19.90".into()),
            buyer_pay_amount: Some("19.90".into()),
            send_pay_date: Some("2026-03-01 10:05:00".into()),
            buyer_user_id: None,
        }
    }

    fn confirmed() -> ConfirmedPayment {
        ConfirmedPayment {
            pay_no: pay_no(),
            channel_trade_no: "2026030122001400000000000001".into(),
            amount: Fen::new(1990).unwrap(),
            paid_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 5, 0).unwrap(),
        }
    }

    #[test]
    fn every_trade_status_maps() {
        assert_eq!(
            payment_state(pay_no(), &query(TradeStatus::TradeSuccess)).unwrap(),
            PaymentState::Paid(confirmed())
        );
        assert_eq!(
            payment_state(pay_no(), &query(TradeStatus::TradeFinished)).unwrap(),
            PaymentState::Paid(confirmed())
        );
        let mut waiting = query(TradeStatus::WaitBuyerPay);
        waiting.trade_no = None;
        waiting.send_pay_date = None;
        assert_eq!(
            payment_state(pay_no(), &waiting).unwrap(),
            PaymentState::NotPaid
        );
        let mut closed = query(TradeStatus::TradeClosed);
        closed.send_pay_date = None;
        assert_eq!(
            payment_state(pay_no(), &closed).unwrap(),
            PaymentState::Closed
        );
        // Closed after payment: fully refunded.
        assert_eq!(
            payment_state(pay_no(), &query(TradeStatus::TradeClosed)).unwrap(),
            PaymentState::Refunded(confirmed())
        );
    }

    #[test]
    fn paid_without_facts_or_for_another_trade_is_unexpected() {
        let cases: [fn(&mut TradeQueryResponse); 7] = [
            |r| r.trade_no = None,
            |r| r.total_amount = None,
            |r| r.total_amount = Some("19.999".into()),
            |r| r.total_amount = Some("1e3".into()),
            |r| r.send_pay_date = None,
            |r| r.send_pay_date = Some("2026-03-01T10:05:00+08:00".into()),
            |r| r.out_trade_no = Some("42".into()),
        ];
        for (i, spoil) in cases.into_iter().enumerate() {
            let mut r = query(TradeStatus::TradeSuccess);
            spoil(&mut r);
            assert!(
                matches!(
                    payment_state(pay_no(), &r),
                    Err(ChannelError::UnexpectedResponse(_))
                ),
                "case {i}"
            );
        }
    }

    #[test]
    fn amounts_convert_exactly() {
        for (s, fen) in [
            ("0.29", 29),
            ("100.99", 10099),
            ("0.01", 1),
            ("19.90", 1990),
            ("1", 100),
        ] {
            assert_eq!(parse_amount(s).unwrap().get(), fen, "{s}");
        }
        for bad in ["", "abc", "-1.00", "1.001", "0,29", " 1.00", "1e2", "NaN"] {
            assert!(parse_amount(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Fen::new(29).unwrap().to_yuan_string(), "0.29");
        assert_eq!(Fen::new(10099).unwrap().to_yuan_string(), "100.99");
    }

    #[test]
    fn times_are_beijing_time() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 2, 30, 0).unwrap();
        assert_eq!(format_time(t), "2026-03-01 10:30:00");
        assert_eq!(parse_time("2026-03-01 10:30:00"), Some(t));
        // gmt_refund carries milliseconds.
        assert_eq!(
            parse_time("2026-03-01 10:30:00.320"),
            Some(t + chrono::Duration::milliseconds(320))
        );
        assert_eq!(parse_time("2026-03-01T10:30:00"), None);
        assert_eq!(parse_time("2026-02-30 10:30:00"), None);
    }

    fn status(code: &str, sub_code: Option<&str>) -> ResponseStatus {
        ResponseStatus {
            code: code.into(),
            msg: "m".into(),
            sub_code: sub_code.map(Into::into),
            sub_msg: sub_code.map(|_| "sub".into()),
        }
    }

    #[test]
    fn status_codes_map_to_channel_errors() {
        assert!(matches!(
            status_error(&status("20000", Some("isp.unknow-error")), true),
            ChannelError::Unavailable(_)
        ));
        assert!(matches!(
            status_error(&status("40004", Some("ACQ.SYSTEM_ERROR")), true),
            ChannelError::Unavailable(_)
        ));
        assert!(matches!(
            status_error(&status("40004", Some("ACQ.TRADE_NOT_EXIST")), true),
            ChannelError::NotFound
        ));
        // Unsigned, "not found" cannot be believed.
        assert!(matches!(
            status_error(&status("40004", Some("ACQ.TRADE_NOT_EXIST")), false),
            ChannelError::Rejected { .. }
        ));
        for sub in [
            "isv.invalid-signature",
            "isv.invalid-app-id",
            "ACQ.TRADE_STATUS_ERROR",
        ] {
            match status_error(&status("40002", Some(sub)), false) {
                ChannelError::Rejected { code, message } => {
                    assert_eq!((code.as_str(), message.as_str()), (sub, "sub"));
                }
                other => panic!("{sub}: {other:?}"),
            }
        }
        assert!(matches!(
            status_error(&status("40006", None), true),
            ChannelError::Rejected { code, message } if code == "40006" && message == "m"
        ));
    }
}
