//! `cargo xtask up`: the whole platform on localhost, stopped together.

use std::time::Duration;

use anyhow::Context;
use paywire_domain::topology::{PAY_RESULT_EXCHANGE, PAY_RESULT_SUBSCRIBERS};
use paywire_messaging::topology::{connect, declare_pay_result_topology};

use crate::layout::{self, SERVICES};
use crate::procs::{self, Running};

/// First start-up includes migrations; a slow machine needs a generous bound.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where `--observe` serves Prometheus.
const PROMETHEUS_ADDRESS: &str = "127.0.0.1:9090";

pub async fn run(observe: bool) -> anyhow::Result<()> {
    procs::build_services().await?;
    ensure_databases().await?;
    declare_topology(&layout::amqp_url()).await?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut children: Vec<Running> = Vec::new();
    let mut started = start_all(&http, &mut children).await;
    if observe && started.is_ok() {
        started = start_prometheus().map(|p| children.push(p));
    }
    if let Err(e) = started {
        procs::stop_all(&mut children, STOP_GRACE).await;
        return Err(e);
    }

    println!("\n==> Paywire is up (Ctrl-C stops everything)");
    println!("\n    Open {}\n", layout::service("cashier").base_url());
    for s in SERVICES {
        println!(
            "    {:<16} {}   internal {}   metrics {}/metrics",
            s.name,
            s.base_url(),
            s.internal_url(),
            s.internal_url()
        );
    }
    if observe {
        println!(
            "    {:<16} http://{PROMETHEUS_ADDRESS}/alerts",
            "prometheus"
        );
    }
    println!("    try: cargo xtask demo\n");

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = loop {
        tokio::select! {
            r = &mut ctrl_c => {
                r.context("listening for Ctrl-C")?;
                println!("\n==> Ctrl-C: stopping all services");
                break Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some((name, status)) = procs::first_exited(&mut children)? {
                    println!("==> {name} exited ({status}): stopping all services");
                    break Err(anyhow::anyhow!("{name} exited unexpectedly ({status})"));
                }
            }
        }
    };
    procs::stop_all(&mut children, STOP_GRACE).await;
    outcome
}

/// Debian's Prometheus with `deploy/observability/` (scrape config and alert rules), its
/// data under `target/prometheus`, stopped with the services.
fn start_prometheus() -> anyhow::Result<Running> {
    let binary = std::path::Path::new("/usr/bin/prometheus");
    anyhow::ensure!(
        binary.exists(),
        "--observe needs Prometheus: apt-get install prometheus"
    );
    let root = layout::repo_root();
    let data = root.join("target/prometheus");
    std::fs::create_dir_all(&data)?;
    println!("==> starting Prometheus on http://{PROMETHEUS_ADDRESS}");
    let child = tokio::process::Command::new(binary)
        .arg(format!(
            "--config.file={}",
            root.join("deploy/observability/prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={PROMETHEUS_ADDRESS}"))
        .arg("--log.level=warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting prometheus")?;
    Ok(Running {
        name: "prometheus",
        child,
    })
}

async fn start_all(http: &reqwest::Client, children: &mut Vec<Running>) -> anyhow::Result<()> {
    for s in SERVICES {
        println!(
            "==> starting {} on {} (internal {})",
            s.name,
            s.base_url(),
            s.internal_url()
        );
        children.push(procs::spawn(s, &[])?);
        // One at a time: each waits for what it calls, and migrations do not compete.
        procs::wait_healthy(http, s, children, HEALTH_TIMEOUT).await?;
        println!("==> {} is healthy", s.name);
    }
    Ok(())
}

/// Creates every service database that does not exist yet on `$PAYWIRE_PG`.
pub async fn ensure_databases() -> anyhow::Result<()> {
    let server = layout::pg_server();
    for s in SERVICES {
        if let Some(url) = s.database_url(&server) {
            paywire_platform::db::ensure_database(&url)
                .await
                .with_context(|| format!("creating database for {} at {server}", s.name))?;
            println!("==> database {} ready", s.database.unwrap_or_default());
        }
    }
    Ok(())
}

/// Declares the pay-result exchange and every subscriber's queues (idempotent; the
/// services declare their own part too, this makes the order of start-up irrelevant).
pub async fn declare_topology(amqp_url: &str) -> anyhow::Result<()> {
    let conn = connect(amqp_url, "xtask-up")
        .await
        .context("connecting to RabbitMQ")?;
    let channel = conn.create_channel().await?;
    declare_pay_result_topology(&channel, PAY_RESULT_SUBSCRIBERS)
        .await
        .context("declaring the pay-result topology")?;
    let _ = channel.close(200, "done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    println!(
        "==> broker topology declared: exchange {PAY_RESULT_EXCHANGE}, queues {}",
        PAY_RESULT_SUBSCRIBERS.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    use paywire_testkit::TestVhost;

    #[tokio::test]
    async fn topology_declaration_creates_every_subscriber_queue_and_is_idempotent() {
        let vhost = TestVhost::create().unwrap();
        declare_topology(&vhost.amqp_url).await.unwrap();
        declare_topology(&vhost.amqp_url).await.unwrap();

        let conn = connect(&vhost.amqp_url, "xtask-test").await.unwrap();
        for queue in PAY_RESULT_SUBSCRIBERS {
            // A passive declaration fails if the queue does not exist.
            let channel = conn.create_channel().await.unwrap();
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare((*queue).into(), passive, FieldTable::default())
                .await
                .unwrap_or_else(|e| panic!("queue {queue} missing: {e}"));
        }
        let channel = conn.create_channel().await.unwrap();
        let missing = channel
            .queue_declare(
                "no-such-queue".into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        assert!(
            missing.is_err(),
            "passive declaration cannot detect absence"
        );
        let _ = conn.close(200, "done".into()).await;
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_reported() {
        let err = declare_topology("amqp://guest:guest@127.0.0.1:1/%2f")
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("connecting to RabbitMQ"),
            "{err:#}"
        );
    }
}
