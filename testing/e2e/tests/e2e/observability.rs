//! What an operator sees: every service's `/metrics`, `/health/live` and `/health/ready`,
//! the metrics a purchase moves (scraped as Prometheus would), and a real Prometheus
//! (Debian's `prometheus`) scraping the running platform with the alert rules loaded.
//!
//! The services of one test process share one metrics recorder (each binary has its own in
//! production), and other suites of this binary run beside these tests, so the assertions
//! compare each series before and after the purchase, as at-least deltas.

use std::path::{Path, PathBuf};
use std::time::Duration;

use paywire_e2e::{Platform, SETTLE};
use serde_json::Value;

const PAID_COURSE: &str = "1002";

/// The value of one series (`name{labels}` exactly as rendered) in a scrape; 0 when absent.
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(p: &Platform, base: &str) -> anyhow::Result<String> {
    let resp = p.client().get(format!("{base}/metrics")).send().await?;
    anyhow::ensure!(resp.status() == 200, "{base}/metrics: {}", resp.status());
    let content_type = resp.headers()["content-type"].to_str()?.to_owned();
    anyhow::ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Ok(resp.text().await?)
}

/// Buys the paid course with `channel` and waits until the student may learn; returns its
/// price in fen.
async fn buy(p: &Platform, student: &str, channel: &str) -> anyhow::Result<i64> {
    let s = p.student(student);
    let order = s.order_course(PAID_COURSE).await?;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let (status, pay) = s.pay(&order_id, channel).await?;
    anyhow::ensure!(status == 200, "{pay}");
    let paid = p.wallet_pay(pay["code_url"].as_str().unwrap()).await?;
    anyhow::ensure!(paid.status() == 200);
    s.wait_for_order_status(&order_id, "paid").await?;
    s.wait_for_learn_status(PAID_COURSE, "can_learn").await?;
    Ok(order["total_fen"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_serves_metrics_and_health_and_a_purchase_moves_its_metrics()
-> anyhow::Result<()> {
    let p = Platform::start().await?;
    for base in [
        &p.learning_internal_url,
        &p.order_internal_url,
        &p.gateway_internal_url,
        &p.sandbox_internal_url,
    ] {
        for path in ["/health", "/health/live"] {
            let resp = p.client().get(format!("{base}{path}")).send().await?;
            assert_eq!(resp.status(), 200, "{base}{path}");
        }
        scrape(&p, base).await?;
    }
    // Ready: database, migrations, and the parts each service runs (relay, consumers).
    for (base, parts) in [
        (
            &p.learning_internal_url,
            &["consumer:learning-center.pay-result"][..],
        ),
        (
            &p.order_internal_url,
            &[
                "outbox-relay",
                "consumer:order.pay-result",
                "consumer:order.timeout",
            ][..],
        ),
        (&p.gateway_internal_url, &["outbox-relay"][..]),
        (&p.sandbox_internal_url, &[][..]),
    ] {
        let body: serde_json::Value = paywire_testkit::wait_for(|| async {
            let resp = p
                .client()
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .ok()?;
            (resp.status() == 200).then_some(())?;
            resp.json().await.ok()
        })
        .await;
        assert_eq!(body["status"], "ready", "{base}: {body}");
        for part in parts {
            assert_eq!(body["checks"][part], "up", "{base}: {body}");
        }
    }

    let gateway = &p.gateway_internal_url;
    // (series, by how much at least the purchase moves it)
    let moved: Vec<(String, f64)> = vec![
        (r#"paywire_http_requests_total{route="/api/orders/{order_id}/pay",method="POST",status="200"}"#.into(), 1.0),
        (r#"paywire_http_requests_total{route="/internal/payments",method="POST",status="201"}"#.into(), 1.0),
        (r#"paywire_http_request_duration_seconds_count{route="/api/orders/{order_id}/pay",method="POST",status="200"}"#.into(), 1.0),
        (r#"paywire_payment_attempts_created_total{channel="wechat"}"#.into(), 1.0),
        (r#"paywire_payments_paid_total{channel="wechat"}"#.into(), 1.0),
        (r#"paywire_channel_requests_total{channel="wechat",operation="create",result="ok"}"#.into(), 1.0),
        (r#"paywire_channel_request_duration_seconds_count{channel="wechat",operation="create",result="ok"}"#.into(), 1.0),
        (r#"paywire_channel_notifications_verified_total{channel="wechat",result="ok"}"#.into(), 1.0),
        (r#"paywire_payment_notifications_total{channel="wechat",outcome="applied"}"#.into(), 1.0),
        // the pay result, and the order's timeout message
        ("paywire_outbox_published_total".into(), 2.0),
        ("paywire_outbox_publish_seconds_count".into(), 1.0),
        (r#"paywire_consumer_messages_total{queue="order.pay-result",outcome="applied"}"#.into(), 1.0),
        (r#"paywire_consumer_messages_total{queue="learning-center.pay-result",outcome="applied"}"#.into(), 1.0),
        (r#"paywire_consumer_handling_seconds_count{queue="order.pay-result"}"#.into(), 1.0),
        (r#"paywire_consumer_handling_seconds_count{queue="learning-center.pay-result"}"#.into(), 1.0),
    ];
    let before = scrape(&p, gateway).await?;
    let paid_fen_series = r#"paywire_payments_paid_fen_total{channel="wechat"}"#;
    let paid_fen_before = sample(&before, paid_fen_series);

    let price = buy(&p, "olivia", "wechat").await?;

    // Consumers count after their ack, the relay after its commit: wait for the last.
    let after = paywire_testkit::eventually(SETTLE, || async {
        let now = scrape(&p, gateway).await.ok()?;
        moved
            .iter()
            .all(|(series, by)| sample(&now, series) >= sample(&before, series) + by)
            .then_some(now)
    })
    .await
    .map_err(|e| {
        let missing: Vec<_> = moved.iter().map(|(s, _)| s.as_str()).collect();
        anyhow::anyhow!("{e}: not all of {missing:?} moved")
    })?;
    assert!(
        sample(&after, paid_fen_series) - paid_fen_before >= price as f64,
        "the paid amount in fen"
    );
    // Gauges and info series exist with their labels.
    for present in [
        "paywire_outbox_pending_rows ",
        "paywire_outbox_oldest_unpublished_age_seconds ",
        r#"paywire_queue_messages{queue="order.pay-result.dlq"} "#,
        r#"paywire_queue_messages{queue="learning-center.pay-result.retry.1"} "#,
        r#"paywire_build_info{service="payment-gateway",version=""#,
        r#"paywire_build_info{service="order",version=""#,
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(present)),
            "{present} missing:\n{after}"
        );
    }
    // Route templates only: no order id ever becomes a label.
    assert!(
        !after.contains(r#"route="/api/orders/1"#) && !after.contains(r#"route="/api/orders/2"#),
        "raw paths as labels:\n{after}"
    );
    Ok(())
}

/// Debian's Prometheus, or why the test cannot run (`.ci/run` installs it).
fn prometheus_binary() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/prometheus");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: /usr/bin/prometheus is missing (apt-get install prometheus; .ci/run does)"
        );
        None
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus process, killed on drop.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: paywire_testkit::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping each `(job, base url)` every second, with the repository's
    /// alert rules loaded.
    fn start(binary: &Path, targets: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = paywire_testkit::TempDir::new("prometheus")?;
        std::fs::copy(
            repo_file("deploy/observability/alerts.yml"),
            dir.path.join("alerts.yml"),
        )?;
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\nscrape_configs:\n",
        );
        for (job, base) in targets {
            let host = base.trim_start_matches("http://");
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{ targets: [\"{host}\"] }}]\n"
            ));
        }
        let config_path = dir.path.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let port = free_port();
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .spawn()?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    /// `GET /api/v1/query`: the result vector (empty while Prometheus is not up yet).
    async fn query(&self, http: &reqwest::Client, promql: &str) -> Vec<Value> {
        let answer = http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await;
        let Ok(answer) = answer else { return vec![] };
        let body: Value = answer.json().await.unwrap_or_default();
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that yields one sample.
    async fn scalar(&self, http: &reqwest::Client, promql: &str) -> Option<f64> {
        let result = self.query(http, promql).await;
        result.first()?["value"][1].as_str()?.parse().ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_the_platform_and_sees_a_purchase() -> anyhow::Result<()> {
    let Some(binary) = prometheus_binary() else {
        return Ok(());
    };
    let p = Platform::start().await?;
    let targets = [
        ("learning-center", p.learning_internal_url.as_str()),
        ("order", p.order_internal_url.as_str()),
        ("payment-gateway", p.gateway_internal_url.as_str()),
        ("channel-sandbox", p.sandbox_internal_url.as_str()),
    ];
    let prometheus = Prometheus::start(&binary, &targets)?;
    let http = p.client();
    let wait = Duration::from_secs(60);

    paywire_testkit::eventually(wait, || async {
        (prometheus.scalar(http, "sum(up)").await == Some(targets.len() as f64)).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("targets not all up: {e}"))?;
    let rules: Value = http
        .get(format!("{}/api/v1/rules", prometheus.url))
        .send()
        .await?
        .json()
        .await?;
    let loaded: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["health"] == "ok" || r["health"] == "unknown")
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(loaded.contains(&"PaywireDeadLetters"), "{rules}");
    assert!(loaded.contains(&"PaywireOutboxStuck"), "{rules}");

    let paid = r#"sum(paywire_payments_paid_total{job="payment-gateway",channel="alipay"})"#;
    let published = r#"sum(paywire_outbox_published_total{job="payment-gateway"})"#;
    let before_paid = prometheus.scalar(http, paid).await.unwrap_or(0.0);
    let before_published = prometheus.scalar(http, published).await.unwrap_or(0.0);

    buy(&p, "prudence", "alipay").await?;

    paywire_testkit::eventually(wait, || async {
        let paid = prometheus.scalar(http, paid).await?;
        let published = prometheus.scalar(http, published).await?;
        (paid >= before_paid + 1.0 && published >= before_published + 2.0).then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("Prometheus did not see the purchase: {e}"))?;
    let backlog = prometheus
        .scalar(
            http,
            r#"max(paywire_outbox_oldest_unpublished_age_seconds{job="payment-gateway"})"#,
        )
        .await;
    assert!(backlog.is_some(), "the outbox age gauge is scraped");
    Ok(())
}

/// `promtool check rules` and `promtool test rules` over `deploy/observability/` (the unit
/// tests include a parked message firing `PaywireDeadLetters`), and the scrape config.
#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        eprintln!(
            "SKIPPED: /usr/bin/promtool is missing (apt-get install prometheus; .ci/run does)"
        );
        return;
    }
    let dir = repo_file("deploy/observability");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts.test.yml"],
        &["check", "config", "prometheus.yml"],
    ] {
        let out = std::process::Command::new(promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tests = std::fs::read_to_string(dir.join("alerts.test.yml")).unwrap();
    assert!(
        tests.contains("alertname: PaywireDeadLetters") && tests.contains(".dlq"),
        "a DLQ case is among the rule tests"
    );

    // The dashboard's queries parse: promtool checks them as recording rules.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let scratch = paywire_testkit::TempDir::new("dashboard-rules").unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    std::fs::write(scratch.path.join("dashboard.yml"), rules).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["check", "rules", "dashboard.yml"])
        .current_dir(&scratch.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dashboard queries:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every metric an alert or a panel uses is documented in the README's operating section.
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let used = exprs.join(" ") + &alerts;
    for name in metric_names(&used) {
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is used by an alert or the dashboard but not documented in README"
        );
    }
}

/// The `paywire_*` metric names in PromQL text, without histogram suffixes.
fn metric_names(promql: &str) -> std::collections::BTreeSet<String> {
    promql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("paywire_"))
        .map(|w| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_owned()
        })
        .collect()
}
