//! The bench's figures: per-level statistics, ratios against the baselines, the issue's
//! targets, and their renderings (text table, JSON, SVG latency-against-throughput chart).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::load::LevelRun;
use crate::stack::Sizing;
use crate::{SIGNATURES_PER_PURCHASE, ServerTimes};

/// Milliseconds at three percentiles.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

pub fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Percentiles {
        n: v.len(),
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    })
}

/// The stages, in the order of a purchase.
pub const STAGES: &[&str] = &[
    "choose course",
    "order create",
    "pay (prepay round trip)",
    "wallet pay",
    "wallet pay → paid recorded",
    "paid recorded → order paid",
    "paid recorded → enrolled",
    "wallet pay → enrolled",
    "whole purchase (client)",
];

#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub concurrency: usize,
    /// Run at 4 × the saturating concurrency.
    pub overload: bool,
    pub purchases: usize,
    pub failed: usize,
    pub failures: BTreeMap<String, usize>,
    pub elapsed_s: f64,
    pub purchases_per_sec: f64,
    /// Stage → latency percentiles (ms).
    pub stages: BTreeMap<String, Percentiles>,
    /// Process → CPU milliseconds per completed purchase.
    pub cpu_ms_per_purchase: BTreeMap<String, f64>,
}

impl Level {
    pub fn enrolled(&self) -> Option<Percentiles> {
        self.stages.get("wallet pay → enrolled").copied()
    }

    pub fn summary(&self) -> String {
        let e = self.enrolled();
        format!(
            "{:.1} purchases/s, {} done, {} failed, wallet pay → enrolled p50 {} / p99 {} ms, CPU {:.1} ms/purchase",
            self.purchases_per_sec,
            self.purchases,
            self.failed,
            e.map_or("-".into(), |p| format!("{:.0}", p.p50)),
            e.map_or("-".into(), |p| format!("{:.0}", p.p99)),
            self.cpu_ms_per_purchase.values().sum::<f64>(),
        )
    }
}

pub(crate) fn level(
    concurrency: usize,
    overload: bool,
    run: &LevelRun,
    times: &ServerTimes,
    cpu: &BTreeMap<String, f64>,
) -> Level {
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for p in &run.purchases {
        let mut add = |stage: &'static str, v: f64| samples.entry(stage).or_default().push(v);
        add("choose course", p.choose_ms);
        add("order create", p.order_ms);
        add("pay (prepay round trip)", p.pay_ms);
        add("wallet pay", p.wallet_ms);
        add("whole purchase (client)", p.total_ms);
        let paid = times.paid_recorded.get(&p.pay_no).copied();
        let order = times.order_paid.get(&p.order_id).copied();
        let enrolled = times.enrolled.get(&p.choose_course_id).copied();
        if let Some(t) = paid {
            add("wallet pay → paid recorded", (t - p.wallet_at) * 1e3);
        }
        if let (Some(a), Some(b)) = (paid, order) {
            add("paid recorded → order paid", (b - a) * 1e3);
        }
        if let (Some(a), Some(b)) = (paid, enrolled) {
            add("paid recorded → enrolled", (b - a) * 1e3);
        }
        if let Some(b) = enrolled {
            add("wallet pay → enrolled", (b - p.wallet_at) * 1e3);
        }
    }
    let mut failures = BTreeMap::new();
    for f in &run.failures {
        *failures.entry(f.0.clone()).or_insert(0) += 1;
    }
    let done = run.purchases.len();
    let secs = run.elapsed.as_secs_f64().max(1e-9);
    Level {
        concurrency,
        overload,
        purchases: done,
        failed: run.failures.len(),
        failures,
        elapsed_s: secs,
        purchases_per_sec: done as f64 / secs,
        stages: samples
            .into_iter()
            .filter_map(|(k, v)| percentiles(v).map(|p| (k.to_owned(), p)))
            .collect(),
        cpu_ms_per_purchase: cpu
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    if done == 0 {
                        0.0
                    } else {
                        s * 1e3 / done as f64
                    },
                )
            })
            .collect(),
    }
}

