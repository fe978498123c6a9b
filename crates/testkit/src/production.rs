//! Black-box checks of production mode: run a service binary with
//! `PAYWIRE__ENVIRONMENT=production` and read what it says.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a run ended.
#[derive(Debug)]
pub struct Run {
    /// `None`: still running at the deadline (then killed).
    pub exit: Option<std::process::ExitStatus>,
    pub output: String,
}

/// Runs `binary` in production mode from the repository root (where the default key paths
/// resolve) with `envs` on top, and waits up to `wait` for it to exit.
pub fn run_in_production(binary: &str, envs: &[(&str, &str)], wait: Duration) -> Run {
    let root = crate::repo_root();
    // An empty config file: no config/<service>.toml of a developer's changes the outcome.
    let empty_config =
        std::env::temp_dir().join(format!("paywire-empty-{}.toml", std::process::id()));
    std::fs::write(&empty_config, "").expect("writing an empty config file");
    let mut child = Command::new(binary)
        .current_dir(root)
        .env("PAYWIRE__ENVIRONMENT", "production")
        .env("PAYWIRE_CONFIG", &empty_config)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    let deadline = Instant::now() + wait;
    let exit = loop {
        if let Some(status) = child.try_wait().expect("waiting for the service") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut output);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut output);
    }
    Run { exit, output }
}

/// Runs `binary` in production mode and asserts it refuses to start, naming each of
/// `settings` and showing none of `hidden`. Returns what it printed.
pub fn assert_refused(
    binary: &str,
    envs: &[(&str, &str)],
    settings: &[&str],
    hidden: &[&str],
) -> String {
    let run = run_in_production(binary, envs, Duration::from_secs(30));
    let status = run
        .exit
        .unwrap_or_else(|| panic!("{binary} kept running:\n{}", run.output));
    assert!(!status.success(), "{binary} started:\n{}", run.output);
    assert!(
        run.output
            .contains("refuses to start with PAYWIRE__ENVIRONMENT=production"),
        "{}",
        run.output
    );
    for setting in settings {
        assert!(
            run.output.contains(setting),
            "{setting} not named:\n{}",
            run.output
        );
    }
    for secret in hidden {
        assert!(
            !run.output.contains(secret),
            "a secret leaked:\n{}",
            run.output
        );
    }
    run.output
}
