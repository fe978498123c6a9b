//! `cargo xtask fresh-check`: a newcomer's first `bash .ci/run`, on a bare Debian 12.
//!
//! 1. the Debian base image, made by [`images::ensure_base_image`] (debootstrap + import);
//! 2. on it, a "newcomer's machine" with only the README's prerequisites
//!    (`deploy/images/fresh-check/Dockerfile`: git, gcc, libc6-dev, ca-certificates);
//! 3. a fresh clone of the current commit (from a git bundle), and its `.ci/run`, in a
//!    container of that image: the host's Rust toolchain mounted read-only, host
//!    networking, the host's CA bundle mounted and named in `CARGO_HTTP_CAINFO` (and
//!    `NODE_EXTRA_CA_CERTS` for npm). The container may do what a machine may (mounts,
//!    cgroups, devices) and has a Docker data directory of its own, so `.ci/run` starts
//!    its own Docker engine as it would on a machine.
//!
//! The container's PostgreSQL and RabbitMQ need 5432 and 5672, which the machine's own
//! servers hold: they are stopped for the duration and started again afterwards whatever
//! happens (error, panic, Ctrl-C, SIGTERM). Anything else using them must wait (run this
//! under an exclusive lock shared with whatever else uses those servers).
//!
//! Progress: `.ci/run`'s sections, compile counts, each test binary's result and a
//! heartbeat each minute, stamped with the elapsed time; the full output goes to
//! `target/fresh-check/<time>.log`. The end prints the outcome, the time of each section
//! and how long the machine's servers were down.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use paywire_testkit::postgres::{PgControl, Shutdown};
use paywire_testkit::rabbitmq::{self, Rabbitmqctl};
use tokio::io::AsyncBufReadExt;

use crate::images::{self, Docker, Outcome, Steps, Toolchain};
use crate::layout;

/// The newcomer's machine: [`images::BASE_IMAGE`] plus the README's prerequisites.
pub const IMAGE: &str = "paywire/fresh-debian:bookworm";
/// The host's CA bundle (the machine's egress may need CAs Debian's bundle lacks).
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the container sees it: beside, not over, its own bundle, which the
/// `ca-certificates` package must be free to rewrite.
const CA_IN_CONTAINER: &str = "/etc/paywire-host-ca/ca-certificates.crt";
/// Where the container sees the host's toolchain (its sysroot: bin/ and lib/).
const TOOLCHAIN_IN_CONTAINER: &str = "/usr/local/rust";
const BUNDLE_IN_CONTAINER: &str = "/fresh/paywire.bundle";
/// The build output's tmpfs, with `--target-tmpfs`.
const TARGET_TMPFS: &str = "/fresh/target";
/// Ports the container's own servers take on the shared network.
const SERVER_PORTS: [(u16, &str); 3] = [
    (5432, "PostgreSQL"),
    (5672, "RabbitMQ (AMQP)"),
    (25672, "RabbitMQ (distribution)"),
];
const HEARTBEAT: Duration = Duration::from_secs(60);
/// How long a stopped server may take to release its port.
const PORT_RELEASE_PATIENCE: Duration = Duration::from_secs(30);

/// Options of `cargo xtask fresh-check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep the clone's build output in a tmpfs of this size (e.g. `12g`) instead of on
    /// disk: a cold build of the workspace takes gigabytes a busy shared disk may not have.
    pub target_tmpfs: Option<String>,
}

