//! The load driver: students buying a paid course through the public HTTP API, retrying
//! through killed instances the way a browser user would press the button again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use paywire_domain::UserId;
use paywire_platform::auth::Authenticator;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

/// What a student will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Pay(&'static str),
    /// Opens the payment and never scans the code.
    NeverPay,
    /// Pays on WeChat and on Alipay for the same order: the second payment is stray money.
    DoublePay,
}

/// What happened to one student.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub user: String,
    pub intent: Intent,
    pub order_id: Option<String>,
    /// Wallet payments the sandbox accepted.
    pub wallet_paid: usize,
    /// The flow gave up (e.g. an attempt expired while services were down).
    pub error: Option<String>,
    /// From the first request to the last answer.
    pub took: Duration,
}

/// Picks intents for `n` students from `rng`: `never_pay` and `double_pay` shares, the
/// rest pay once, one in four of them with Alipay. From four students on, every kind
/// occurs at least once, so even a small run exercises each path.
pub fn intents(n: usize, never_pay: f64, double_pay: f64, rng: &mut StdRng) -> Vec<Intent> {
    let mut all: Vec<Intent> = (0..n)
        .map(|_| {
            let x: f64 = rng.r#gen();
            if x < never_pay {
                Intent::NeverPay
            } else if x < never_pay + double_pay {
                Intent::DoublePay
            } else if rng.gen_bool(0.25) {
                Intent::Pay("alipay")
            } else {
                Intent::Pay("wechat")
            }
        })
        .collect();
    let kinds = [
        Intent::NeverPay,
        Intent::DoublePay,
        Intent::Pay("alipay"),
        Intent::Pay("wechat"),
    ];
    if n >= kinds.len() {
        for (i, kind) in kinds.into_iter().enumerate() {
            if !all.contains(&kind) {
                all[i] = kind;
            }
        }
    }
    all
}

/// Base URLs of both instances of each service.
#[derive(Debug, Clone)]
pub struct Urls {
    pub learning: [String; 2],
    pub order: [String; 2],
    pub sandbox: String,
}

impl Urls {
    pub fn of(t: &crate::settings::Topology) -> Self {
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        Self {
            learning: t.learning_ports.map(|p| url(p.public)),
            order: t.order_ports.map(|p| url(p.public)),
            sandbox: url(t.sandbox_port.public),
        }
    }
}

/// How long one step keeps retrying through outages.
const STEP_DEADLINE: Duration = Duration::from_secs(90);

#[derive(Clone)]
pub struct Driver {
    pub http: reqwest::Client,
    pub urls: Urls,
    pub auth: Arc<Authenticator>,
    pub course_id: String,
    /// Whether a step is sent again after a 5xx or no answer (a patient user pressing the
    /// button again). Without, the first such answer fails the purchase, named
    /// `<step>: <status> <error code>` (what a client without retries sees).
    pub retry_server_errors: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("urls", &self.urls)
            .field("course_id", &self.course_id)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver signing its students' tokens with the development secret the run's
    /// services use; `course_id` still to be filled in ([`Driver::paid_course`]).
    pub fn new(http: reqwest::Client, urls: Urls) -> Self {
        Self {
            http,
            urls,
            auth: Arc::new(
                Authenticator::new(&paywire_platform::config::AuthSettings::default())
                    .expect("development auth settings"),
            ),
            course_id: String::new(),
            retry_server_errors: true,
        }
    }

