//! WeChat Pay's trade bill (交易账单, `bill_type=ALL`): `GET /v3/bill/tradebill` answers a
//! signed `{hash_type, hash_value, download_url}`; the file at `download_url` (requested
//! with the merchant's signature, answered unsigned) is checked against that SHA1 and read
//! here.
//!
//! The file (public sources: pay.weixin.qq.com/docs/merchant/products/bill-download/
//! format-trade.html, pay.weixin.qq.com/wiki/doc/apiv3/apis/chapter3_1_6.shtml and
//! chapter3_1_8.shtml): a header line, one line per payment or refund with every field
//! prefixed by a backtick, then the summary header (`总交易单数,…`) and one summary line.
//! Amounts are decimal yuan; times are China Standard Time.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use paywire_domain::Fen;
use serde::Deserialize;
use sha1::{Digest, Sha1};

use crate::ChannelError;
use crate::statement::{Statement, StatementPayment, StatementRefund, statement_amount};

/// WeChat's answer when a day has no bill (no trade at all).
pub const NO_STATEMENT_EXIST: &str = "NO_STATEMENT_EXIST";

/// The first column of the summary header.
const SUMMARY_FIRST: &str = "总交易单数";

/// The signed answer of `GET /v3/bill/tradebill`.
#[derive(Debug, Clone, Deserialize)]
pub struct TradeBillResponse {
    pub hash_type: String,
    pub hash_value: String,
    pub download_url: String,
}

fn bad(why: impl Into<String>) -> ChannelError {
    ChannelError::BadStatement(why.into())
}

/// The bill's bytes must hash to what the signed answer said (SHA1, lower-case hex).
pub fn verify_hash(bill: &[u8], hash_type: &str, hash_value: &str) -> Result<(), ChannelError> {
    if !hash_type.eq_ignore_ascii_case("SHA1") {
        return Err(bad(format!("unsupported hash_type {hash_type:?}")));
    }
    let digest = Sha1::digest(bill);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if hex.eq_ignore_ascii_case(hash_value.trim()) {
        Ok(())
    } else {
        Err(bad(format!(
            "bill SHA1 {hex} is not the announced {hash_value}"
        )))
    }
}

/// `2026-12-01 10:34:56` in China Standard Time.
fn cst_time(text: &str) -> Result<DateTime<Utc>, ChannelError> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .and_then(|n| Shanghai.from_local_datetime(&n).single())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| bad(format!("交易时间 {text:?} is not yyyy-MM-dd HH:mm:ss")))
}

/// A field without its leading backtick.
fn field(value: &str) -> &str {
    let v = value.trim();
    v.strip_prefix('`').unwrap_or(v)
}

/// Column positions by header name (the order is WeChat's to change).
struct Columns(Vec<String>);

impl Columns {
    fn get<'r>(&self, record: &'r csv::StringRecord, name: &str) -> Result<&'r str, ChannelError> {
        let i = self
            .0
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no column {name}")))?;
        record
            .get(i)
            .map(field)
            .ok_or_else(|| bad(format!("a line without {name}")))
    }
}