/// The level with the highest throughput.
pub fn saturation(levels: &[Level]) -> Option<&Level> {
    levels
        .iter()
        .filter(|l| !l.overload)
        .max_by(|a, b| a.purchases_per_sec.total_cmp(&b.purchases_per_sec))
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    pub rsa_signatures_per_sec: f64,
    pub pg_transactions_per_sec: f64,
    pub broker_confirms_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Components {
    pub relay_msgs_per_sec: f64,
    /// Relay ÷ raw confirmed publishes.
    pub relay_ratio: f64,
    pub consumer_applies_per_sec: f64,
    /// Consumer ÷ raw single-row transactions.
    pub consumer_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub cpus: usize,
    pub load_average_before: String,
    pub load_average_after: String,
    pub quick: bool,
    pub sizing: Sizing,
    pub baselines: Baselines,
    /// Purchases/s the RSA signing alone would allow (signature rate ÷ signatures per
    /// purchase).
    pub rsa_bound_purchases_per_sec: f64,
    pub levels: Vec<Level>,
    pub saturation_concurrency: usize,
    pub saturation_purchases_per_sec: f64,
    /// Saturation purchases/s × signatures per purchase ÷ signature rate.
    pub saturation_rsa_ratio: f64,
    pub overload: Level,
    pub components: Components,
    pub peak_rss_mb: BTreeMap<String, f64>,
    pub targets: Vec<Target>,
}

pub(crate) struct Parts {
    pub quick: bool,
    pub sizing: Sizing,
    pub load_before: String,
    pub rsa: f64,
    pub pg: f64,
    pub broker: f64,
    pub relay: f64,
    pub consumer: f64,
    pub levels: Vec<Level>,
    pub overload: Level,
    pub peak_rss_mb: BTreeMap<String, f64>,
}

impl Report {
    pub(crate) fn assemble(p: Parts) -> Self {
        let sat = saturation(&p.levels).cloned();
        let sat_rate = sat.as_ref().map_or(0.0, |l| l.purchases_per_sec);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let rsa_ratio = ratio(sat_rate * SIGNATURES_PER_PURCHASE, p.rsa);
        let components = Components {
            relay_msgs_per_sec: p.relay,
            relay_ratio: ratio(p.relay, p.broker),
            consumer_applies_per_sec: p.consumer,
            consumer_ratio: ratio(p.consumer, p.pg),
        };
        // "At 50 purchases/s": the first level that reached it (closed loop, so the rate
        // is where the load put it).
        let at_50 = p.levels.iter().find(|l| l.purchases_per_sec >= 50.0);
        let max_rss = p.peak_rss_mb.values().copied().fold(0.0, f64::max);
        let targets = vec![
            Target {
                name: "≥ 180 purchases/s at saturation, ≥ 0.5 of the RSA bound".into(),
                measured: format!("{sat_rate:.0}/s, {rsa_ratio:.2} of the RSA bound"),
                met: sat_rate >= 180.0 && rsa_ratio >= 0.5,
            },
            Target {
                name: "wallet pay → enrolled p99 ≤ 30 ms at 50 purchases/s".into(),
                measured: at_50.and_then(Level::enrolled).map_or_else(
                    || "no level reached 50/s".into(),
                    |e| {
                        format!(
                            "{:.0} ms at {} students",
                            e.p99,
                            at_50.map_or(0, |l| l.concurrency)
                        )
                    },
                ),
                met: at_50
                    .and_then(Level::enrolled)
                    .is_some_and(|e| e.p99 <= 30.0),
            },
            Target {
                name: "relay ≥ 0.8 × raw broker confirm rate".into(),
                measured: format!("{:.2}", components.relay_ratio),
                met: components.relay_ratio >= 0.8,
            },
            Target {
                name: "consumer ≥ 0.5 × raw single-row transaction rate".into(),
                measured: format!("{:.2}", components.consumer_ratio),
                met: components.consumer_ratio >= 0.5,
            },
            Target {
                name: "0 failures at 4 × saturating concurrency".into(),
                measured: format!(
                    "{} of {} failed at {} students",
                    p.overload.failed,
                    p.overload.failed + p.overload.purchases,
                    p.overload.concurrency
                ),
                met: p.overload.failed == 0 && p.overload.purchases > 0,
            },
            Target {
                name: "every service < 64 MB RSS under load".into(),
                measured: format!("max {max_rss:.0} MB"),
                met: max_rss > 0.0 && max_rss < 64.0,
            },
        ];
        Self {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            machine: cpu_model(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_average_before: p.load_before,
            load_average_after: load_average(),
            quick: p.quick,
            sizing: p.sizing,
            baselines: Baselines {
                rsa_signatures_per_sec: p.rsa,
                pg_transactions_per_sec: p.pg,
                broker_confirms_per_sec: p.broker,
            },
            rsa_bound_purchases_per_sec: p.rsa / SIGNATURES_PER_PURCHASE,
            saturation_concurrency: sat.as_ref().map_or(0, |l| l.concurrency),
            saturation_purchases_per_sec: sat_rate,
            saturation_rsa_ratio: rsa_ratio,
            levels: p.levels,
            overload: p.overload,
            components,
            peak_rss_mb: p.peak_rss_mb,
            targets,
        }
    }

    /// Every level, the overload level last.
    pub fn all_levels(&self) -> impl Iterator<Item = &Level> {
        self.levels.iter().chain(std::iter::once(&self.overload))
    }

    /// The human-readable table (Markdown, so the README can quote it as is).
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "Paywire bench{} — {} — {} ({} CPUs), load average {} before, {} after",
            if self.quick { " (--quick)" } else { "" },
            self.date,
            self.machine,
            self.cpus,
            self.load_average_before,
            self.load_average_after
        );
        let b = &self.baselines;
        let _ = writeln!(t, "\nBaselines (same run):\n");
        let _ = writeln!(t, "| baseline | rate |\n|---|---|");
        let _ = writeln!(
            t,
            "| RSA-2048 signatures/s (`rsa` crate, all cores) | {:.0} (bound: {:.0} purchases/s at {} signatures each) |",
            b.rsa_signatures_per_sec, self.rsa_bound_purchases_per_sec, SIGNATURES_PER_PURCHASE
        );
        let _ = writeln!(
            t,
            "| PostgreSQL single-row transactions/s (8 connections) | {:.0} |",
            b.pg_transactions_per_sec
        );
        let _ = writeln!(
            t,
            "| RabbitMQ persistent publishes/s, confirms per batch of 100, fanout | {:.0} |",
            b.broker_confirms_per_sec
        );
        let _ = writeln!(
            t,
            "\nPurchases (closed loop, one fresh student per purchase; latencies in ms p50 / p99):\n"
        );
        let _ = writeln!(
            t,
            "| students | purchases/s | × RSA bound | order create | pay | wallet pay → paid recorded | paid → order paid | paid → enrolled | wallet pay → enrolled | CPU ms/purchase | failed |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let pp = |l: &Level, s: &str| {
            l.stages
                .get(s)
                .map_or("-".into(), |p| format!("{:.0} / {:.0}", p.p50, p.p99))
        };
        for l in self.all_levels() {
            let failed = if l.failures.is_empty() {
                "0".to_owned()
            } else {
                l.failures
                    .iter()
                    .map(|(k, n)| format!("{n}× {k}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let _ = writeln!(
                t,
                "| {}{} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
                l.concurrency,
                if l.overload { " (4× sat.)" } else { "" },
                l.purchases_per_sec,
                l.purchases_per_sec * SIGNATURES_PER_PURCHASE / b.rsa_signatures_per_sec.max(1e-9),
                pp(l, "order create"),
                pp(l, "pay (prepay round trip)"),
                pp(l, "wallet pay → paid recorded"),
                pp(l, "paid recorded → order paid"),
                pp(l, "paid recorded → enrolled"),
                pp(l, "wallet pay → enrolled"),
                l.cpu_ms_per_purchase.values().sum::<f64>(),
                failed
            );
        }
        if let Some(sat) = saturation(&self.levels) {
            let _ = writeln!(
                t,
                "\nCPU ms per purchase by process at saturation ({} students):\n",
                sat.concurrency
            );
            let _ = writeln!(
                t,
                "| process | CPU ms/purchase | peak RSS MB |\n|---|---|---|"
            );
            for (k, v) in &sat.cpu_ms_per_purchase {
                let rss = self
                    .peak_rss_mb
                    .get(k)
                    .map_or("-".into(), |m| format!("{m:.1}"));
                let _ = writeln!(t, "| {k} | {v:.2} | {rss} |");
            }
        }
        let c = &self.components;
        let _ = writeln!(t, "\nComponents alone:\n");
        let _ = writeln!(t, "| component | rate | ratio to baseline |\n|---|---|---|");
        let _ = writeln!(
            t,
            "| relay: outbox rows → confirmed msgs/s | {:.0} | {:.2} × broker confirms |",
            c.relay_msgs_per_sec, c.relay_ratio
        );
        let _ = writeln!(
            t,
            "| consumer: queued msgs → applied/s (inbox + one-row effect) | {:.0} | {:.2} × PostgreSQL transactions |",
            c.consumer_applies_per_sec, c.consumer_ratio
        );
        let _ = writeln!(t, "\nTargets of issue 12:\n");
        let _ = writeln!(t, "| target | measured | met |\n|---|---|---|");
        for g in &self.targets {
            let _ = writeln!(
                t,
                "| {} | {} | {} |",
                g.name,
                g.measured,
                if g.met { "yes" } else { "no" }
            );
        }
        t
    }

    /// Latency (wallet pay → enrolled, p50 and p99) against throughput, one point per
    /// level, as a small self-contained SVG.
    pub fn svg(&self) -> String {
        let points: Vec<(f64, f64, f64, usize, bool)> = self
            .all_levels()
            .filter_map(|l| {
                l.enrolled()
                    .map(|e| (l.purchases_per_sec, e.p50, e.p99, l.concurrency, l.overload))
            })
            .collect();
        let (w, h, m) = (640.0, 400.0, 60.0);
        let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.1;
        let max_y = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.1;
        let x = |v: f64| m + v / max_x * (w - 2.0 * m);
        let y = |v: f64| h - m - v / max_y * (h - 2.0 * m);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="14">wallet pay → enrolled latency against purchases/s ({})</text>"#,
            w / 2.0,
            self.date
        );
        let _ = writeln!(
            s,
            r#"<line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{m}" y1="{m}" x2="{m}" y2="{}" stroke="black"/>"#,
            h - m,
            w - m,
            h - m,
            h - m
        );
        for i in 0..=4 {
            let fx = max_x * f64::from(i) / 4.0;
            let fy = max_y * f64::from(i) / 4.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{fx:.0}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{fy:.0}</text>"#,
                x(fx),
                h - m + 18.0,
                m - 6.0,
                y(fy) + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">purchases/s</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">ms</text>"#,
            w / 2.0,
            h - 16.0,
            h / 2.0,
            h / 2.0
        );
        for (series, color, pick) in [("p50", "#1f77b4", 1usize), ("p99", "#d62728", 2)] {
            let path: Vec<String> = points
                .iter()
                .filter(|p| !p.4)
                .map(|p| {
                    let v = if pick == 1 { p.1 } else { p.2 };
                    format!("{:.1},{:.1}", x(p.0), y(v))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            for p in &points {
                let v = if pick == 1 { p.1 } else { p.2 };
                let shape = if p.4 { "rect" } else { "circle" };
                if shape == "circle" {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{color}"/>"#,
                        x(p.0),
                        y(v)
                    );
                } else {
                    let _ = writeln!(
                        s,
                        r#"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="{color}"/>"#,
                        x(p.0) - 4.0,
                        y(v) - 4.0
                    );
                }
                if pick == 2 {
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" font-size="10">{}{}</text>"#,
                        x(p.0) + 6.0,
                        y(v) - 6.0,
                        p.3,
                        if p.4 { " (4× sat.)" } else { "" }
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" fill="{color}">{series}</text>"#,
                w - m - 40.0,
                m + if pick == 1 { 0.0 } else { 16.0 }
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(v).unwrap();
        assert_eq!((p.n, p.p50, p.p95, p.p99), (100, 50.0, 95.0, 99.0));
        assert_eq!(percentiles(vec![]), None);
        assert_eq!(percentiles(vec![7.0]).unwrap().p99, 7.0);
    }
}
