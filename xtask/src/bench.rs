//! `cargo xtask bench [--quick] [--json]`: builds the services and the load generator in
//! release (what is measured is what would be deployed), then runs `paywire-bench` (see
//! `testing/bench`), which starts its own platform on free ports with its own databases
//! and vhost. The report goes to stdout and to `target/bench/bench.{json,md,svg}`.

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::layout;

/// The release binaries' directory (respecting `CARGO_TARGET_DIR`).
fn release_dir() -> std::path::PathBuf {
    layout::binary("order")
        .parent()
        .and_then(std::path::Path::parent)
        .map(|t| t.join("release"))
        .unwrap_or_else(|| layout::repo_root().join("target/release"))
}

pub async fn run(quick: bool, json: bool) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--release", "-p", "paywire-bench"])
        .current_dir(layout::repo_root());
    for s in layout::SERVICES.iter().filter(|s| s.name != "cashier") {
        build.args(["-p", s.name]);
    }
    eprintln!("==> building the services and the load generator (release)");
    let status = build.status().await.context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    let dir = release_dir();
    let out = release_dir().parent().map_or_else(
        || layout::repo_root().join("target/bench"),
        |t| t.join("bench"),
    );
    let mut bench = Command::new(dir.join("paywire-bench"));
    bench
        .arg("--services")
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .current_dir(layout::repo_root());
    if quick {
        bench.arg("--quick");
    }
    if json {
        bench.arg("--json");
    }
    let status = bench.status().await.context("running paywire-bench")?;
    if !status.success() {
        bail!("the bench failed ({status})");
    }
    Ok(())
}
