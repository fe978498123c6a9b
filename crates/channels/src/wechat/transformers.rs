//! WeChat Pay wire values → Paywire domain values.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use paywire_domain::{Fen, PayNo};

use super::wire::{ApiError, CURRENCY_CNY, RefundStatus, TradeState, Transaction};
use crate::{ChannelError, ConfirmedPayment, PaymentState, RefundState};

/// The trade's state as the domain sees it. Paid and refunded trades must carry the
/// facts of the payment; a signed answer without them is unusable.
pub fn payment_state(tx: &Transaction) -> Result<PaymentState, ChannelError> {
    Ok(match tx.trade_state {
        TradeState::Success => PaymentState::Paid(confirmed_payment(tx)?),
        TradeState::Refund => PaymentState::Refunded(confirmed_payment(tx)?),
        TradeState::NotPay | TradeState::UserPaying => PaymentState::NotPaid,
        TradeState::Closed | TradeState::Revoked | TradeState::PayError => PaymentState::Closed,
    })
}

/// The payment facts of a paid transaction: `out_trade_no` as `PayNo`, `transaction_id`,
/// `amount.total` in fen (`amount.currency` must be CNY) and `success_time`.
pub fn confirmed_payment(tx: &Transaction) -> Result<ConfirmedPayment, ChannelError> {
    let bad = |what: &str| ChannelError::UnexpectedResponse(format!("paid transaction: {what}"));
    let pay_no: PayNo = tx
        .out_trade_no
        .parse()
        .map_err(|_| bad("out_trade_no is not a pay_no"))?;
    let channel_trade_no = tx
        .transaction_id
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("missing transaction_id"))?;
    let total = tx
        .amount
        .as_ref()
        .and_then(|a| a.total)
        .ok_or_else(|| bad("missing amount.total"))?;
    let amount = Fen::new(total).map_err(|_| bad("amount.total out of range"))?;
    // Fen are only fen in CNY: a total in another (or no) currency is not our amount.
    let currency = tx.amount.as_ref().and_then(|a| a.currency.as_deref());
    if currency != Some(CURRENCY_CNY) {
        return Err(bad(&format!(
            "amount.currency {}, expected {CURRENCY_CNY}",
            currency.unwrap_or("missing")
        )));
    }
    let paid_at = tx
        .success_time
        .as_deref()
        .ok_or_else(|| bad("missing success_time"))
        .and_then(|t| parse_time(t).ok_or_else(|| bad("success_time is not RFC 3339")))?;
    Ok(ConfirmedPayment {
        pay_no,
        channel_trade_no,
        amount,
        paid_at,
    })
}

/// A refund's state as the domain sees it. `CLOSED` (refund closed) and `ABNORMAL`
/// (the payer's account could not receive it) are final failures that need a human;
/// a success must carry its `refund_id` and `success_time`.
pub fn refund_state(
    status: RefundStatus,
    refund_id: &str,
    success_time: Option<&str>,
) -> Result<RefundState, String> {
    Ok(match status {
        RefundStatus::Success => {
            if refund_id.is_empty() {
                return Err("successful refund without refund_id".into());
            }
            let refunded_at = success_time
                .ok_or("successful refund without success_time")
                .and_then(|t| parse_time(t).ok_or("success_time is not RFC 3339"))?;
            RefundState::Succeeded {
                channel_refund_id: refund_id.to_owned(),
                refunded_at,
            }
        }
        RefundStatus::Processing => RefundState::Processing,
        RefundStatus::Closed => RefundState::Failed {
            reason: "CLOSED: the refund was closed by WeChat Pay".into(),
        },
        RefundStatus::Abnormal => RefundState::Failed {
            reason: "ABNORMAL: the payer's account could not receive the refund".into(),
        },
    })
}

