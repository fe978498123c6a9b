//! The local RabbitMQ node through its own command-line tools (`rabbitmqctl`,
//! `rabbitmq-server`), which need no management plugin. The one place in Rust that runs
//! them: the test kit, the chaos harness and xtask all come through here.
//!
//! Starting a node has a trap: `rabbitmqctl await_startup` fails at once (exit 69,
//! "epmd reports: node 'rabbit' not running at all") until the node that
//! `rabbitmq-server -detached` launches has registered with epmd, a few seconds later.
//! [`Rabbitmqctl::wait_until_started`] therefore waits for `rabbitmqctl status` to answer
//! first, then runs `await_startup`, both within one bound. `.ci/run` does the same in
//! shell (`wait_for_rabbitmq`).

use std::ffi::{OsStr, OsString};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a freshly started node may take to answer and boot (a cold node on a busy
/// two-core machine boots in 5–15 s; the bound only matters when something is wrong).
pub const START_BOUND: Duration = Duration::from_secs(120);

/// Pause between two `rabbitmqctl status` probes (each probe itself boots a small Erlang
/// VM, about a second).
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Where Debian's package writes the node's logs (named in the error of a node that never
/// answers).
const LOG_DIR: &str = "/var/log/rabbitmq";

/// `rabbitmqctl` for one node: the default node (`RABBITMQ_NODENAME`, else the
/// installation's own) or a named one (`-n`).
#[derive(Debug, Clone)]
pub struct Rabbitmqctl {
    program: OsString,
    node: Option<String>,
}

impl Default for Rabbitmqctl {
    fn default() -> Self {
        Self {
            program: "rabbitmqctl".into(),
            node: None,
        }
    }
}

/// Runs `rabbitmqctl args` against the default node; its standard output.
pub fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    Rabbitmqctl::default().run(args)
}

/// [`rabbitmqctl`] off the async runtime's threads.
pub async fn rabbitmqctl_async(args: Vec<String>) -> anyhow::Result<String> {
    Rabbitmqctl::default().run_async(args).await
}

impl Rabbitmqctl {
    /// Another executable in place of `rabbitmqctl` (tests use a scripted stand-in).
    pub fn with_program(mut self, program: impl Into<OsString>) -> Self {
        self.program = program.into();
        self
    }

    /// Talks to `node` (`name@host`) instead of the default node.
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    fn node_label(&self) -> String {
        match &self.node {
            Some(n) => format!("RabbitMQ node {n}"),
            None => "the RabbitMQ node".to_owned(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        if let Some(node) = &self.node {
            c.args(["-n", node]);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `rabbitmqctl args`; its standard output, or an error with its standard error.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.command().args(args).output().with_context(|| {
            format!(
                "running {} (is RabbitMQ installed? apt-get install -y rabbitmq-server)",
                self.program.to_string_lossy()
            )
        })?;
        if !out.status.success() {
            bail!(
                "rabbitmqctl {args:?} failed ({}): {}",
                out.status,
                last_lines(&out.stderr, &out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// [`Self::run`] off the async runtime's threads.
    pub async fn run_async(&self, args: Vec<String>) -> anyhow::Result<String> {
        let ctl = self.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            ctl.run(&refs)
        })
        .await?
    }

    /// Whether the node answers `rabbitmqctl status` now (registered and reachable; the
    /// broker application may still be booting).
    pub fn answers(&self) -> bool {
        self.run(&["status"]).is_ok()
    }

    /// Waits until the node answers `rabbitmqctl status`, then until it has fully booted
    /// (`rabbitmqctl await_startup`), all within `bound`. The error says which of the two
    /// never happened and where to look.
    pub fn wait_until_started(&self, bound: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + bound;
        let mut last_error;
        loop {
            match self.run(&["status"]) {
                Ok(_) => break,
                Err(e) => last_error = e,
            }
            if Instant::now() + PROBE_INTERVAL >= deadline {
                bail!(
                    "{} did not answer `rabbitmqctl status` within {bound:?}: is \
                     rabbitmq-server running (start it with `rabbitmq-server -detached`)? \
                     Its logs are in {LOG_DIR}. Last answer: {last_error:#}",
                    self.node_label()
                );
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // await_startup takes whole seconds; never 0 (that would mean "no wait").
        let secs = left.as_secs().max(1).to_string();
        self.run(&["await_startup", "--timeout", &secs])
            .with_context(|| {
                format!(
                    "{} answers but did not finish booting within {bound:?}; its logs are \
                     in {LOG_DIR}",
                    self.node_label()
                )
            })?;
        Ok(())
    }

    /// [`Self::wait_until_started`] off the async runtime's threads.
    pub async fn wait_until_started_async(&self, bound: Duration) -> anyhow::Result<()> {
        let ctl = self.clone();
        tokio::task::spawn_blocking(move || ctl.wait_until_started(bound)).await?
    }

    /// Starts the node with `rabbitmq-server -detached` unless it already answers, then
    /// waits until it has started (see [`Self::wait_until_started`]). `env` reaches the
    /// server (e.g. `RABBITMQ_NODENAME`, ports and directories of a private node).
    pub fn start_detached(
        &self,
        server: impl AsRef<OsStr>,
        env: &[(&str, &OsStr)],
        bound: Duration,
    ) -> anyhow::Result<()> {
        if !self.answers() {
            let server = server.as_ref();
            let out = Command::new(server)
                .arg("-detached")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {} -detached", server.to_string_lossy()))?;
            if !out.status.success() {
                bail!(
                    "{} -detached failed ({}): {}",
                    server.to_string_lossy(),
                    out.status,
                    last_lines(&out.stderr, &out.stdout)
                );
            }
        }
        self.wait_until_started(bound)
    }
}

/// The informative part of a tool's output for an error message: rabbitmqctl's
/// diagnostics run to 30 lines of boilerplate around one or two lines that name the cause
/// ("Error: …", "epmd reports: …"); other tools' last lines.
fn last_lines(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.iter().all(u8::is_ascii_whitespace) {
        stdout
    } else {
        stderr
    };
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let causes: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("Error") || l.contains("epmd reports"))
        .collect();
    if causes.is_empty() {
        lines[lines.len().saturating_sub(8)..].join(" | ")
    } else {
        causes.join(" | ")
    }
}
