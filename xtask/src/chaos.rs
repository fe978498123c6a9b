//! `cargo xtask chaos [--n 500] [--seed s] [--pg-restarts 2]`: the full chaos run with the
//! real service binaries, real RabbitMQ restarts and restarts of the run's own PostgreSQL
//! server (see `paywire_chaos`). It restarts the shared broker, so never run it while a
//! test suite uses the same RabbitMQ; the machine's PostgreSQL is never touched.

use anyhow::{Context, bail};
use paywire_chaos::ChaosConfig;
use paywire_chaos::outage::OutageConfig;
use paywire_chaos::procs::Launcher;
use paywire_testkit::postgres::Shutdown;

use crate::{layout, procs};

/// `amqp://user:pass@host:port` without the vhost path.
pub fn amqp_server(amqp_url: &str) -> String {
    match amqp_url.split_once("://") {
        Some((scheme, rest)) => {
            format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
        }
        None => amqp_url.to_owned(),
    }
}

fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
}

pub async fn run(n: usize, seed: Option<u64>, pg_restarts: Option<usize>) -> anyhow::Result<()> {
    procs::build_services().await?;
    let seed = seed.unwrap_or_else(default_seed);
    let bin_dir = layout::binary("order")
        .parent()
        .context("target directory")?
        .to_path_buf();
    let mut config = ChaosConfig::full(n, seed, Launcher::Binaries(bin_dir), layout::repo_root());
    config.amqp_server = amqp_server(&layout::amqp_url());
    if let Some(r) = pg_restarts {
        config.pg_restarts = r;
    }
    println!(
        "==> chaos: {n} purchases, seed {seed}, {} kills, {} RabbitMQ restarts, {} PostgreSQL \
         restarts of a private server (replay with --seed {seed})",
        config.kills, config.broker_faults, config.pg_restarts
    );
    // Ctrl-C drops the run: children are killed on drop and the broker guard starts
    // RabbitMQ again if it was stopped.
    let summary = tokio::select! {
        s = paywire_chaos::run(config) => s?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    println!("{summary}");
    if !summary.violations.is_empty() {
        bail!("{} invariant violation(s)", summary.violations.len());
    }
    Ok(())
}

/// `cargo xtask pg-outage`: the hand experiment of issue 17, repeatable (see
/// `paywire_chaos::outage`). Touches only its own private PostgreSQL and vhost.
pub async fn pg_outage(
    purchases: usize,
    students: usize,
    down_secs: u64,
    immediate: bool,
) -> anyhow::Result<()> {
    procs::build_services().await?;
    let bin_dir = layout::binary("order")
        .parent()
        .context("target directory")?
        .to_path_buf();
    let mut config = OutageConfig::standard(
        Launcher::Binaries(bin_dir),
        layout::repo_root(),
        amqp_server(&layout::amqp_url()),
    );
    config.purchases = purchases;
    config.students = students;
    config.restart_after = (purchases / 4).min(purchases - 1);
    config.down = std::time::Duration::from_secs(down_secs);
    if immediate {
        config.mode = Shutdown::Immediate;
    }
    println!(
        "==> pg-outage: {purchases} purchases by {students} students at once, PostgreSQL \
         restarted ({}, {down_secs} s down) when purchase {} starts",
        config.mode, config.restart_after
    );
    let report = tokio::select! {
        r = paywire_chaos::outage::run(config) => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    println!("{report}");
    if !report.violations.is_empty() {
        bail!("{} invariant violation(s)", report.violations.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_part_of_the_broker_url_is_kept() {
        assert_eq!(
            amqp_server("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:guest@127.0.0.1:5672"
        );
        assert_eq!(amqp_server("amqp://h:5672"), "amqp://h:5672");
    }
}