/// Parses an RFC 3339 timestamp with offset (`2018-06-08T10:34:56+08:00`).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Formats a time the way WeChat Pay writes it: RFC 3339, seconds, Beijing time (+08:00).
pub fn format_time(t: DateTime<Utc>) -> String {
    let beijing = FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    t.with_timezone(&beijing)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Maps a non-2xx answer (already signature-checked) to a [`ChannelError`].
pub fn api_error(status: u16, body: &[u8]) -> ChannelError {
    let parsed = serde_json::from_slice::<ApiError>(body).ok();
    match parsed {
        Some(e) => match e.code.as_str() {
            // Trade (query/close) resp. refund (refund query) unknown.
            "ORDER_NOT_EXIST" | "RESOURCE_NOT_EXISTS" => ChannelError::NotFound,
            "SYSTEM_ERROR" | "FREQUENCY_LIMITED" => {
                ChannelError::Unavailable(format!("{}: {}", e.code, e.message))
            }
            _ if status >= 500 || status == 429 => {
                ChannelError::Unavailable(format!("HTTP {status} {}: {}", e.code, e.message))
            }
            _ => ChannelError::Rejected {
                code: e.code,
                message: e.message,
            },
        },
        None if status >= 500 || status == 429 => {
            ChannelError::Unavailable(format!("HTTP {status}"))
        }
        None => ChannelError::UnexpectedResponse(format!("HTTP {status} without an error body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::wire::{Payer, TransactionAmount};
    use chrono::TimeZone;

    fn tx(state: TradeState) -> Transaction {
        Transaction {
            appid: "wx".into(),
            mchid: "19".into(),
            out_trade_no: "7321".into(),
            transaction_id: Some("4200000001".into()),
            trade_type: Some("NATIVE".into()),
            trade_state: state,
            trade_state_desc: None,
            bank_type: Some("OTHERS".into()),
            attach: None,
            success_time: Some("2026-03-01T10:34:56+08:00".into()),
            payer: Some(Payer {
                openid: Some("o1".into()),
            }),
            amount: Some(TransactionAmount {
                total: Some(1990),
                payer_total: Some(1990),
                currency: Some("CNY".into()),
                payer_currency: Some("CNY".into()),
            }),
        }
    }

    fn confirmed() -> ConfirmedPayment {
        ConfirmedPayment {
            pay_no: "7321".parse().unwrap(),
            channel_trade_no: "4200000001".into(),
            amount: Fen::new(1990).unwrap(),
            paid_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 34, 56).unwrap(),
        }
    }

    #[test]
    fn every_trade_state_maps() {
        let expected = |s: TradeState| match s {
            TradeState::Success => PaymentState::Paid(confirmed()),
            TradeState::Refund => PaymentState::Refunded(confirmed()),
            TradeState::NotPay | TradeState::UserPaying => PaymentState::NotPaid,
            TradeState::Closed | TradeState::Revoked | TradeState::PayError => PaymentState::Closed,
        };
        for state in TradeState::ALL {
            assert_eq!(
                payment_state(&tx(*state)).unwrap(),
                expected(*state),
                "{state:?}"
            );
        }
        // Spelled out, so a change of the mapping above cannot hide a change here.
        assert_eq!(
            payment_state(&tx(TradeState::NotPay)).unwrap(),
            PaymentState::NotPaid
        );
        assert_eq!(
            payment_state(&tx(TradeState::Revoked)).unwrap(),
            PaymentState::Closed
        );
    }

    #[test]
    fn unpaid_states_need_no_payment_facts() {
        let mut t = tx(TradeState::NotPay);
        t.transaction_id = None;
        t.success_time = None;
        t.amount = None;
        assert_eq!(payment_state(&t).unwrap(), PaymentState::NotPaid);
    }

    #[test]
    fn paid_without_facts_is_unexpected() {
        let cases: [fn(&mut Transaction); 6] = [
            |t| t.transaction_id = None,
            |t| t.success_time = None,
            |t| t.success_time = Some("2026-03-01 10:34:56".into()),
            |t| t.amount = None,
            |t| t.amount.as_mut().unwrap().total = Some(-1),
            |t| t.out_trade_no = "PW-1".into(),
        ];
        for (i, spoil) in cases.into_iter().enumerate() {
            let mut t = tx(TradeState::Success);
            spoil(&mut t);
            assert!(
                matches!(payment_state(&t), Err(ChannelError::UnexpectedResponse(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn every_refund_status_maps() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 2, 34, 56).unwrap();
        assert_eq!(
            refund_state(
                RefundStatus::Success,
                "5030",
                Some("2026-03-01T10:34:56+08:00")
            ),
            Ok(RefundState::Succeeded {
                channel_refund_id: "5030".into(),
                refunded_at: at
            })
        );
        assert_eq!(
            refund_state(RefundStatus::Processing, "5030", None),
            Ok(RefundState::Processing)
        );
        for status in [RefundStatus::Closed, RefundStatus::Abnormal] {
            match refund_state(status, "5030", None) {
                Ok(RefundState::Failed { reason }) => {
                    assert!(reason.starts_with(status.as_str()), "{reason}")
                }
                other => panic!("{status:?}: {other:?}"),
            }
        }
        // A success without its facts is unusable.
        assert!(refund_state(RefundStatus::Success, "5030", None).is_err());
        assert!(
            refund_state(RefundStatus::Success, "", Some("2026-03-01T10:34:56+08:00")).is_err()
        );
        assert!(refund_state(RefundStatus::Success, "5030", Some("yesterday")).is_err());
    }

    #[test]
    fn success_time_offset_is_honoured() {
        let utc = parse_time("2026-03-01T10:34:56+08:00").unwrap();
        assert_eq!(utc, Utc.with_ymd_and_hms(2026, 3, 1, 2, 34, 56).unwrap());
        assert_eq!(parse_time("2026-03-01T02:34:56Z"), Some(utc));
        assert_eq!(format_time(utc), "2026-03-01T10:34:56+08:00");
    }

    #[test]
    fn error_codes_map_to_channel_errors() {
        let body = |code: &str| format!(r#"{{"code":"{code}","message":"m"}}"#).into_bytes();
        assert!(matches!(
            api_error(404, &body("ORDER_NOT_EXIST")),
            ChannelError::NotFound
        ));
        assert!(matches!(
            api_error(404, &body("RESOURCE_NOT_EXISTS")),
            ChannelError::NotFound
        ));
        assert!(matches!(
            api_error(500, &body("SYSTEM_ERROR")),
            ChannelError::Unavailable(_)
        ));
        assert!(matches!(
            api_error(429, &body("FREQUENCY_LIMITED")),
            ChannelError::Unavailable(_)
        ));
        assert!(matches!(
            api_error(502, b"<html>"),
            ChannelError::Unavailable(_)
        ));
        assert!(matches!(
            api_error(503, &body("WHATEVER")),
            ChannelError::Unavailable(_)
        ));
        for (status, code) in [
            (400, "PARAM_ERROR"),
            (400, "ORDER_CLOSED"),
            (401, "SIGN_ERROR"),
            (403, "OUT_TRADE_NO_USED"),
            (403, "NOT_ENOUGH"),
        ] {
            match api_error(status, &body(code)) {
                ChannelError::Rejected { code: c, message } => {
                    assert_eq!((c.as_str(), message.as_str()), (code, "m"));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(matches!(
            api_error(400, b""),
            ChannelError::UnexpectedResponse(_)
        ));
    }

    #[test]
    fn retryability() {
        assert!(ChannelError::Unavailable("x".into()).is_retryable());
        assert!(ChannelError::BadResponseSignature("x".into()).is_retryable());
        assert!(!ChannelError::NotFound.is_retryable());
        assert!(!ChannelError::Config("x".into()).is_retryable());
        assert!(!ChannelError::UnexpectedResponse("x".into()).is_retryable());
        assert!(
            !ChannelError::Rejected {
                code: "PARAM_ERROR".into(),
                message: String::new()
            }
            .is_retryable()
        );
    }
}
