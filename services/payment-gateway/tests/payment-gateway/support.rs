//! A gateway started in-process on port 0 against its own database and vhost, with the
//! channel sandbox (WeChat Pay imitation) as its channel peer.

use chrono::{DateTime, FixedOffset, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payment_gateway::Settings;
use paywire_channels::wechat::crypto;
use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use paywire_platform::config::DEV_SERVICE_TOKEN;
use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::{Value, json};

pub const MCHID: &str = "1900009191";
pub const APPID: &str = "wxd678efh567hg6787";
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000091912026112200000000000001";
pub const APIV3_KEY: &str = "paywire-sandbox-apiv3-key-32byte";

pub fn key_path(name: &str) -> String {
    paywire_testkit::test_key(&format!("wechat/{name}"))
}

pub fn alipay_key_path(name: &str) -> String {
    paywire_testkit::test_key(&format!("alipay/{name}"))
}

pub fn gateway_settings(db: &TestDatabase, vhost: &TestVhost, api_base: &str) -> Settings {
    let mut s = Settings::default();
    s.http.port = 0;
    s.http.workers = 1;
    s.database.url = db.url.clone();
    s.database.max_connections = 4;
    s.amqp.url = vhost.amqp_url.clone();
    s.wechat.api_base = api_base.to_owned();
    s.wechat.merchant_private_key_path = key_path("merchant_private_key.pem");
    s.wechat.wechatpay_public_key_path = key_path("wechatpay_public_key.pem");
    // Empty: the gateway's own callback URL on the port it bound.
    s.wechat.notify_url = String::new();
    s.wechat.timeout_ms = 5000;
    s.alipay.gateway_url = format!("{api_base}/gateway.do");
    s.alipay.app_private_key_path = alipay_key_path("app_private_key.pem");
    s.alipay.alipay_public_key_path = alipay_key_path("alipay_public_key.pem");
    s.alipay.notify_url = String::new();
    s.alipay.timeout_ms = 5000;
    // WeChat Pay v2 needs the sandbox's TLS port: the tests that pay with it turn it on
    // (`with_wechat_v2`).
    s.wechat_v2.enabled = false;
    // Background tasks wake up often; the first check of an attempt stays far away unless
    // a test wants the sweeper.
    s.sweeper.poll_interval_ms = 100;
    s.sweeper.refund_retry_secs = 1;
    // Tests sync an attempt before and after paying it within a second; the interval
    // between channel queries has its own test (`abuse`).
    s.payment.sync_min_interval_secs = 0;
    // Reconciliation runs when a test asks for it (`reconciliation`), not by schedule.
    s.reconciliation.enabled = false;
    s
}

/// A notify URL where nothing listens: the channel's callbacks never arrive.
pub fn nowhere() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!(
        "http://127.0.0.1:{}/api/callback/wechat",
        l.local_addr().unwrap().port()
    )
}

pub struct Harness {
    /// The public listener: the channels' callbacks.
    pub base: String,
    /// The internal listener: `/internal/*`, health, metrics.
    pub internal: String,
    pub sandbox: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    pub vhost: TestVhost,
}

