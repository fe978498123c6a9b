//! `cargo xtask bench --quick` in the test suite, so the bench cannot rot: the whole bench
//! with small N against the services started as processes of this very executable
//! (`PAYWIRE_CHAOS_NODE=<service>`, as the reduced chaos run does; hence `harness =
//! false`). It checks that every part ran and produced figures, and that no purchase
//! failed — never how fast anything was.

#![allow(clippy::print_stdout)]

use paywire_bench::BenchConfig;
use paywire_chaos::NODE_ENV;
use paywire_chaos::procs::Launcher;

const NAME: &str = "quick_bench_runs_every_part_and_reports_sane_figures";

fn main() -> anyhow::Result<()> {
    if let Ok(service) = std::env::var(NODE_ENV) {
        return node(&service);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return Ok(());
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if args.iter().any(|a| a == "--ignored")
        || (!filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())))
    {
        println!("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out");
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let config = BenchConfig::quick(Launcher::SelfExec(exe), paywire_testkit::repo_root());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(paywire_bench::run(config))?;
    println!("{}", report.table());
    check(&report)?;
    println!("test {NAME} ... ok");
    Ok(())
}

fn positive(what: &str, v: f64) -> anyhow::Result<()> {
    anyhow::ensure!(v.is_finite() && v > 0.0, "{what} is {v}");
    Ok(())
}

fn check(r: &paywire_bench::Report) -> anyhow::Result<()> {
    positive("RSA signatures/s", r.baselines.rsa_signatures_per_sec)?;
    positive(
        "PostgreSQL transactions/s",
        r.baselines.pg_transactions_per_sec,
    )?;
    positive("broker confirms/s", r.baselines.broker_confirms_per_sec)?;
    positive("relay msgs/s", r.components.relay_msgs_per_sec)?;
    positive("consumer applies/s", r.components.consumer_applies_per_sec)?;
    positive("relay ratio", r.components.relay_ratio)?;
    positive("consumer ratio", r.components.consumer_ratio)?;
    anyhow::ensure!(r.levels.len() == 2, "levels: {:?}", r.levels.len());
    anyhow::ensure!(r.overload.overload && r.overload.concurrency == 4 * r.saturation_concurrency);
    for l in r.all_levels() {
        anyhow::ensure!(
            l.failed == 0,
            "failures at {} students: {:?}",
            l.concurrency,
            l.failures
        );
        anyhow::ensure!(
            l.purchases > 0,
            "nothing bought at {} students",
            l.concurrency
        );
        positive("purchases/s", l.purchases_per_sec)?;
        for stage in paywire_bench::report::STAGES {
            let p = l
                .stages
                .get(*stage)
                .ok_or_else(|| anyhow::anyhow!("stage {stage} missing at {}", l.concurrency))?;
            anyhow::ensure!(
                p.n == l.purchases,
                "{stage}: {} samples of {}",
                p.n,
                l.purchases
            );
            anyhow::ensure!(p.p50 <= p.p95 && p.p95 <= p.p99, "{stage}: {p:?}");
        }
        for who in [
            "order",
            "payment-gateway",
            "learning-center",
            "channel-sandbox",
            "postgresql",
        ] {
            let ms = l.cpu_ms_per_purchase.get(who).copied().unwrap_or(0.0);
            positive(&format!("CPU of {who} at {}", l.concurrency), ms)?;
        }
    }
    for who in [
        "order",
        "payment-gateway",
        "learning-center",
        "channel-sandbox",
    ] {
        positive(
            &format!("peak RSS of {who}"),
            *r.peak_rss_mb.get(who).unwrap_or(&0.0),
        )?;
    }
    positive("saturation purchases/s", r.saturation_purchases_per_sec)?;
    positive("saturation RSA ratio", r.saturation_rsa_ratio)?;
    anyhow::ensure!(r.targets.len() == 6);
    let table = r.table();
    anyhow::ensure!(table.contains("4× sat.") && table.contains("Targets of issue 12"));
    let svg = r.svg();
    anyhow::ensure!(
        svg.starts_with("<svg") && svg.contains("<polyline") && svg.trim_end().ends_with("</svg>")
    );
    let json: serde_json::Value = serde_json::to_value(r)?;
    anyhow::ensure!(json["levels"][0]["stages"]["wallet pay → enrolled"]["p99"].is_number());
    Ok(())
}

/// Becomes one service, exactly as its binary's `main` does.
#[tokio::main]
async fn node(service: &str) -> anyhow::Result<()> {
    use paywire_platform::app::main;
    match service {
        "channel-sandbox" => main::<channel_sandbox::Settings>().await,
        "learning-center" => main::<learning_center::Settings>().await,
        "order" => main::<order::Settings>().await,
        "payment-gateway" => main::<payment_gateway::Settings>().await,
        other => anyhow::bail!("unknown service {other}"),
    }
}
