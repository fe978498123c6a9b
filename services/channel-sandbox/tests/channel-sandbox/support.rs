//! Shared black-box helpers: the sandbox in-process on port 0, a signed WeChat client, a
//! signed Alipay client that verifies every answer over its raw substring, and a merchant
//! notify endpoint that answers from a script.

use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse, HttpServer, web};
use channel_sandbox::Settings;
use paywire_channels::alipay::{sign as alipay_sign, verify as alipay_verify};
use paywire_channels::keys;
use paywire_channels::rsa_sha256;
use paywire_channels::wechat::crypto;
use paywire_testkit::test_key;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

pub const MCHID: &str = "1900009191";
pub const APPID: &str = "wxd678efh567hg6787";
pub const SERIAL: &str = "7E2A1C3B4D5F60718293A4B5C6D7E8F901234567";
pub const APIV3_KEY: &str = "paywire-sandbox-apiv3-key-32byte";
pub const ALI_APP_ID: &str = "2021000000000001";
pub const ALI_SELLER_ID: &str = "2088000000000001";

pub fn wechatpay_public_key() -> RsaPublicKey {
    keys::public_key_from_file(test_key("wechat/wechatpay_public_key.pem")).unwrap()
}

pub fn alipay_public_key() -> RsaPublicKey {
    keys::public_key_from_file(test_key("alipay/alipay_public_key.pem")).unwrap()
}

pub fn app_private_key() -> RsaPrivateKey {
    keys::private_key_from_file(test_key("alipay/app_private_key.pem")).unwrap()
}

pub fn settings(compression: f64) -> Settings {
    let mut s = Settings::default();
    s.http.port = 0;
    s.http.workers = 1;
    s.wechat.merchant_public_key_path = test_key("wechat/merchant_public_key.pem");
    s.wechat.wechatpay_private_key_path = test_key("wechat/wechatpay_private_key.pem");
    s.alipay.app_public_key_path = test_key("alipay/app_public_key.pem");
    s.alipay.alipay_private_key_path = test_key("alipay/alipay_private_key.pem");
    s.wechat_v2.use_test_keys_in(&test_key("wechat_v2"));
    s.notify.time_compression = compression;
    s
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    )
}

pub use paywire_testkit::wait_for as eventually;

/// A WeChat answer and whether its `Wechatpay-Signature` verifies over the raw body.
#[derive(Debug)]
pub struct WxAnswer {
    pub status: u16,
    pub body: Vec<u8>,
    pub verifies: bool,
}

impl WxAnswer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An Alipay answer: HTTP status, raw text, whether `sign` verifies over the exact
/// substring, and the parsed content of the response key (or `error_response`).
#[derive(Debug)]
pub struct AliAnswer {
    pub status: u16,
    pub raw: String,
    pub verifies: bool,
    pub is_error_response: bool,
    pub content: Value,
}

pub struct Sandbox {
    /// The public listener: the channels' APIs and the wallet.
    pub base: String,
    /// The internal listener: `/sandbox/admin/faults`, health, metrics.
    pub internal: String,
    /// WeChat Pay v2's TLS listener (`secapi/`, client certificate required).
    pub v2_tls_port: u16,
    pub client: reqwest::Client,
    merchant_key: RsaPrivateKey,
    app_key: RsaPrivateKey,
}

impl Sandbox {
    pub async fn start_with(settings: Settings) -> Self {
        let (app, ports) = channel_sandbox::build_with_ports(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let internal = format!("http://127.0.0.1:{}", app.internal_port());
        tokio::spawn(app.run_until_stopped());
        Self {
            base,
            internal,
            v2_tls_port: ports.wechat_v2_tls,
            client: reqwest::Client::new(),
            merchant_key: keys::private_key_from_file(test_key("wechat/merchant_private_key.pem"))
                .unwrap(),
            app_key: app_private_key(),
        }
    }

    pub async fn start() -> Self {
        Self::start_with(settings(1000.0)).await
    }

    // ---- WeChat ----

    pub async fn wx_send(&self, method: &str, path: &str, body: &str) -> reqwest::Response {
        let ts = chrono::Utc::now().timestamp();
        let nonce = crypto::nonce();
        let message = crypto::request_message(method, path, ts, &nonce, body);
        let signature = crypto::sign(&self.merchant_key, message.as_bytes());
        let authorization = crypto::authorization(MCHID, SERIAL, ts, &nonce, &signature);
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
            .send()
            .await
            .unwrap()
    }

    pub async fn wx(&self, method: &str, path: &str, body: &str) -> WxAnswer {
        wx_answer(self.wx_send(method, path, body).await).await
    }

    /// A NOTPAY WeChat trade; returns its code_url.
    pub async fn wx_trade(&self, out_trade_no: &str, total: i64, notify_url: &str) -> String {
        let body = json!({
            "appid": APPID, "mchid": MCHID, "description": "Rust 实战课",
            "out_trade_no": out_trade_no, "notify_url": notify_url,
            "amount": {"total": total, "currency": "CNY"}
        });
        let answer = self
            .wx("POST", "/v3/pay/transactions/native", &body.to_string())
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.json());
        answer.json()["code_url"].as_str().unwrap().to_owned()
    }