impl Harness {
    /// Gateway + sandbox, both running.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Harness::start`] with `tweak` applied to the gateway's settings first.
    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDatabase::create("payment_gateway").await.unwrap();
        let vhost = TestVhost::create().unwrap();
        let sandbox = start_sandbox().await;
        let mut settings = gateway_settings(&db, &vhost, &sandbox);
        tweak(&mut settings);
        Self::with_settings(settings, sandbox, db, vhost).await
    }

    pub async fn with_settings(
        settings: Settings,
        sandbox: String,
        db: TestDatabase,
        vhost: TestVhost,
    ) -> Self {
        let app = payment_gateway::build(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let internal = format!("http://127.0.0.1:{}", app.internal_port());
        tokio::spawn(app.run_until_stopped());
        Self {
            base,
            internal,
            sandbox,
            client: reqwest::Client::new(),
            db,
            vhost,
        }
    }

    pub async fn create_payment(&self, order_id: i64, amount_fen: i64) -> reqwest::Response {
        self.create_payment_body(json!({
            "order_id": order_id.to_string(),
            "user_id": "student-1",
            "amount_fen": amount_fen,
            "channel": "wechat",
            "description": "Rust 入门课程",
            "biz_type": "course",
            "biz_id": "77",
        }))
        .await
    }

    pub async fn create_payment_body(&self, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/internal/payments", self.internal))
            .header(SERVICE_TOKEN_HEADER, DEV_SERVICE_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates an attempt and returns its JSON (asserting 201).
    pub async fn new_attempt(&self, order_id: i64, amount_fen: i64) -> Value {
        let resp = self.create_payment(order_id, amount_fen).await;
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    pub async fn post_callback(
        &self,
        channel: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/api/callback/{channel}", self.base))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await.unwrap()
    }

    /// `POST` with the service credential to one of the gateway's internal routes.
    pub async fn internal_post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.internal))
            .header(SERVICE_TOKEN_HEADER, DEV_SERVICE_TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn sync(&self, order_id: i64) -> reqwest::Response {
        self.internal_post(&format!("/internal/orders/{order_id}/payments/sync"))
            .await
    }

    pub async fn close(&self, order_id: i64) -> reqwest::Response {
        self.internal_post(&format!("/internal/orders/{order_id}/payments/close"))
            .await
    }

    /// The payer scans `code` in the sandbox wallet and pays.
    pub async fn wallet_pay(&self, code: &str) -> Value {
        let resp = self
            .client
            .post(format!("{}/sandbox/wallet/pay", self.sandbox))
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "wallet pay");
        resp.json().await.unwrap()
    }

    /// The sandbox's view of the trade of `out_trade_no`.
    pub async fn sandbox_trade(&self, out_trade_no: &str) -> Value {
        let trades: Vec<Value> = self
            .client
            .get(format!("{}/sandbox/trades", self.sandbox))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        trades
            .into_iter()
            .find(|t| t["out_trade_no"] == out_trade_no)
            .unwrap_or_else(|| panic!("no sandbox trade {out_trade_no}"))
    }

    pub async fn refunds(&self) -> Vec<RefundRow> {
        diesel::sql_query(
            "SELECT refund_no, pay_no, order_id, amount_fen, reason, status, channel_refund_id \
             FROM refunds ORDER BY created_at, refund_no",
        )
        .load(&mut self.conn().await)
        .await
        .unwrap()
    }

    pub async fn events(&self, event_type: &str) -> Vec<Value> {
        self.outbox()
            .await
            .into_iter()
            .filter(|m| m.event_type == event_type)
            .map(|m| m.payload)
            .collect()
    }

    pub async fn sql(&self, sql: &str) {
        diesel::sql_query(sql)
            .execute(&mut self.conn().await)
            .await
            .unwrap();
    }

    pub async fn check_attempts(&self, pay_no: &str) -> i32 {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            check_attempts: i32,
        }
        let row: Row = diesel::sql_query("SELECT check_attempts FROM payments WHERE pay_no = $1")
            .bind::<BigInt, _>(pay_no.parse::<i64>().unwrap())
            .get_result(&mut self.conn().await)
            .await
            .unwrap();
        row.check_attempts
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db.url).await.unwrap()
    }

    pub async fn payment(&self, pay_no: &str) -> PaymentRow {
        diesel::sql_query(
            "SELECT status, code_url, channel_trade_no FROM payments WHERE pay_no = $1",
        )
        .bind::<BigInt, _>(pay_no.parse::<i64>().unwrap())
        .get_result(&mut self.conn().await)
        .await
        .unwrap()
    }

    pub async fn outbox(&self) -> Vec<OutboxRow> {
        diesel::sql_query(
            "SELECT id, exchange, routing_key, aggregate_id, event_type, payload FROM outbox ORDER BY id",
        )
        .load(&mut self.conn().await)
        .await
        .unwrap()
    }

    pub async fn notifications(&self) -> Vec<NotificationRow> {
        diesel::sql_query("SELECT pay_no, outcome FROM channel_notifications ORDER BY id")
            .load(&mut self.conn().await)
            .await
            .unwrap()
    }

    /// The recorded notification outcomes, oldest first.
    pub async fn outcomes(&self) -> Vec<String> {
        self.notifications()
            .await
            .into_iter()
            .map(|n| n.outcome)
            .collect()
    }

    /// Notifications the channel layer refused (counted in `refused_notifications`), as
    /// `rejected:<reason>` once per refusal, oldest row first, and the latest detail.
    pub async fn refusals(&self) -> (Vec<String>, Option<String>) {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            reason: String,
            #[diesel(sql_type = BigInt)]
            refused: i64,
            #[diesel(sql_type = Text)]
            last_detail: String,
        }
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT reason, refused, last_detail FROM refused_notifications ORDER BY last_at",
        )
        .load(&mut self.conn().await)
        .await
        .unwrap();
        let reasons = rows
            .iter()
            .flat_map(|r| std::iter::repeat_n(format!("rejected:{}", r.reason), r.refused as usize))
            .collect();
        (reasons, rows.last().map(|r| r.last_detail.clone()))
    }

    pub async fn set_status(&self, pay_no: &str, status: &str) {
        diesel::sql_query("UPDATE payments SET status = $2 WHERE pay_no = $1")
            .bind::<BigInt, _>(pay_no.parse::<i64>().unwrap())
            .bind::<Text, _>(status)
            .execute(&mut self.conn().await)
            .await
            .unwrap();
    }
}

