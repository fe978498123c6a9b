//! The trade bill (交易账单, `bill_type=ALL`) of a day, made from the sandbox's trades as
//! WeChat Pay makes it (pay.weixin.qq.com/docs/merchant/products/bill-download/
//! format-trade.html): a header line; one line per payment that succeeded that day and
//! per refund accepted that day, every field prefixed with a backtick; the summary header
//! and its line. Amounts in yuan, the fee (0.60 %) to 1/100000 yuan, times in China
//! Standard Time, lines ended by CRLF.

use chrono::{DateTime, NaiveDate, Utc};
use paywire_domain::Fen;

use super::state::{RefundStatus, Trade, cst};
use crate::statements::cst_date;

const HEADER: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
];

const SUMMARY: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

/// The fee rate, in 1/100000 yuan per fen (0.60 %: 1 fen = 1000 units, 0.6 % of it = 6).
const FEE_UNITS_PER_FEN: i64 = 6;

fn time(at: DateTime<Utc>) -> String {
    at.with_timezone(&cst())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// 1/100000 yuan as `0.00600` (negative for a refund's returned fee).
fn fee(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let u = units.unsigned_abs();
    format!("{sign}{}.{:05}", u / 100_000, u % 100_000)
}

struct Line {
    at: DateTime<Utc>,
    fields: Vec<String>,
}

#[derive(Default)]
struct Totals {
    lines: usize,
    paid: i64,
    refunded: i64,
    fee: i64,
}

fn yuan(fen: i64) -> String {
    Fen::new(fen).map(Fen::to_yuan_string).unwrap_or_default()
}

/// The bill of `date` for merchant `mchid`; `None` when nothing happened that day (WeChat
/// then answers `NO_STATEMENT_EXIST`).
pub fn trade_bill(trades: &[Trade], mchid: &str, date: NaiveDate) -> Option<Vec<u8>> {
    let mut lines = Vec::new();
    let mut totals = Totals::default();
    for trade in trades.iter().filter(|t| t.mchid == mchid) {
        let Some(payment) = &trade.payment else {
            continue;
        };
        let total = trade.params.total.get();
        let common = |status: &str, settle: String| {
            vec![
                trade.params.appid.clone(),
                trade.mchid.clone(),
                "0".into(),
                String::new(),
                payment.transaction_id.clone(),
                trade.out_trade_no.as_str().to_owned(),
                payment.openid.clone(),
                "NATIVE".into(),
                status.to_owned(),
                "OTHERS".into(),
                "CNY".into(),
                settle,
                "0.00".into(),
            ]
        };
        if cst_date(payment.success_time) == date {
            let fee_units = total * FEE_UNITS_PER_FEN;
            let mut fields = vec![time(payment.success_time)];
            fields.extend(common("SUCCESS", yuan(total)));
            fields.extend([
                "0".into(),
                "0".into(),
                "0.00".into(),
                "0.00".into(),
                String::new(),
                String::new(),
                trade.params.description.clone(),
                trade.params.attach.clone().unwrap_or_default(),
                fee(fee_units),
                "0.60%".into(),
                yuan(total),
                "0.00".into(),
                String::new(),
            ]);
            totals.lines += 1;
            totals.paid += total;
            totals.fee += fee_units;
            lines.push(Line {
                at: payment.success_time,
                fields,
            });
        }
        for refund in trade
            .refunds
            .iter()
            .filter(|r| cst_date(r.created_at) == date)
        {
            let amount = refund.params.refund.get();
            let fee_units = -amount * FEE_UNITS_PER_FEN;
            let status = match refund.status {
                RefundStatus::Processing => "PROCESSING",
                RefundStatus::Success => "SUCCESS",
            };
            let mut fields = vec![time(refund.created_at)];
            fields.extend(common("REFUND", "0.00".into()));
            fields.extend([
                refund.refund_id.clone(),
                refund.params.out_refund_no.clone(),
                yuan(amount),
                "0.00".into(),
                "ORIGINAL".into(),
                status.into(),
                trade.params.description.clone(),
                trade.params.attach.clone().unwrap_or_default(),
                fee(fee_units),
                "0.60%".into(),
                "0.00".into(),
                yuan(amount),
                String::new(),
            ]);
            totals.lines += 1;
            totals.refunded += amount;
            totals.fee += fee_units;
            lines.push(Line {
                at: refund.created_at,
                fields,
            });
        }
    }
    if lines.is_empty() {
        return None;
    }
    lines.sort_by_key(|l| l.at);
    // The summary lines are shorter than the detail lines.
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let tick = |fields: Vec<String>| -> Vec<String> {
        fields.into_iter().map(|f| format!("`{f}")).collect()
    };
    let summary = vec![
        totals.lines.to_string(),
        yuan(totals.paid),
        yuan(totals.refunded),
        "0.00".into(),
        fee(totals.fee),
        yuan(totals.paid),
        yuan(totals.refunded),
    ];
    let written = w
        .write_record(HEADER)
        .and_then(|()| {
            lines
                .into_iter()
                .try_for_each(|l| w.write_record(tick(l.fields)))
        })
        .and_then(|()| w.write_record(SUMMARY))
        .and_then(|()| w.write_record(tick(summary)));
    written.ok()?;
    w.into_inner().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::state::{OutTradeNo, PrepayParams, RefundParams, TradeBook, TradeRef};

    fn book_with_a_day(now: DateTime<Utc>) -> TradeBook {
        let book = TradeBook::default();
        for (otn, total) in [("100001", 1999), ("100002", 500), ("100003", 300)] {
            let params = PrepayParams {
                appid: "wx1".into(),
                description: "课程, 第一讲".into(),
                notify_url: "http://127.0.0.1:1/n".into(),
                total: Fen::new(total).unwrap(),
                attach: None,
                time_expire: None,
            };
            let code = book
                .prepay("m", OutTradeNo::parse(otn).unwrap(), params, now)
                .unwrap();
            if otn != "100003" {
                book.pay(&code, "oPayer", now).unwrap();
            }
        }
        let refund = RefundParams {
            out_refund_no: "200001".into(),
            refund: Fen::new(99).unwrap(),
            total: Fen::new(1999).unwrap(),
            reason: None,
            notify_url: None,
        };
        book.refund("m", &TradeRef::OutTradeNo("100001".into()), refund, now)
            .unwrap();
        book
    }

    /// The sandbox writes the bill, the gateway's parser (an independent reading of the
    /// same public format) reads it back: lines, amounts and totals agree.
    #[test]
    fn the_bill_reads_back_through_the_channel_parser() {
        let now: DateTime<Utc> = "2026-12-01T02:00:05Z".parse().unwrap();
        let book = book_with_a_day(now);
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let bill = trade_bill(&book.all(), "m", date).unwrap();
        let text = String::from_utf8(bill.clone()).unwrap();
        assert!(text.starts_with("交易时间,公众账号ID,商户号,"), "{text}");
        assert!(text.contains("`2026-12-01 10:00:05,`wx1,`m,`0,"), "{text}");
        assert!(text.contains("\r\n总交易单数,"), "{text}");
        assert!(
            text.ends_with("`3,`24.99,`0.99,`0.00,`0.14400,`24.99,`0.99\r\n"),
            "{text}"
        );
        let statement = paywire_channels::wechat::bill::parse(date, &bill).unwrap();
        assert_eq!(statement.payments.len(), 2);
        assert_eq!(statement.payments[0].amount, Fen::new(1999).unwrap());
        assert_eq!(statement.payments[0].paid_at, now);
        assert_eq!(statement.refunds.len(), 1);
        assert_eq!(statement.refunds[0].out_refund_no, "200001");
        assert_eq!(statement.refunds[0].status, "PROCESSING");
        // Another day, another merchant: nothing.
        assert!(trade_bill(&book.all(), "m", date.succ_opt().unwrap()).is_none());
        assert!(trade_bill(&book.all(), "other", date).is_none());
    }

    #[test]
    fn fees_are_written_to_the_hundred_thousandth() {
        assert_eq!(fee(1999 * FEE_UNITS_PER_FEN), "0.11994");
        assert_eq!(fee(-500 * FEE_UNITS_PER_FEN), "-0.03000");
        assert_eq!(fee(0), "0.00000");
    }
}
