//! WeChat Pay API v2 in the sandbox, driven by Paywire's own v2 client (the gateway's
//! code) and by raw XML: signed answers, documented error codes, `secapi/` only with the
//! merchant certificate, v2 notifications on WeChat's schedule, faults.

use std::time::Duration;

use chrono::Utc;
use paywire_channels::wechat_v2::sign::{SignType, sign_fields};
use paywire_channels::wechat_v2::xml::{self, XmlMap};
use paywire_channels::wechat_v2::{
    DEV_API_KEY, DEV_APPID, DEV_MCH_ID, WechatPayV2, WechatPayV2Config,
};
use paywire_channels::{
    ChannelError, CloseOutcome, CreatePayment, CreateRefund, Notification, NotificationRequest,
    PaymentChannel, PaymentState, RefundState,
};
use paywire_domain::{Fen, PayNo, RefundNo};
use paywire_testkit::test_key;
use secrecy::SecretString;
use serde_json::json;

use crate::support::{Receiver, Sandbox, eventually, settings};

const ACK: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";
const NACK: &str = "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[busy]]></return_msg></xml>";

fn client(s: &Sandbox, sign_type: SignType, notify_url: &str, identity: &str) -> WechatPayV2 {
    WechatPayV2::new(WechatPayV2Config {
        api_base: s.base.clone(),
        secapi_base: format!("https://127.0.0.1:{}", s.v2_tls_port),
        appid: DEV_APPID.into(),
        mch_id: DEV_MCH_ID.into(),
        api_key: SecretString::from(DEV_API_KEY),
        sign_type,
        client_identity_pem: SecretString::from(identity.to_owned()),
        extra_root_ca_pem: Some(std::fs::read(test_key("wechat_v2/ca.pem")).unwrap()),
        client_ip: "127.0.0.1".into(),
        notify_url: notify_url.into(),
        timeout: Duration::from_secs(3),
    })
    .unwrap()
}

fn merchant_identity() -> String {
    std::fs::read_to_string(test_key("wechat_v2/client_identity.pem")).unwrap()
}

fn pay_no() -> PayNo {
    // Unique per test run: the sandbox's book is per process, tests share nothing else.
    let n = 7_300_000_000_000_000_000u64 + u64::from(rand_u32());
    n.to_string().parse().unwrap()
}

fn rand_u32() -> u32 {
    u32::from_str_radix(&uuid::Uuid::new_v4().simple().to_string()[..8], 16).unwrap()
}

fn create(pay_no: PayNo, fen: i64) -> CreatePayment {
    CreatePayment {
        pay_no,
        amount: Fen::new(fen).unwrap(),
        description: "Rust 入门 <v2>".into(),
        expires_at: Utc::now() + chrono::Duration::minutes(15),
        attach: Some("order 42".into()),
    }
}

fn parse_notification(
    c: &WechatPayV2,
    body: &[u8],
) -> Result<Notification, paywire_channels::NotifyError> {
    c.parse_notification(&NotificationRequest {
        headers: &[],
        body,
        now: Utc::now(),
    })
}

