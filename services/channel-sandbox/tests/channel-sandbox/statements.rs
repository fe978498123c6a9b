//! The channels' statement APIs (issue 13, item 3) over HTTP: WeChat's signed `tradebill`
//! answer whose SHA1 matches the unsigned file behind `download_url` (requested with the
//! merchant's signature), Alipay's signed `bill_download_url` to a zip the channel parser
//! reads; a day without trades, a bad date, an unknown link; the `pay_invisible` and
//! `corrupt_statement` faults.

use chrono::Utc;
use paywire_channels::alipay::bill as alipay_bill;
use paywire_channels::wechat::bill as wechat_bill;
use serde_json::json;
use sha1::Digest;

use crate::support::{Sandbox, unique};

fn today() -> chrono::NaiveDate {
    (Utc::now() + chrono::Duration::hours(8)).date_naive()
}

/// A paid WeChat trade and a hidden one: both in the bill, the hidden one NOTPAY to
/// queries; the download's SHA1 is the announced one until `corrupt_statement`.
#[tokio::test]
async fn wechat_tradebill_hashes_the_file_it_serves() {
    let sb = Sandbox::start().await;
    let date = today();
    let path = format!("/v3/bill/tradebill?bill_date={date}&bill_type=ALL");
    let none = sb.wx("GET", &path, "").await;
    assert!(none.verifies);
    assert_eq!(
        (none.status, none.json()["code"].clone()),
        (400, json!("NO_STATEMENT_EXIST"))
    );

    let (seen, hidden) = (unique("bill"), unique("hide"));
    let code = sb.wx_trade(&seen, 1999, "http://127.0.0.1:1/n").await;
    assert_eq!(sb.wallet("pay", &code).await.0, 200);
    let (status, _) = sb
        .put_faults(
            json!({"scope": {"channel": "wechat", "out_trade_no": hidden}, "pay_invisible": true}),
        )
        .await;
    assert_eq!(status, 200);
    let code = sb.wx_trade(&hidden, 300, "http://127.0.0.1:1/n").await;
    assert_eq!(sb.wallet("pay", &code).await.0, 200);
    let query = sb.wx_query(&hidden).await.json();
    assert_eq!(query["trade_state"], "NOTPAY", "{query}");
    assert!(query.get("transaction_id").is_none(), "{query}");

    let answer = sb.wx("GET", &path, "").await;
    assert!(answer.verifies);
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    let info = answer.json();
    assert_eq!(info["hash_type"], "SHA1");
    let url = info["download_url"].as_str().unwrap();
    let file_path = url.strip_prefix(&sb.base).unwrap();
    assert!(
        file_path.starts_with("/v3/billdownload/file?token="),
        "{url}"
    );
    let file = sb.wx_send("GET", file_path, "").await;
    assert_eq!(file.status(), 200);
    assert!(
        file.headers().get("Wechatpay-Signature").is_none(),
        "files are not signed"
    );
    let bytes = file.bytes().await.unwrap();
    let hex: String = sha1::Sha1::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(info["hash_value"], hex.as_str());
    wechat_bill::verify_hash(&bytes, "SHA1", &hex).unwrap();
    let statement = wechat_bill::parse(date, &bytes).unwrap();
    let mut listed: Vec<_> = statement
        .payments
        .iter()
        .map(|p| p.out_trade_no.clone())
        .collect();
    listed.sort();
    let mut expected = vec![seen.clone(), hidden.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    // Without the merchant's signature the file is not served.
    let unsigned = sb.client.get(url).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let unknown = sb
        .wx_send("GET", "/v3/billdownload/file?token=nope", "")
        .await;
    assert_eq!(unknown.status(), 400);
    for bad in [
        "/v3/bill/tradebill?bill_date=2026-13-01".to_owned(),
        format!(
            "/v3/bill/tradebill?bill_date={}",
            date + chrono::Duration::days(1)
        ),
        format!("/v3/bill/tradebill?bill_date={date}&bill_type=SUCCESS"),
        format!("/v3/bill/tradebill?bill_date={date}&tar_type=GZIP"),
    ] {
        let refused = sb.wx("GET", &bad, "").await;
        assert_eq!(
            (refused.status, refused.json()["code"].clone()),
            (400, json!("PARAM_ERROR")),
            "{bad}"
        );
    }

    sb.put_faults(json!({"scope": "global", "corrupt_statement": true}))
        .await;
    let answer = sb.wx("GET", &path, "").await.json();
    let url = answer["download_url"].as_str().unwrap();
    let bytes = sb
        .wx_send("GET", url.strip_prefix(&sb.base).unwrap(), "")
        .await
        .bytes()
        .await
        .unwrap();
    let e = wechat_bill::verify_hash(&bytes, "SHA1", answer["hash_value"].as_str().unwrap())
        .unwrap_err();
    assert!(
        matches!(e, paywire_channels::ChannelError::BadStatement(_)),
        "{e:?}"
    );
    let kinds = sb.faults().await["injected"].clone();
    assert!(
        kinds
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "corrupt_statement"),
        "{kinds}"
    );
    assert!(
        kinds
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "pay_invisible"),
        "{kinds}"
    );
}

