//! The chaos test (`cargo xtask chaos`, reduced in `tests/reduced.rs`).
//!
//! Processes, not threads: one channel sandbox and two instances each of learning-center,
//! order and payment-gateway, sharing fresh databases on a PostgreSQL server of the run's
//! own and a fresh vhost. A load
//! driver buys N courses concurrently through the HTTP API (some students never pay, some
//! pay twice) while a fault driver SIGKILLs and restarts random instances, restarts
//! RabbitMQ (or, in the reduced run inside the parallel test suite, drops the vhost's
//! connections) and restarts the run's own PostgreSQL server (fast and immediate
//! shutdowns), and the sandbox drops, delays and duplicates a share of the callbacks.
//! Then it waits for quiescence and checks the money invariants from the databases and
//! the sandbox's own records ([`check::verify`]).

pub mod check;
pub mod load;
pub mod outage;
pub mod procs;
pub mod settings;
pub mod stack;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use paywire_testkit::postgres::Shutdown;
use paywire_testkit::rabbitmq::{self, Rabbitmqctl, rabbitmqctl, rabbitmqctl_async};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::check::Tally;
use crate::load::{Driver, Intent, Outcome, Urls};
use crate::procs::Launcher;
use crate::stack::{HEALTH_TIMEOUT, Stack};

pub use procs::NODE_ENV;

/// What the fault driver does to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerFault {
    /// `rabbitmqctl stop_app` / `start_app`: every vhost, so never inside the test suite.
    Restart,
    /// `rabbitmqctl close_all_connections -p <vhost>`: only this run's clients.
    DropConnections,
}

#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub n: usize,
    pub seed: u64,
    pub launcher: Launcher,
    /// The workspace root (services read `deploy/test-keys/...` relative to it).
    pub repo_root: PathBuf,
    pub never_pay_share: f64,
    pub double_pay_share: f64,
    /// Students buying at the same moment.
    pub concurrency: usize,
    /// Students arrive evenly over this period, so faults hit purchases in flight.
    pub arrival_spread: Duration,
    pub broker_fault: BrokerFault,
    pub broker_faults: usize,
    pub kills: usize,
    /// Restarts of the run's own PostgreSQL server, immediate and fast shutdowns
    /// alternating (immediate first).
    pub pg_restarts: usize,
    /// How long PostgreSQL stays down in each restart.
    pub pg_down: Duration,
    /// Probability that each callback fault (drop, delay, duplicate) fires.
    pub callback_fault_probability: f64,
    pub quiescence_timeout: Duration,
    pub amqp_server: String,
}

impl ChaosConfig {
    /// The full run of `cargo xtask chaos`.
    pub fn full(n: usize, seed: u64, launcher: Launcher, repo_root: PathBuf) -> Self {
        Self {
            n,
            seed,
            launcher,
            repo_root,
            never_pay_share: 0.15,
            double_pay_share: 0.05,
            concurrency: 50,
            arrival_spread: Duration::from_secs(60),
            broker_fault: BrokerFault::Restart,
            broker_faults: 3,
            kills: 8,
            pg_restarts: 2,
            pg_down: Duration::from_secs(3),
            callback_fault_probability: 0.15,
            quiescence_timeout: Duration::from_secs(600),
            amqp_server: "amqp://guest:guest@127.0.0.1:5672".into(),
        }
    }

    /// The test-suite run: small, one connection drop for the run's vhost, one kill per
    /// service, one PostgreSQL restart (its own server: the suite's shared one stays up).
    pub fn reduced(n: usize, seed: u64, launcher: Launcher, repo_root: PathBuf) -> Self {
        Self {
            concurrency: 10,
            arrival_spread: Duration::from_secs(10),
            broker_fault: BrokerFault::DropConnections,
            broker_faults: 1,
            kills: 3,
            pg_restarts: 1,
            quiescence_timeout: Duration::from_secs(240),
            ..Self::full(n, seed, launcher, repo_root)
        }
    }
}

