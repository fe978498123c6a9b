//! The trade bill (`bill_type=trade`) of a day, made from the sandbox's trades as Alipay
//! ships it (opendocs.alipay.com/open/204/106262): a zip holding the detail
//! `<pid>0156_<yyyyMMdd>_业务明细.csv` and its summary `…_业务明细(汇总).csv`, both GBK,
//! each a few `#` lines, a header, the rows (every value followed by a tab, so
//! spreadsheets keep numbers as text) and `#` footer lines with the day's totals.
//! A payment is a `交易` row on the day it was paid; a refund a `退款` row on the day it
//! was made, its receipt negative. Entry names are written in UTF-8 (flagged), where
//! Alipay writes GBK: the gateway reads both.

use std::io::{Cursor, Write};

use chrono::{DateTime, NaiveDate, Utc};
use paywire_domain::Fen;

use super::state::{AlipayTrade, alipay_time};
use crate::statements::cst_date;

const DETAIL_HEADER: [&str; 25] = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
];

const SUMMARY_HEADER: [&str; 12] = [
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
];

const RULE: &str = "-----------------------------------------";

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = Fen::new(fen.abs())
        .map(Fen::to_yuan_string)
        .unwrap_or_default();
    format!("{sign}{abs}")
}

fn chinese_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00"))
        .format("%Y年%m月%d日 %H:%M:%S")
        .to_string()
}

