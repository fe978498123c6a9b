//! The benchmark behind `cargo xtask bench` (issue 12).
//!
//! One run starts the platform ([`stack`]), measures this machine's limits as baselines
//! ([`baseline`]: RSA signatures/s, single-row PostgreSQL transactions/s, RabbitMQ
//! confirmed persistent publishes/s), drives closed-loop purchases at rising concurrency
//! until throughput stops growing ([`load`]), then at 4× the saturating concurrency, and
//! benches the relay and the consumer machinery alone ([`components`]). Every Paywire
//! figure is also given as a ratio of its same-run baseline: on a shared machine the
//! absolute figures move with the neighbours' load, the ratios much less.
//!
//! Stage latencies come from the client (choose, order create, pay, wallet pay) and from
//! the databases' own timestamps (paid recorded, order paid, enrolled), so polling does not
//! blur them. CPU per purchase is read from `/proc` per process: the services, the
//! PostgreSQL backends serving the bench's databases and RabbitMQ's `beam.smp`.

pub mod baseline;
pub mod components;
pub mod load;
pub mod procstat;
pub mod report;
pub mod stack;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use paywire_chaos::procs::Launcher;

pub use report::{Level, Report};
pub use stack::Sizing;

/// RSA signatures per purchase: the gateway signs its prepay request, the channel signs
/// its answer and its payment notification.
pub const SIGNATURES_PER_PURCHASE: f64 = 3.0;

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub launcher: Launcher,
    pub repo_root: PathBuf,
    pub quick: bool,
    pub sizing: Sizing,
    /// Concurrency levels tried in order (stops early once throughput stops growing).
    pub levels: Vec<usize>,
    /// Per level: at most this many purchases, for at most this long.
    pub purchases_per_level: usize,
    pub level_duration: Duration,
    pub baseline_duration: Duration,
    /// Messages per component bench.
    pub component_messages: usize,
}

impl BenchConfig {
    /// The recorded run: levels of 8 s from 1 to 256 students.
    pub fn full(launcher: Launcher, repo_root: PathBuf) -> Self {
        Self {
            launcher,
            repo_root,
            quick: false,
            sizing: Sizing::default(),
            levels: vec![1, 2, 4, 8, 16, 32, 64, 128, 256],
            purchases_per_level: 100_000,
            level_duration: Duration::from_secs(8),
            baseline_duration: Duration::from_secs(3),
            component_messages: 5000,
        }
    }

    /// Seconds, small N: proves the bench still runs (the test suite's `--quick`).
    pub fn quick(launcher: Launcher, repo_root: PathBuf) -> Self {
        Self {
            quick: true,
            levels: vec![1, 4],
            purchases_per_level: 8,
            level_duration: Duration::from_secs(60),
            baseline_duration: Duration::from_millis(300),
            component_messages: 200,
            ..Self::full(launcher, repo_root)
        }
    }
}

fn progress(line: &str) {
    eprintln!("bench: {line}");
}