    pub async fn wx_query(&self, out_trade_no: &str) -> WxAnswer {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={MCHID}");
        self.wx("GET", &path, "").await
    }

    // ---- Alipay ----

    /// Signed request parameters for `method`, as the gateway sends them.
    pub fn ali_params(
        &self,
        method: &str,
        biz: &Value,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = vec![
            ("app_id".into(), ALI_APP_ID.into()),
            ("method".into(), method.into()),
            ("format".into(), "JSON".into()),
            ("charset".into(), "utf-8".into()),
            ("sign_type".into(), "RSA2".into()),
            ("timestamp".into(), "2026-11-22 10:34:56".into()),
            ("version".into(), "1.0".into()),
            ("biz_content".into(), biz.to_string()),
        ];
        for (k, v) in extra {
            params.retain(|(existing, _)| existing != k);
            params.push(((*k).into(), (*v).into()));
        }
        let sign = alipay_sign::sign_params(&self.app_key, &params);
        params.push(("sign".into(), sign));
        params
    }

    pub async fn ali_post_form(&self, params: &[(String, String)]) -> reqwest::Response {
        self.client
            .post(format!("{}/gateway.do", self.base))
            .header(
                "Content-Type",
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(serde_urlencoded::to_string(params).unwrap())
            .send()
            .await
            .unwrap()
    }

    pub async fn ali(&self, method: &str, biz: Value) -> AliAnswer {
        self.ali_with(method, biz, &[]).await
    }

    pub async fn ali_with(&self, method: &str, biz: Value, extra: &[(&str, &str)]) -> AliAnswer {
        let params = self.ali_params(method, &biz, extra);
        ali_answer(self.ali_post_form(&params).await, method).await
    }

    /// A precreated Alipay QR code.
    pub async fn ali_trade(&self, out_trade_no: &str, amount: &str, notify_url: &str) -> String {
        let answer = self
            .ali_with(
                "alipay.trade.precreate",
                json!({"out_trade_no": out_trade_no, "total_amount": amount, "subject": "Rust 实战课"}),
                &[("notify_url", notify_url)],
            )
            .await;
        assert!(answer.verifies, "{}", answer.raw);
        assert_eq!(answer.content["code"], "10000", "{}", answer.raw);
        answer.content["qr_code"].as_str().unwrap().to_owned()
    }

    // ---- wallet, inspection, faults ----

    pub async fn wallet(&self, action: &str, code: &str) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/sandbox/wallet/{action}", self.base))
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    pub async fn trades(&self) -> Vec<Value> {
        self.client
            .get(format!("{}/sandbox/trades", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn trade(&self, out_trade_no: &str) -> Value {
        self.trades()
            .await
            .into_iter()
            .find(|t| t["out_trade_no"] == out_trade_no)
            .unwrap()
    }

    /// The trade's first notification once it is finished.
    pub async fn finished_notification(&self, out_trade_no: &str, index: usize) -> Value {
        eventually(|| async {
            let n = self.trade(out_trade_no).await["notifications"][index].clone();
            (n["finished"] == true).then_some(n)
        })
        .await
    }

    pub async fn put_faults(&self, spec: Value) -> (u16, Value) {
        let resp = self
            .client
            .put(format!("{}/sandbox/admin/faults", self.internal))
            .json(&spec)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    pub async fn faults(&self) -> Value {
        self.client
            .get(format!("{}/sandbox/admin/faults", self.internal))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn delete_faults(&self, query: &str) -> (u16, Value) {
        let resp = self
            .client
            .delete(format!("{}/sandbox/admin/faults{query}", self.internal))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

pub async fn wx_answer(resp: reqwest::Response) -> WxAnswer {
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{name} missing on {status}"))
    };
    let (ts, nonce, sig) = (
        header("Wechatpay-Timestamp"),
        header("Wechatpay-Nonce"),
        header("Wechatpay-Signature"),
    );
    assert_eq!(
        header("Wechatpay-Signature-Type"),
        "WECHATPAY2-SHA256-RSA2048"
    );
    let body = resp.bytes().await.unwrap().to_vec();
    let message = crypto::response_message(&ts, &nonce, &body);
    let verifies = crypto::verify(&wechatpay_public_key(), &message, &sig);
    WxAnswer {
        status,
        body,
        verifies,
    }
}

pub async fn ali_answer(resp: reqwest::Response, method: &str) -> AliAnswer {
    let status = resp.status().as_u16();
    let raw = resp.text().await.unwrap();
    let key = alipay_verify::response_key(method);
    let parts =
        alipay_verify::extract_response(&raw, &key).unwrap_or_else(|e| panic!("{e}: {raw}"));
    let verifies = parts
        .sign
        .as_deref()
        .is_some_and(|s| rsa_sha256::verify(&alipay_public_key(), parts.content.as_bytes(), s));
    AliAnswer {
        status,
        content: serde_json::from_str(parts.content).unwrap(),
        is_error_response: parts.is_error,
        verifies,
        raw,
    }
}

/// One delivery as received: headers (lower-case names) and the raw body.
pub type Delivery = (Vec<(String, String)>, Vec<u8>);
type Seen = Arc<Mutex<Vec<Delivery>>>;

/// A merchant notify endpoint answering `script[i]` to the i-th request (then the
/// default) and recording every request.
pub struct Receiver {
    pub url: String,
    seen: Seen,
}

type ReceiverState = (Seen, Vec<(u16, &'static str)>, (u16, &'static str));

impl Receiver {
    pub async fn start(script: Vec<(u16, &'static str)>, default: (u16, &'static str)) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new((seen.clone(), script, default));
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

    /// Acknowledges everything, for either channel (`200 success`).
    pub async fn acking() -> Self {
        Self::start(Vec::new(), (200, "success")).await
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        eventually(|| async {
            let d = self.deliveries();
            (d.len() >= n).then_some(d)
        })
        .await
    }
}

async fn receive(
    state: web::Data<ReceiverState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (seen, script, default) = state.get_ref();
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
    let (status, text) = script.get(index).copied().unwrap_or(*default);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body(text)
}

/// Verifies a WeChat notification's signature (`Ok` = verifies) and decrypts it.
pub fn open_wechat(delivery: &Delivery) -> (bool, Value, Value) {
    let (headers, body) = delivery;
    let h = |name: &str| crypto::header(headers, name).unwrap_or_else(|| panic!("{name} missing"));
    let message = crypto::response_message(h("wechatpay-timestamp"), h("wechatpay-nonce"), body);
    let verifies = crypto::verify(&wechatpay_public_key(), &message, h("wechatpay-signature"));
    let envelope: Value = serde_json::from_slice(body).unwrap();
    let r = &envelope["resource"];
    let plaintext = crypto::decrypt_resource(
        APIV3_KEY.as_bytes(),
        r["nonce"].as_str().unwrap(),
        r["associated_data"].as_str().unwrap(),
        r["ciphertext"].as_str().unwrap(),
    )
    .unwrap();
    (
        verifies,
        envelope,
        serde_json::from_slice(&plaintext).unwrap(),
    )
}

/// Decodes an Alipay notification form and verifies it like a merchant (rsaCheckV1).
pub fn open_alipay(delivery: &Delivery) -> (bool, Vec<(String, String)>) {
    let (headers, body) = delivery;
    let ct = crypto::header(headers, "content-type").unwrap();
    assert!(ct.starts_with("application/x-www-form-urlencoded"), "{ct}");
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap();
    let verifies = alipay_verify::verify_notification(&alipay_public_key(), &params).is_ok();
    (verifies, params)
}

pub fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
