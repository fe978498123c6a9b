//! The bench's platform: one instance of each service in the purchase path (sandbox,
//! learning center, payment gateway, order) as processes on free ports, with databases of
//! their own on the machine's PostgreSQL and a vhost of their own on its RabbitMQ, all
//! removed afterwards. The cashier is not started: the load calls the services directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use paywire_chaos::procs::{Instance, Launcher};
use paywire_chaos::settings::Ports;
use paywire_testkit::{TestDatabase, TestVhost};

const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

/// How the services are sized (the knobs step 2 of issue 12 tunes).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sizing {
    /// Actix workers per listener (0: one per core).
    pub http_workers: usize,
    /// Database pool size per service.
    pub db_connections: usize,
    /// Consumer prefetch.
    pub prefetch: u16,
}

impl Default for Sizing {
    fn default() -> Self {
        Self {
            http_workers: 0,
            db_connections: 10,
            prefetch: 20,
        }
    }
}

#[derive(Debug)]
pub struct Stack {
    pub instances: Vec<Instance>,
    pub sandbox_url: String,
    pub learning_url: String,
    pub order_url: String,
    pub gateway_url: String,
    pub order_db: TestDatabase,
    pub payment_db: TestDatabase,
    pub learning_db: TestDatabase,
    pub vhost: TestVhost,
    pub run_dir: PathBuf,
}

fn http(ports: Ports, workers: usize) -> String {
    format!(
        "[http]\nhost = \"127.0.0.1\"\nport = {}\ninternal_port = {}\nworkers = {workers}\n\n",
        ports.public, ports.internal
    )
}

/// Logs at `warn`: the bench measures the platform's work, not its log volume.
fn common(db: &str, amqp: &str, worker_id: u16, sizing: Sizing) -> String {
    format!(
        "[database]\nurl = \"{db}\"\nmax_connections = {}\nmigrate = true\n\n\
         [amqp]\nurl = \"{amqp}\"\nprefetch = {}\n\n\
         [ids]\nworker_id = {worker_id}\n\n\
         [telemetry]\nfilter = \"warn\"\njson = false\n\n",
        sizing.db_connections, sizing.prefetch
    )
}

impl Stack {
    pub async fn start(
        launcher: &Launcher,
        repo_root: &Path,
        sizing: Sizing,
    ) -> anyhow::Result<Self> {
        let order_db = TestDatabase::create("bench_order").await?;
        let payment_db = TestDatabase::create("bench_payment").await?;
        let learning_db = TestDatabase::create("bench_learning").await?;
        let vhost = TestVhost::create().context("creating the bench's vhost")?;
        let run_dir = std::env::temp_dir().join(format!(
            "paywire-bench-{}",
            paywire_testkit::unique_suffix()
        ));
        std::fs::create_dir_all(&run_dir)?;

        let [sandbox, learning, gateway, order] = [
            Ports::free()?,
            Ports::free()?,
            Ports::free()?,
            Ports::free()?,
        ];
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        let sandbox_url = url(sandbox.public);
        let w = sizing.http_workers;
        let amqp = &vhost.amqp_url;
        let configs = [
            (
                "channel-sandbox",
                sandbox,
                format!(
                    "{}[telemetry]\nfilter = \"warn\"\njson = false\n",
                    http(sandbox, w)
                ),
            ),
            (
                "learning-center",
                learning,
                format!(
                    "{}{}",
                    http(learning, w),
                    common(&learning_db.url, amqp, 11, sizing)
                ),
            ),
            (
                "payment-gateway",
                gateway,
                // Every callback comes from the one sandbox address: its per-address limit
                // is off here (it has its own tests).
                format!(
                    "{}{}[wechat]\napi_base = \"{sandbox_url}\"\n\
                     notify_url = \"{gw}/api/callback/wechat\"\n\n\
                     [alipay]\ngateway_url = \"{sandbox_url}/gateway.do\"\n\
                     notify_url = \"{gw}/api/callback/alipay\"\n\n\
                     [rate_limit.callback]\nrequests = 0\n",
                    http(gateway, w),
                    common(&payment_db.url, amqp, 31, sizing),
                    gw = url(gateway.public),
                ),
            ),
            (
                "order",
                order,
                format!(
                    "{}{}[upstream]\nlearning_center_url = \"{}\"\npayment_gateway_url = \"{}\"\n",
                    http(order, w),
                    common(&order_db.url, amqp, 21, sizing),
                    url(learning.internal),
                    url(gateway.internal),
                ),
            ),
        ];
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut stack = Self {
            instances: Vec::new(),
            sandbox_url,
            learning_url: url(learning.public),
            order_url: url(order.public),
            gateway_url: url(gateway.public),
            order_db,
            payment_db,
            learning_db,
            vhost,
            run_dir,
        };
        // One at a time, dependencies first; on an error the processes die with `stack`.
        for (service, ports, text) in configs {
            let mut inst = Instance::new(service, 0, ports, &stack.run_dir);
            std::fs::write(&inst.config_path, text)?;
            inst.spawn(launcher, repo_root)?;
            inst.wait_healthy(&http, HEALTH_TIMEOUT).await?;
            stack.instances.push(inst);
        }
        Ok(stack)
    }

    /// `(service, pid)` of every running instance.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.instances
            .iter()
            .filter_map(|i| i.pid().map(|p| (i.service, p)))
            .collect()
    }

    pub async fn stop(mut self) {
        for inst in &mut self.instances {
            inst.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}
