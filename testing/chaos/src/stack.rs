//! One run's platform: a private PostgreSQL server the run may stop and start (the
//! machine's shared one stays up for everyone else's tests), a fresh vhost, the sandbox
//! and two instances of every service as processes; and the questions asked of it
//! afterwards (is it at rest, what do the databases say).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paywire_testkit::postgres::{PgControl, PrivatePostgres};
use paywire_testkit::rabbitmq::{rabbitmqctl, rabbitmqctl_async};
use rand::Rng;
use tokio::sync::Mutex;

use crate::check::{self, Snapshot};
use crate::procs::{self, Instance, Launcher};
use crate::settings::{self, Ports, Topology};

pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);

pub type Instances = Arc<Mutex<Vec<Instance>>>;

/// The run's PostgreSQL server and vhost: removed on drop unless [`Stack::keep`] asked to
/// keep them for inspection (a failed run).
#[derive(Debug)]
struct Resources {
    pg: Option<PrivatePostgres>,
    vhost: String,
    keep: bool,
}

impl Drop for Resources {
    fn drop(&mut self) {
        if self.keep {
            if let Some(pg) = self.pg.take() {
                let dir = pg.keep();
                eprintln!(
                    "chaos: PostgreSQL data kept in {} (pg_ctl -D {}/data start)",
                    dir.display(),
                    dir.display()
                );
            }
            return;
        }
        let _ = rabbitmqctl(&["delete_vhost", &self.vhost]);
    }
}

/// A running platform of one run.
#[derive(Debug)]
pub struct Stack {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub topology: Topology,
    pub instances: Instances,
    pub http: reqwest::Client,
    pub sandbox_url: String,
    /// The sandbox's internal listener (fault injection).
    pub sandbox_internal_url: String,
    /// Stops and starts the run's PostgreSQL.
    pub pg: PgControl,
    resources: Resources,
}

impl Stack {
    /// Starts a private PostgreSQL, creates the vhost, writes every instance's
    /// configuration and starts the instances one at a time (the first instance of each
    /// service migrates its database).
    pub async fn start(
        launcher: &Launcher,
        repo_root: &std::path::Path,
        amqp_server: &str,
        seed: u64,
    ) -> anyhow::Result<Self> {
        // Names are unique per run, not per seed: a replayed seed must not meet the kept
        // vhost of an earlier failed run.
        let suffix: String = {
            let mut names = rand::thread_rng();
            (0..8)
                .map(|_| {
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[names.gen_range(0..36)])
                })
                .collect()
        };
        let run_id = format!("chaos_{suffix}");
        let run_dir = std::env::temp_dir().join(format!("paywire-{run_id}"));
        std::fs::create_dir_all(&run_dir)?;

        let server = PrivatePostgres::start()
            .await
            .context("starting the run's private PostgreSQL")?;
        let pg = server.url();
        let control = server.control().clone();
        let resources = Resources {
            pg: Some(server),
            vhost: run_id.clone(),
            keep: false,
        };
        for db in ["order", "payment", "learning"] {
            paywire_platform::db::ensure_database(&format!("{pg}/{run_id}_{db}"))
                .await
                .with_context(|| format!("creating database {run_id}_{db}"))?;
        }
        rabbitmqctl_async(vec!["add_vhost".into(), run_id.clone()]).await?;
        rabbitmqctl_async(
            ["set_permissions", "-p", &run_id, "guest", ".*", ".*", ".*"]
                .map(String::from)
                .to_vec(),
        )
        .await?;