fn rows(records: &[Vec<String>]) -> String {
    // The summary lines are shorter than the detail lines.
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for record in records {
        // Only a write to memory; it does not fail.
        let _ = w.write_record(record);
    }
    w.into_inner()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The zip of `date` for seller `pid`; `None` when nothing happened that day (Alipay then
/// answers `isp.bill_not_exist`).
pub fn trade_bill(
    trades: &[AlipayTrade],
    pid: &str,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Option<Vec<u8>> {
    let tab = |v: String| format!("{v}\t");
    let mut lines: Vec<(DateTime<Utc>, Vec<String>)> = Vec::new();
    let (mut paid, mut refunded, mut n_paid, mut n_refunds) = (0i64, 0i64, 0usize, 0usize);
    for trade in trades {
        let (Some(trade_no), Some(created)) = (&trade.trade_no, trade.scanned_at) else {
            continue;
        };
        let total = trade.params.total.get();
        let buyer = trade
            .buyer
            .as_ref()
            .map(|b| b.logon_id.clone())
            .unwrap_or_default();
        let line = |kind: &str, done: DateTime<Utc>, received: i64, request_no: &str| {
            let mut v = vec![
                trade_no.clone(),
                trade.out_trade_no.clone(),
                kind.to_owned(),
                trade.params.subject.clone(),
                alipay_time(created),
                alipay_time(done),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                buyer.clone(),
                yuan(total),
                yuan(received),
            ];
            v.extend(std::iter::repeat_n("0.00".to_owned(), 5));
            v.push(String::new());
            v.extend(["0.00".to_owned(), "0.00".to_owned()]);
            v.push(request_no.to_owned());
            v.extend(["0.00".to_owned(), "0.00".to_owned(), String::new()]);
            v.into_iter().map(tab).collect::<Vec<_>>()
        };
        if let Some(at) = trade.paid_at.filter(|at| cst_date(*at) == date) {
            lines.push((at, line("交易", at, total, "")));
            paid += total;
            n_paid += 1;
        }
        for refund in trade.refunds.iter().filter(|r| cst_date(r.at) == date) {
            let amount = refund.amount.get();
            lines.push((
                refund.at,
                line("退款", refund.at, -amount, &refund.out_request_no),
            ));
            refunded += amount;
            n_refunds += 1;
        }
    }
    if lines.is_empty() {
        return None;
    }
    lines.sort_by_key(|(at, _)| *at);
    let account = format!("{pid}0156");
    let start = date.and_hms_opt(0, 0, 0)?;
    let span = format!(
        "#起始日期：[{}]   终止日期：[{}]\r\n",
        start.format("%Y年%m月%d日 %H:%M:%S"),
        (start + chrono::Duration::days(1)).format("%Y年%m月%d日 %H:%M:%S")
    );
    let exported = format!("#导出时间：[{}]\r\n", chinese_time(now));
    let mut records = vec![DETAIL_HEADER.iter().map(|h| (*h).to_owned()).collect()];
    records.extend(lines.into_iter().map(|(_, l)| l));
    let detail = format!(
        "#支付宝业务明细查询\r\n#账号：[{account}]\r\n{span}#{RULE}业务明细列表{RULE}\r\n{}\
#{RULE}业务明细列表结束{RULE}\r\n\
#交易合计：{n_paid}笔，商家实收共{}元，商家优惠共0.00元\r\n\
#退款合计：{n_refunds}笔，商家实收退款共{}元，商家优惠退款共0.00元\r\n{exported}",
        rows(&records),
        yuan(paid),
        yuan(-refunded),
    );
    let net = yuan(paid - refunded);
    let summary_rows = vec![
        SUMMARY_HEADER.iter().map(|h| (*h).to_owned()).collect(),
        vec![
            "合计".to_owned(),
            String::new(),
            n_paid.to_string(),
            n_refunds.to_string(),
            yuan(paid),
            net.clone(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            "0.00".into(),
            net,
        ],
    ];
    let summary = format!(
        "#支付宝业务汇总查询\r\n#账号：[{account}]\r\n{span}#{RULE}业务汇总列表{RULE}\r\n{}\
#{RULE}业务汇总列表结束{RULE}\r\n{exported}",
        rows(&summary_rows)
    );
    let day = date.format("%Y%m%d");
    let mut buf = Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let options = zip::write::SimpleFileOptions::default();
        for (name, text) in [
            (format!("{account}_{day}_业务明细.csv"), detail),
            (format!("{account}_{day}_业务明细(汇总).csv"), summary),
        ] {
            let (gbk, _, _) = encoding_rs::GBK.encode(&text);
            zip.start_file(name, options).ok()?;
            zip.write_all(&gbk).ok()?;
        }
        zip.finish().ok()?;
    }
    Some(buf.into_inner())
}

/// `downloadFileName` of the link: `<pid>0156_<yyyyMMdd>.csv.zip`.
pub fn file_name(pid: &str, date: NaiveDate) -> String {
    format!("{pid}0156_{}.csv.zip", date.format("%Y%m%d"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alipay::state::{AlipayBook, AlipayRef, PrecreateParams};

    /// The sandbox writes the zip, the gateway's parser reads it back.
    #[test]
    fn the_zip_reads_back_through_the_channel_parser() {
        let now: DateTime<Utc> = "2026-12-01T02:00:05Z".parse().unwrap();
        let book = AlipayBook::default();
        for (otn, total) in [("300001", 1999), ("300002", 500)] {
            let params = PrecreateParams {
                subject: "课程, 第一讲".into(),
                total: Fen::new(total).unwrap(),
                notify_url: None,
                body: None,
            };
            let trade = book.precreate(otn, params, now).unwrap();
            book.pay(&trade.qr_code, now).unwrap();
        }
        book.refund(
            &AlipayRef::OutTradeNo("300001".into()),
            "400001",
            Fen::new(99).unwrap(),
            None,
            now,
        )
        .unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let zip = trade_bill(&book.all(), "2088000000000001", date, now).unwrap();
        let text = paywire_channels::alipay::bill::detail_text(&zip).unwrap();
        assert!(
            text.starts_with("#支付宝业务明细查询\r\n#账号：[20880000000000010156]\r\n"),
            "{text}"
        );
        assert!(text.contains("#交易合计：2笔，商家实收共24.99元"), "{text}");
        assert!(
            text.contains("#退款合计：1笔，商家实收退款共-0.99元"),
            "{text}"
        );
        let statement = paywire_channels::alipay::bill::parse(date, &zip).unwrap();
        assert_eq!(statement.payments.len(), 2);
        assert_eq!(statement.payments[0].amount, Fen::new(1999).unwrap());
        assert_eq!(statement.payments[0].paid_at, now);
        assert_eq!(statement.refunds.len(), 1);
        assert_eq!(statement.refunds[0].out_refund_no, "400001");
        assert_eq!(statement.refunds[0].amount, Fen::new(99).unwrap());
        assert!(
            trade_bill(
                &book.all(),
                "2088000000000001",
                date.succ_opt().unwrap(),
                now
            )
            .is_none()
        );
    }
}
