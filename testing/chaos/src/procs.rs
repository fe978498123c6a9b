//! Service processes: configuration files, start, SIGKILL, restart, health.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Environment variable that turns a self-executing test binary into one service.
pub const NODE_ENV: &str = "PAYWIRE_CHAOS_NODE";

/// How a service process is started.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// The real binaries, `<dir>/<service>` (e.g. `target/debug`).
    Binaries(PathBuf),
    /// One executable that becomes the service named in [`NODE_ENV`] (the reduced test
    /// re-executes itself, so `cargo test` needs no nested `cargo build`).
    SelfExec(PathBuf),
}

impl Launcher {
    fn command(&self, service: &str) -> Command {
        match self {
            Launcher::Binaries(dir) => Command::new(dir.join(service)),
            Launcher::SelfExec(exe) => {
                let mut c = Command::new(exe);
                c.env(NODE_ENV, service);
                c
            }
        }
    }
}

/// One running (or killed) instance of a service.
#[derive(Debug)]
pub struct Instance {
    pub service: &'static str,
    /// 0 or 1.
    pub index: usize,
    pub ports: crate::settings::Ports,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl Instance {
    pub fn new(
        service: &'static str,
        index: usize,
        ports: crate::settings::Ports,
        dir: &Path,
    ) -> Self {
        Self {
            service,
            index,
            ports,
            config_path: dir.join(format!("{service}-{index}.toml")),
            log_path: dir.join(format!("{service}-{index}.log")),
            child: None,
        }
    }

    pub fn name(&self) -> String {
        format!("{}#{}", self.service, self.index + 1)
    }

    /// The internal listener, where `/health` answers.
    pub fn internal_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.internal)
    }

    /// Starts the process with its configuration file; output is appended to its log.
    pub fn spawn(&mut self, launcher: &Launcher, repo_root: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let err = log.try_clone()?;
        let child = launcher
            .command(self.service)
            .env("PAYWIRE_CONFIG", &self.config_path)
            .current_dir(repo_root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no graceful shutdown, whatever was in flight is cut off.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// The running process's id (the bench reads its CPU time and memory from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process has exited on its own.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => !matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Polls `/health` until it answers 2xx; fails if the process exits or `timeout` passes.
    pub async fn wait_healthy(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("{}/health", self.internal_url());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.exited() {
                bail!(
                    "{} exited during start-up (see {})",
                    self.name(),
                    self.log_path.display()
                );
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{} not healthy within {timeout:?}", self.name());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A free TCP port on localhost (released before the service binds it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Message counts (ready + unacknowledged) of every queue in `vhost`.
pub async fn queue_depths(vhost: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let text = paywire_testkit::rabbitmq::rabbitmqctl_async(vec![
        "list_queues".into(),
        "-p".into(),
        vhost.into(),
        "-q".into(),
        "--no-table-headers".into(),
        "name".into(),
        "messages".into(),
    ])
    .await?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(name), Some(n)) = (parts.next(), parts.next()) {
            out.push((name.to_owned(), n.parse().unwrap_or(u64::MAX)));
        }
    }
    Ok(out)
}
