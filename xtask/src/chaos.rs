//! `cargo xtask chaos [--n 500] [--seed s]`: the full chaos run with the real service
//! binaries and real RabbitMQ restarts (see `paywire_chaos`). It restarts the shared
//! broker, so never run it while a test suite uses the same RabbitMQ.

use anyhow::{Context, bail};
use paywire_chaos::ChaosConfig;
use paywire_chaos::procs::Launcher;

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

pub async fn run(n: usize, seed: Option<u64>) -> anyhow::Result<()> {
    procs::build_services().await?;
    let seed = seed.unwrap_or_else(default_seed);
    let bin_dir = layout::binary("order")
        .parent()
        .context("target directory")?
        .to_path_buf();
    let mut config = ChaosConfig::full(n, seed, Launcher::Binaries(bin_dir), layout::repo_root());
    config.pg_server = layout::pg_server();
    config.amqp_server = amqp_server(&layout::amqp_url());
    println!(
        "==> chaos: {n} purchases, seed {seed}, {} kills, {} RabbitMQ restarts (replay with --seed {seed})",
        config.kills, config.broker_faults
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
