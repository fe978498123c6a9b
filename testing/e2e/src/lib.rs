//! Runs the whole platform in one test process: the four services, each on its own ports
//! (public and internal listener) with its own database, sharing one fresh RabbitMQ vhost —
//! the same wiring as `cargo xtask up`, isolated per test.

pub mod browser;

use std::net::TcpListener;
use std::time::Duration;

use anyhow::Context as _;
use paywire_domain::UserId;
use paywire_platform::auth::Authenticator;
use paywire_platform::config::{AmqpSettings, AuthSettings, DatabaseSettings, HttpSettings};
use paywire_testkit::{TestDatabase, TestVhost};
use serde_json::{Value, json};

/// How long tests wait for asynchronous effects (relay, broker, consumers).
pub const SETTLE: Duration = Duration::from_secs(30);

pub use paywire_testkit::test_key;

fn free_port() -> u16 {
    // The gateway's notify_url must name its own port before it binds; reserving a free
    // port and handing it over is racy only against other processes grabbing it meanwhile.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The public listener on `port`, the internal one on a free port.
fn http(port: u16) -> HttpSettings {
    HttpSettings {
        workers: 2,
        internal_port: Some(0),
        ..HttpSettings::on_port(port)
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn database(db: &TestDatabase) -> DatabaseSettings {
    DatabaseSettings {
        url: db.url.clone(),
        max_connections: 5,
        migrate: true,
        ..DatabaseSettings::default()
    }
}

/// A running platform. Dropping it stops the services and removes databases and vhost.
pub struct Platform {
    /// Public listeners: the students' APIs, the callbacks, the channels' APIs and wallet.
    pub learning_url: String,
    pub order_url: String,
    pub gateway_url: String,
    pub sandbox_url: String,
    /// Internal listeners: `/internal/*`, `/metrics`, `/health/*`, the sandbox's admin API.
    pub learning_internal_url: String,
    pub order_internal_url: String,
    pub gateway_internal_url: String,
    pub sandbox_internal_url: String,
    /// The cashier's internal listener, once [`Platform::start_cashier`] ran.
    pub cashier_internal_url: Option<String>,
    pub learning_db: TestDatabase,
    pub order_db: TestDatabase,
    pub gateway_db: TestDatabase,
    pub vhost: TestVhost,
    auth: Authenticator,
    http: reqwest::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("order_url", &self.order_url)
            .finish_non_exhaustive()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn spawn<F, E>(tasks: &mut Vec<tokio::task::JoinHandle<()>>, name: &'static str, fut: F)
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tasks.push(tokio::spawn(async move {
        if let Err(e) = fut.await {
            eprintln!("{name} stopped: {e}");
        }
    }));
}

/// Settings a test may change before the services start (`Default` = as in `start`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The order service's `timeout.order_ttl_secs` (orders left unpaid close after it).
    pub order_ttl_secs: Option<u64>,
    /// The gateway's `payment.attempt_ttl_secs` (and the order service's copy of it).
    pub attempt_ttl_secs: Option<u32>,
}

/// More settings a test may change (`Default` = as in `start`); kept apart from [`Options`]
/// so that existing struct literals of it stay valid.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// The gateway's compensation sweeper (`sweeper.*`); `None` keeps the service default
    /// (first check a minute after an attempt is created).
    pub sweeper: Option<payment_gateway::SweeperSettings>,
    /// The gateway's channel call timeout (`wechat.timeout_ms` and `alipay.timeout_ms`).
    pub channel_timeout_ms: Option<u64>,
    /// The sandbox's `notify.time_compression`: notification retries come this many times
    /// sooner than the channels' real schedules.
    pub notify_time_compression: Option<f64>,
}

impl Platform {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> anyhow::Result<Self> {
        Self::start_tuned(options, Tuning::default()).await
    }

    pub async fn start_tuned(options: Options, tuning: Tuning) -> anyhow::Result<Self> {
        let vhost = TestVhost::create()?;
        let amqp = AmqpSettings {
            url: vhost.amqp_url.clone(),
            ..AmqpSettings::default()
        };
        let auth = AuthSettings::default();
        let (learning_db, order_db, gateway_db) = (
            TestDatabase::create("e2e_learning").await?,
            TestDatabase::create("e2e_order").await?,
            TestDatabase::create("e2e_payment").await?,
        );
        let mut tasks = Vec::new();

        let mut sandbox = channel_sandbox::Settings {
            http: http(0),
            ..Default::default()
        };
        sandbox.wechat.merchant_public_key_path = test_key("wechat/merchant_public_key.pem");
        sandbox.wechat.wechatpay_private_key_path = test_key("wechat/wechatpay_private_key.pem");
        sandbox.alipay.app_public_key_path = test_key("alipay/app_public_key.pem");
        sandbox.alipay.alipay_private_key_path = test_key("alipay/alipay_private_key.pem");
        sandbox.wechat_v2.use_test_keys_in(&test_key("wechat_v2"));
        if let Some(c) = tuning.notify_time_compression {
            sandbox.notify.time_compression = c;
        }
        let (sandbox, sandbox_ports) = channel_sandbox::build_with_ports(sandbox)
            .await
            .context("sandbox")?;
        let sandbox_url = url(sandbox.port());
        let sandbox_internal_url = url(sandbox.internal_port());
        spawn(&mut tasks, "channel-sandbox", sandbox.run_until_stopped());

        let learning = learning_center::Settings {
            http: http(0),
            database: database(&learning_db),
            amqp: amqp.clone(),
            auth: auth.clone(),
            ..Default::default()
        };
        let learning = learning_center::build(learning)
            .await
            .context("learning-center")?;
        let learning_url = url(learning.port());
        let learning_internal_url = url(learning.internal_port());
        spawn(&mut tasks, "learning-center", learning.run_until_stopped());

        let gateway_port = free_port();
        let mut gateway = payment_gateway::Settings {
            http: http(gateway_port),
            database: database(&gateway_db),
            amqp: amqp.clone(),
            auth: auth.clone(),
            ..Default::default()
        };
        gateway.wechat.api_base = sandbox_url.clone();
        gateway.wechat.notify_url = format!("http://127.0.0.1:{gateway_port}/api/callback/wechat");
        gateway.wechat.merchant_private_key_path = test_key("wechat/merchant_private_key.pem");
        gateway.wechat.wechatpay_public_key_path = test_key("wechat/wechatpay_public_key.pem");
        gateway.alipay.gateway_url = format!("{sandbox_url}/gateway.do");
        gateway.alipay.notify_url = format!("http://127.0.0.1:{gateway_port}/api/callback/alipay");
        gateway.alipay.app_private_key_path = test_key("alipay/app_private_key.pem");
        gateway.alipay.alipay_public_key_path = test_key("alipay/alipay_public_key.pem");
        gateway.wechat_v2.use_sandbox(
            &sandbox_url,
            sandbox_ports.wechat_v2_tls,
            &test_key("wechat_v2"),
        );
        gateway.wechat_v2.notify_url =
            format!("http://127.0.0.1:{gateway_port}/api/callback/wechat_v2");
        if let Some(ttl) = options.attempt_ttl_secs {
            gateway.payment.attempt_ttl_secs = ttl;
        }
        // Students here press "I have paid" again right after a failed query; the interval
        // between channel queries is tested in the gateway's suite.
        gateway.payment.sync_min_interval_secs = 0;
        if let Some(sweeper) = tuning.sweeper {
            gateway.sweeper = sweeper;
        }
        if let Some(ms) = tuning.channel_timeout_ms {
            gateway.wechat.timeout_ms = ms;
            gateway.alipay.timeout_ms = ms;
        }
        let gateway = payment_gateway::build(gateway)
            .await
            .context("payment-gateway")?;
        let gateway_url = url(gateway.port());
        let gateway_internal_url = url(gateway.internal_port());
        spawn(&mut tasks, "payment-gateway", gateway.run_until_stopped());

        let mut order = order::Settings {
            http: http(0),
            database: database(&order_db),
            amqp: amqp.clone(),
            auth: auth.clone(),
            ..Default::default()
        };
        order.upstream.learning_center_url = learning_internal_url.clone();
        order.upstream.payment_gateway_url = gateway_internal_url.clone();
        if let Some(ttl) = options.order_ttl_secs {
            order.timeout.order_ttl_secs = ttl;
        }
        if let Some(ttl) = options.attempt_ttl_secs {
            order.timeout.payment_attempt_ttl_secs = u64::from(ttl);
        }
        let order = order::build(order).await.context("order")?;
        let order_url = url(order.port());
        let order_internal_url = url(order.internal_port());
        spawn(&mut tasks, "order", order.run_until_stopped());

        Ok(Self {
            learning_url,
            order_url,
            gateway_url,
            sandbox_url,
            learning_internal_url,
            order_internal_url,
            gateway_internal_url,
            sandbox_internal_url,
            cashier_internal_url: None,
            learning_db,
            order_db,
            gateway_db,
            vhost,
            auth: Authenticator::new(&auth)?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
            tasks,
        })
    }

    /// Also starts the cashier (pages, `/api/*` proxy, dev sign-in) in front of this
    /// platform, as `cargo xtask up` does; answers its base URL.
    pub async fn start_cashier(&mut self) -> anyhow::Result<String> {
        let mut settings = cashier::Settings {
            http: http(0),
            auth: AuthSettings::default(),
            ..Default::default()
        };
        settings.upstream.learning_center_url = self.learning_url.clone();
        settings.upstream.order_url = self.order_url.clone();
        settings.pages.wallet_url = format!("{}/sandbox/wallet", self.sandbox_url);
        let app = cashier::build(settings).await.context("cashier")?;
        let public = url(app.port());
        self.cashier_internal_url = Some(url(app.internal_port()));
        spawn(&mut self.tasks, "cashier", app.run_until_stopped());
        Ok(public)
    }

    /// A signed-in student with a fresh user id.
    pub fn student(&self, name: &str) -> Student<'_> {
        self.student_exactly(&format!("{name}-{}", paywire_testkit::unique_suffix()))
    }

    /// The student with exactly this user id (e.g. one a browser signed in as).
    pub fn student_exactly(&self, user: &str) -> Student<'_> {
        let user = UserId::parse(user).expect("valid user id");
        let token = self.auth.issue(&user, chrono::Duration::hours(1));
        Student {
            platform: self,
            user,
            token,
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Replaces one scope's fault spec at the sandbox (`PUT /sandbox/admin/faults`), e.g.
    /// `{"scope":"global","api":{"status_5xx":true}}`; answers the sandbox's fault view.
    pub async fn set_fault(&self, spec: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .put(format!(
                "{}/sandbox/admin/faults",
                self.sandbox_internal_url
            ))
            .json(&spec)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "fault spec refused: {}",
            resp.status()
        );
        Ok(resp.json().await?)
    }

    /// Clears every fault spec at the sandbox (the record of injected faults stays).
    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        let resp = self
            .http
            .delete(format!(
                "{}/sandbox/admin/faults",
                self.sandbox_internal_url
            ))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "{}", resp.status());
        Ok(())
    }

    /// The sandbox's record of the trade `out_trade_no` (a pay_no): state, notification
    /// attempts and the faults injected for it.
    pub async fn sandbox_trade(&self, out_trade_no: &str) -> anyhow::Result<Value> {
        let trades: Vec<Value> = self
            .http
            .get(format!("{}/sandbox/trades", self.sandbox_url))
            .send()
            .await?
            .json()
            .await?;
        trades
            .into_iter()
            .find(|t| t["out_trade_no"] == out_trade_no)
            .ok_or_else(|| anyhow::anyhow!("no sandbox trade {out_trade_no}"))
    }

    /// Calls a gateway internal endpoint (`/internal/...`) as the order service does, with
    /// the service credential.
    pub async fn gateway_internal(&self, path: &str) -> anyhow::Result<Answer> {
        use secrecy::ExposeSecret as _;
        let resp = self
            .http
            .post(format!("{}{path}", self.gateway_internal_url))
            .header(
                paywire_platform::auth::SERVICE_TOKEN_HEADER,
                self.auth.service_token().expose_secret(),
            )
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("non-JSON answer: {text}"))?
        };
        Ok((status, body))
    }

    /// An operator refunds an order through the order service's internal API, with the
    /// operators' (development) credential, as `cargo xtask refund` does; `body` is the
    /// optional `RefundOrder` (`Value::Null`: none, the full amount).
    pub async fn operator_refund(&self, order_id: &str, body: Value) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .post(format!(
                "{}/internal/orders/{order_id}/refund",
                self.order_internal_url
            ))
            .header(
                paywire_platform::auth::SERVICE_TOKEN_HEADER,
                paywire_platform::config::DEV_OPERATOR_TOKEN,
            );
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// The user scans `code` and pays in the channel's wallet (the sandbox).
    pub async fn wallet_pay(&self, code: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}/sandbox/wallet/pay", self.sandbox_url))
            .json(&json!({ "code": code }))
            .send()
            .await?)
    }
}

