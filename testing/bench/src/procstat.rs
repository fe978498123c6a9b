//! CPU time and peak memory of processes, read from `/proc` (Linux only).

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds a process has used so far; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / ticks_per_second())
}

/// Fields 14 and 15 (utime, stime) of a `/proc/<pid>/stat` line; the command name in
/// parentheses may contain spaces, so fields are counted after its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Peak resident memory (`VmHWM`) in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kb_field(&status, "VmHWM:").map(|kb| kb * 1024)
}

pub fn parse_kb_field(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Processes whose command name (`/proc/<pid>/comm`) is `name`, e.g. RabbitMQ's `beam.smp`.
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

/// CPU seconds of named groups of processes, so a later reading gives the difference.
#[derive(Debug, Clone, Default)]
pub struct CpuReading(pub BTreeMap<String, BTreeMap<u32, f64>>);

impl CpuReading {
    pub fn take(groups: &[(String, Vec<u32>)]) -> Self {
        let mut out = BTreeMap::new();
        for (name, pids) in groups {
            let entry: &mut BTreeMap<u32, f64> = out.entry(name.clone()).or_default();
            for pid in pids {
                if let Some(s) = cpu_seconds(*pid) {
                    entry.insert(*pid, s);
                }
            }
        }
        Self(out)
    }

    /// CPU seconds per group since `earlier`; a process new since then counts from zero
    /// only if it is in `earlier`'s group list (otherwise its whole life would be counted).
    pub fn since(&self, earlier: &CpuReading) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .map(|(name, now)| {
                let before = earlier.0.get(name);
                let used: f64 = now
                    .iter()
                    .filter_map(|(pid, s)| {
                        before.and_then(|b| b.get(pid)).map(|b| (s - b).max(0.0))
                    })
                    .sum();
                (name.clone(), used)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let line = "42 (tokio runtime) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(line), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(peak_rss_bytes(me).unwrap() > 1024 * 1024);
        assert_eq!(
            parse_kb_field("Name:\tx\nVmHWM:\t   1234 kB\n", "VmHWM:"),
            Some(1234)
        );
    }

    #[test]
    fn differences_count_only_processes_seen_before() {
        let mut a = CpuReading::default();
        a.0.entry("pg".into()).or_default().insert(1, 1.0);
        let mut b = CpuReading::default();
        let g = b.0.entry("pg".into()).or_default();
        g.insert(1, 3.5);
        g.insert(2, 100.0);
        assert_eq!(b.since(&a)["pg"], 2.5);
    }
}