/// Alipay: a paid and a hidden trade in the zip; the hidden one waits to queries; a day
/// without trades is `isp.bill_not_exist`; a corrupt zip fails its CRC.
#[tokio::test]
async fn alipay_bill_download_url_points_at_the_zip() {
    let sb = Sandbox::start().await;
    let date = today();
    let biz = json!({"bill_type": "trade", "bill_date": date.to_string()});
    let method = "alipay.data.dataservice.bill.downloadurl.query";
    let none = sb.ali(method, biz.clone()).await;
    assert!(none.verifies, "{}", none.raw);
    assert_eq!(
        none.content["sub_code"], "isp.bill_not_exist",
        "{}",
        none.raw
    );

    let (seen, hidden) = (unique("abill"), unique("ahide"));
    let code = sb.ali_trade(&seen, "19.99", "http://127.0.0.1:1/n").await;
    assert_eq!(sb.wallet("pay", &code).await.0, 200);
    sb.put_faults(
        json!({"scope": {"channel": "alipay", "out_trade_no": hidden}, "pay_invisible": true}),
    )
    .await;
    let code = sb.ali_trade(&hidden, "3.00", "http://127.0.0.1:1/n").await;
    assert_eq!(sb.wallet("pay", &code).await.0, 200);
    let query = sb
        .ali("alipay.trade.query", json!({"out_trade_no": hidden}))
        .await;
    assert_eq!(
        query.content["trade_status"], "WAIT_BUYER_PAY",
        "{}",
        query.raw
    );

    let answer = sb.ali(method, biz.clone()).await;
    assert!(answer.verifies, "{}", answer.raw);
    assert_eq!(answer.content["code"], "10000", "{}", answer.raw);
    let url = answer.content["bill_download_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.contains("/downloadBillFile.resource?bizType=trade&"),
        "{url}"
    );
    let zip = sb.client.get(&url).send().await.unwrap();
    assert_eq!(zip.status(), 200);
    let zip = zip.bytes().await.unwrap();
    let statement = alipay_bill::parse(date, &zip).unwrap();
    let mut listed: Vec<_> = statement
        .payments
        .iter()
        .map(|p| p.out_trade_no.clone())
        .collect();
    listed.sort();
    let mut expected = vec![seen, hidden];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(
        statement
            .payments
            .iter()
            .map(|p| p.amount.get())
            .sum::<i64>(),
        2299
    );

    let bad = sb
        .ali(
            method,
            json!({"bill_type": "signcustomer", "bill_date": date.to_string()}),
        )
        .await;
    assert_eq!(
        bad.content["sub_code"], "isv.invalid-parameter",
        "{}",
        bad.raw
    );
    let gone = sb
        .client
        .get(format!("{}/downloadBillFile.resource?token=nope", sb.base))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    sb.put_faults(json!({"scope": "global", "corrupt_statement": true}))
        .await;
    let answer = sb.ali(method, biz).await;
    let url = answer.content["bill_download_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let zip = sb
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(alipay_bill::parse(date, &zip).is_err());
}
