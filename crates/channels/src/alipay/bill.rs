//! Alipay's trade bill (`bill_type=trade`): `alipay.data.dataservice.bill.downloadurl.query`
//! answers a signed `bill_download_url`; the file there is a zip of two GBK CSV files, the
//! detail (`<pid>_<yyyyMMdd>_业务明细.csv`) and its summary (`…_业务明细(汇总).csv`), each
//! with `#` comment lines around a header and its rows.
//!
//! Public sources: opendocs.alipay.com/apis/api_15/alipay.data.dataservice.bill.downloadurl.query
//! (the call and its answer), opendocs.alipay.com/open/204/106262 (the bill files: zip,
//! GBK, the detail's columns and its `#` header and footer lines).
//!
//! The zip's CRC-32 of each file is checked while it is read: there is no other hash.

use std::io::{Cursor, Read};

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use serde::Deserialize;

use crate::ChannelError;
use crate::statement::{Statement, StatementPayment, StatementRefund, statement_amount};

pub const METHOD_BILL_DOWNLOAD_URL: &str = "alipay.data.dataservice.bill.downloadurl.query";
/// The `sub_code` of a day without a bill.
pub const SUB_BILL_NOT_EXIST: &str = "isp.bill_not_exist";
/// The detail file's name ends so; the summary's ends `业务明细(汇总).csv`.
const DETAIL_SUFFIX: &str = "_业务明细.csv";
/// The most a bill may inflate to: a zip bomb is refused, not read.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
pub struct BillDownloadUrlResponse {
    pub bill_download_url: String,
}

#[derive(Debug, serde::Serialize)]
pub struct BillDownloadUrlBiz<'a> {
    pub bill_type: &'a str,
    pub bill_date: String,
}

fn bad(why: impl Into<String>) -> ChannelError {
    ChannelError::BadStatement(why.into())
}

/// A zip entry's name: UTF-8 when flagged or valid, else GBK as Alipay writes it.
fn entry_name(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => encoding_rs::GBK.decode(raw).0.into_owned(),
    }
}

/// The detail file's text out of the zip, CRC-checked and decoded from GBK.
pub fn detail_text(zip_bytes: &[u8]) -> Result<String, ChannelError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(|e| bad(format!("bill zip: {e}")))?;
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| bad(format!("bill zip entry: {e}")))?;
        if !entry_name(file.name_raw()).ends_with(DETAIL_SUFFIX) {
            continue;
        }
        if file.size() > MAX_FILE_BYTES {
            return Err(bad("the bill detail is implausibly large"));
        }
        let mut raw = Vec::new();
        // The reader checks the entry's CRC-32 at its end: a corrupt file errors here.
        file.by_ref()
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut raw)
            .map_err(|e| bad(format!("bill detail: {e}")))?;
        let (text, _, malformed) = encoding_rs::GBK.decode(&raw);
        if malformed {
            return Err(bad("the bill detail is not GBK"));
        }
        return Ok(text.into_owned());
    }
    Err(bad("the bill zip has no 业务明细 file"))
}

fn cst_time(text: &str) -> Result<DateTime<Utc>, ChannelError> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .and_then(|n| Shanghai.from_local_datetime(&n).single())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| bad(format!("完成时间 {text:?} is not yyyy-MM-dd HH:mm:ss")))
}

/// Alipay pads values with a tab so spreadsheets keep them as text.
fn field(value: &str) -> &str {
    value.trim_matches(|c: char| c == '\t' || c == ' ')
}

/// Reads the detail of a verified bill of `date`: the `#` lines are comments, the first
/// other line the header; `业务类型` tells payments (`交易`) from refunds (`退款`). The
/// footer's `#交易合计：n笔…，#退款合计：m笔…` must agree with the lines read.
pub fn parse(date: NaiveDate, zip_bytes: &[u8]) -> Result<Statement, ChannelError> {
    let text = detail_text(zip_bytes)?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(body.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad(format!("bill header: {e}")))?
        .iter()
        .map(|h| field(h).to_owned())
        .collect();
    let col = |record: &csv::StringRecord, name: &str| -> Result<String, ChannelError> {
        let i = header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no column {name}")))?;
        record
            .get(i)
            .map(|v| field(v).to_owned())
            .ok_or_else(|| bad(format!("a line without {name}")))
    };
    let mut statement = Statement::empty(date);
    for record in reader.records() {
        let record = record.map_err(|e| bad(format!("bill line: {e}")))?;
        let out_trade_no = col(&record, "商户订单号")?;
        let channel_trade_no = col(&record, "支付宝交易号")?;
        match col(&record, "业务类型")?.as_str() {
            "交易" => statement.payments.push(StatementPayment {
                out_trade_no,
                channel_trade_no,
                amount: statement_amount("订单金额（元）", &col(&record, "订单金额（元）")?)
                    .map_err(bad)?,
                paid_at: cst_time(&col(&record, "完成时间")?)?,
            }),
            "退款" => statement.refunds.push(StatementRefund {
                out_trade_no,
                channel_trade_no,
                out_refund_no: col(&record, "退款批次号/请求号")?,
                amount: statement_amount("商家实收（元）", &col(&record, "商家实收（元）")?)
                    .map_err(bad)?,
                status: "SUCCESS".into(),
            }),
            other => return Err(bad(format!("业务类型 {other:?} is not 交易 or 退款"))),
        }
    }
    check_footer(&text, &statement)?;
    Ok(statement)
}

