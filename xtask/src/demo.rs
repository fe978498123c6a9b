//! `cargo xtask demo`: buy a paid course through the public HTTP API of a running platform,
//! pay it with the sandbox wallet, and wait until the order is paid and the course learnable.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use paywire_domain::{PayChannel, UserId};
use paywire_platform::config::AuthSettings;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::layout;
use crate::token;

const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Base URLs of the services the demo talks to.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub learning_center: String,
    pub order: String,
    pub sandbox: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            learning_center: layout::service("learning-center").base_url(),
            order: layout::service("order").base_url(),
            sandbox: layout::service("channel-sandbox").base_url(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Course {
    pub id: String,
    pub name: String,
    pub charge: String,
    pub price_fen: i64,
}

#[derive(Debug, Deserialize)]
struct ChooseCourse {
    choose_course_id: String,
    status: String,
}

#[derive(Debug, Deserialize)]
struct Order {
    order_id: String,
    status: String,
    #[serde(default)]
    total_fen: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Payment {
    pay_no: String,
    code_url: String,
}

#[derive(Debug, Deserialize)]
struct LearnStatus {
    learn_status: String,
}

/// What happened, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub user_id: String,
    pub course_id: String,
    pub choose_course_id: String,
    pub order_id: String,
    pub pay_no: String,
    pub order_status: String,
    pub learn_status: String,
}

/// Buys one course per channel, stopping at the first failure.
pub async fn run_each(channels: &[PayChannel]) -> anyhow::Result<()> {
    for channel in channels {
        println!("\n==> buying with {channel}");
        run(*channel).await?;
    }
    Ok(())
}

pub async fn run(channel: PayChannel) -> anyhow::Result<()> {
    let user = UserId::parse(&format!(
        "demo-{channel}-{}",
        chrono::Utc::now().timestamp()
    ))?;
    let outcome = buy_paid_course(
        &Endpoints::default(),
        &token::auth_settings(),
        &user,
        channel,
        SETTLE_TIMEOUT,
    )
    .await?;
    println!("\n==> summary");
    println!("    student         {}", outcome.user_id);
    println!("    course          {}", outcome.course_id);
    println!("    choose_course   {}", outcome.choose_course_id);
    println!("    order id        {}", outcome.order_id);
    println!("    pay_no          {}", outcome.pay_no);
    println!("    order status    {}", outcome.order_status);
    println!("    learn status    {}", outcome.learn_status);
    Ok(())
}

pub async fn buy_paid_course(
    ep: &Endpoints,
    auth: &AuthSettings,
    user: &UserId,
    channel: PayChannel,
    settle_timeout: Duration,
) -> anyhow::Result<Outcome> {
    let api = Api::new(auth, user)?;
    let started = start_purchase(ep, &api, channel).await?;
    pay_with_wallet(ep, &api, &started).await?;
    let deadline = tokio::time::Instant::now() + settle_timeout;
    let order_status = await_paid(ep, &api, &started, deadline).await?;
    let learn_status = await_learnable(ep, &api, &started, deadline).await?;
    Ok(started.outcome(user, order_status, learn_status))
}

/// A purchase up to the QR code: course chosen, order created, payment started.
#[derive(Debug, Clone)]
pub struct Started {
    pub course: Course,
    pub choose_course_id: String,
    pub order_id: String,
    pub pay_no: String,
    pub code_url: String,
}

impl Started {
    fn outcome(self, user: &UserId, order_status: String, learn_status: String) -> Outcome {
        Outcome {
            user_id: user.to_string(),
            course_id: self.course.id,
            choose_course_id: self.choose_course_id,
            order_id: self.order_id,
            pay_no: self.pay_no,
            order_status,
            learn_status,
        }
    }
}

/// Picks the first paid course, chooses it, orders it and starts paying with `channel`.
pub async fn start_purchase(
    ep: &Endpoints,
    api: &Api,
    channel: PayChannel,
) -> anyhow::Result<Started> {
    println!(
        "==> student {} (dev token signed with the configured JWT secret)",
        api.user
    );

    let courses: Vec<Course> = api
        .get(&format!("{}/api/learning/courses", ep.learning_center))
        .await
        .context("listing courses (is the platform running? `cargo xtask up`)")?;
    let course = courses
        .into_iter()
        .find(|c| c.charge == "paid")
        .ok_or_else(|| anyhow!("the catalogue has no paid course"))?;
    println!(
        "==> picked paid course {} {:?} ({} fen)",
        course.id, course.name, course.price_fen
    );

    let chosen: ChooseCourse = api
        .post(
            &format!("{}/api/learning/choose-course", ep.learning_center),
            &json!({ "course_id": course.id }),
        )
        .await
        .context("choosing the course")?;
    println!(
        "==> chose course: choose_course_id {} ({})",
        chosen.choose_course_id, chosen.status
    );

    let order: Order = api
        .post(
            &format!("{}/api/orders", ep.order),
            &json!({ "biz_type": "course", "biz_id": chosen.choose_course_id }),
        )
        .await
        .context("creating the order")?;
    println!(
        "==> order {} created ({}, {} fen)",
        order.order_id,
        order.status,
        order
            .total_fen
            .map_or_else(|| "?".to_owned(), |f| f.to_string())
    );

    let payment: Payment = api
        .post(
            &format!("{}/api/orders/{}/pay", ep.order, order.order_id),
            &json!({ "channel": channel.as_str() }),
        )
        .await
        .context("starting the payment")?;
    println!(
        "==> payment {} via {channel}: scan {}",
        payment.pay_no, payment.code_url
    );
    Ok(Started {
        course,
        choose_course_id: chosen.choose_course_id,
        order_id: order.order_id,
        pay_no: payment.pay_no,
        code_url: payment.code_url,
    })
}

/// The payer scans the QR code in the sandbox wallet; the channel then sends its callback.
pub async fn pay_with_wallet(ep: &Endpoints, api: &Api, started: &Started) -> anyhow::Result<()> {
    api.wallet_pay(&ep.sandbox, &started.code_url)
        .await
        .context("paying with the sandbox wallet")?;
    println!("==> sandbox wallet paid; the channel sends its signed callback");
    Ok(())
}

/// Waits until the order service reports the order paid.
pub async fn await_paid(
    ep: &Endpoints,
    api: &Api,
    started: &Started,
    deadline: tokio::time::Instant,
) -> anyhow::Result<String> {
    let order_url = format!("{}/api/orders/{}", ep.order, started.order_id);
    let order_status = poll(deadline, "order to become paid", async || {
        let o: Order = api.get(&order_url).await?;
        match o.status.as_str() {
            "paid" => Ok(Some(o.status)),
            "closed" => bail!("order {} was closed instead of paid", o.order_id),
            _ => Ok(None),
        }
    })
    .await?;
    println!("==> order {} is {order_status}", started.order_id);
    Ok(order_status)
}

/// Waits until the learning center lets the student learn the course.
pub async fn await_learnable(
    ep: &Endpoints,
    api: &Api,
    started: &Started,
    deadline: tokio::time::Instant,
) -> anyhow::Result<String> {
    let learn_url = format!(
        "{}/api/learning/learn-status/{}",
        ep.learning_center, started.course.id
    );
    let learn_status = poll(deadline, "course to become learnable", async || {
        let s: LearnStatus = api.get(&learn_url).await?;
        Ok((s.learn_status == "can_learn").then_some(s.learn_status))
    })
    .await?;
    println!(
        "==> learn status of course {}: {learn_status}",
        started.course.id
    );
    Ok(learn_status)
}

/// Calls `probe` every 300 ms until it yields a value, fails, or `deadline` passes.
async fn poll<T>(
    deadline: tokio::time::Instant,
    what: &str,
    mut probe: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for the {what}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The public API as one student: a dev JWT on every call but the wallet's.
#[derive(Debug)]
pub struct Api {
    http: reqwest::Client,
    bearer: String,
    user: UserId,
}

impl Api {
    pub fn new(auth: &AuthSettings, user: &UserId) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            bearer: format!("Bearer {}", token::issue(auth, user)),
            user: user.clone(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, url: &str) -> anyhow::Result<T> {
        let req = self.http.get(url).header("Authorization", &self.bearer);
        decode(url, req.send().await).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        let req = self
            .http
            .post(url)
            .header("Authorization", &self.bearer)
            .json(body);
        decode(url, req.send().await).await
    }

    /// The payer pays `code_url` in the sandbox wallet. The wallet is the payer's side:
    /// no platform credential.
    async fn wallet_pay(&self, sandbox: &str, code_url: &str) -> anyhow::Result<()> {
        let url = format!("{sandbox}/sandbox/wallet/pay");
        let req = self.http.post(&url).json(&json!({ "code": code_url }));
        let _: serde_json::Value = decode(&url, req.send().await).await?;
        Ok(())
    }
}

async fn decode<T: DeserializeOwned>(
    url: &str,
    sent: reqwest::Result<reqwest::Response>,
) -> anyhow::Result<T> {
    let resp = sent.with_context(|| format!("calling {url}"))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "unexpected body from {url}: {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, Mode};

    fn endpoints(base: &str) -> Endpoints {
        Endpoints {
            learning_center: base.to_owned(),
            order: base.to_owned(),
            sandbox: base.to_owned(),
        }
    }

    async fn demo(base: &str, timeout: Duration) -> anyhow::Result<Outcome> {
        let user = UserId::parse("demo-test").unwrap();
        buy_paid_course(
            &endpoints(base),
            &AuthSettings::default(),
            &user,
            PayChannel::Wechat,
            timeout,
        )
        .await
    }

    #[tokio::test]
    async fn buys_the_first_paid_course_and_waits_until_it_is_learnable() {
        let fake = fake::start(Mode::Happy);
        let outcome = demo(&fake.base_url, Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            outcome,
            Outcome {
                user_id: "demo-test".into(),
                course_id: "12".into(),
                choose_course_id: "21".into(),
                order_id: "31".into(),
                pay_no: "41".into(),
                order_status: "paid".into(),
                learn_status: "can_learn".into(),
            }
        );
        let users = fake.users();
        assert!(users.len() >= 6, "{users:?}");
        assert!(users.iter().all(|u| u == "demo-test"), "{users:?}");
        fake.stop().await;
    }

    #[tokio::test]
    async fn fails_when_no_course_is_paid() {
        let fake = fake::start(Mode::NoPaidCourse);
        let err = demo(&fake.base_url, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("no paid course"), "{err:#}");
        fake.stop().await;
    }

    #[tokio::test]
    async fn surfaces_the_error_body_of_a_failed_call() {
        let fake = fake::start(Mode::ChooseConflict);
        let err = format!(
            "{:#}",
            demo(&fake.base_url, Duration::from_secs(30))
                .await
                .unwrap_err()
        );
        assert!(err.contains("choosing the course"), "{err}");
        assert!(err.contains("409"), "{err}");
        assert!(err.contains("course_unavailable"), "{err}");
        fake.stop().await;
    }

    #[tokio::test]
    async fn times_out_clearly_when_the_order_never_becomes_paid() {
        let fake = fake::start(Mode::NeverPaid);
        let err = demo(&fake.base_url, Duration::ZERO).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("timed out waiting for the order to become paid"),
            "{err:#}"
        );
        fake.stop().await;
    }

    #[tokio::test]
    async fn tells_the_user_to_start_the_platform_when_nothing_listens() {
        // Port 1 has no listener.
        let err = demo("http://127.0.0.1:1", Duration::ZERO)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("cargo xtask up"), "{err:#}");
    }
}