        let topology = Topology {
            amqp_url: format!("{}/{run_id}", amqp_server.trim_end_matches('/')),
            order_db: format!("{pg}/{run_id}_order"),
            payment_db: format!("{pg}/{run_id}_payment"),
            learning_db: format!("{pg}/{run_id}_learning"),
            sandbox_port: Ports::free()?,
            learning_ports: [Ports::free()?, Ports::free()?],
            order_ports: [Ports::free()?, Ports::free()?],
            gateway_ports: [Ports::free()?, Ports::free()?],
            seed,
        };
        let mut list = vec![Instance::new(
            "channel-sandbox",
            0,
            topology.sandbox_port,
            &run_dir,
        )];
        std::fs::write(&list[0].config_path, settings::sandbox(&topology))?;
        for (service, ports) in [
            ("learning-center", topology.learning_ports),
            ("payment-gateway", topology.gateway_ports),
            ("order", topology.order_ports),
        ] {
            for (i, port) in ports.iter().enumerate() {
                let inst = Instance::new(service, i, *port, &run_dir);
                let text = match service {
                    "learning-center" => settings::learning(&topology, i),
                    "payment-gateway" => settings::gateway(&topology, i),
                    _ => settings::order(&topology, i),
                };
                std::fs::write(&inst.config_path, text)?;
                list.push(inst);
            }
        }

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?;
        let instances: Instances = Arc::new(Mutex::new(list));
        let stack = Self {
            sandbox_url: format!("http://127.0.0.1:{}", topology.sandbox_port.public),
            sandbox_internal_url: format!("http://127.0.0.1:{}", topology.sandbox_port.internal),
            run_id,
            run_dir,
            topology,
            instances,
            http,
            pg: control,
            resources,
        };
        // On an error the processes die with `stack` (kill on drop).
        for inst in stack.instances.lock().await.iter_mut() {
            inst.spawn(launcher, repo_root)?;
            inst.wait_healthy(&stack.http, HEALTH_TIMEOUT).await?;
        }
        Ok(stack)
    }

    /// Keep the PostgreSQL data and the vhost after the run (for inspection).
    pub fn keep(&mut self) {
        self.resources.keep = true;
    }

    /// Kills every instance.
    pub async fn kill_all(&self) {
        for inst in self.instances.lock().await.iter_mut() {
            inst.kill().await;
        }
    }

    /// `None` when the platform is at rest, else what it is still doing.
    pub async fn quiescent(&self) -> anyhow::Result<Option<String>> {
        let t = &self.topology;
        let open = check::count(
            &t.order_db,
            "SELECT count(*) AS n FROM orders WHERE status = 'unpaid'",
        )
        .await?;
        let attempts = check::count(
            &t.payment_db,
            "SELECT count(*) AS n FROM payments WHERE status = 'unpaid'",
        )
        .await?;
        let refunds = check::count(
            &t.payment_db,
            "SELECT count(*) AS n FROM refunds WHERE status IN ('pending', 'processing')",
        )
        .await?;
        let mut unpublished = 0;
        for db in [&t.order_db, &t.payment_db, &t.learning_db] {
            unpublished += check::count(db, check::UNPUBLISHED_SQL).await?;
        }
        let busy: Vec<(String, u64)> = procs::queue_depths(&self.run_id)
            .await?
            .into_iter()
            .filter(|(q, n)| *n > 0 && !q.ends_with(".dlq"))
            .collect();
        if open == 0 && attempts == 0 && refunds == 0 && unpublished == 0 && busy.is_empty() {
            return Ok(None);
        }
        Ok(Some(format!(
            "unpaid orders {open}, unpaid attempts {attempts}, open refunds {refunds}, \
             unpublished outbox rows {unpublished}, busy queues {busy:?}"
        )))
    }

    /// Everything the invariant checks read: the three databases, the sandbox's trades
    /// and the queues.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let t = &self.topology;
        let mut unpublished = BTreeMap::new();
        for (name, db) in [
            ("order", &t.order_db),
            ("payment-gateway", &t.payment_db),
            ("learning-center", &t.learning_db),
        ] {
            unpublished.insert(
                name.to_owned(),
                check::count(db, check::UNPUBLISHED_SQL).await?,
            );
        }
        Ok(Snapshot {
            orders: check::rows(&t.order_db, check::ORDERS_SQL).await?,
            payments: check::rows(&t.payment_db, check::PAYMENTS_SQL).await?,
            refunds: check::rows(&t.payment_db, check::REFUNDS_SQL).await?,
            enrolments: check::rows(&t.learning_db, check::ENROLMENTS_SQL).await?,
            trades: self
                .http
                .get(format!("{}/sandbox/trades", self.sandbox_url))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?,
            unpublished,
            queues: procs::queue_depths(&self.run_id).await?,
        })
    }
}