pub async fn run(options: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let docker = Docker::locate()?;
    let toolchain = Toolchain::host()?;
    let root = layout::repo_root();
    let commit = git(&root, &["rev-parse", "HEAD"])?;
    if !git(&root, &["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        println!("==> note: uncommitted changes are not part of the check (it clones {commit})");
    }
    anyhow::ensure!(
        Path::new(HOST_CA_BUNDLE).is_file(),
        "{HOST_CA_BUNDLE} is missing: the container needs the host's CA bundle for crates.io \
         and npm"
    );
    println!(
        "==> fresh-check of {commit}: a bare Debian 12 with only the prerequisites runs \
         .ci/run (host toolchain {} read-only)",
        toolchain.version
    );

    let mut steps = Steps::default();
    steps.time(
        "Debian base (debootstrap + import)",
        images::BASE_IMAGE,
        || Ok(((), images::ensure_base_image(&docker, images::BASE_IMAGE)?)),
    )?;
    steps.time("newcomer's machine (prerequisites only)", IMAGE, || {
        images::build_infra_image(&docker, images::BASE_IMAGE, "fresh-check", IMAGE)?;
        Ok(((), Outcome::Built))
    })?;

    // On disk (the container's Docker data grows to gigabytes), removed at the end.
    let work = images::TempDir::new(Path::new("/var/tmp"), "paywire-fresh-check")?;
    let bundle = work.path().join("paywire.bundle");
    git(
        &root,
        &["bundle", "create", &bundle.to_string_lossy(), "HEAD"],
    )?;
    let docker_data = work.path().join("docker");
    std::fs::create_dir_all(&docker_data)?;
    let log_dir = root.join("target/fresh-check");
    std::fs::create_dir_all(&log_dir)?;
    let log_path = log_dir.join(format!("{}.log", unix_seconds()));

    for port in crate::compose::stack_ports() {
        if !port_free(port) {
            println!(
                "==> warning: 127.0.0.1:{port} is taken; .ci/run's compose smoke needs it \
                 (is a compose stack running on this machine?)"
            );
        }
    }

    let name = format!("paywire-fresh-check-{}", std::process::id());
    let args = run_args(&RunSpec {
        name: &name,
        image: IMAGE,
        toolchain: &toolchain.sysroot,
        ca_bundle: Path::new(HOST_CA_BUNDLE),
        bundle: &bundle,
        docker_data: &docker_data,
        commit: &commit,
        target_tmpfs: options.target_tmpfs.as_deref(),
    });

    // Caught from here on, so that an interrupted run still restores the servers.
    let signals = Signals::new()?;
    // Dropped last: the servers come back after the container is gone.
    let servers = MachineServers::stop()?;
    for (port, what) in SERVER_PORTS {
        // `rabbitmqctl stop` answers before the node's VM has exited and let go of its
        // ports (seen here: 25672 still bound right after), so give it a moment.
        let asked = Instant::now();
        while !port_free(port) && asked.elapsed() < PORT_RELEASE_PATIENCE {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::ensure!(
            port_free(port),
            "127.0.0.1:{port} ({what}) is still taken after stopping the machine's servers: \
             something else holds it"
        );
    }
    let container = Container {
        docker: docker.clone(),
        name: name.clone(),
    };
    println!(
        "\n==> [{}] .ci/run in a fresh clone: {name}",
        steps.0.len() + 1
    );
    let ci_started = Instant::now();
    let outcome = run_container(&docker, &args, &log_path, signals).await;
    let ci_took = ci_started.elapsed();
    drop(container);
    let held = servers.restart();

    let mut report = String::new();
    let _ = writeln!(report, "\n==> fresh-check of {commit}");
    let _ = writeln!(report, "{}", steps.table(&docker));
    match &outcome {
        Ok(run) => {
            let _ = writeln!(
                report,
                "| .ci/run section | time |\n|---|---:|\n{}",
                run.sections_table()
            );
            let _ = writeln!(
                report,
                ".ci/run: {} in {} ({})",
                if run.passed() { "PASSED" } else { "FAILED" },
                minutes(ci_took),
                run.status
            );
        }
        Err(e) => {
            let _ = writeln!(
                report,
                ".ci/run: not completed after {}: {e:#}",
                minutes(ci_took)
            );
        }
    }
    let _ = writeln!(report, "full output: {}", log_path.display());
    match &held {
        Ok(held) => {
            let _ = writeln!(
                report,
                "the machine's PostgreSQL and RabbitMQ were stopped for {} and run again",
                minutes(*held)
            );
        }
        Err(e) => {
            let _ = writeln!(report, "RESTARTING THE MACHINE'S SERVERS FAILED: {e:#}");
        }
    }
    let _ = writeln!(report, "fresh-check took {}", minutes(started.elapsed()));
    println!("{report}");
    held?;
    let run = outcome?;
    if !run.passed() {
        bail!(
            ".ci/run failed on a fresh Debian 12 ({}); see {}",
            run.status,
            log_path.display()
        );
    }
    Ok(())
}

/// What goes into the `docker run` command line.
#[derive(Debug)]
struct RunSpec<'a> {
    name: &'a str,
    image: &'a str,
    toolchain: &'a Path,
    ca_bundle: &'a Path,
    bundle: &'a Path,
    docker_data: &'a Path,
    commit: &'a str,
    target_tmpfs: Option<&'a str>,
}

/// `docker run …`: the container that plays the newcomer's machine.
fn run_args(spec: &RunSpec<'_>) -> Vec<OsString> {
    let mount = |host: &Path, inside: &str, ro: bool| -> OsString {
        let mut m = OsString::from(host.as_os_str());
        m.push(format!(":{inside}{}", if ro { ":ro" } else { "" }));
        m
    };
    let script = format!(
        "set -euo pipefail\n\
         # A machine may create cgroups: Docker mounts the container's own cgroup tree\n\
         # read-only, so the engine .ci/run starts could not run a container.\n\
         for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw \"$d\"; done\n\
         git clone --quiet {BUNDLE_IN_CONTAINER} /root/paywire\n\
         cd /root/paywire\n\
         git checkout --quiet --detach {commit}\n\
         echo \"fresh clone of $(git rev-parse HEAD) in $PWD\"\n\
         exec bash .ci/run 2>&1\n",
        commit = spec.commit
    );
    let mut args: Vec<OsString> = vec![
        "run".into(),
        "--rm".into(),
        "--name".into(),
        spec.name.into(),
        // Host networking: no bridge exists here, and a machine's servers listen on
        // 127.0.0.1.
        "--network".into(),
        "host".into(),
        // What a machine may do and a container may not: .ci/run starts a Docker engine
        // (mounts, cgroups, devices) and debootstrap mounts /proc. Not `--privileged`:
        // it asks for CAP_SYS_RESOURCE, which this machine's own bounding set lacks.
        "--cap-add".into(),
        "ALL".into(),
        "--cap-drop".into(),
        "SYS_RESOURCE".into(),
        "--security-opt".into(),
        "seccomp=unconfined".into(),
        "--security-opt".into(),
        "apparmor=unconfined".into(),
        "--security-opt".into(),
        "systempaths=unconfined".into(),
        "--device-cgroup-rule".into(),
        "a *:* rwm".into(),
        // A machine's /dev/shm is half its memory; Docker's default is 64 MiB.
        "--shm-size".into(),
        "2g".into(),
        "-v".into(),
        mount(spec.toolchain, TOOLCHAIN_IN_CONTAINER, true),
        "-v".into(),
        mount(spec.ca_bundle, CA_IN_CONTAINER, true),
        "-v".into(),
        mount(spec.bundle, BUNDLE_IN_CONTAINER, true),
        // The engine .ci/run starts keeps its data on the host's disk (overlayfs cannot
        // stack on the container's own overlay root).
        "-v".into(),
        mount(spec.docker_data, "/var/lib/docker", false),
    ];
    if let Some(size) = spec.target_tmpfs {
        // exec: build scripts and test binaries run from there.
        args.push("--tmpfs".into());
        args.push(format!("{TARGET_TMPFS}:rw,exec,size={size}").into());
        args.push("-e".into());
        args.push(format!("CARGO_TARGET_DIR={TARGET_TMPFS}").into());
    }
    for (key, value) in [
        (
            "PATH",
            format!(
                "/root/.cargo/bin:{TOOLCHAIN_IN_CONTAINER}/bin:/usr/local/sbin:/usr/local/bin:\
                 /usr/sbin:/usr/bin:/sbin:/bin"
            ),
        ),
        ("CARGO_HTTP_CAINFO", CA_IN_CONTAINER.to_owned()),
        ("NODE_EXTRA_CA_CERTS", CA_IN_CONTAINER.to_owned()),
        ("CI", "true".to_owned()),
        // As CI systems do: incremental caches double the size of a one-off build.
        ("CARGO_INCREMENTAL", "0".to_owned()),
    ] {
        args.push("-e".into());
        args.push(format!("{key}={value}").into());
    }
    args.push(spec.image.into());
    args.extend(["bash".into(), "-c".into(), script.into()]);
    args
}

/// How `.ci/run` ended, with its sections' start times.
#[derive(Debug)]
struct CiRun {
    status: std::process::ExitStatus,
    sections: Vec<(String, Duration)>,
    end: Duration,
}

impl CiRun {
    fn passed(&self) -> bool {
        self.status.success()
    }

    fn sections_table(&self) -> String {
        let mut out = String::new();
        for (i, (name, start)) in self.sections.iter().enumerate() {
            let end = self.sections.get(i + 1).map_or(self.end, |(_, s)| *s);
            let _ = writeln!(out, "| {name} | {} |", minutes(end.saturating_sub(*start)));
        }
        out
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, caught instead of ending the process.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }
}

/// Runs the container, logging everything and printing progress; SIGINT or SIGTERM
/// stops it.
async fn run_container(
    docker: &Docker,
    args: &[OsString],
    log_path: &Path,
    mut signals: Signals,
) -> anyhow::Result<CiRun> {
    let mut log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = tokio::process::Command::from(docker.command())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting docker run")?;
    let stdout = child.stdout.take().context("docker run's output")?;
    let stderr = child.stderr.take().context("docker run's errors")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for reader in [
        Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let started = Instant::now();
    let mut progress = Progress::default();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let mut lines_open = true;
    let status = loop {
        tokio::select! {
            line = rx.recv(), if lines_open => match line {
                Some(line) => {
                    writeln!(log, "{line}")?;
                    if let Some(shown) = progress.feed(&line, started.elapsed()) {
                        println!("{shown}");
                    }
                }
                None => lines_open = false,
            },
            status = child.wait(), if !lines_open => break status?,
            _ = heartbeat.tick() => println!("{}", progress.heartbeat(started.elapsed())),
            _ = signals.interrupt.recv() => {
                println!("==> Ctrl-C: stopping the container");
                bail!("interrupted");
            }
            _ = signals.terminate.recv() => {
                println!("==> SIGTERM: stopping the container");
                bail!("terminated");
            }
        }
    };
    log.flush()?;
    Ok(CiRun {
        status,
        sections: progress.sections,
        end: started.elapsed(),
    })
}

/// What of `.ci/run`'s output is shown while it runs.
#[derive(Debug, Default)]
struct Progress {
    sections: Vec<(String, Duration)>,
    compiled: usize,
    /// The test binary whose output follows (`Running tests/x.rs (…)`).
    running: Option<String>,
    last: String,
}

impl Progress {
    fn feed(&mut self, line: &str, at: Duration) -> Option<String> {
        let stamp = stamp(at);
        let trimmed = line.trim();
        if !trimmed.is_empty() {
            self.last = trimmed.chars().take(120).collect();
        }
        if let Some(name) = section_name(trimmed) {
            self.sections.push((name.to_owned(), at));
            return Some(format!("[{stamp}] ▶ {name}"));
        }
        if trimmed.starts_with("Compiling ") {
            self.compiled += 1;
            return self
                .compiled
                .is_multiple_of(50)
                .then(|| format!("[{stamp}]   compiled {} crates", self.compiled));
        }
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            self.running = Some(rest.split(" (").next().unwrap_or(rest).to_owned());
            return None;
        }
        if let Some(result) = trimmed.strip_prefix("test result: ") {
            let binary = self.running.as_deref().unwrap_or("tests");
            return Some(format!("[{stamp}]   {binary}: {result}"));
        }
        let alarming = trimmed.starts_with("error")
            || trimmed.starts_with("E: ")
            || trimmed.contains("FAILED")
            || trimmed.contains("panicked at")
            || trimmed.starts_with("fresh clone of ")
            || trimmed.starts_with("installing: ")
            || trimmed.starts_with("==> ");
        alarming.then(|| format!("[{stamp}]   {trimmed}"))
    }

    fn heartbeat(&self, at: Duration) -> String {
        let section = self
            .sections
            .last()
            .map_or("starting", |(name, _)| name.as_str());
        format!("[{}]   … {section} (last: {})", stamp(at), self.last)
    }
}

/// `==================== NAME ====================` (`.ci/run`'s `section`).
fn section_name(line: &str) -> Option<&str> {
    let inner = line.strip_prefix("====")?.strip_suffix("====")?;
    let name = inner.trim_matches('=').trim();
    (!name.is_empty()).then_some(name)
}

fn stamp(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// The container, removed (with everything it started) when dropped.
struct Container {
    docker: Docker,
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self
            .docker
            .command()
            .args(["rm", "--force", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One of the machine's servers that was running, and how it is started again.
struct Stopped {
    what: String,
    start: Box<dyn FnMut() -> anyhow::Result<()>>,
}

/// The machine's servers stopped by this run: started again by [`Self::restart`] or, if
/// that never runs (an error, a panic), on drop.
struct MachineServers {
    stopped: Vec<Stopped>,
    since: Instant,
}

impl MachineServers {
    /// Stops the machine's PostgreSQL (the cluster on 5432) and RabbitMQ node if they run.
    fn stop() -> anyhow::Result<Self> {
        let mut servers = Self {
            stopped: Vec::new(),
            since: Instant::now(),
        };
        // The cluster on 5432, the port the container's own PostgreSQL needs.
        if let Ok(pg) = PgControl::machine_cluster(5432)
            && block(pg.is_accepting())
        {
            println!("==> stopping {}", pg.describe());
            block(pg.stop(Shutdown::Fast))?;
            servers.stopped.push(Stopped {
                what: pg.describe(),
                start: Box::new(move || block(pg.start())),
            });
        }
        let ctl = Rabbitmqctl::default();
        if ctl.answers() {
            println!("==> stopping the machine's RabbitMQ");
            ctl.run(&["stop"])?;
            servers.stopped.push(Stopped {
                what: "RabbitMQ".into(),
                start: Box::new(move || {
                    ctl.start_detached("rabbitmq-server", &[], rabbitmq::START_BOUND)
                }),
            });
        }
        Ok(servers)
    }

    /// Starts every stopped server again; how long they were down.
    fn restart(mut self) -> anyhow::Result<Duration> {
        self.start_all()?;
        Ok(self.since.elapsed())
    }

    /// Starts each server, in the reverse order of stopping, even if one fails.
    fn start_all(&mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        while let Some(mut server) = self.stopped.pop() {
            println!("==> starting the machine's {} again", server.what);
            if let Err(e) = (server.start)() {
                failures.push(format!("{}: {e:#}", server.what));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("; "))
        }
    }
}

impl Drop for MachineServers {
    fn drop(&mut self) {
        if let Err(e) = self.start_all() {
            eprintln!("error: starting the machine's servers again: {e:#}");
        }
    }
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Runs `f` to completion from synchronous code (a guard's drop) on the runtime's
/// multi-threaded scheduler.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    fn spec() -> Vec<String> {
        spec_with(None)
    }

    fn spec_with(target_tmpfs: Option<&str>) -> Vec<String> {
        run_args(&RunSpec {
            name: "paywire-fresh-check-1",
            image: IMAGE,
            toolchain: Path::new("/root/.rustup/toolchains/stable"),
            ca_bundle: Path::new(HOST_CA_BUNDLE),
            bundle: Path::new("/var/tmp/w/paywire.bundle"),
            docker_data: Path::new("/var/tmp/w/docker"),
            commit: "0123abcd",
            target_tmpfs,
        })
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
    }

    /// The value after `flag`, for every occurrence.
    fn values(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn the_container_is_a_bare_machine_with_the_hosts_toolchain_read_only() {
        let args = spec();
        assert_eq!(values(&args, "--network"), ["host"]);
        let mounts = values(&args, "-v");
        assert!(mounts.contains(&"/root/.rustup/toolchains/stable:/usr/local/rust:ro".to_owned()));
        assert!(mounts.contains(&format!("{HOST_CA_BUNDLE}:{CA_IN_CONTAINER}:ro")));
        assert!(mounts.contains(&"/var/tmp/w/paywire.bundle:/fresh/paywire.bundle:ro".to_owned()));
        // Nothing else of the host: no cargo registry, no target dir, no repository.
        assert_eq!(mounts.len(), 4, "{mounts:?}");
        assert!(
            !mounts
                .iter()
                .any(|m| m.contains(".cargo") || m.contains("target"))
        );
        let env = values(&args, "-e");
        assert!(env.contains(&format!("CARGO_HTTP_CAINFO={CA_IN_CONTAINER}")));
        assert!(env.contains(&format!("NODE_EXTRA_CA_CERTS={CA_IN_CONTAINER}")));
        assert!(
            env.iter()
                .any(|e| e.starts_with("PATH=") && e.contains("/usr/local/rust/bin")),
            "{env:?}"
        );
        // The CA bundle goes beside the container's own, which its package rewrites.
        assert!(
            !mounts
                .iter()
                .any(|m| m.ends_with(":/etc/ssl/certs/ca-certificates.crt:ro"))
        );
    }

    #[test]
    fn the_build_output_can_live_in_memory() {
        assert!(values(&spec(), "--tmpfs").is_empty());
        assert!(
            !values(&spec(), "-e")
                .iter()
                .any(|e| e.starts_with("CARGO_TARGET_DIR"))
        );
        let args = spec_with(Some("12g"));
        assert_eq!(values(&args, "--tmpfs"), ["/fresh/target:rw,exec,size=12g"]);
        assert!(values(&args, "-e").contains(&"CARGO_TARGET_DIR=/fresh/target".to_owned()));
    }

    #[test]
    fn the_container_clones_the_commit_and_runs_ci() {
        let args = spec();
        let image_at = args.iter().position(|a| a == IMAGE).unwrap();
        assert_eq!(args[image_at + 1..image_at + 3], ["bash", "-c"]);
        let script = &args[image_at + 3];
        let clone = script.find("git clone").unwrap();
        let checkout = script
            .find("git checkout --quiet --detach 0123abcd")
            .unwrap();
        let ci = script.find("exec bash .ci/run").unwrap();
        assert!(clone < checkout && checkout < ci, "{script}");
        assert!(script.starts_with("set -euo pipefail"));
        // Its own engine, not the host's: no socket of the host's is passed in.
        assert!(!args.iter().any(|a| a.contains("docker.sock")));
        assert!(args.contains(&"--rm".to_owned()));
    }

    fn recording(log: &Rc<RefCell<Vec<String>>>, what: &str, fails: bool) -> Stopped {
        let log = Rc::clone(log);
        let name = what.to_owned();
        Stopped {
            what: what.to_owned(),
            start: Box::new(move || {
                log.borrow_mut().push(name.clone());
                if fails {
                    bail!("{name} would not start")
                }
                Ok(())
            }),
        }
    }

    #[test]
    fn stopped_servers_start_again_when_the_run_fails_half_way() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let failing_run = || -> anyhow::Result<()> {
            let _servers = MachineServers {
                stopped: vec![
                    recording(&log, "pg", false),
                    recording(&log, "rabbit", false),
                ],
                since: Instant::now(),
            };
            bail!("docker run failed")
        };
        assert!(failing_run().is_err());
        assert_eq!(*log.borrow(), ["rabbit", "pg"]);
    }

    #[test]
    fn stopped_servers_start_again_after_a_panic() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let log2 = Rc::clone(&log);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _servers = MachineServers {
                stopped: vec![recording(&log2, "pg", false)],
                since: Instant::now(),
            };
            panic!("boom");
        }));
        assert!(panicked.is_err());
        assert_eq!(*log.borrow(), ["pg"]);
    }

    #[test]
    fn every_server_is_tried_even_if_one_will_not_start_and_only_once() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let servers = MachineServers {
            stopped: vec![
                recording(&log, "pg", false),
                recording(&log, "rabbit", true),
            ],
            since: Instant::now(),
        };
        let err = servers.restart().unwrap_err().to_string();
        assert!(err.contains("rabbit would not start"), "{err}");
        // Both tried, neither again on drop.
        assert_eq!(*log.borrow(), ["rabbit", "pg"]);
    }

    #[test]
    fn progress_shows_sections_compiles_results_and_trouble() {
        let mut p = Progress::default();
        let at = Duration::from_secs(75);
        assert_eq!(
            p.feed(
                "==================== cargo test --workspace ====================",
                at
            )
            .as_deref(),
            Some("[01:15] ▶ cargo test --workspace")
        );
        for i in 1..=100 {
            let shown = p.feed(&format!("   Compiling crate{i} v1.0.0"), at);
            assert_eq!(shown.is_some(), i % 50 == 0, "{i}");
        }
        assert_eq!(
            p.feed(
                "     Running tests/browser.rs (target/debug/deps/browser-1)",
                at
            ),
            None
        );
        assert_eq!(
            p.feed("test result: ok. 5 passed; 0 failed", at).as_deref(),
            Some("[01:15]   tests/browser.rs: ok. 5 passed; 0 failed")
        );
        assert!(p.feed("test a ... FAILED", at).is_some());
        assert!(
            p.feed("E: Unable to locate package chromium-driver", at)
                .is_some()
        );
        assert!(p.feed("2026-11-30T10:00:00Z INFO request", at).is_none());
        assert_eq!(p.sections, [("cargo test --workspace".to_owned(), at)]);
        assert!(p.heartbeat(at).contains("cargo test --workspace"));
    }

    #[test]
    fn sections_are_timed_until_the_next_one() {
        let run = CiRun {
            status: std::process::ExitStatus::default(),
            sections: vec![
                ("PostgreSQL".into(), Duration::from_secs(5)),
                ("RabbitMQ".into(), Duration::from_secs(65)),
            ],
            end: Duration::from_secs(200),
        };
        assert_eq!(
            run.sections_table(),
            "| PostgreSQL | 1m00s |\n| RabbitMQ | 2m15s |\n"
        );
        assert!(run.passed());
    }

    #[test]
    fn section_names_are_read_from_ci_runs_banner() {
        assert_eq!(
            section_name("==================== RabbitMQ ===================="),
            Some("RabbitMQ")
        );
        assert_eq!(section_name("===="), None);
        assert_eq!(section_name("RabbitMQ"), None);
    }
}