/// The count in `#交易合计：2笔…` / `#退款合计：0笔…`.
fn footer_count(text: &str, label: &str) -> Result<usize, ChannelError> {
    let line = text
        .lines()
        .find_map(|l| l.split_once(label).map(|(_, rest)| rest))
        .ok_or_else(|| bad(format!("no {label} footer")))?;
    line.split('笔')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| bad(format!("{label} footer without a count")))
}

fn check_footer(text: &str, statement: &Statement) -> Result<(), ChannelError> {
    let trades = footer_count(text, "#交易合计：")?;
    let refunds = footer_count(text, "退款合计：")?;
    if trades != statement.payments.len() || refunds != statement.refunds.len() {
        return Err(bad(format!(
            "footer ({trades} trades, {refunds} refunds) does not match the lines ({}, {})",
            statement.payments.len(),
            statement.refunds.len()
        )));
    }
    Ok(())
}

/// `bill_date` of the call.
pub fn bill_date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_domain::Fen;
    use std::io::Write;

    const HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";

    fn detail(footer_trades: usize) -> String {
        format!(
            "#支付宝业务明细查询\r\n#账号：[20880000000000010156]\r\n#起始日期：[2026年12月01日 00:00:00]   终止日期：[2026年12月02日 00:00:00]\r\n\
#-----------------------------------------业务明细列表----------------------------------------\r\n{HEADER}\r\n\
2026120122001000000000000001\t,7001\t,交易\t,课程\t,2026-12-01 10:00:00\t,2026-12-01 10:00:05\t,\t,\t,\t,\t,abc***@example.com\t,19.99\t,19.99\t,0.00\t,0.00\t,0.00\t,0.00\t,0.00\t,\t,0.00\t,0.00\t,\t,0.00\t,0.00\t,\t\r\n\
2026120122001000000000000001\t,7001\t,退款\t,课程\t,2026-12-01 10:00:00\t,2026-12-01 11:00:00\t,\t,\t,\t,\t,abc***@example.com\t,19.99\t,-5.00\t,0.00\t,0.00\t,0.00\t,0.00\t,0.00\t,\t,0.00\t,0.00\t,8001\t,0.00\t,0.00\t,\t\r\n\
#-----------------------------------------业务明细列表结束------------------------------------\r\n\
#交易合计：{footer_trades}笔，商家实收共19.99元，商家优惠共0.00元\r\n#退款合计：1笔，商家实收退款共-5.00元，商家优惠退款共0.00元\r\n#导出时间：[2026年12月02日 09:20:34]\r\n"
        )
    }

    fn zipped(text: &str) -> Vec<u8> {
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let options = zip::write::SimpleFileOptions::default();
            w.start_file("20880000000000010156_20261201_业务明细.csv", options)
                .unwrap();
            w.write_all(&gbk).unwrap();
            w.start_file("20880000000000010156_20261201_业务明细(汇总).csv", options)
                .unwrap();
            w.write_all(b"#summary\r\n").unwrap();
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
    }

    #[test]
    fn gbk_lines_become_exact_payments_and_refunds() {
        let s = parse(day(), &zipped(&detail(1))).unwrap();
        assert_eq!(s.payments.len(), 1);
        assert_eq!(s.payments[0].out_trade_no, "7001");
        assert_eq!(s.payments[0].amount, Fen::new(1999).unwrap());
        assert_eq!(
            s.payments[0].paid_at.to_rfc3339(),
            "2026-12-01T02:00:05+00:00"
        );
        assert_eq!(s.refunds[0].out_refund_no, "8001");
        assert_eq!(s.refunds[0].amount, Fen::new(500).unwrap());
    }

    #[test]
    fn a_corrupt_zip_or_a_footer_that_disagrees_is_refused() {
        let e = parse(day(), &zipped(&detail(2))).unwrap_err();
        assert!(matches!(e, ChannelError::BadStatement(_)), "{e:?}");
        let mut corrupt = zipped(&detail(1));
        // Inside the first entry's stored data: its CRC-32 no longer matches.
        let at = corrupt.len() / 4;
        corrupt[at] ^= 0x55;
        let e = parse(day(), &corrupt).unwrap_err();
        assert!(matches!(e, ChannelError::BadStatement(_)), "{e:?}");
        assert!(parse(day(), b"not a zip").is_err());
    }
}
