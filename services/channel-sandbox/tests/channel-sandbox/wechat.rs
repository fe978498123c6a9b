//! Black-box tests of the WeChat Pay imitation: the sandbox runs in-process on port 0 and
//! is called over HTTP like the real WeChat Pay, with requests signed by the test
//! merchant key and responses verified with the test WeChat Pay public key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, HttpServer, web};
use channel_sandbox::{Settings, WECHAT_RETRY_SCHEDULE};
use paywire_channels::keys;
use paywire_channels::wechat::crypto;
use paywire_testkit::{test_key, wait_for as eventually};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

const MCHID: &str = "1900009191";
const APPID: &str = "wxd678efh567hg6787";
const SERIAL: &str = "7E2A1C3B4D5F60718293A4B5C6D7E8F901234567";
const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000091912026112200000000000001";
const APIV3_KEY: &str = "paywire-sandbox-apiv3-key-32byte";
/// Nothing listens here; notifications to it just fail and wait for a retry.
const DEAD_NOTIFY_URL: &str = "http://127.0.0.1:9/notify";

fn merchant_key() -> RsaPrivateKey {
    keys::private_key_from_file(test_key("wechat/merchant_private_key.pem")).unwrap()
}

fn wechatpay_public_key() -> RsaPublicKey {
    keys::public_key_from_file(test_key("wechat/wechatpay_public_key.pem")).unwrap()
}

fn settings(compression: f64, timeout_ms: u64) -> Settings {
    let mut s = Settings::default();
    s.http.port = 0;
    s.http.workers = 1;
    s.wechat.merchant_public_key_path = test_key("wechat/merchant_public_key.pem");
    s.wechat.wechatpay_private_key_path = test_key("wechat/wechatpay_private_key.pem");
    s.wechat_v2.use_test_keys_in(&test_key("wechat_v2"));
    s.notify.time_compression = compression;
    s.notify.timeout_ms = timeout_ms;
    s
}

struct Sandbox {
    base: String,
    client: reqwest::Client,
    key: RsaPrivateKey,
}

/// A response whose WeChat Pay signature has been checked.
#[derive(Debug)]
struct Signed {
    status: u16,
    body: Vec<u8>,
}

impl Signed {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    )
}