/// Reads a verified bill of `date`.
pub fn parse(date: NaiveDate, bill: &[u8]) -> Result<Statement, ChannelError> {
    let text = std::str::from_utf8(bill).map_err(|_| bad("the bill is not UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = records
        .next()
        .ok_or_else(|| bad("empty bill"))?
        .map_err(|e| bad(format!("bill header: {e}")))?;
    let columns = Columns(header.iter().map(|h| h.trim().to_owned()).collect());
    let mut statement = Statement::empty(date);
    let mut summary = None;
    while let Some(record) = records.next() {
        let record = record.map_err(|e| bad(format!("bill line: {e}")))?;
        if record.get(0).map(str::trim) == Some(SUMMARY_FIRST) {
            let names: Vec<String> = record.iter().map(|h| h.trim().to_owned()).collect();
            let values = records
                .next()
                .ok_or_else(|| bad("summary header without its line"))?
                .map_err(|e| bad(format!("summary line: {e}")))?;
            summary = Some((Columns(names), values));
            break;
        }
        read_line(&columns, &record, &mut statement)?;
    }
    let (names, values) = summary.ok_or_else(|| bad("the bill has no summary lines"))?;
    check_summary(&statement, &names, &values)?;
    Ok(statement)
}

fn read_line(
    columns: &Columns,
    record: &csv::StringRecord,
    statement: &mut Statement,
) -> Result<(), ChannelError> {
    let out_trade_no = columns.get(record, "商户订单号")?.to_owned();
    let channel_trade_no = columns.get(record, "微信订单号")?.to_owned();
    match columns.get(record, "交易状态")? {
        "SUCCESS" => statement.payments.push(StatementPayment {
            out_trade_no,
            channel_trade_no,
            amount: statement_amount("订单金额", columns.get(record, "订单金额")?).map_err(bad)?,
            paid_at: cst_time(columns.get(record, "交易时间")?)?,
        }),
        "REFUND" => statement.refunds.push(StatementRefund {
            out_trade_no,
            channel_trade_no,
            out_refund_no: columns.get(record, "商户退款单号")?.to_owned(),
            amount: statement_amount("申请退款金额", columns.get(record, "申请退款金额")?)
                .map_err(bad)?,
            status: columns.get(record, "退款状态")?.to_owned(),
        }),
        other => return Err(bad(format!("交易状态 {other:?} is not SUCCESS or REFUND"))),
    }
    Ok(())
}

/// The summary line must add up to the lines read: a truncated or doctored file is
/// refused even when its hash was not (the hash guards the transfer, this the reading).
fn check_summary(
    statement: &Statement,
    names: &Columns,
    values: &csv::StringRecord,
) -> Result<(), ChannelError> {
    let count: usize = names
        .get(values, SUMMARY_FIRST)?
        .parse()
        .map_err(|_| bad("总交易单数 is not a number"))?;
    let sum = |amounts: Vec<Fen>| {
        amounts
            .into_iter()
            .try_fold(Fen::ZERO, Fen::checked_add)
            .ok_or_else(|| bad("bill amounts overflow"))
    };
    let paid = sum(statement.payments.iter().map(|p| p.amount).collect())?;
    let refunded = sum(statement.refunds.iter().map(|r| r.amount).collect())?;
    let total = statement_amount("订单总金额", names.get(values, "订单总金额")?).map_err(bad)?;
    let refund_total =
        statement_amount("申请退款总金额", names.get(values, "申请退款总金额")?).map_err(bad)?;
    let lines = statement.payments.len() + statement.refunds.len();
    if count != lines || total != paid || refund_total != refunded {
        return Err(bad(format!(
            "summary ({count} lines, {} paid, {} refunds) does not match the lines ({lines}, {}, {})",
            total.to_yuan_string(),
            refund_total.to_yuan_string(),
            paid.to_yuan_string(),
            refunded.to_yuan_string()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
    const SUMMARY: &str = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

    fn bill(summary: &str) -> String {
        format!(
            "{HEADER}\r\n\
`2026-12-01 10:00:05,`wxd678efh567hg6787,`1900009191,`0,`,`4200001234202612010001000001,`7001,`oUser,`NATIVE,`SUCCESS,`OTHERS,`CNY,`19.99,`0.00,`0,`0,`0.00,`0.00,`,`,`课程,`,`0.12000,`0.60%,`19.99,`0.00,`\r\n\
`2026-12-01 11:00:00,`wxd678efh567hg6787,`1900009191,`0,`,`4200001234202612010001000001,`7001,`oUser,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50300202612010000000000000000001,`8001,`5.00,`0.00,`ORIGINAL,`SUCCESS,`课程,`,`-0.03000,`0.60%,`0.00,`5.00,`\r\n\
{SUMMARY}\r\n{summary}\r\n"
        )
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    #[test]
    fn lines_become_exact_payments_and_refunds() {
        let s = parse(
            day(),
            bill("`2,`19.99,`5.00,`0.00,`0.09000,`19.99,`5.00").as_bytes(),
        )
        .unwrap();
        assert_eq!(s.payments.len(), 1);
        let p = &s.payments[0];
        assert_eq!(p.out_trade_no, "7001");
        assert_eq!(p.amount, Fen::new(1999).unwrap());
        assert_eq!(p.paid_at.to_rfc3339(), "2026-12-01T02:00:05+00:00");
        let r = &s.refunds[0];
        assert_eq!(
            (r.out_refund_no.as_str(), r.amount),
            ("8001", Fen::new(500).unwrap())
        );
        assert_eq!(r.status, "SUCCESS");
    }

    #[test]
    fn a_summary_that_does_not_add_up_or_a_missing_one_is_refused() {
        for summary in [
            "`3,`19.99,`5.00,`0.00,`0.09000,`19.99,`5.00",
            "`2,`19.99,`5.00,`0.00,`0.09000,`19.98,`5.00",
            "`2,`19.99,`5.00,`0.00,`0.09000,`19.99,`5.01",
        ] {
            let e = parse(day(), bill(summary).as_bytes()).unwrap_err();
            assert!(matches!(e, ChannelError::BadStatement(_)), "{e:?}");
        }
        let truncated = format!("{HEADER}\r\n");
        assert!(matches!(
            parse(day(), truncated.as_bytes()),
            Err(ChannelError::BadStatement(_))
        ));
    }

    #[test]
    fn the_hash_must_match_the_bytes() {
        let b = b"abc";
        // SHA1("abc"), the FIPS 180 example.
        let good = "a9993e364706816aba3e25717850c26c9cd0d89d";
        verify_hash(b, "SHA1", good).unwrap();
        verify_hash(b, "sha1", &good.to_uppercase()).unwrap();
        assert!(verify_hash(b"abd", "SHA1", good).is_err());
        assert!(verify_hash(b, "MD5", good).is_err());
    }
}