#[derive(Debug, QueryableByName)]
pub struct PaymentRow {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub code_url: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub channel_trade_no: Option<String>,
}

#[derive(Debug, QueryableByName)]
pub struct RefundRow {
    #[diesel(sql_type = BigInt)]
    pub refund_no: i64,
    #[diesel(sql_type = BigInt)]
    pub pay_no: i64,
    #[diesel(sql_type = BigInt)]
    pub order_id: i64,
    #[diesel(sql_type = BigInt)]
    pub amount_fen: i64,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub channel_refund_id: Option<String>,
}

#[derive(Debug, QueryableByName)]
pub struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub exchange: String,
    #[diesel(sql_type = Text)]
    pub routing_key: String,
    #[diesel(sql_type = Text)]
    pub aggregate_id: String,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: Value,
}

#[derive(Debug, QueryableByName)]
pub struct NotificationRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub pay_no: Option<i64>,
    #[diesel(sql_type = Text)]
    pub outcome: String,
}

/// Starts the WeChat Pay imitation on port 0 and returns its base URL.
pub async fn start_sandbox() -> String {
    start_sandbox_with(|_| {}).await
}

/// [`start_sandbox`] with `tune` applied to its settings first.
pub async fn start_sandbox_with(tune: impl FnOnce(&mut channel_sandbox::Settings)) -> String {
    start_sandbox_v2_with(tune).await.0
}

/// The sandbox's base URL and its WeChat Pay v2 TLS port (`secapi/`).
pub async fn start_sandbox_v2_with(
    tune: impl FnOnce(&mut channel_sandbox::Settings),
) -> (String, u16) {
    let mut s = channel_sandbox::Settings::default();
    tune(&mut s);
    s.http.port = 0;
    s.http.workers = 1;
    s.wechat.merchant_public_key_path = key_path("merchant_public_key.pem");
    s.wechat.wechatpay_private_key_path = key_path("wechatpay_private_key.pem");
    s.wechat_v2
        .use_test_keys_in(&paywire_testkit::test_key("wechat_v2"));
    let (app, ports) = channel_sandbox::build_with_ports(s).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    (base, ports.wechat_v2_tls)
}

/// Turns WeChat Pay v2 on, pointed at the sandbox at `base` with its TLS port.
pub fn with_wechat_v2(s: &mut Settings, base: &str, tls_port: u16) {
    s.wechat_v2.enabled = true;
    s.wechat_v2
        .use_sandbox(base, tls_port, &paywire_testkit::test_key("wechat_v2"));
    s.wechat_v2.notify_url = String::new();
}

