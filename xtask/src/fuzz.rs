//! `cargo xtask fuzz [--minutes N] [--cases C]`: fuzzing on stable Rust (issue 9). The
//! property tests of the parsers that read untrusted bytes — every test named `fuzz_…` in
//! [`PACKAGES`]: WeChat Pay callbacks, Alipay forms, yuan amounts, ids, the cashier's path
//! normaliser — run round after round with `PROPTEST_CASES=C` (the suite runs proptest's
//! default) and fresh random seeds until N minutes have passed. A finding stops the run:
//! proptest prints the smallest failing input and saves it under `proptest-regressions/`,
//! where the suite replays it from then on.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::ensure;

use crate::layout;

/// The crates whose `fuzz_…` tests are run.
pub const PACKAGES: &[&str] = &["paywire-channels", "cashier"];

fn cargo_test(cases: u32) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(layout::repo_root()).args(["test", "--lib"]);
    for package in PACKAGES {
        cmd.args(["--package", package]);
    }
    cmd.env("PROPTEST_CASES", cases.to_string());
    cmd
}

pub fn run(minutes: u64, cases: u32) -> anyhow::Result<()> {
    // Built before the clock starts: the minutes are spent fuzzing.
    let built = cargo_test(cases).arg("--no-run").status()?;
    ensure!(built.success(), "building the fuzz tests failed");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(minutes * 60);
    let mut rounds = 0u64;
    loop {
        let status = cargo_test(cases).args(["--", "fuzz_"]).status()?;
        rounds += 1;
        ensure!(
            status.success(),
            "round {rounds} found a failing case (above; saved under proptest-regressions/)"
        );
        if Instant::now() >= deadline {
            break;
        }
    }
    println!(
        "fuzz: {rounds} rounds of {cases} cases per property in {:.1} minutes, no finding",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}
