//! Child processes: building the binaries, running them with prefixed logs, stopping them.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::layout::{self, Service};

/// `cargo build -p <each service>` with the terminal attached, so compile errors show.
pub async fn build_services() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").current_dir(layout::repo_root());
    for s in layout::SERVICES {
        cmd.args(["-p", s.name]);
    }
    println!("==> building the services");
    let status = cmd.status().await.context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

/// Environment for one service: its own snowflake worker id (one shared environment
/// variable would give every service the same), and the database on `$PAYWIRE_PG` if that
/// was overridden (otherwise the service's own default and config file decide).
pub fn service_env(service: &Service, pg_override: Option<&str>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(id) = service.worker_id {
        env.push(("PAYWIRE__IDS__WORKER_ID".into(), id.to_string()));
    }
    if let Some(url) = pg_override
        .filter(|pg| !pg.trim().is_empty())
        .and_then(|pg| service.database_url(pg))
    {
        env.push(("PAYWIRE__DATABASE__URL".into(), url));
    }
    env
}

/// A running service whose output is copied to ours, each line prefixed `[name] `.
#[derive(Debug)]
pub struct Running {
    pub name: &'static str,
    pub child: Child,
}

pub fn spawn(service: &'static Service, args: &[&str]) -> anyhow::Result<Running> {
    let path = layout::binary(service.name);
    let mut child = Command::new(&path)
        .args(args)
        .envs(service_env(
            service,
            std::env::var("PAYWIRE_PG").ok().as_deref(),
        ))
        .env("PAYWIRE_GIT_SHA", layout::git_sha())
        .current_dir(layout::repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Never leave a service behind if xtask itself fails.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    let prefix = format!("[{}] ", service.name);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(copy_prefixed(BufReader::new(out), prefix.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(copy_prefixed(BufReader::new(err), prefix));
    }
    Ok(Running {
        name: service.name,
        child,
    })
}

async fn copy_prefixed<R: AsyncBufRead + Unpin>(reader: R, prefix: String) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("{}", prefixed(&prefix, &line));
    }
}

pub fn prefixed(prefix: &str, line: &str) -> String {
    format!("{prefix}{}", line.trim_end_matches('\r'))
}

/// The first child that has exited, if any.
pub fn first_exited(
    children: &mut [Running],
) -> anyhow::Result<Option<(&'static str, ExitStatus)>> {
    for r in children.iter_mut() {
        if let Some(status) = r.child.try_wait()? {
            return Ok(Some((r.name, status)));
        }
    }
    Ok(None)
}

/// Asks each child to stop (SIGTERM: the services shut down gracefully), then kills
/// whatever is still running after `grace`.
pub async fn stop_all(children: &mut [Running], grace: Duration) {
    for r in children.iter_mut() {
        if let (Ok(None), Some(pid)) = (r.child.try_wait(), r.child.id()) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    }
    for r in children.iter_mut() {
        match tokio::time::timeout(grace, r.child.wait()).await {
            Ok(Ok(status)) => println!("==> {} stopped ({status})", r.name),
            _ => {
                let _ = r.child.kill().await;
                println!("==> {} killed", r.name);
            }
        }
    }
}

/// Polls `GET <internal listener>/health/ready` (database, migrations, relay and consumers where the
/// service has them; every service answers it) until it answers 2xx, a child exits, or
/// `timeout` passes.
pub async fn wait_healthy(
    http: &reqwest::Client,
    service: &Service,
    children: &mut [Running],
    timeout: Duration,
) -> anyhow::Result<()> {
    let url = format!("{}/health/ready", service.internal_url());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some((name, status)) = first_exited(children)? {
            bail!("{name} exited ({status}) before the platform was up");
        }
        if let Ok(resp) = http.get(&url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{} did not answer {url} within {}s",
                service.name,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_their_worker_id_and_the_overridden_database() {
        let order = layout::service("order");
        assert_eq!(
            service_env(order, None),
            vec![("PAYWIRE__IDS__WORKER_ID".to_owned(), "2".to_owned())]
        );
        assert_eq!(
            service_env(order, Some("postgres://u@db:5433")),
            vec![
                ("PAYWIRE__IDS__WORKER_ID".to_owned(), "2".to_owned()),
                (
                    "PAYWIRE__DATABASE__URL".to_owned(),
                    "postgres://u@db:5433/paywire_order".to_owned()
                ),
            ]
        );
        assert_eq!(
            service_env(layout::service("channel-sandbox"), Some("postgres://x")),
            vec![]
        );
    }

    #[test]
    fn log_lines_are_prefixed_and_stripped_of_carriage_returns() {
        assert_eq!(prefixed("[order] ", "listening\r"), "[order] listening");
        assert_eq!(prefixed("[order] ", ""), "[order] ");
    }

    #[tokio::test]
    async fn copied_output_is_prefixed_line_by_line() {
        // copy_prefixed prints; check the reading side on an in-memory stream instead.
        let input: &[u8] = b"one\ntwo\r\n";
        let mut lines = BufReader::new(input).lines();
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(prefixed("[x] ", &line));
        }
        assert_eq!(seen, vec!["[x] one", "[x] two"]);
    }

    #[tokio::test]
    async fn exited_children_are_detected_and_stop_all_reaps_the_rest() {
        let mut children = vec![
            Running {
                name: "sleeper",
                child: Command::new("sleep")
                    .arg("30")
                    .kill_on_drop(true)
                    .spawn()
                    .unwrap(),
            },
            Running {
                name: "quitter",
                child: Command::new("false").spawn().unwrap(),
            },
        ];
        let exited = loop {
            if let Some(e) = first_exited(&mut children).unwrap() {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(exited.0, "quitter");
        assert!(!exited.1.success());
        stop_all(&mut children, Duration::from_secs(10)).await;
        let sleeper = children[0].child.try_wait().unwrap();
        assert!(sleeper.is_some(), "the sleeper still runs after stop_all");
    }

    /// A service without a database or worker id.
    /// A service whose internal listener is on `port` (the fake answers everything there).
    fn service(name: &'static str, port: u16) -> Service {
        Service {
            name,
            port: 0,
            internal_port: port,
            database: None,
            worker_id: None,
        }
    }

    #[tokio::test]
    async fn health_wait_fails_when_a_child_exits() {
        let http = reqwest::Client::new();
        let ghost = service("ghost", 1);
        let mut children = vec![Running {
            name: "ghost",
            child: Command::new("true").spawn().unwrap(),
        }];
        // Wait for the child to be gone so the check is deterministic.
        let _ = children[0].child.wait().await;
        let err = wait_healthy(&http, &ghost, &mut children, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ghost exited"), "{err}");
    }

    #[tokio::test]
    async fn health_wait_returns_once_the_service_answers() {
        let fake = crate::fake::start(crate::fake::Mode::Happy);
        let port = fake
            .internal_url
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let service = service("fake", port);
        wait_healthy(
            &reqwest::Client::new(),
            &service,
            &mut [],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        fake.stop().await;
    }

    #[tokio::test]
    async fn health_wait_gives_up_on_a_silent_port() {
        let http = reqwest::Client::new();
        // Port 1 has no listener: every probe is refused.
        let ghost = service("ghost", 1);
        let err = wait_healthy(&http, &ghost, &mut [], Duration::ZERO)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
    }
}
