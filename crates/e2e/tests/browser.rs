//! The cashier as a person uses it: headless Chromium (Debian's `/usr/bin/chromium`,
//! driven by `playwright-core` from `crates/e2e/browser`) against the whole platform in
//! this process, with the web front in front of it. Screenshots of every step land in
//! `target/browser-artifacts/<scenario>/<step>.png`.
//!
//! Needs Node ≥ 18 with npm (`npm ci` runs here when `node_modules` is missing) and
//! Chromium: `apt-get install -y chromium`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use anyhow::{Context, ensure};
use paywire_e2e::{Options, Platform};

const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");
const CHROMIUM: &str = "/usr/bin/chromium";

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("browser-artifacts")
}

fn require_chromium(path: &Path) -> anyhow::Result<()> {
    ensure!(
        path.is_file(),
        "{} is missing: the browser tests drive headless Chromium; install Debian's \
         chromium: apt-get install -y chromium",
        path.display()
    );
    Ok(())
}

fn require_node() -> anyhow::Result<()> {
    for tool in ["node", "npm"] {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ensure!(
            found,
            "the browser tests need `{tool}` (Node.js ≥ 18 with npm) on PATH"
        );
    }
    Ok(())
}

/// Installs the pinned `playwright-core` once per test process (no browser download:
/// it drives the system Chromium).
fn ensure_playwright() -> anyhow::Result<()> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    require_node()?;
    if Path::new(BROWSER_DIR)
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return Ok(());
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(BROWSER_DIR)
        .output()
        .context("running npm ci")?;
    ensure!(
        out.status.success(),
        "npm ci in {BROWSER_DIR} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Runs the named scenarios of `cashier.test.js` against `platform` and its web front.
async fn run_scenarios(
    platform: &Platform,
    web: &str,
    scenarios: &[&str],
    extra: &[&str],
) -> anyhow::Result<()> {
    require_chromium(Path::new(CHROMIUM))?;
    ensure_playwright()?;
    let wallet = format!("{}/sandbox/wallet", platform.sandbox_url);
    let artifacts = artifacts();
    let only = scenarios.join(",");
    let out = tokio::process::Command::new("node")
        .arg("cashier.test.js")
        .args(["--web", web, "--wallet", &wallet, "--chromium", CHROMIUM])
        .arg("--artifacts")
        .arg(&artifacts)
        .args(["--only", &only])
        .args(extra)
        .current_dir(BROWSER_DIR)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running node")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    ensure!(
        out.status.success(),
        "browser scenarios {only} failed ({}); screenshots in {}",
        out.status,
        artifacts.display()
    );
    // Each scenario ran (node:test prints one "ok" line per passed test).
    let passed = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("ok "))
        .count();
    ensure!(
        passed == scenarios.len(),
        "expected {} passing scenarios, saw {passed}",
        scenarios.len()
    );
    for scenario in scenarios {
        ensure!(
            artifacts.join(scenario).read_dir()?.next().is_some(),
            "no screenshots for {scenario}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_student_enrols_free_and_buys_with_wechat_pay_by_clicking() -> anyhow::Result<()> {
    let mut platform = Platform::start().await?;
    let web = platform.start_web().await?;
    run_scenarios(&platform, &web, &["free", "wechat"], &[]).await?;
    for step in [
        "02-checkout",
        "05-wallet-paid",
        "06-success",
        "07-my-courses",
    ] {
        let shot = artifacts().join("wechat").join(format!("{step}.png"));
        ensure!(shot.is_file(), "{} missing", shot.display());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_left_unpaid_shows_as_closed() -> anyhow::Result<()> {
    // The attempt expires at the channel before the order times out (seed 000).
    let mut platform = Platform::start_with(Options {
        order_ttl_secs: Some(12),
        attempt_ttl_secs: Some(6),
    })
    .await?;
    let web = platform.start_web().await?;
    run_scenarios(&platform, &web, &["expired"], &["--close-ms", "120000"]).await?;
    ensure!(artifacts().join("expired/05-closed.png").is_file());
    Ok(())
}

#[test]
fn a_missing_chromium_is_reported_with_the_install_command() {
    let err = require_chromium(Path::new("/nonexistent/chromium")).unwrap_err();
    assert!(
        err.to_string().contains("apt-get install -y chromium"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_student_buys_with_alipay_by_clicking() -> anyhow::Result<()> {
    let mut platform = Platform::start().await?;
    let web = platform.start_web().await?;
    run_scenarios(&platform, &web, &["alipay"], &[]).await?;
    ensure!(artifacts().join("alipay").read_dir()?.count() >= 3);
    Ok(())
}
