//! PostgreSQL servers a test or the chaos harness may stop and start.
//!
//! Every helper's tests share the machine's PostgreSQL on 5432, so a test that takes its
//! database away must never touch that one. [`PrivatePostgres`] is a server of the test's
//! own: `initdb` into a temporary directory, trust authentication, a free port on
//! 127.0.0.1, its socket in its own directory; stopped and removed on drop. Its
//! [`PgControl`] stops (fast or immediate shutdown), starts and restarts it while the
//! services under test keep running. [`PgControl::machine_cluster`] does the same to one
//! of the machine's Debian clusters (`pg_ctlcluster`), for `cargo xtask chaos`, which
//! restarts the machine's servers and runs alone.
//!
//! PostgreSQL refuses to run as root; as root, the server's commands run as the
//! `postgres` user (`runuser`), which owns the directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::TempDir;

/// How long a server may take to start, or to stop in fast mode (a recovery after an
/// immediate shutdown replays the WAL first; seconds at test sizes).
pub const START_BOUND: Duration = Duration::from_secs(60);

/// PostgreSQL's shutdown modes (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Rolls back open transactions, disconnects clients, checkpoints: a clean stop
    /// (what an orderly restart or a minor-version upgrade does).
    Fast,
    /// Kills every server process without a checkpoint: the next start replays the WAL
    /// (what a crash or a failover looks like to clients).
    Immediate,
}

impl Shutdown {
    pub fn as_str(self) -> &'static str {
        match self {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        }
    }
}

impl std::fmt::Display for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stops and starts one PostgreSQL server. Cheap to clone: the chaos harness's fault
/// driver holds one while the test owns the server.
#[derive(Debug, Clone)]
pub struct PgControl {
    port: u16,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `pg_ctl -D <data>` of a server made by [`PrivatePostgres`].
    Private {
        bin: PathBuf,
        data: PathBuf,
        log: PathBuf,
        run_as: Option<String>,
    },
    /// `pg_ctlcluster <version> <name>`: one of the machine's Debian clusters.
    Cluster { version: String, name: String },
}