/// A student driving the public API with their own token.
#[derive(Debug)]
pub struct Student<'a> {
    pub platform: &'a Platform,
    pub user: UserId,
    pub token: String,
}

/// Status and JSON body of an API answer.
pub type Answer = (u16, Value);

impl Student<'_> {
    /// Sends `req` with the student's token.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let resp = req.bearer_auth(&self.token).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("non-JSON answer: {text}"))?
        };
        Ok((status, body))
    }

    pub async fn get(&self, url: String) -> anyhow::Result<Answer> {
        self.send(self.platform.http.get(url)).await
    }

    pub async fn post(&self, url: String, body: Value) -> anyhow::Result<Answer> {
        self.send(self.platform.http.post(url).json(&body)).await
    }

    pub async fn choose_course(&self, course_id: &str) -> anyhow::Result<Answer> {
        self.post(
            format!("{}/api/learning/choose-course", self.platform.learning_url),
            json!({ "course_id": course_id }),
        )
        .await
    }

    pub async fn create_order(&self, biz_id: &str) -> anyhow::Result<Answer> {
        self.post(
            format!("{}/api/orders", self.platform.order_url),
            json!({ "biz_type": "course", "biz_id": biz_id }),
        )
        .await
    }

    /// Chooses `course_id` and orders it; answers the created order (`201`).
    pub async fn order_course(&self, course_id: &str) -> anyhow::Result<Value> {
        let (status, chosen) = self.choose_course(course_id).await?;
        anyhow::ensure!(status == 200, "{chosen}");
        let (status, order) = self
            .create_order(chosen["choose_course_id"].as_str().unwrap())
            .await?;
        anyhow::ensure!(status == 201, "{order}");
        Ok(order)
    }

    pub async fn pay(&self, order_id: &str, channel: &str) -> anyhow::Result<Answer> {
        self.post(
            format!("{}/api/orders/{order_id}/pay", self.platform.order_url),
            json!({ "channel": channel }),
        )
        .await
    }

    /// The "I have paid" button: `GET /api/orders/{order_id}/pay-result`.
    pub async fn pay_result(&self, order_id: &str) -> anyhow::Result<Answer> {
        self.get(format!(
            "{}/api/orders/{order_id}/pay-result",
            self.platform.order_url
        ))
        .await
    }

    pub async fn order(&self, order_id: &str) -> anyhow::Result<Answer> {
        self.get(format!("{}/api/orders/{order_id}", self.platform.order_url))
            .await
    }

    pub async fn learn_status(&self, course_id: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .get(format!(
                "{}/api/learning/learn-status/{course_id}",
                self.platform.learning_url
            ))
            .await?;
        anyhow::ensure!(status == 200, "learn-status answered {status}: {body}");
        Ok(body["learn_status"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the order reaches `status` (pay results arrive asynchronously).
    pub async fn wait_for_order_status(&self, order_id: &str, status: &str) -> anyhow::Result<()> {
        paywire_testkit::eventually(SETTLE, || async {
            match self.order(order_id).await {
                Ok((200, body)) if body["status"] == status => Some(()),
                _ => None,
            }
        })
        .await
        .with_context(|| format!("order {order_id} never became {status}"))
    }

    pub async fn wait_for_learn_status(&self, course_id: &str, want: &str) -> anyhow::Result<()> {
        paywire_testkit::eventually(SETTLE, || async {
            match self.learn_status(course_id).await {
                Ok(s) if s == want => Some(()),
                _ => None,
            }
        })
        .await
        .with_context(|| format!("course {course_id} never became {want}"))
    }
}

/// Runs one `SELECT count(*)`-style query returning a single BIGINT named `n`.
pub async fn count(db: &TestDatabase, sql: &str) -> anyhow::Result<i64> {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    let mut conn = AsyncPgConnection::establish(&db.url).await?;
    Ok(paywire_testkit::count(&mut conn, sql).await?)
}