/// Faults injected, counted by the fault driver and the sandbox.
#[derive(Debug, Clone, Default)]
pub struct Injected {
    pub kills: Vec<String>,
    pub broker: usize,
    pub pg_restarts: Vec<Shutdown>,
    pub callbacks: BTreeMap<String, usize>,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub n: usize,
    pub seed: u64,
    pub intents: BTreeMap<&'static str, usize>,
    pub flow_errors: Vec<String>,
    pub injected: Injected,
    pub broker_fault: BrokerFault,
    pub tally: Tally,
    pub load_time: Duration,
    pub quiescence: Duration,
    pub violations: Vec<String>,
    pub run_dir: PathBuf,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let row = |f: &mut std::fmt::Formatter<'_>, k: &str, v: String| {
            writeln!(f, "| {k:<34} | {v:>24} |")
        };
        writeln!(f, "+{:-<36}+{:-<26}+", "", "")?;
        row(f, "purchases (students)", self.n.to_string())?;
        row(f, "seed", self.seed.to_string())?;
        for (k, v) in &self.intents {
            row(f, &format!("  intent {k}"), v.to_string())?;
        }
        row(
            f,
            "flows given up (expired etc.)",
            self.flow_errors.len().to_string(),
        )?;
        row(
            f,
            "faults: SIGKILL + restart",
            self.injected.kills.len().to_string(),
        )?;
        let broker = match self.broker_fault {
            BrokerFault::Restart => "faults: RabbitMQ restarts",
            BrokerFault::DropConnections => "faults: vhost connection drops",
        };
        row(f, broker, self.injected.broker.to_string())?;
        let modes = |mode| {
            self.injected
                .pg_restarts
                .iter()
                .filter(|m| **m == mode)
                .count()
        };
        row(
            f,
            "faults: PostgreSQL restarts",
            format!(
                "{} ({} immediate, {} fast)",
                self.injected.pg_restarts.len(),
                modes(Shutdown::Immediate),
                modes(Shutdown::Fast)
            ),
        )?;
        for (k, v) in &self.injected.callbacks {
            row(f, &format!("faults: sandbox {k}"), v.to_string())?;
        }
        for (k, v) in self.tally.rows() {
            row(f, k, v.to_string())?;
        }
        row(
            f,
            "load phase",
            format!("{:.1} s", self.load_time.as_secs_f64()),
        )?;
        row(
            f,
            "time to quiescence",
            format!("{:.1} s", self.quiescence.as_secs_f64()),
        )?;
        row(f, "invariant violations", self.violations.len().to_string())?;
        writeln!(f, "+{:-<36}+{:-<26}+", "", "")?;
        for v in self.violations.iter().take(30) {
            writeln!(f, "VIOLATION: {v}")?;
        }
        writeln!(f, "logs and configs: {}", self.run_dir.display())
    }
}

/// Keeps RabbitMQ running whatever happens: on drop it starts the app again if a restart
/// was interrupted half-way.
#[derive(Debug)]
struct BrokerGuard {
    stopped: std::sync::atomic::AtomicBool,
}

impl BrokerGuard {
    async fn restart(&self, down: Duration) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        self.stopped.store(true, Ordering::SeqCst);
        let stopped = rabbitmqctl_async(vec!["stop_app".into()]).await;
        tokio::time::sleep(down).await;
        let started = self.start().await;
        stopped?;
        started
    }

    async fn start(&self) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        rabbitmqctl_async(vec!["start_app".into()]).await?;
        Rabbitmqctl::default()
            .wait_until_started_async(rabbitmq::START_BOUND)
            .await?;
        self.stopped.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = rabbitmqctl(&["start_app"]);
            let _ = Rabbitmqctl::default().wait_until_started(rabbitmq::START_BOUND);
        }
    }
}

/// Runs the whole chaos test and returns its summary; `Err` only when the run itself
/// could not be carried out. Invariant violations are in `Summary::violations`.
pub async fn run(config: ChaosConfig) -> anyhow::Result<Summary> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut stack = Stack::start(
        &config.launcher,
        &config.repo_root,
        &config.amqp_server,
        config.seed,
    )
    .await?;
    let guard = Arc::new(BrokerGuard {
        stopped: std::sync::atomic::AtomicBool::new(false),
    });
    let outcome = drive(&config, &mut rng, &stack, &guard).await;

    // Whatever happened: broker and database up, processes gone.
    if guard.stopped.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = guard.start().await;
    }
    stack.kill_all().await;
    let summary = outcome?;
    if !summary.violations.is_empty() {
        stack.keep();
    }
    Ok(summary)
}