    /// Sends the request built by `build(instance)` until it gets an answer that is not a
    /// transport error or a 5xx, alternating instances. Returns status and JSON body.
    async fn call(
        &self,
        what: &str,
        first: usize,
        build: impl Fn(usize) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<(u16, Value)> {
        let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
        let mut pause = Duration::from_millis(200);
        let mut instance = first;
        loop {
            let last = match build(instance).send().await {
                Ok(resp) if !resp.status().is_server_error() => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    return Ok((status, body));
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    format!("{status} {}", body["error"].as_str().unwrap_or("-"))
                }
                Err(e) if e.is_timeout() => "no answer (timeout)".to_owned(),
                Err(e) if e.is_connect() => "no answer (connect)".to_owned(),
                Err(e) => format!("no answer ({e})"),
            };
            if !self.retry_server_errors {
                bail!("{what}: {last}");
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{what}: no answer within {STEP_DEADLINE:?} (last: {last})");
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            instance = 1 - instance;
        }
    }

    /// The first paid course of the catalogue.
    pub async fn paid_course(&self) -> anyhow::Result<String> {
        let token = self.token("catalogue-reader")?;
        let (status, body) = self
            .call("courses", 0, |i| {
                self.http
                    .get(format!("{}/api/learning/courses", self.urls.learning[i]))
                    .bearer_auth(&token)
            })
            .await?;
        anyhow::ensure!(status == 200, "courses answered {status}: {body}");
        body.as_array()
            .and_then(|cs| cs.iter().find(|c| c["charge"] == "paid"))
            .and_then(|c| c["id"].as_str().map(str::to_owned))
            .context("no paid course in the catalogue")
    }

    fn token(&self, user: &str) -> anyhow::Result<String> {
        let user = UserId::parse(user).map_err(|e| anyhow::anyhow!("user id {user}: {e}"))?;
        Ok(self.auth.issue(&user, chrono::Duration::hours(2)))
    }

    /// One student's purchase; never panics, errors end up in the outcome.
    pub async fn student(&self, i: usize, run: &str, intent: Intent) -> Outcome {
        let user = format!("chaos-{run}-{i}");
        let started = tokio::time::Instant::now();
        let mut outcome = Outcome {
            user: user.clone(),
            intent,
            order_id: None,
            wallet_paid: 0,
            error: None,
            took: Duration::ZERO,
        };
        if let Err(e) = self.purchase(i % 2, &user, intent, &mut outcome).await {
            outcome.error = Some(format!("{e:#}"));
        }
        outcome.took = started.elapsed();
        outcome
    }

    async fn purchase(
        &self,
        first: usize,
        user: &str,
        intent: Intent,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        let token = self.token(user)?;
        let (status, chosen) = self
            .call("choose-course", first, |i| {
                self.http
                    .post(format!(
                        "{}/api/learning/choose-course",
                        self.urls.learning[i]
                    ))
                    .bearer_auth(&token)
                    .json(&json!({ "course_id": self.course_id }))
            })
            .await?;
        anyhow::ensure!(status == 200, "choose-course {status}: {chosen}");
        let choose_id = chosen["choose_course_id"]
            .as_str()
            .context("choose_course_id")?
            .to_owned();

        let (status, order) = self
            .call("create order", first, |i| {
                self.http
                    .post(format!("{}/api/orders", self.urls.order[i]))
                    .bearer_auth(&token)
                    .json(&json!({ "biz_type": "course", "biz_id": choose_id }))
            })
            .await?;
        anyhow::ensure!(
            status == 200 || status == 201,
            "create order {status}: {order}"
        );
        let order_id = order["order_id"].as_str().context("order_id")?.to_owned();
        outcome.order_id = Some(order_id.clone());

        let channels: &[&str] = match intent {
            Intent::Pay(c) => &[c][..],
            Intent::NeverPay => &["wechat"],
            Intent::DoublePay => &["wechat", "alipay"],
        };
        let mut codes = Vec::new();
        for channel in channels {
            let (status, pay) = self
                .call("pay", first, |i| {
                    self.http
                        .post(format!("{}/api/orders/{order_id}/pay", self.urls.order[i]))
                        .bearer_auth(&token)
                        .json(&json!({ "channel": channel }))
                })
                .await?;
            anyhow::ensure!(status == 200, "pay {channel} {status}: {pay}");
            codes.push(pay["code_url"].as_str().context("code_url")?.to_owned());
        }
        if intent == Intent::NeverPay {
            return Ok(());
        }
        for code in &codes {
            let (status, body) = self
                .call("wallet pay", 0, |_| {
                    self.http
                        .post(format!("{}/sandbox/wallet/pay", self.urls.sandbox))
                        .json(&json!({ "code": code }))
                })
                .await?;
            match status {
                200 => outcome.wallet_paid += 1,
                // Expired or closed while the platform was down: the student gave up.
                409 => {}
                _ => bail!("wallet pay {status}: {body}"),
            }
        }
        // "I have paid": the order service asks the gateway to sync with the channel.
        let _ = self
            .call("pay-result", first, |i| {
                self.http
                    .get(format!(
                        "{}/api/orders/{order_id}/pay-result",
                        self.urls.order[i]
                    ))
                    .bearer_auth(&token)
            })
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn intents_follow_the_shares_and_the_seed() {
        let a = intents(1000, 0.2, 0.05, &mut StdRng::seed_from_u64(7));
        let b = intents(1000, 0.2, 0.05, &mut StdRng::seed_from_u64(7));
        assert_eq!(a, b);
        let never = a.iter().filter(|i| **i == Intent::NeverPay).count();
        let double = a.iter().filter(|i| **i == Intent::DoublePay).count();
        let alipay = a.iter().filter(|i| **i == Intent::Pay("alipay")).count();
        assert!((150..250).contains(&never), "{never}");
        assert!((20..80).contains(&double), "{double}");
        assert!(alipay > 100, "{alipay}");
        let small = intents(4, 0.0, 0.0, &mut StdRng::seed_from_u64(1));
        for kind in [Intent::NeverPay, Intent::DoublePay, Intent::Pay("alipay")] {
            assert!(small.contains(&kind), "{small:?}");
        }
        assert!(
            intents(3, 0.0, 0.0, &mut StdRng::seed_from_u64(1))
                .iter()
                .all(|i| matches!(i, Intent::Pay(_)))
        );
    }
}
