//! The PostgreSQL outage experiment (`cargo xtask pg-outage`): students buy courses back
//! to back, like impatient clients that never retry, while the platform's PostgreSQL is
//! restarted once; then how many purchases failed and what the clients were answered.
//! The platform is the chaos run's (private PostgreSQL, two instances per service) with
//! no other fault, and the money invariants are checked afterwards as in the chaos run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use paywire_testkit::postgres::Shutdown;

use crate::check::{self, Tally};
use crate::load::{Driver, Intent, Outcome, Urls};
use crate::procs::Launcher;
use crate::stack::Stack;

#[derive(Debug, Clone)]
pub struct OutageConfig {
    pub launcher: Launcher,
    pub repo_root: PathBuf,
    pub amqp_server: String,
    /// Purchases in all.
    pub purchases: usize,
    /// Students buying at the same moment, each one purchase after the other.
    pub students: usize,
    /// The restart begins when this many purchases have started.
    pub restart_after: usize,
    pub mode: Shutdown,
    /// How long PostgreSQL stays down.
    pub down: Duration,
    pub quiescence_timeout: Duration,
}

impl OutageConfig {
    /// The hand experiment of issue 17: 600 purchases by 8 students, a fast restart with
    /// 3 s down a quarter of the way in.
    pub fn standard(launcher: Launcher, repo_root: PathBuf, amqp_server: String) -> Self {
        Self {
            launcher,
            repo_root,
            amqp_server,
            purchases: 600,
            students: 8,
            restart_after: 150,
            mode: Shutdown::Fast,
            down: Duration::from_secs(3),
            quiescence_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutageReport {
    pub purchases: usize,
    pub students: usize,
    pub mode: Shutdown,
    pub down: Duration,
    /// When the restart began and when PostgreSQL accepted connections again, from the
    /// start of the load.
    pub restart_window: (Duration, Duration),
    /// Purchases that failed, by the first answer that failed them.
    pub failures: BTreeMap<String, usize>,
    pub load_time: Duration,
    /// Median and slowest purchase.
    pub median: Duration,
    pub slowest: Duration,
    pub tally: Tally,
    pub violations: Vec<String>,
    pub run_dir: PathBuf,
}

impl OutageReport {
    pub fn failed(&self) -> usize {
        self.failures.values().sum()
    }
}

impl std::fmt::Display for OutageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let row = |f: &mut std::fmt::Formatter<'_>, k: &str, v: String| {
            writeln!(f, "| {k:<44} | {v:>26} |")
        };
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        writeln!(f, "+{:-<46}+{:-<28}+", "", "")?;
        row(f, "purchases", self.purchases.to_string())?;
        row(f, "students buying at once", self.students.to_string())?;
        row(
            f,
            "PostgreSQL restart",
            format!("{}, {} s down", self.mode, self.down.as_secs()),
        )?;
        row(
            f,
            "  restart window (from load start)",
            format!(
                "{:.1} s .. {:.1} s",
                self.restart_window.0.as_secs_f64(),
                self.restart_window.1.as_secs_f64()
            ),
        )?;
        row(f, "failed purchases", self.failed().to_string())?;
        for (answer, n) in &self.failures {
            row(f, &format!("  {}", truncate(answer, 42)), n.to_string())?;
        }
        row(f, "load phase", secs(self.load_time))?;
        row(f, "median purchase", secs(self.median))?;
        row(f, "slowest purchase", secs(self.slowest))?;
        for (k, v) in self.tally.rows() {
            row(f, k, v.to_string())?;
        }
        row(f, "invariant violations", self.violations.len().to_string())?;
        writeln!(f, "+{:-<46}+{:-<28}+", "", "")?;
        for v in self.violations.iter().take(30) {
            writeln!(f, "VIOLATION: {v}")?;
        }
        writeln!(f, "logs and configs: {}", self.run_dir.display())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

/// The first failed answer of a purchase, without the per-request details (bodies, ids).
fn failure_kind(error: &str) -> String {
    error.split(" {").next().unwrap_or(error).trim().to_owned()
}

/// Runs the experiment; `Err` only when it could not be carried out.
pub async fn run(config: OutageConfig) -> anyhow::Result<OutageReport> {
    anyhow::ensure!(
        config.restart_after < config.purchases,
        "the restart must begin before the last purchase ({} of {})",
        config.restart_after,
        config.purchases
    );
    let mut stack =
        Stack::start(&config.launcher, &config.repo_root, &config.amqp_server, 1).await?;
    let outcome = drive(&config, &stack).await;
    stack.kill_all().await;
    let report = outcome?;
    if !report.violations.is_empty() {
        stack.keep();
    }
    Ok(report)
}

async fn drive(config: &OutageConfig, stack: &Stack) -> anyhow::Result<OutageReport> {
    let mut driver = Driver::new(stack.http.clone(), Urls::of(&stack.topology));
    driver.course_id = driver.paid_course().await?;
    driver.retry_server_errors = false;

    let started_count = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let restart = {
        let pg = stack.pg.clone();
        let started_count = started_count.clone();
        let (after, mode, down) = (config.restart_after, config.mode, config.down);
        tokio::spawn(async move {
            while started_count.load(Ordering::SeqCst) < after {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let from = started.elapsed();
            pg.restart(mode, down)
                .await
                .with_context(|| format!("restarting {}", pg.describe()))?;
            anyhow::Ok((from, started.elapsed()))
        })
    };
    let run = stack.run_id.trim_start_matches("chaos_").to_owned();
    let outcomes: Vec<Outcome> = futures::stream::iter(0..config.purchases)
        .map(|i| {
            let (driver, run, started_count) = (&driver, &run, &started_count);
            async move {
                started_count.fetch_add(1, Ordering::SeqCst);
                let channel = if i % 4 == 3 { "alipay" } else { "wechat" };
                driver.student(i, run, Intent::Pay(channel)).await
            }
        })
        .buffer_unordered(config.students)
        .collect()
        .await;
    let load_time = started.elapsed();
    let restart_window = restart.await.context("restart task")??;

    let mut failures = BTreeMap::new();
    for o in &outcomes {
        if let Some(e) = &o.error {
            *failures.entry(failure_kind(e)).or_insert(0) += 1;
        }
    }
    let mut took: Vec<Duration> = outcomes.iter().map(|o| o.took).collect();
    took.sort();

    let deadline = Instant::now() + config.quiescence_timeout;
    let mut violations = Vec::new();
    loop {
        match stack.quiescent().await {
            Ok(None) => break,
            Ok(Some(state)) if Instant::now() >= deadline => {
                violations.push(format!(
                    "no quiescence within {:?}: {state}",
                    config.quiescence_timeout
                ));
                break;
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    let verdict = check::verify(&stack.snapshot().await?);
    violations.extend(verdict.violations);
    Ok(OutageReport {
        purchases: config.purchases,
        students: config.students,
        mode: config.mode,
        down: config.down,
        restart_window,
        failures,
        load_time,
        median: took.get(took.len() / 2).copied().unwrap_or_default(),
        slowest: took.last().copied().unwrap_or_default(),
        tally: verdict.tally,
        violations,
        run_dir: stack.run_dir.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_grouped_without_bodies() {
        assert_eq!(
            failure_kind("create order: 500 internal_error"),
            "create order: 500 internal_error"
        );
        assert_eq!(
            failure_kind(r#"choose-course 404: {"error":"course_not_found"}"#),
            "choose-course 404:"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
