//! The load generator: closed-loop students, each buying one paid course after the other
//! through the public HTTP API (choose course → order → pay → sandbox wallet pay → poll
//! until paid and enrolled), each purchase by a fresh student (the per-user limits of the
//! order API are not what is measured). Never retries: the first failed answer fails the
//! purchase, named by its step and answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use paywire_domain::UserId;
use paywire_platform::auth::Authenticator;
use serde_json::{Value, json};

/// How long a purchase may take from wallet pay to enrolled before it counts as failed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub learning_url: String,
    pub order_url: String,
    pub sandbox_url: String,
    pub course_id: String,
    auth: Arc<Authenticator>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("order_url", &self.order_url)
            .finish_non_exhaustive()
    }
}

/// One purchase's client-side timings and the keys to find its server-side times.
#[derive(Debug, Clone, Default)]
pub struct Purchase {
    pub choose_ms: f64,
    pub order_ms: f64,
    pub pay_ms: f64,
    pub wallet_ms: f64,
    /// Wall-clock (Unix seconds) when the wallet pay was sent: the server-side stages are
    /// measured from it against the databases' timestamps (same machine, same clock).
    pub wallet_at: f64,
    pub total_ms: f64,
    pub choose_course_id: String,
    pub order_id: String,
    pub pay_no: String,
}

/// A failed step: `<step>: <status> <error code>` or `<step>: no answer (<why>)`.
#[derive(Debug, Clone)]
pub struct Failure(pub String);

impl Client {
    pub fn new(
        learning_url: String,
        order_url: String,
        sandbox_url: String,
        pool_per_host: usize,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(pool_per_host)
                .build()?,
            learning_url,
            order_url,
            sandbox_url,
            course_id: String::new(),
            auth: Arc::new(Authenticator::new(
                &paywire_platform::config::AuthSettings::default(),
            )?),
        })
    }

    pub fn token(&self, user: &str) -> anyhow::Result<String> {
        let user = UserId::parse(user).map_err(|e| anyhow::anyhow!("user id {user}: {e}"))?;
        Ok(self.auth.issue(&user, chrono::Duration::hours(2)))
    }

    /// The first paid course of the catalogue.
    pub async fn find_paid_course(&mut self) -> anyhow::Result<()> {
        let token = self.token("bench-catalogue")?;
        let courses: Value = self
            .http
            .get(format!("{}/api/learning/courses", self.learning_url))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        self.course_id = courses
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["charge"] == "paid"))
            .and_then(|c| c["id"].as_str().map(str::to_owned))
            .context("no paid course in the catalogue")?;
        Ok(())
    }

    async fn call(
        &self,
        step: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(Value, f64), Failure> {
        let started = Instant::now();
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            Failure(format!("{step}: no answer ({why})"))
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if !status.is_success() {
            return Err(Failure(format!(
                "{step}: {} {}",
                status.as_u16(),
                body["error"].as_str().unwrap_or("-")
            )));
        }
        Ok((body, ms))
    }

    fn field(body: &Value, step: &str, name: &str) -> Result<String, Failure> {
        body[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure(format!("{step}: answer without {name}")))
    }

    /// One purchase by the fresh student `user`.
    pub async fn purchase(&self, user: &str) -> Result<Purchase, Failure> {
        let began = Instant::now();
        let token = self
            .token(user)
            .map_err(|e| Failure(format!("token: {e}")))?;
        let mut p = Purchase::default();
        let (chosen, ms) = self
            .call(
                "choose course",
                self.http
                    .post(format!("{}/api/learning/choose-course", self.learning_url))
                    .bearer_auth(&token)
                    .json(&json!({ "course_id": self.course_id })),
            )
            .await?;
        p.choose_ms = ms;
        p.choose_course_id = Self::field(&chosen, "choose course", "choose_course_id")?;

        let (order, ms) = self
            .call(
                "order create",
                self.http
                    .post(format!("{}/api/orders", self.order_url))
                    .bearer_auth(&token)
                    .json(&json!({ "biz_type": "course", "biz_id": p.choose_course_id })),
            )
            .await?;
        p.order_ms = ms;
        p.order_id = Self::field(&order, "order create", "order_id")?;

        let (pay, ms) = self
            .call(
                "pay",
                self.http
                    .post(format!("{}/api/orders/{}/pay", self.order_url, p.order_id))
                    .bearer_auth(&token)
                    .json(&json!({ "channel": "wechat" })),
            )
            .await?;
        p.pay_ms = ms;
        p.pay_no = Self::field(&pay, "pay", "pay_no")?;
        let code = Self::field(&pay, "pay", "code_url")?;

        p.wallet_at = unix_now();
        let (_, ms) = self
            .call(
                "wallet pay",
                self.http
                    .post(format!("{}/sandbox/wallet/pay", self.sandbox_url))
                    .json(&json!({ "code": code })),
            )
            .await?;
        p.wallet_ms = ms;

        // Poll cheaply: short pauses first (the platform usually settles in milliseconds),
        // growing so that a slow platform is not flooded with status reads.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let order_url = format!("{}/api/orders/{}", self.order_url, p.order_id);
        self.poll("order paid", deadline, &token, &order_url, |b| {
            b["status"] == "paid"
        })
        .await?;
        let learn_url = format!(
            "{}/api/learning/learn-status/{}",
            self.learning_url, self.course_id
        );
        self.poll("enrolled", deadline, &token, &learn_url, |b| {
            b["learn_status"] == "can_learn"
        })
        .await?;
        p.total_ms = began.elapsed().as_secs_f64() * 1e3;
        Ok(p)
    }

    async fn poll(
        &self,
        step: &str,
        deadline: Instant,
        token: &str,
        url: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<(), Failure> {
        let mut pause = Duration::from_millis(2);
        loop {
            let (body, _) = self
                .call(step, self.http.get(url).bearer_auth(token))
                .await?;
            if done(&body) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure(format!("{step}: not within {SETTLE_TIMEOUT:?}")));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 3 / 2).min(Duration::from_millis(50));
        }
    }
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What one concurrency level produced.
#[derive(Debug, Default)]
pub struct LevelRun {
    pub purchases: Vec<Purchase>,
    pub failures: Vec<Failure>,
    pub elapsed: Duration,
}

/// `concurrency` students buying back to back until `target` purchases have started or
/// `duration` has passed, whichever first; every started purchase is finished.
pub async fn run_level(
    client: &Client,
    tag: &str,
    concurrency: usize,
    target: usize,
    duration: Duration,
) -> LevelRun {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut failed = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= target || started.elapsed() >= duration {
                    break;
                }
                match client.purchase(&format!("bench-{tag}-{w}-{i}")).await {
                    Ok(p) => done.push(p),
                    Err(f) => failed.push(f),
                }
            }
            (done, failed)
        }));
    }
    let mut run = LevelRun::default();
    for t in tasks {
        match t.await {
            Ok((done, failed)) => {
                run.purchases.extend(done);
                run.failures.extend(failed);
            }
            Err(e) => run.failures.push(Failure(format!("load task: {e}"))),
        }
    }
    run.elapsed = started.elapsed();
    run
}