impl PgControl {
    /// The machine's Debian cluster listening on `port` (from `pg_lsclusters`).
    pub fn machine_cluster(port: u16) -> anyhow::Result<Self> {
        let out = std::process::Command::new("pg_lsclusters")
            .arg("--no-header")
            .output()
            .context("running pg_lsclusters (Debian's postgresql-common)")?;
        let listing = String::from_utf8_lossy(&out.stdout);
        let (version, name) = cluster_on_port(&listing, port)
            .with_context(|| format!("no PostgreSQL cluster on port {port} in pg_lsclusters"))?;
        Ok(Self {
            port,
            kind: Kind::Cluster { version, name },
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What this controls, for progress lines and reports.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Private { data, .. } => {
                format!(
                    "private PostgreSQL on port {} ({})",
                    self.port,
                    data.display()
                )
            }
            Kind::Cluster { version, name } => {
                format!(
                    "the machine's PostgreSQL {version}/{name} on port {}",
                    self.port
                )
            }
        }
    }

    /// Stops the server in `mode` and waits until it is down.
    pub async fn stop(&self, mode: Shutdown) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Private { .. } => {
                let bound = START_BOUND.as_secs().to_string();
                self.pg_ctl(&["stop", "-w", "-t", &bound, "-m", mode.as_str()])
                    .await
            }
            Kind::Cluster { version, name } => {
                run(
                    "pg_ctlcluster",
                    &[
                        "--skip-systemctl-redirect",
                        "-m",
                        mode.as_str(),
                        version,
                        name,
                        "stop",
                    ],
                    None,
                )
                .await
            }
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub async fn start(&self) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Private { log, .. } => {
                let bound = START_BOUND.as_secs().to_string();
                let log = log.to_string_lossy().into_owned();
                self.pg_ctl(&["start", "-w", "-t", &bound, "-l", &log])
                    .await?;
            }
            Kind::Cluster { version, name } => {
                run(
                    "pg_ctlcluster",
                    &["--skip-systemctl-redirect", version, name, "start"],
                    None,
                )
                .await?;
            }
        }
        self.wait_until_accepting(START_BOUND).await
    }

    /// Stops in `mode`, stays down for `down`, starts again. The server is started again
    /// even when the stop reported an error (it may have stopped half-way).
    pub async fn restart(&self, mode: Shutdown, down: Duration) -> anyhow::Result<()> {
        let stopped = self.stop(mode).await;
        tokio::time::sleep(down).await;
        let started = self.start().await;
        stopped.and(started)
    }

    /// Whether the server accepts connections now.
    pub async fn is_accepting(&self) -> bool {
        let program = match &self.kind {
            Kind::Private { bin, .. } => bin.join("pg_isready"),
            Kind::Cluster { .. } => PathBuf::from("pg_isready"),
        };
        tokio::process::Command::new(program)
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    }

    /// Waits until the server accepts connections, at most `bound`.
    pub async fn wait_until_accepting(&self, bound: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + bound;
        while !self.is_accepting().await {
            if Instant::now() >= deadline {
                bail!(
                    "{} does not accept connections after {bound:?}",
                    self.describe()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let Kind::Private {
            bin, data, run_as, ..
        } = &self.kind
        else {
            unreachable!("pg_ctl is only used for private servers");
        };
        let program = bin.join("pg_ctl");
        let mut all = vec!["-D", data.to_str().context("data directory path")?];
        all.extend_from_slice(args);
        run(
            program.to_str().context("pg_ctl path")?,
            &all,
            run_as.as_deref(),
        )
        .await
    }

    /// The blocking stop used on drop (no runtime there).
    fn stop_now(&self) {
        if let Kind::Private {
            bin, data, run_as, ..
        } = &self.kind
        {
            let mut command = command(&bin.join("pg_ctl").to_string_lossy(), run_as.as_deref());
            let _ = command
                .arg("-D")
                .arg(data)
                .args(["stop", "-w", "-m", "immediate"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A PostgreSQL server of one test's own, in a temporary directory: stopped and removed
/// on drop. `postgres://postgres@127.0.0.1:<port>` with trust authentication, like the
/// machine's; tuned for tests (no fsync: an immediate shutdown still keeps every
/// committed transaction, only a machine crash would not).
#[derive(Debug)]
pub struct PrivatePostgres {
    control: PgControl,
    /// Removed after `drop` has stopped the server (`None` once [`Self::keep`] took it).
    dir: Option<TempDir>,
}

impl PrivatePostgres {
    /// `initdb` + start on a free port; returns once it accepts connections (~3 s).
    pub async fn start() -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = TempDir::new("paywire-pg")?;
        let run_as = if running_as_root()? {
            let (uid, gid) = user_ids("postgres").context(
                "PostgreSQL refuses to run as root and there is no `postgres` user to run it as",
            )?;
            std::os::unix::fs::chown(&dir.path, Some(uid), Some(gid))?;
            Some("postgres".to_owned())
        } else {
            None
        };
        let data = dir.path.join("data");
        let log = dir.path.join("postgres.log");
        let initdb = bin.join("initdb");
        run(
            initdb.to_str().context("initdb path")?,
            &[
                "-D",
                data.to_str().context("data directory path")?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            run_as.as_deref(),
        )
        .await?;
        let mut last_error = None;
        // A free port can be taken between the probe and the server's bind: try another.
        for _ in 0..5 {
            let port = free_port()?;
            write_config(&data, &dir.path, port)?;
            let control = PgControl {
                port,
                kind: Kind::Private {
                    bin: bin.clone(),
                    data: data.clone(),
                    log: log.clone(),
                    run_as: run_as.clone(),
                },
            };
            match control.start().await {
                Ok(()) => {
                    return Ok(Self {
                        control,
                        dir: Some(dir),
                    });
                }
                Err(e) => {
                    control.stop_now();
                    last_error = Some(e);
                }
            }
        }
        let log_tail = std::fs::read_to_string(&log).unwrap_or_default();
        Err(last_error.expect("at least one attempt")).with_context(|| {
            format!(
                "starting a private PostgreSQL; its log ends with:\n{}",
                tail(&log_tail, 10)
            )
        })
    }

    /// `postgres://postgres@127.0.0.1:<port>` (no database: append `/<name>`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.control.port)
    }

    pub fn port(&self) -> u16 {
        self.control.port
    }

    /// Stops, starts and restarts this server.
    pub fn control(&self) -> &PgControl {
        &self.control
    }

    /// Stops the server and keeps its directory (data and `postgres.log`) for inspection
    /// after a failed run; returns the directory. Start it again with
    /// `pg_ctl -D <dir>/data start`.
    pub fn keep(mut self) -> PathBuf {
        self.control.stop_now();
        self.dir
            .take()
            .map(TempDir::keep)
            .expect("the directory is only taken here")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.control.stop_now();
    }
}

/// Configuration appended to the fresh cluster's `postgresql.conf` (a later line wins, so
/// rewriting the port appends again).
fn write_config(data: &Path, socket_dir: &Path, port: u16) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))?;
    writeln!(
        file,
        "\n# paywire-testkit\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
         unix_socket_directories = '{}'\nmax_connections = 200\nshared_buffers = 32MB\n\
         fsync = off\nfull_page_writes = off\n",
        socket_dir.display()
    )?;
    Ok(())
}

/// `(version, cluster)` of the cluster on `port` in `pg_lsclusters --no-header` output.
fn cluster_on_port(listing: &str, port: u16) -> Option<(String, String)> {
    listing.lines().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        (cols.len() >= 3 && cols[2] == port.to_string())
            .then(|| (cols[0].to_owned(), cols[1].to_owned()))
    })
}

/// PostgreSQL's server programs: `$PAYWIRE_PG_BIN`, else Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else the directory `pg_config --bindir` names.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PAYWIRE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = debian {
        return Ok(bin);
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context(
            "no PostgreSQL server programs: install postgresql (initdb, pg_ctl) or set \
             PAYWIRE_PG_BIN",
        )?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn running_as_root() -> anyhow::Result<bool> {
    // /proc/self belongs to the effective user of the process.
    Ok(std::fs::metadata("/proc/self")?.uid() == 0)
}

/// `(uid, gid)` of `user` from `/etc/passwd`.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_entry(&passwd, user)
}

fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut cols = line.split(':');
        (cols.next()? == user).then_some(())?;
        let _password = cols.next()?;
        Some((cols.next()?.parse().ok()?, cols.next()?.parse().ok()?))
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn command(program: &str, run_as: Option<&str>) -> std::process::Command {
    match run_as {
        Some(user) => {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", user, "--", program]);
            c
        }
        None => std::process::Command::new(program),
    }
}

/// Runs `program args` (as `run_as`), off the runtime's threads; an error carries the
/// end of its output.
async fn run(program: &str, args: &[&str], run_as: Option<&str>) -> anyhow::Result<()> {
    let mut c = tokio::process::Command::from(command(program, run_as));
    let out = c
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bail!(
            "{program} {args:?} failed ({}): {}",
            out.status,
            tail(&text, 6)
        );
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_are_found_by_port() {
        let listing = "15 main 5432 online postgres /var/lib/postgresql/15/main /var/log/x.log\n\
                       16 other 5433 down postgres /d /l\n";
        assert_eq!(
            cluster_on_port(listing, 5433),
            Some(("16".into(), "other".into()))
        );
        assert_eq!(
            cluster_on_port(listing, 5432),
            Some(("15".into(), "main".into()))
        );
        assert_eq!(cluster_on_port(listing, 6543), None);
        assert_eq!(cluster_on_port("", 5432), None);
    }

    #[test]
    fn passwd_entries_give_uid_and_gid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n\
                      postgresx:x:7:7::/:/bin/false\n";
        assert_eq!(passwd_entry(passwd, "postgres"), Some((101, 104)));
        assert_eq!(passwd_entry(passwd, "root"), Some((0, 0)));
        assert_eq!(passwd_entry(passwd, "nobody"), None);
    }

    #[test]
    fn shutdown_modes_are_pg_ctl_words() {
        assert_eq!(Shutdown::Fast.to_string(), "fast");
        assert_eq!(Shutdown::Immediate.to_string(), "immediate");
    }
}