#[tokio::test]
async fn a_v2_trade_is_created_paid_notified_and_refunded_over_mutual_tls() {
    let s = Sandbox::start().await;
    let merchant = Receiver::start(vec![], (200, ACK)).await;
    for sign_type in [SignType::Md5, SignType::HmacSha256] {
        let c = client(&s, sign_type, &merchant.url, &merchant_identity());
        let pay_no = pay_no();
        let created = c.create_payment(&create(pay_no, 10099)).await.unwrap();
        assert!(
            created.code_url.starts_with("weixin://wxpay/bizpayurl?pr="),
            "{}",
            created.code_url
        );
        // The same create again (a retry after a timeout) gives the same code.
        assert_eq!(
            c.create_payment(&create(pay_no, 10099))
                .await
                .unwrap()
                .code_url
                .len(),
            created.code_url.len()
        );
        assert_eq!(
            c.query_payment(pay_no).await.unwrap(),
            PaymentState::NotPaid
        );

        let before = merchant.deliveries().len();
        let (status, scanned) = s.wallet("pay", &created.code_url).await;
        assert_eq!(status, 200, "{scanned}");
        assert_eq!(scanned["channel"], "wechat_v2");
        let deliveries = merchant.wait_for(before + 1).await;
        let (_, body) = &deliveries[before];
        // The notification is signed with the trade's sign_type and verifies.
        let paid = match parse_notification(&c, body).unwrap() {
            Notification::PaymentSucceeded(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!((paid.pay_no, paid.amount.get()), (pay_no, 10099));
        let map = xml::parse(body).unwrap();
        assert_eq!(
            map.get("sign_type"),
            (sign_type == SignType::HmacSha256).then_some("HMAC-SHA256")
        );
        assert_eq!(map.get("attach"), Some("order 42"));
        assert_eq!(
            c.query_payment(pay_no).await.unwrap(),
            PaymentState::Paid(paid.clone())
        );

        // Refund over mutual TLS, then its encrypted notification.
        let refund_no: RefundNo = (pay_no.to_string().parse::<u64>().unwrap() + 1)
            .to_string()
            .parse()
            .unwrap();
        let req = CreateRefund {
            refund_no,
            pay_no,
            channel_trade_no: paid.channel_trade_no.clone(),
            refund_amount: Fen::new(29).unwrap(),
            total_amount: Fen::new(10099).unwrap(),
            reason: "stray money".into(),
        };
        let state = c.refund(&req).await.unwrap();
        assert!(
            matches!(
                state,
                RefundState::Processing | RefundState::Succeeded { .. }
            ),
            "{state:?}"
        );
        let done = eventually(|| async {
            match c.query_refund(refund_no, pay_no).await {
                Ok(s @ RefundState::Succeeded { .. }) => Some(s),
                _ => None,
            }
        })
        .await;
        let deliveries = merchant.wait_for(before + 2).await;
        let (_, refund_body) = &deliveries[before + 1];
        assert!(xml::parse(refund_body).unwrap().get("req_info").is_some());
        assert_eq!(
            parse_notification(&c, refund_body).unwrap(),
            Notification::RefundUpdated {
                refund_no,
                pay_no,
                state: done
            }
        );
        // The same refund number again refunds nothing more.
        c.refund(&req).await.unwrap();
        assert_eq!(
            s.trade(&pay_no.to_string()).await["refunds"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            c.query_payment(pay_no).await.unwrap(),
            PaymentState::Refunded(paid)
        );
    }
}

#[tokio::test]
async fn secapi_is_served_only_to_the_merchant_certificate() {
    let s = Sandbox::start().await;
    let merchant = Receiver::start(vec![], (200, ACK)).await;
    let c = client(&s, SignType::Md5, &merchant.url, &merchant_identity());
    let pay_no = pay_no();
    let code = c
        .create_payment(&create(pay_no, 100))
        .await
        .unwrap()
        .code_url;
    s.wallet("pay", &code).await;
    let paid = match c.query_payment(pay_no).await.unwrap() {
        PaymentState::Paid(p) => p,
        other => panic!("{other:?}"),
    };
    let mut fields: XmlMap = [
        ("appid", DEV_APPID),
        ("mch_id", DEV_MCH_ID),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
        ("transaction_id", paid.channel_trade_no.as_str()),
        ("out_refund_no", "7300000000000000001"),
        ("total_fee", "100"),
        ("refund_fee", "1"),
    ]
    .into_iter()
    .collect();
    sign_fields(&mut fields, &SecretString::from(DEV_API_KEY), SignType::Md5);
    // Plain HTTP: refused in v2's words.
    let plain = s
        .client
        .post(format!("{}/secapi/pay/refund", s.base))
        .body(fields.to_xml())
        .send()
        .await
        .unwrap();
    let answer = xml::parse(&plain.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.get("return_code"), Some("FAIL"));
    // TLS without a client certificate: the handshake fails, no handler runs.
    let anonymous = reqwest::Client::builder()
        .tls_certs_merge(
            reqwest::Certificate::from_pem_bundle(
                &std::fs::read(test_key("wechat_v2/ca.pem")).unwrap(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/secapi/pay/refund", s.v2_tls_port);
    assert!(
        anonymous
            .post(&url)
            .body(fields.to_xml())
            .send()
            .await
            .is_err()
    );
    // A client certificate the merchant CA never issued.
    let stranger = std::fs::read_to_string(test_key("wechat_v2/stranger_identity.pem")).unwrap();
    let c2 = client(&s, SignType::Md5, &merchant.url, &stranger);
    let refund = CreateRefund {
        refund_no: "7300000000000000002".parse().unwrap(),
        pay_no,
        channel_trade_no: paid.channel_trade_no.clone(),
        refund_amount: Fen::new(1).unwrap(),
        total_amount: Fen::new(100).unwrap(),
        reason: String::new(),
    };
    assert!(matches!(
        c2.refund(&refund).await,
        Err(ChannelError::Unavailable(_))
    ));
    assert!(
        s.trade(&pay_no.to_string()).await["refunds"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The merchant's certificate: accepted.
    c.refund(&refund).await.unwrap();
    assert_eq!(
        s.trade(&pay_no.to_string()).await["refunds"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn documented_error_codes_and_close() {
    let s = Sandbox::start().await;
    let merchant = Receiver::start(vec![], (200, ACK)).await;
    let c = client(
        &s,
        SignType::HmacSha256,
        &merchant.url,
        &merchant_identity(),
    );
    let unknown = pay_no();
    assert!(matches!(
        c.query_payment(unknown).await,
        Err(ChannelError::NotFound)
    ));
    assert!(matches!(
        c.query_refund("7300000000000000009".parse().unwrap(), unknown)
            .await,
        Err(ChannelError::NotFound)
    ));
    // Closing a trade that never existed: it will never be paid.
    assert_eq!(
        c.close_payment(unknown).await.unwrap(),
        CloseOutcome::Closed
    );

    let open = pay_no();
    c.create_payment(&create(open, 100)).await.unwrap();
    assert_eq!(c.close_payment(open).await.unwrap(), CloseOutcome::Closed);
    assert_eq!(c.query_payment(open).await.unwrap(), PaymentState::Closed);
    // ORDERCLOSED on a new create with the closed number.
    assert!(matches!(
        c.create_payment(&create(open, 100)).await,
        Err(ChannelError::Rejected { code, .. }) if code == "ORDERCLOSED"
    ));

    let paid = pay_no();
    let code = c.create_payment(&create(paid, 100)).await.unwrap().code_url;
    s.wallet("pay", &code).await;
    // ORDERPAID on close: already paid.
    assert_eq!(
        c.close_payment(paid).await.unwrap(),
        CloseOutcome::AlreadyPaid
    );
    // OUT_TRADE_NO_USED: the same number with another amount.
    assert!(matches!(
        c.create_payment(&create(paid, 200)).await,
        Err(ChannelError::Rejected { code, .. }) if code == "OUT_TRADE_NO_USED"
    ));

    // A request signed with another key: an unsigned return_code FAIL.
    let mut fields: XmlMap = [
        ("appid", DEV_APPID),
        ("mch_id", DEV_MCH_ID),
        ("nonce_str", "abc"),
        ("out_trade_no", "7300000000000000003"),
    ]
    .into_iter()
    .collect();
    sign_fields(
        &mut fields,
        &SecretString::from("k".repeat(32)),
        SignType::Md5,
    );
    let answer = s
        .client
        .post(format!("{}/pay/orderquery", s.base))
        .body(fields.to_xml())
        .send()
        .await
        .unwrap();
    let answer = xml::parse(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (answer.get("return_code"), answer.get("return_msg")),
        (Some("FAIL"), Some("签名错误"))
    );
    assert_eq!(answer.get("sign"), None);
    // A DTD is not read at all.
    let evil = format!(
        "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        fields.to_xml()
    );
    let answer = s
        .client
        .post(format!("{}/pay/orderquery", s.base))
        .body(evil)
        .send()
        .await
        .unwrap();
    let answer = xml::parse(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.get("return_code"), Some("FAIL"));
}

#[tokio::test]
async fn v2_notifications_retry_until_the_success_xml() {
    // 1000x compression: the 15 s / 15 s waits pass in milliseconds.
    let s = Sandbox::start_with(settings(1000.0)).await;
    // Not acknowledged by a 200 with FAIL, nor by a 500, nor by plain "success".
    let merchant =
        Receiver::start(vec![(200, NACK), (500, ACK), (200, "success")], (200, ACK)).await;
    let c = client(&s, SignType::Md5, &merchant.url, &merchant_identity());
    let pay_no = pay_no();
    let code = c
        .create_payment(&create(pay_no, 100))
        .await
        .unwrap()
        .code_url;
    s.wallet("pay", &code).await;
    let n = s.finished_notification(&pay_no.to_string(), 0).await;
    let attempts = n["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{n}");
    assert_eq!(
        attempts
            .iter()
            .filter(|a| a["acknowledged"] == true)
            .count(),
        1
    );
    let bodies: Vec<Vec<u8>> = merchant.deliveries().into_iter().map(|(_, b)| b).collect();
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every attempt carries the same signed body"
    );
}

#[tokio::test]
async fn faults_apply_to_v2() {
    let s = Sandbox::start().await;
    let merchant = Receiver::start(vec![], (200, ACK)).await;
    let c = client(&s, SignType::Md5, &merchant.url, &merchant_identity());
    let pay_no = pay_no();
    let code = c
        .create_payment(&create(pay_no, 100))
        .await
        .unwrap()
        .code_url;
    let scope = json!({"channel": "wechat_v2", "out_trade_no": pay_no.to_string()});
    let (status, _) = s
        .put_faults(json!({"scope": scope, "api": {"bad_signature": true}}))
        .await;
    assert_eq!(status, 200);
    assert!(matches!(
        c.query_payment(pay_no).await,
        Err(ChannelError::BadResponseSignature(_))
    ));
    s.put_faults(json!({"scope": scope, "api": {"status_5xx": true}}))
        .await;
    assert!(matches!(
        c.query_payment(pay_no).await,
        Err(ChannelError::Unavailable(_))
    ));
    s.put_faults(json!({"scope": scope, "notify": {"bad_signature": true}}))
        .await;
    s.wallet("pay", &code).await;
    let deliveries = merchant.wait_for(1).await;
    assert_eq!(
        parse_notification(&c, &deliveries[0].1),
        Err(paywire_channels::NotifyError::BadSignature)
    );
    let kinds: Vec<String> = s.trade(&pay_no.to_string()).await["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in ["bad_signature", "status_5xx", "notify_bad_signature"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind}: {kinds:?}");
    }
}