impl Sandbox {
    async fn start_with(settings: Settings) -> Self {
        let app = channel_sandbox::build(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        Self {
            base,
            client: reqwest::Client::new(),
            key: merchant_key(),
        }
    }

    async fn start() -> Self {
        Self::start_with(settings(1.0, 5000)).await
    }

    /// Sends a request signed like a merchant SDK, at `timestamp`, signing `signed_body`
    /// but sending `body` (they differ only when a test tampers).
    async fn raw(
        &self,
        method: &str,
        path: &str,
        body: &str,
        signed_body: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        let nonce = crypto::nonce();
        let message = crypto::request_message(method, path, timestamp, &nonce, signed_body);
        let signature = crypto::sign(&self.key, message.as_bytes());
        let authorization = crypto::authorization(MCHID, SERIAL, timestamp, &nonce, &signature);
        let url = format!("{}{path}", self.base);
        let builder = match method {
            "GET" => self.client.get(url),
            _ => self
                .client
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_owned()),
        };
        builder
            .header("Authorization", authorization)
            .header("Accept", "application/json")
            .header("Wechatpay-Serial", PUBLIC_KEY_ID)
            .send()
            .await
            .unwrap()
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> Signed {
        let now = chrono::Utc::now().timestamp();
        verified(self.raw(method, path, body, body, now).await).await
    }

    async fn prepay(&self, body: &Value) -> Signed {
        self.call("POST", "/v3/pay/transactions/native", &body.to_string())
            .await
    }

    async fn query(&self, out_trade_no: &str) -> Signed {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={MCHID}");
        self.call("GET", &path, "").await
    }

    async fn close(&self, out_trade_no: &str) -> Signed {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        self.call("POST", &path, &json!({"mchid": MCHID}).to_string())
            .await
    }

    async fn wallet(&self, action: &str, code: &str) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/sandbox/wallet/{action}", self.base))
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    async fn trades(&self) -> Vec<Value> {
        self.client
            .get(format!("{}/sandbox/trades", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn trade(&self, out_trade_no: &str) -> Value {
        self.trades()
            .await
            .into_iter()
            .find(|t| t["out_trade_no"] == out_trade_no)
            .unwrap()
    }

    /// A NOTPAY trade; returns its code_url.
    async fn new_trade(&self, out_trade_no: &str, total: i64, notify_url: &str) -> String {
        let resp = self
            .prepay(&prepay_body(out_trade_no, total, notify_url))
            .await;
        assert_eq!(
            resp.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&resp.body)
        );
        resp.json()["code_url"].as_str().unwrap().to_owned()
    }
}

/// Checks the `Wechatpay-*` headers of a response against its raw body bytes.
async fn verified(resp: reqwest::Response) -> Signed {
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing on {status}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let timestamp = header("Wechatpay-Timestamp");
    let nonce = header("Wechatpay-Nonce");
    let signature = header("Wechatpay-Signature");
    assert_eq!(header("Wechatpay-Serial"), PUBLIC_KEY_ID);
    assert_eq!(
        header("Wechatpay-Signature-Type"),
        "WECHATPAY2-SHA256-RSA2048"
    );
    assert!(!header("Request-ID").is_empty());
    let skew = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!(skew.abs() < 300, "response timestamp skew {skew}");
    let body = resp.bytes().await.unwrap().to_vec();
    let message = crypto::response_message(&timestamp, &nonce, &body);
    assert!(
        crypto::verify(&wechatpay_public_key(), &message, &signature),
        "response signature does not verify"
    );
    Signed { status, body }
}

fn prepay_body(out_trade_no: &str, total: i64, notify_url: &str) -> Value {
    json!({
        "appid": APPID,
        "mchid": MCHID,
        "description": "Rust 实战课",
        "out_trade_no": out_trade_no,
        "time_expire": "2099-01-01T00:00:00+08:00",
        "attach": "order=42",
        "notify_url": notify_url,
        "amount": {"total": total, "currency": "CNY"}
    })
}

fn assert_wechat_error(resp: &Signed, status: u16, code: &str) {
    assert_eq!(
        resp.status,
        status,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    let body = resp.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepay_returns_a_code_url_in_a_signed_response() {
    let s = Sandbox::start().await;
    let resp = s
        .prepay(&prepay_body(&unique("p"), 1999, DEAD_NOTIFY_URL))
        .await;
    assert_eq!(resp.status, 200);
    let code_url = resp.json()["code_url"].as_str().unwrap().to_owned();
    let pr = code_url
        .strip_prefix("weixin://wxpay/bizpayurl?pr=")
        .unwrap();
    assert!(pr.len() >= 10 && pr.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        resp.body,
        format!("{{\"code_url\":\"{code_url}\"}}").as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_signature_covers_the_exact_body() {
    let s = Sandbox::start().await;
    let now = chrono::Utc::now().timestamp();
    let body = prepay_body(&unique("t"), 1, DEAD_NOTIFY_URL).to_string();
    let resp = s
        .raw("POST", "/v3/pay/transactions/native", &body, &body, now)
        .await;
    let ts = resp.headers()["Wechatpay-Timestamp"]
        .to_str()
        .unwrap()
        .to_owned();
    let nonce = resp.headers()["Wechatpay-Nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    let sig = resp.headers()["Wechatpay-Signature"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut bytes = resp.bytes().await.unwrap().to_vec();
    let key = wechatpay_public_key();
    assert!(crypto::verify(
        &key,
        &crypto::response_message(&ts, &nonce, &bytes),
        &sig
    ));
    // A verifier would notice one changed byte, or the merchant key instead of WeChat's.
    bytes[2] ^= 1;
    assert!(!crypto::verify(
        &key,
        &crypto::response_message(&ts, &nonce, &bytes),
        &sig
    ));
    let merchant_public = RsaPublicKey::from(&merchant_key());
    bytes[2] ^= 1;
    assert!(!crypto::verify(
        &merchant_public,
        &crypto::response_message(&ts, &nonce, &bytes),
        &sig
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_signature_is_a_signed_401_sign_error() {
    let s = Sandbox::start().await;
    let now = chrono::Utc::now().timestamp();
    let sent = prepay_body(&unique("b"), 100, DEAD_NOTIFY_URL).to_string();
    let signed = prepay_body(&unique("b"), 1, DEAD_NOTIFY_URL).to_string();
    let resp = verified(
        s.raw("POST", "/v3/pay/transactions/native", &sent, &signed, now)
            .await,
    )
    .await;
    assert_wechat_error(&resp, 401, "SIGN_ERROR");
    assert_eq!(
        resp.body,
        "{\"code\":\"SIGN_ERROR\",\"message\":\"签名错误\"}".as_bytes()
    );

    let resp = s
        .client
        .post(format!("{}/v3/pay/transactions/native", s.base))
        .header("Content-Type", "application/json")
        .body(sent.clone())
        .send()
        .await
        .unwrap();
    assert_wechat_error(&verified(resp).await, 401, "SIGN_ERROR");
    // Nothing was created by the refused requests.
    assert!(s.trades().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_timestamp_is_refused() {
    let s = Sandbox::start().await;
    let body = prepay_body(&unique("s"), 100, DEAD_NOTIFY_URL).to_string();
    let stale = chrono::Utc::now().timestamp() - 6 * 60;
    let resp = verified(
        s.raw("POST", "/v3/pay/transactions/native", &body, &body, stale)
            .await,
    )
    .await;
    assert_wechat_error(&resp, 401, "SIGN_ERROR");
    // The same request with a current timestamp goes through.
    let now = chrono::Utc::now().timestamp();
    let resp = verified(
        s.raw("POST", "/v3/pay/transactions/native", &body, &body, now)
            .await,
    )
    .await;
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_appid_or_mchid_and_bad_params_are_400() {
    let s = Sandbox::start().await;
    let mut body = prepay_body(&unique("m"), 100, DEAD_NOTIFY_URL);
    body["appid"] = json!("wx0000000000000000");
    assert_wechat_error(&s.prepay(&body).await, 400, "APPID_MCHID_NOT_MATCH");
    let mut body = prepay_body(&unique("m"), 100, DEAD_NOTIFY_URL);
    body["mchid"] = json!("1900000001");
    assert_wechat_error(&s.prepay(&body).await, 400, "APPID_MCHID_NOT_MATCH");

    let mut missing = prepay_body(&unique("m"), 100, DEAD_NOTIFY_URL);
    missing.as_object_mut().unwrap().remove("description");
    assert_wechat_error(&s.prepay(&missing).await, 400, "PARAM_ERROR");
    let zero = prepay_body(&unique("m"), 0, DEAD_NOTIFY_URL);
    assert_wechat_error(&s.prepay(&zero).await, 400, "PARAM_ERROR");
    let negative = prepay_body(&unique("m"), -5, DEAD_NOTIFY_URL);
    assert_wechat_error(&s.prepay(&negative).await, 400, "PARAM_ERROR");
    for bad in ["short", "has space 123", &"x".repeat(33)] {
        let body = prepay_body(bad, 100, DEAD_NOTIFY_URL);
        assert_wechat_error(&s.prepay(&body).await, 400, "PARAM_ERROR");
    }
    let query_url = prepay_body(&unique("m"), 100, "http://127.0.0.1:9/n?x=1");
    assert_wechat_error(&s.prepay(&query_url).await, 400, "PARAM_ERROR");
    let not_json = s
        .call("POST", "/v3/pay/transactions/native", "{not json")
        .await;
    assert_wechat_error(&not_json, 400, "PARAM_ERROR");
    assert!(s.trades().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_out_trade_no_same_params_repeats_other_params_403() {
    let s = Sandbox::start().await;
    let otn = unique("r");
    let first = s.new_trade(&otn, 100, DEAD_NOTIFY_URL).await;
    let again = s.new_trade(&otn, 100, DEAD_NOTIFY_URL).await;
    assert_eq!(again, first);
    let other = s.prepay(&prepay_body(&otn, 101, DEAD_NOTIFY_URL)).await;
    assert_wechat_error(&other, 403, "OUT_TRADE_NO_USED");
    assert_eq!(s.trade(&otn).await["amount_fen"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_notpay_then_pay_in_wallet_then_query_success() {
    let s = Sandbox::start().await;
    let otn = unique("q");
    let code = s.new_trade(&otn, 2500, DEAD_NOTIFY_URL).await;

    let unpaid = s.query(&otn).await;
    assert_eq!(unpaid.status, 200);
    let t = unpaid.json();
    assert_eq!(t["trade_state"], "NOTPAY");
    assert_eq!(t["out_trade_no"], otn.as_str());
    assert_eq!(t["appid"], APPID);
    assert_eq!(t["mchid"], MCHID);
    assert_eq!(t["amount"]["total"], 2500);
    assert!(t.get("transaction_id").is_none());

    let (status, paid) = s.wallet("pay", &code).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["channel"], "wechat");
    assert_eq!(paid["out_trade_no"], otn.as_str());
    assert_eq!(paid["trade_state"], "SUCCESS");
    let transaction_id = paid["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(transaction_id.len(), 28);
    assert!(transaction_id.bytes().all(|b| b.is_ascii_digit()));

    let t = s.query(&otn).await.json();
    assert_eq!(t["trade_state"], "SUCCESS");
    assert_eq!(t["trade_state_desc"], "支付成功");
    assert_eq!(t["trade_type"], "NATIVE");
    assert_eq!(t["transaction_id"], transaction_id.as_str());
    assert_eq!(t["attach"], "order=42");
    assert_eq!(t["bank_type"], "OTHERS");
    assert!(t["payer"]["openid"].as_str().is_some_and(|o| !o.is_empty()));
    assert!(t["success_time"].as_str().unwrap().ends_with("+08:00"));
    assert_eq!(
        t["amount"],
        json!({"total": 2500, "payer_total": 2500, "currency": "CNY", "payer_currency": "CNY"})
    );

    // The payer cannot pay twice; the paid number cannot be reused or closed.
    let (status, err) = s.wallet("pay", &code).await;
    assert_eq!((status, err["error"].as_str()), (409, Some("already_paid")));
    let reuse = s.prepay(&prepay_body(&otn, 2500, DEAD_NOTIFY_URL)).await;
    assert_wechat_error(&reuse, 403, "OUT_TRADE_NO_USED");
    assert_wechat_error(&s.close(&otn).await, 400, "TRADE_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_trade_or_other_merchant_query() {
    let s = Sandbox::start().await;
    let missing = s.query("nosuchorder1").await;
    assert_wechat_error(&missing, 404, "ORDER_NOT_EXIST");
    assert_eq!(
        missing.body,
        "{\"code\":\"ORDER_NOT_EXIST\",\"message\":\"订单不存在\"}".as_bytes()
    );
    assert_wechat_error(&s.close("nosuchorder1").await, 404, "ORDER_NOT_EXIST");
    let otn = unique("x");
    s.new_trade(&otn, 1, DEAD_NOTIFY_URL).await;
    let path = format!("/v3/pay/transactions/out-trade-no/{otn}?mchid=1900000001");
    assert_wechat_error(&s.call("GET", &path, "").await, 400, "PARAM_ERROR");
    let path = format!("/v3/pay/transactions/out-trade-no/{otn}");
    assert_wechat_error(&s.call("GET", &path, "").await, 400, "PARAM_ERROR");
    // Unknown APIs are answered (and signed) the WeChat way too.
    let unknown = s.call("GET", "/v3/no/such/api", "").await;
    assert_wechat_error(&unknown, 404, "RESOURCE_NOT_EXISTS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_a_signed_204_and_blocks_payment() {
    let s = Sandbox::start().await;
    let otn = unique("c");
    let code = s.new_trade(&otn, 300, DEAD_NOTIFY_URL).await;

    let closed = s.close(&otn).await;
    assert_eq!(closed.status, 204);
    assert!(closed.body.is_empty());
    // Idempotent.
    assert_eq!(s.close(&otn).await.status, 204);

    assert_eq!(s.query(&otn).await.json()["trade_state"], "CLOSED");
    let (status, err) = s.wallet("pay", &code).await;
    assert_eq!((status, err["error"].as_str()), (409, Some("trade_closed")));
    let (status, _) = s.wallet("decline", &code).await;
    assert_eq!(status, 409);
    let again = s.prepay(&prepay_body(&otn, 300, DEAD_NOTIFY_URL)).await;
    assert_wechat_error(&again, 400, "ORDER_CLOSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_keeps_notpay_and_unknown_codes_are_404() {
    let s = Sandbox::start().await;
    let otn = unique("d");
    let code = s.new_trade(&otn, 100, DEAD_NOTIFY_URL).await;
    let (status, body) = s.wallet("decline", &code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["trade_state"], "NOTPAY");
    assert_eq!(s.query(&otn).await.json()["trade_state"], "NOTPAY");
    let trade = s.trade(&otn).await;
    assert_eq!(trade["declines"].as_array().unwrap().len(), 1);
    assert!(trade["notifications"].as_array().unwrap().is_empty());

    for action in ["pay", "decline"] {
        let (status, err) = s.wallet(action, "weixin://wxpay/bizpayurl?pr=nope").await;
        assert_eq!((status, err["error"].as_str()), (404, Some("unknown_code")));
        let (status, _) = s.wallet(action, "not-a-code").await;
        assert_eq!(status, 404);
    }
}

/// A merchant notify endpoint that answers with `script` in turn (then 204) and records
/// each request's headers and raw body.
struct Receiver {
    url: String,
    seen: Seen,
}

/// One delivery as received: headers (lower-case names) and the raw body.
type Delivery = (Vec<(String, String)>, Vec<u8>);
type Seen = Arc<Mutex<Vec<Delivery>>>;

impl Receiver {
    async fn start(script: Vec<u16>, first_delay: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new((seen.clone(), script, first_delay));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            actix_web::App::new()
                .app_data(state.clone())
                .route("/notify", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/notify"),
            seen,
        }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }
}

type ReceiverState = (Seen, Vec<u16>, Duration);

async fn receive(
    state: web::Data<ReceiverState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (seen, script, first_delay) = state.get_ref();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let index = {
        let mut seen = seen.lock().unwrap();
        seen.push((headers, body.to_vec()));
        seen.len() - 1
    };
    if index == 0 && !first_delay.is_zero() {
        tokio::time::sleep(*first_delay).await;
    }
    let status = script.get(index).copied().unwrap_or(204);
    let status = actix_web::http::StatusCode::from_u16(status).unwrap();
    if status.is_success() {
        HttpResponse::build(status).finish()
    } else {
        HttpResponse::build(status).json(json!({"code": "FAIL", "message": "失败"}))
    }
}

/// Verifies a delivered notification like a merchant would and returns the decrypted
/// Transaction.
fn open_notification(headers: &[(String, String)], body: &[u8]) -> (Value, Value) {
    let h = |name: &str| crypto::header(headers, name).unwrap_or_else(|| panic!("{name} missing"));
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("wechatpay-serial"), PUBLIC_KEY_ID);
    assert_eq!(h("wechatpay-signature-type"), "WECHATPAY2-SHA256-RSA2048");
    assert!(!h("request-id").is_empty());
    assert!(!h("user-agent").is_empty());
    let message = crypto::response_message(h("wechatpay-timestamp"), h("wechatpay-nonce"), body);
    assert!(
        crypto::verify(&wechatpay_public_key(), &message, h("wechatpay-signature")),
        "notification signature does not verify"
    );
    let envelope: Value = serde_json::from_slice(body).unwrap();
    let r = &envelope["resource"];
    let plaintext = crypto::decrypt_resource(
        APIV3_KEY.as_bytes(),
        r["nonce"].as_str().unwrap(),
        r["associated_data"].as_str().unwrap(),
        r["ciphertext"].as_str().unwrap(),
    )
    .unwrap();
    (envelope, serde_json::from_slice(&plaintext).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_notification_is_retried_until_acknowledged() {
    let receiver = Receiver::start(vec![500, 500, 204], Duration::ZERO).await;
    let s = Sandbox::start_with(settings(1000.0, 5000)).await;
    let otn = unique("n");
    let code = s.new_trade(&otn, 1999, &receiver.url).await;
    let (status, paid) = s.wallet("pay", &code).await;
    assert_eq!(status, 200);
    let transaction_id = paid["transaction_id"].as_str().unwrap();

    // The sandbox's record is final once the 204 is acknowledged.
    let record = eventually(|| async {
        let trade = s.trade(&otn).await;
        let n = trade["notifications"][0].clone();
        (n["finished"] == true).then_some(n)
    })
    .await;
    assert_eq!(record["acknowledged"], true);
    assert_eq!(record["event_type"], "TRANSACTION.SUCCESS");
    let statuses: Vec<&Value> = record["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(500), &json!(204)]);

    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 3);
    for (headers, body) in &deliveries {
        let (envelope, transaction) = open_notification(headers, body);
        assert_eq!(envelope["event_type"], "TRANSACTION.SUCCESS");
        assert_eq!(envelope["resource_type"], "encrypt-resource");
        assert_eq!(envelope["summary"], "支付成功");
        assert_eq!(envelope["id"].as_str().unwrap().len(), 36);
        assert!(
            envelope["create_time"]
                .as_str()
                .unwrap()
                .ends_with("+08:00")
        );
        let r = &envelope["resource"];
        assert_eq!(r["original_type"], "transaction");
        assert_eq!(r["algorithm"], "AEAD_AES_256_GCM");
        assert_eq!(r["associated_data"], "transaction");
        assert_eq!(r["nonce"].as_str().unwrap().len(), 12);
        assert_eq!(transaction["out_trade_no"], otn.as_str());
        assert_eq!(transaction["transaction_id"], transaction_id);
        assert_eq!(transaction["trade_state"], "SUCCESS");
        assert_eq!(transaction["mchid"], MCHID);
        assert_eq!(transaction["appid"], APPID);
        assert_eq!(transaction["amount"]["total"], 1999);
        assert_eq!(transaction["amount"]["payer_total"], 1999);
    }
    // A retry is the same notification (same body), freshly signed.
    assert_eq!(deliveries[0].1, deliveries[2].1);
    assert_ne!(
        crypto::header(&deliveries[0].0, "wechatpay-nonce"),
        crypto::header(&deliveries[2].0, "wechatpay-nonce")
    );
    // The plaintext is what a query returns.
    let (_, transaction) = open_notification(&deliveries[2].0, &deliveries[2].1);
    assert_eq!(transaction, s.query(&otn).await.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_gives_up_after_the_fifteenth_retry() {
    let receiver = Receiver::start(vec![500; 100], Duration::ZERO).await;
    // A day of retries in about 0.1 s.
    let s = Sandbox::start_with(settings(1_000_000.0, 5000)).await;
    let otn = unique("g");
    let code = s.new_trade(&otn, 1, &receiver.url).await;
    assert_eq!(s.wallet("pay", &code).await.0, 200);
    let record = eventually(|| async {
        let n = s.trade(&otn).await["notifications"][0].clone();
        (n["finished"] == true).then_some(n)
    })
    .await;
    assert_eq!(record["acknowledged"], false);
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), WECHAT_RETRY_SCHEDULE.len() + 1);
    assert!(attempts.iter().all(|a| a["status"] == 500));
    assert_eq!(receiver.deliveries().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_counts_as_a_failure() {
    // The first answer comes after the sandbox stopped waiting.
    let receiver = Receiver::start(vec![204], Duration::from_millis(1500)).await;
    let s = Sandbox::start_with(settings(1000.0, 300)).await;
    let otn = unique("w");
    let code = s.new_trade(&otn, 1, &receiver.url).await;
    assert_eq!(s.wallet("pay", &code).await.0, 200);
    let record = eventually(|| async {
        let n = s.trade(&otn).await["notifications"][0].clone();
        (n["finished"] == true).then_some(n)
    })
    .await;
    assert_eq!(record["acknowledged"], true);
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["status"], Value::Null);
    assert!(attempts[0]["error"].as_str().unwrap().contains("300 ms"));
    assert_eq!(attempts[1]["status"], 204);
}

#[test]
fn retry_schedule_sums_to_24h4m() {
    let total: Duration = WECHAT_RETRY_SCHEDULE.iter().sum();
    assert_eq!(total, Duration::from_secs(24 * 3600 + 4 * 60));
    assert_eq!(WECHAT_RETRY_SCHEDULE[0], Duration::from_secs(15));
    assert_eq!(WECHAT_RETRY_SCHEDULE[14], Duration::from_secs(6 * 3600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_spelled_like_wechat_on_the_wire() {
    let s = Sandbox::start().await;
    let raw = paywire_testkit::raw_http::exchange(
        &s.base,
        &format!("GET /v3/pay/transactions/out-trade-no/abcdef?mchid={MCHID} HTTP/1.1"),
        b"",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    for header in [
        "\r\nWechatpay-Timestamp: ",
        "\r\nWechatpay-Nonce: ",
        "\r\nWechatpay-Signature: ",
        "\r\nWechatpay-Serial: PUB_KEY_ID_0119000091912026112200000000000001\r\n",
        "\r\nWechatpay-Signature-Type: WECHATPAY2-SHA256-RSA2048\r\n",
    ] {
        assert!(raw.contains(header), "{header:?} not in {raw}");
    }
}