#[derive(QueryableByName)]
struct KeyTime {
    #[diesel(sql_type = diesel::sql_types::Text)]
    key: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    t: f64,
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

async fn key_times(url: &str, sql: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    let rows: Vec<KeyTime> = diesel::sql_query(sql).load(&mut conn).await?;
    Ok(rows.into_iter().map(|r| (r.key, r.t)).collect())
}

/// The server-side moments of each purchase, from the databases.
#[derive(Debug, Default)]
struct ServerTimes {
    paid_recorded: BTreeMap<String, f64>,
    order_paid: BTreeMap<String, f64>,
    enrolled: BTreeMap<String, f64>,
}

async fn server_times(s: &stack::Stack) -> anyhow::Result<ServerTimes> {
    Ok(ServerTimes {
        paid_recorded: key_times(
            &s.payment_db.url,
            "SELECT pay_no::text AS key, EXTRACT(EPOCH FROM updated_at)::float8 AS t \
             FROM payments WHERE status = 'paid'",
        )
        .await?,
        order_paid: key_times(
            &s.order_db.url,
            "SELECT id::text AS key, EXTRACT(EPOCH FROM updated_at)::float8 AS t \
             FROM orders WHERE status = 'paid'",
        )
        .await?,
        enrolled: key_times(
            &s.learning_db.url,
            "SELECT choose_course_id::text AS key, EXTRACT(EPOCH FROM created_at)::float8 AS t \
             FROM course_tables",
        )
        .await?,
    })
}

/// The processes whose CPU is counted: each service, the PostgreSQL backends connected
/// to the bench's databases, RabbitMQ's Erlang VM.
async fn cpu_groups(s: &stack::Stack) -> anyhow::Result<Vec<(String, Vec<u32>)>> {
    let mut groups: Vec<(String, Vec<u32>)> = s
        .pids()
        .into_iter()
        .map(|(name, pid)| (name.to_owned(), vec![pid]))
        .collect();
    let names: Vec<String> = [&s.order_db.url, &s.payment_db.url, &s.learning_db.url]
        .iter()
        .filter_map(|u| u.rsplit('/').next().map(|n| format!("'{n}'")))
        .collect();
    let mut conn = AsyncPgConnection::establish(&s.order_db.url).await?;
    let pids: Vec<Pid> = diesel::sql_query(format!(
        "SELECT pid FROM pg_stat_activity WHERE datname IN ({}) AND pid <> pg_backend_pid()",
        names.join(", ")
    ))
    .load(&mut conn)
    .await?;
    groups.push((
        "postgresql".into(),
        pids.into_iter()
            .filter_map(|p| u32::try_from(p.pid).ok())
            .collect(),
    ));
    groups.push(("rabbitmq".into(), procstat::pids_named("beam.smp")));
    Ok(groups)
}

async fn measure_level(
    s: &stack::Stack,
    client: &load::Client,
    concurrency: usize,
    overload: bool,
    config: &BenchConfig,
) -> anyhow::Result<Level> {
    let groups = cpu_groups(s).await?;
    let before = procstat::CpuReading::take(&groups);
    let tag = format!("{}{concurrency}", if overload { "o" } else { "c" });
    let target = if overload {
        config.purchases_per_level.max(concurrency * 2)
    } else {
        config.purchases_per_level
    };
    let run = load::run_level(client, &tag, concurrency, target, config.level_duration).await;
    let after = procstat::CpuReading::take(&groups);
    let cpu = after.since(&before);
    let times = server_times(s).await?;
    Ok(report::level(concurrency, overload, &run, &times, &cpu))
}

/// Runs the whole bench; progress lines go to stderr.
pub async fn run(config: BenchConfig) -> anyhow::Result<Report> {
    let load_before = report::load_average();
    progress(&format!(
        "baselines ({:?} each): RSA-2048 signatures, PostgreSQL single-row transactions, \
         RabbitMQ confirmed publishes",
        config.baseline_duration
    ));
    let rsa = baseline::rsa_signatures_per_sec(config.baseline_duration).await?;
    progress(&format!("  RSA-2048 signatures/s      {rsa:>10.0}"));
    let pg = baseline::pg_transactions_per_sec(8, config.baseline_duration).await?;
    progress(&format!("  PostgreSQL transactions/s  {pg:>10.0}"));
    let broker = baseline::broker_confirms_per_sec(100, config.baseline_duration).await?;
    progress(&format!("  RabbitMQ confirmed msgs/s  {broker:>10.0}"));

    progress(&format!(
        "components: relay alone and consumer alone, {} messages each",
        config.component_messages
    ));
    let relay = components::relay_alone(config.component_messages).await?;
    progress(&format!("  relay msgs/s               {relay:>10.0}"));
    let consumer =
        components::consumer_alone(config.component_messages, config.sizing.prefetch).await?;
    progress(&format!("  consumer applies/s         {consumer:>10.0}"));

    progress("starting the platform (sandbox, learning center, gateway, order)");
    let s = stack::Stack::start(&config.launcher, &config.repo_root, config.sizing).await?;
    let result = drive(&s, &config).await;
    let rss: BTreeMap<String, f64> = s
        .pids()
        .into_iter()
        .filter_map(|(name, pid)| {
            procstat::peak_rss_bytes(pid).map(|b| (name.to_owned(), b as f64 / 1048576.0))
        })
        .collect();
    s.stop().await;
    let (levels, overload) = result?;
    let report = Report::assemble(report::Parts {
        quick: config.quick,
        sizing: config.sizing,
        load_before,
        rsa,
        pg,
        broker,
        relay,
        consumer,
        levels,
        overload,
        peak_rss_mb: rss,
    });
    Ok(report)
}

async fn drive(s: &stack::Stack, config: &BenchConfig) -> anyhow::Result<(Vec<Level>, Level)> {
    let max_c = config.levels.iter().copied().max().unwrap_or(1) * 4;
    let mut client = load::Client::new(
        s.learning_url.clone(),
        s.order_url.clone(),
        s.sandbox_url.clone(),
        max_c,
    )?;
    client
        .find_paid_course()
        .await
        .context("reading the catalogue")?;
    progress("warm-up");
    let warm = load::run_level(
        &client,
        "w",
        2,
        if config.quick { 2 } else { 20 },
        Duration::from_secs(60),
    )
    .await;
    if let Some(f) = <[load::Failure]>::first(&warm.failures) {
        anyhow::bail!("warm-up purchase failed: {}", f.0);
    }

    let mut levels: Vec<Level> = Vec::new();
    let mut best = 0.0f64;
    let mut flat = 0;
    for &c in &config.levels {
        progress(&format!("{c} concurrent students ..."));
        let level = measure_level(s, &client, c, false, config).await?;
        progress(&format!("  {}", level.summary()));
        let rate = level.purchases_per_sec;
        levels.push(level);
        // Saturated once two levels in a row add less than 5 %.
        if rate > best * 1.05 {
            best = rate;
            flat = 0;
        } else {
            flat += 1;
            if flat >= 2 {
                break;
            }
        }
    }
    let saturating = report::saturation(&levels).map_or(1, |l| l.concurrency);
    let c = saturating * 4;
    progress(&format!(
        "overload: {c} concurrent students (4 × {saturating}) ..."
    ));
    let overload = measure_level(s, &client, c, true, config).await?;
    progress(&format!("  {}", overload.summary()));
    Ok((levels, overload))
}