/// One fault of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL the instance at this index, start it again.
    Kill(usize),
    Broker,
    /// Stop the run's PostgreSQL in this mode, keep it down [`ChaosConfig::pg_down`], start it.
    PgRestart(Shutdown),
}

/// The fault plan: kills of random service instances (never the sandbox at index 0: it
/// is the outside world and keeps its state in memory), broker faults and PostgreSQL
/// restarts (immediate and fast shutdowns alternating), shuffled.
fn fault_plan(config: &ChaosConfig, rng: &mut StdRng) -> Vec<Fault> {
    let mut plan: Vec<Fault> = (0..config.kills)
        .map(|k| {
            // One kill per service first, then random instances.
            if k < 3 {
                Fault::Kill(1 + 2 * k + rng.gen_range(0..2))
            } else {
                Fault::Kill(rng.gen_range(1..7))
            }
        })
        .chain((0..config.broker_faults).map(|_| Fault::Broker))
        .chain((0..config.pg_restarts).map(|i| {
            Fault::PgRestart(if i % 2 == 0 {
                Shutdown::Immediate
            } else {
                Shutdown::Fast
            })
        }))
        .collect();
    plan.shuffle(rng);
    plan
}

async fn drive(
    config: &ChaosConfig,
    rng: &mut StdRng,
    stack: &Stack,
    guard: &Arc<BrokerGuard>,
) -> anyhow::Result<Summary> {
    let (http, sandbox_admin) = (&stack.http, &stack.sandbox_internal_url);
    let topology = &stack.topology;
    let p = config.callback_fault_probability;
    let resp = http
        .put(format!("{sandbox_admin}/sandbox/admin/faults"))
        .json(&json!({
            "scope": "global",
            "notify": { "drop": true, "delay_ms": 3000, "duplicate": 2 },
            "probability": p,
        }))
        .send()
        .await
        .context("setting the sandbox's callback faults")?;
    if !resp.status().is_success() {
        bail!(
            "sandbox refused the fault spec: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }

    let mut driver = Driver::new(http.clone(), Urls::of(topology));
    driver.course_id = driver.paid_course().await?;
    let intents = load::intents(
        config.n,
        config.never_pay_share,
        config.double_pay_share,
        rng,
    );
    let plan = fault_plan(config, rng);
    let fault_seed: u64 = rng.r#gen();

    let started = Instant::now();
    let load = {
        let driver = driver.clone();
        let run = stack.run_id.trim_start_matches("chaos_").to_owned();
        let concurrency = config.concurrency;
        let gap = config.arrival_spread / u32::try_from(config.n.max(1)).unwrap_or(u32::MAX);
        tokio::spawn(async move {
            futures::stream::iter(intents.into_iter().enumerate())
                .map(|(i, intent)| {
                    let driver = driver.clone();
                    let run = run.clone();
                    let arrival = started + gap * u32::try_from(i).unwrap_or(u32::MAX);
                    async move {
                        tokio::time::sleep_until(arrival.into()).await;
                        driver.student(i, &run, intent).await
                    }
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<Outcome>>()
                .await
        })
    };
    let faults = {
        let instances = stack.instances.clone();
        let guard = guard.clone();
        let http = http.clone();
        let pg = stack.pg.clone();
        let (launcher, root) = (config.launcher.clone(), config.repo_root.clone());
        let (broker_fault, vhost) = (config.broker_fault, stack.run_id.clone());
        let pg_down = config.pg_down;
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(fault_seed);
            let mut injected = Injected::default();
            for action in plan {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(500..2500))).await;
                match action {
                    Fault::Kill(idx) => {
                        let mut list = instances.lock().await;
                        let inst = &mut list[idx];
                        inst.kill().await;
                        injected.kills.push(inst.name());
                        drop(list);
                        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..2000))).await;
                        let mut list = instances.lock().await;
                        let inst = &mut list[idx];
                        inst.spawn(&launcher, &root)?;
                        inst.wait_healthy(&http, HEALTH_TIMEOUT).await?;
                    }
                    Fault::Broker => {
                        match broker_fault {
                            BrokerFault::Restart => {
                                guard.restart(Duration::from_secs(3)).await?;
                            }
                            BrokerFault::DropConnections => {
                                rabbitmqctl_async(vec![
                                    "close_all_connections".into(),
                                    "-p".into(),
                                    vhost.clone(),
                                    "chaos".into(),
                                ])
                                .await?;
                            }
                        }
                        injected.broker += 1;
                    }
                    Fault::PgRestart(mode) => {
                        // Every service keeps running against the vanished server.
                        pg.restart(mode, pg_down)
                            .await
                            .with_context(|| format!("restarting {}", pg.describe()))?;
                        injected.pg_restarts.push(mode);
                    }
                }
            }
            anyhow::Ok(injected)
        })
    };
    let outcomes = load.await.context("load driver")?;
    let load_time = started.elapsed();
    let mut injected = faults.await.context("fault driver")??;

    // Quiescence: every order settled, every attempt and refund final, outboxes drained,
    // queues empty (dead-letter queues excepted: they never drain, the checks see them).
    let settle_start = Instant::now();
    let deadline = settle_start + config.quiescence_timeout;
    loop {
        {
            // A process that died on its own (not killed by us) is a finding; restart it
            // so the run can finish, and report it.
            let mut list = stack.instances.lock().await;
            for inst in list.iter_mut() {
                if inst.exited() {
                    injected
                        .kills
                        .push(format!("{} (exited on its own)", inst.name()));
                    inst.spawn(&config.launcher, &config.repo_root)?;
                }
            }
        }
        let last_state = match stack.quiescent().await {
            Ok(None) => break,
            Ok(Some(state)) => state,
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            let snapshot = stack.snapshot().await;
            let mut violations = vec![format!(
                "no quiescence within {:?}: {last_state}",
                config.quiescence_timeout
            )];
            let mut tally = Tally::default();
            if let Ok(s) = snapshot {
                let v = check::verify(&s);
                violations.extend(v.violations);
                tally = v.tally;
            }
            return Ok(summary(
                config,
                &outcomes,
                injected,
                tally,
                load_time,
                settle_start.elapsed(),
                violations,
                &stack.run_dir,
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let quiescence = settle_start.elapsed();

    let snapshot = stack.snapshot().await?;
    let verdict = check::verify(&snapshot);
    let faults: serde_json::Value = http
        .get(format!("{sandbox_admin}/sandbox/admin/faults"))
        .send()
        .await?
        .json()
        .await?;
    for event in faults["injected"].as_array().into_iter().flatten() {
        let kind = event["kind"].as_str().unwrap_or("unknown").to_owned();
        *injected.callbacks.entry(kind).or_default() += 1;
    }
    Ok(summary(
        config,
        &outcomes,
        injected,
        verdict.tally,
        load_time,
        quiescence,
        verdict.violations,
        &stack.run_dir,
    ))
}

#[allow(clippy::too_many_arguments)]
fn summary(
    config: &ChaosConfig,
    outcomes: &[Outcome],
    injected: Injected,
    tally: Tally,
    load_time: Duration,
    quiescence: Duration,
    violations: Vec<String>,
    run_dir: &std::path::Path,
) -> Summary {
    let mut intents = BTreeMap::new();
    for o in outcomes {
        let k = match o.intent {
            Intent::Pay("alipay") => "pay with alipay",
            Intent::Pay(_) => "pay with wechat",
            Intent::NeverPay => "never pay",
            Intent::DoublePay => "pay twice",
        };
        *intents.entry(k).or_default() += 1;
    }
    Summary {
        n: config.n,
        seed: config.seed,
        intents,
        flow_errors: outcomes
            .iter()
            .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.user)))
            .collect(),
        injected,
        broker_fault: config.broker_fault,
        tally,
        load_time,
        quiescence,
        violations,
        run_dir: run_dir.to_path_buf(),
    }
}
