//! The reduced chaos run of the test suite: N = 20 purchases, two instances per service as
//! separate processes, one SIGKILL per service, one broker-side drop of every connection
//! of the run's vhost (a full broker restart would break the tests running in parallel;
//! `cargo xtask chaos` does that), one restart of the run's own PostgreSQL server,
//! callbacks dropped, delayed and duplicated.
//!
//! The services run as processes of this very executable (`PAYWIRE_CHAOS_NODE=<service>`),
//! so `cargo test` needs no nested `cargo build`. Hence `harness = false`.

#![allow(clippy::print_stdout)]

use paywire_chaos::procs::Launcher;
use paywire_chaos::{ChaosConfig, NODE_ENV};

fn main() -> anyhow::Result<()> {
    if let Ok(service) = std::env::var(NODE_ENV) {
        return node(&service);
    }
    const NAME: &str = "reduced_chaos_run_keeps_every_payment";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return Ok(());
    }
    if !selected(NAME, &args) {
        println!("test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out");
        return Ok(());
    }

    let exe = std::env::current_exe()?;
    let root = paywire_testkit::repo_root();
    let seed = std::env::var("PAYWIRE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_201);
    let config = ChaosConfig::reduced(20, seed, Launcher::SelfExec(exe), root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let summary = rt.block_on(paywire_chaos::run(config))?;
    println!("{summary}");
    for e in &summary.flow_errors {
        println!("flow: {e}");
    }
    anyhow::ensure!(
        summary.violations.is_empty(),
        "{} invariant violation(s), see above",
        summary.violations.len()
    );
    anyhow::ensure!(summary.tally.lost == 0 && summary.tally.duplicated == 0);
    anyhow::ensure!(
        summary.injected.kills.len() >= 3
            && summary.injected.broker >= 1
            && !summary.injected.pg_restarts.is_empty(),
        "fewer faults than planned: {:?}",
        summary.injected
    );
    anyhow::ensure!(summary.tally.paid > 0, "nobody managed to pay");
    anyhow::ensure!(summary.tally.closed > 0, "no never-paid order was closed");
    println!("test {NAME} ... ok");
    Ok(())
}

/// Whether libtest-style arguments (filters, `--skip`, `--exact`, `--ignored`) select
/// the one test of this executable.
fn selected(name: &str, args: &[String]) -> bool {
    const WITH_VALUE: &[&str] = &[
        "--test-threads",
        "--skip",
        "--format",
        "--color",
        "--logfile",
        "--shuffle-seed",
        "-Z",
    ];
    let exact = args.iter().any(|a| a == "--exact");
    let matches = |f: &str| if exact { name == f } else { name.contains(f) };
    let mut filters = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--ignored" {
            return false;
        }
        if a == "--skip" {
            if it.next().is_some_and(|f| matches(f)) {
                return false;
            }
        } else if WITH_VALUE.contains(&a.as_str()) {
            it.next();
        } else if !a.starts_with('-') {
            filters.push(a.as_str());
        }
    }
    filters.is_empty() || filters.iter().any(|f| matches(f))
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