/// A WeChat Pay `TRANSACTION.SUCCESS` notification, signed with the sandbox's (WeChat
/// Pay's) test key at `timestamp`, exactly as the channel would send it.
pub struct Notify {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub total: i64,
    pub timestamp: i64,
    pub mchid: String,
    pub currency: String,
}

impl Notify {
    pub fn new(out_trade_no: &str, total: i64) -> Self {
        Self {
            out_trade_no: out_trade_no.to_owned(),
            transaction_id: format!("42000012342026112{:011}", rand_digits()),
            total,
            timestamp: Utc::now().timestamp(),
            mchid: MCHID.to_owned(),
            currency: "CNY".to_owned(),
        }
    }

    pub fn build(&self) -> (Vec<(String, String)>, Vec<u8>) {
        let success: DateTime<FixedOffset> =
            Utc::now().with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap());
        let transaction = json!({
            "appid": APPID,
            "mchid": self.mchid,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "trade_type": "NATIVE",
            "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功",
            "bank_type": "OTHERS",
            "attach": "",
            "success_time": success.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": self.total, "payer_total": self.total, "currency": self.currency, "payer_currency": self.currency}
        });
        let resource_nonce = "abcdefABCDEF";
        let ciphertext = crypto::encrypt_resource(
            APIV3_KEY.as_bytes(),
            resource_nonce,
            "transaction",
            transaction.to_string().as_bytes(),
        )
        .unwrap();
        let body = json!({
            "id": "EV-2026112200000000000000000000000001",
            "create_time": success.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": "transaction",
                "nonce": resource_nonce
            }
        })
        .to_string()
        .into_bytes();
        let key =
            paywire_channels::keys::private_key_from_file(key_path("wechatpay_private_key.pem"))
                .unwrap();
        let mut headers = crypto::signed_response_headers(
            &key,
            PUBLIC_KEY_ID,
            self.timestamp,
            &crypto::nonce(),
            &body,
        );
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        (headers, body)
    }
}

fn rand_digits() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) % 100_000_000_000
}

pub use paywire_testkit::wait_for as eventually;

/// An Alipay `trade_status_sync` notification for the dev app and seller, signed with the
/// test keys' "Alipay" private key exactly as Alipay signs one; `with` changes or (None)
/// removes a parameter before signing, so the signature stays valid.
pub struct AlipayNotify {
    params: Vec<(String, String)>,
}

impl AlipayNotify {
    pub fn paid(out_trade_no: &str, total_amount: &str) -> Self {
        let now = Utc::now()
            .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let params = [
            ("notify_time", now.as_str()),
            ("notify_type", "trade_status_sync"),
            ("notify_id", "2026113000222100501000000001"),
            ("app_id", paywire_channels::alipay::DEV_APP_ID),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("trade_no", &format!("2026113022001{:015}", rand_digits())),
            ("out_trade_no", out_trade_no),
            ("buyer_id", "2088102534368455"),
            ("seller_id", paywire_channels::alipay::DEV_SELLER_ID),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", total_amount),
            ("gmt_create", now.as_str()),
            ("gmt_payment", now.as_str()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        Self { params }
    }

    pub fn with(mut self, name: &str, value: Option<&str>) -> Self {
        self.params.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.params.push((name.to_owned(), v.to_owned()));
        }
        self
    }

    pub fn build(&self) -> (Vec<(String, String)>, Vec<u8>) {
        let key = paywire_channels::keys::private_key_from_file(alipay_key_path(
            "alipay_private_key.pem",
        ))
        .unwrap();
        let mut params = self.params.clone();
        let sign = paywire_channels::alipay::verify::sign_notification(&key, &params);
        params.push(("sign".into(), sign));
        params.push(("sign_type".into(), "RSA2".into()));
        let headers = vec![(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        )];
        (
            headers,
            serde_urlencoded::to_string(&params).unwrap().into_bytes(),
        )
    }
}
