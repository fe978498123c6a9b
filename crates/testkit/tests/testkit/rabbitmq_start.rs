//! Waiting for a RabbitMQ node that is starting: first `rabbitmqctl status`, then
//! `await_startup`, within one bound. A scripted stand-in for `rabbitmqctl` pins down the
//! order and the error messages; a private node (own name, ports and data directory; the
//! shared broker is never touched) shows the real race being handled.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use paywire_testkit::rabbitmq::{Rabbitmqctl, START_BOUND};
use paywire_testkit::{TempDir, unique_suffix};

/// What the real `rabbitmqctl` does against a node that registers with epmd after
/// `status` has been asked `registers_after` times: until then `status` and
/// `await_startup` fail with epmd's answer (exit 69); `await_startup` succeeds only when
/// `boots` is true. Every call is appended to `calls.log`.
fn fake_rabbitmqctl(dir: &Path, registers_after: u32, boots: bool) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
dir='{dir}'
echo "$*" >> "$dir/calls.log"
not_running() {{
    echo "Error: unable to perform an operation on node 'rabbit@localhost'." >&2
    echo "DIAGNOSTICS" >&2
    echo "  * epmd reports: node 'rabbit' not running at all" >&2
    exit 69
}}
case "$*" in
    *status*)
        n=$(cat "$dir/probes" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$dir/probes"
        [ "$n" -gt {registers_after} ] || not_running
        touch "$dir/registered"; echo "Status of node rabbit@localhost ..."; exit 0 ;;
    *await_startup*)
        [ -f "$dir/registered" ] || not_running
        {boot}
        ;;
esac
"#,
        dir = dir.display(),
        registers_after = registers_after,
        boot = if boots {
            "exit 0"
        } else {
            "echo 'Error: timed out waiting for the node to boot' >&2; exit 75"
        },
    );
    let path = dir.join("rabbitmqctl");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn await_startup_runs_only_once_the_node_answers_status() {
    let scratch = TempDir::new("paywire-fake-rabbitmqctl").unwrap();
    let ctl = Rabbitmqctl::default().with_program(fake_rabbitmqctl(&scratch.path, 2, true));
    ctl.wait_until_started(Duration::from_secs(60)).unwrap();
    let calls = calls(&scratch.path);
    assert_eq!(calls[..3], ["status", "status", "status"], "{calls:?}");
    assert_eq!(calls.len(), 4, "{calls:?}");
    let timeout: u64 = calls[3]
        .strip_prefix("await_startup --timeout ")
        .unwrap_or_else(|| panic!("{calls:?}"))
        .parse()
        .unwrap();
    // What is left of the one bound, not a second full bound.
    assert!((1..60).contains(&timeout), "{calls:?}");
}

#[test]
fn a_node_that_never_answers_is_reported_within_the_bound() {
    let scratch = TempDir::new("paywire-fake-rabbitmqctl").unwrap();
    let ctl = Rabbitmqctl::default().with_program(fake_rabbitmqctl(&scratch.path, u32::MAX, true));
    let err = ctl
        .wait_until_started(Duration::from_secs(2))
        .unwrap_err()
        .to_string();
    for needle in [
        "did not answer `rabbitmqctl status` within 2s",
        "rabbitmq-server -detached",
        "/var/log/rabbitmq",
        // The cause from rabbitmqctl's diagnostics, without its boilerplate.
        "epmd reports: node 'rabbit' not running at all",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
    assert!(!err.contains("DIAGNOSTICS"), "{err}");
    let calls = calls(&scratch.path);
    assert!(
        calls.len() >= 2,
        "it probed again before giving up: {calls:?}"
    );
    assert!(calls.iter().all(|c| c == "status"), "{calls:?}");
}

#[test]
fn a_node_that_answers_but_never_boots_is_reported() {
    let scratch = TempDir::new("paywire-fake-rabbitmqctl").unwrap();
    let ctl = Rabbitmqctl::default().with_program(fake_rabbitmqctl(&scratch.path, 0, false));
    let err = format!(
        "{:#}",
        ctl.wait_until_started(Duration::from_secs(30)).unwrap_err()
    );
    assert!(err.contains("answers but did not finish booting"), "{err}");
    assert!(
        err.contains("timed out waiting for the node to boot"),
        "{err}"
    );
}

#[test]
fn a_named_node_is_addressed_with_n() {
    let scratch = TempDir::new("paywire-fake-rabbitmqctl").unwrap();
    let ctl = Rabbitmqctl::default()
        .with_program(fake_rabbitmqctl(&scratch.path, 0, true))
        .with_node("other@localhost");
    ctl.wait_until_started(Duration::from_secs(30)).unwrap();
    let calls = calls(&scratch.path);
    assert_eq!(calls[0], "-n other@localhost status", "{calls:?}");
    assert!(
        calls[1].starts_with("-n other@localhost await_startup"),
        "{calls:?}"
    );
}

#[test]
fn a_missing_rabbitmqctl_names_the_package() {
    let err = Rabbitmqctl::default()
        .with_program("/nonexistent/rabbitmqctl")
        .run(&["status"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("apt-get install -y rabbitmq-server"), "{err}");
}

/// A private RabbitMQ node, stopped (and its data removed) on drop.
struct PrivateNode {
    ctl: Rabbitmqctl,
    _data: TempDir,
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        let _ = self.ctl.run(&["stop"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real race: `rabbitmq-server -detached` returns before the node has registered,
/// so an immediate `await_startup` would fail; `start_detached` waits and succeeds.
#[test]
fn a_freshly_started_node_is_waited_for() {
    let data = TempDir::new("paywire-rabbitmq-node").unwrap();
    // Debian's wrapper runs the server as the `rabbitmq` user when called as root.
    let as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if as_root {
        let ids = Command::new("id")
            .args(["-u", "rabbitmq"])
            .output()
            .unwrap();
        let uid: u32 = String::from_utf8_lossy(&ids.stdout).trim().parse().unwrap();
        std::os::unix::fs::chown(&data.path, Some(uid), None).unwrap();
    }
    let plugins = data.path.join("enabled_plugins");
    // No plugins: the management listener would collide with the shared node's.
    std::fs::write(&plugins, "[].\n").unwrap();
    let name = format!("paywire-t-{}@localhost", unique_suffix());
    let node_port = free_port().to_string();
    let dist_port = free_port().to_string();
    // Its own configuration: the machine's /etc/rabbitmq/rabbitmq.conf names port 5672.
    let config = data.path.join("rabbitmq.conf");
    std::fs::write(
        &config,
        format!("listeners.tcp.local = 127.0.0.1:{node_port}\n"),
    )
    .unwrap();
    let mnesia = data.path.join("mnesia");
    let logs = data.path.join("log");
    let pid = data.path.join("pid");
    let env: [(&str, &OsStr); 8] = [
        ("RABBITMQ_CONFIG_FILE", config.as_os_str()),
        ("RABBITMQ_NODENAME", name.as_ref()),
        ("RABBITMQ_NODE_PORT", node_port.as_ref()),
        ("RABBITMQ_DIST_PORT", dist_port.as_ref()),
        ("RABBITMQ_MNESIA_BASE", mnesia.as_os_str()),
        ("RABBITMQ_LOG_BASE", logs.as_os_str()),
        ("RABBITMQ_ENABLED_PLUGINS_FILE", plugins.as_os_str()),
        ("RABBITMQ_PID_FILE", pid.as_os_str()),
    ];
    let node = PrivateNode {
        ctl: Rabbitmqctl::default().with_node(&name),
        _data: data,
    };
    assert!(!node.ctl.answers(), "{name} must not run before the test");
    if let Err(e) = node
        .ctl
        .start_detached("rabbitmq-server", &env, START_BOUND)
    {
        let log = std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
            .collect::<String>();
        panic!("{e:#}\nnode logs:\n{log}");
    }
    // Booted: it serves AMQP's port and takes management commands.
    std::net::TcpStream::connect(("127.0.0.1", node_port.parse::<u16>().unwrap())).unwrap();
    node.ctl.run(&["add_vhost", "after-start"]).unwrap();
    // Starting an answering node again is a no-op that returns at once.
    node.ctl
        .start_detached("/nonexistent/rabbitmq-server", &env, START_BOUND)
        .unwrap();
}

/// `.ci/run`'s `wait_for_rabbitmq`, run on its own with `rabbitmqctl` resolved in `dir`.
fn ci_wait_for_rabbitmq(dir: &Path, bound_secs: u32) -> std::process::Output {
    let ci_run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/run");
    let script = format!(
        "set -euo pipefail\neval \"$(sed -n '/^wait_for_rabbitmq() {{$/,/^}}$/p' '{}')\"\n\
         declare -F wait_for_rabbitmq >/dev/null || {{ echo 'no wait_for_rabbitmq in .ci/run' >&2; exit 99; }}\n\
         wait_for_rabbitmq {bound_secs}\n",
        ci_run.display()
    );
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-c", &script])
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn ci_run_waits_for_status_before_await_startup() {
    let scratch = TempDir::new("paywire-fake-rabbitmqctl").unwrap();
    fake_rabbitmqctl(&scratch.path, 2, true);
    let out = ci_wait_for_rabbitmq(&scratch.path, 60);
    assert!(out.status.success(), "{out:?}");
    let calls = calls(&scratch.path);
    assert_eq!(calls[..3], ["status", "status", "status"], "{calls:?}");
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(
        calls[3].starts_with("await_startup --timeout "),
        "{calls:?}"
    );
}

#[test]
fn ci_run_reports_a_node_that_never_answers() {
    let scratch = TempDir::new("paywire-fake-rabbitmqctl").unwrap();
    fake_rabbitmqctl(&scratch.path, u32::MAX, true);
    let out = ci_wait_for_rabbitmq(&scratch.path, 2);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "did not answer 'rabbitmqctl status' within 2s",
        "/var/log/rabbitmq/",
        "epmd reports: node 'rabbit' not running at all",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
    assert!(calls(&scratch.path).iter().all(|c| c == "status"));
}

#[test]
fn ci_run_reports_a_node_that_never_boots() {
    let scratch = TempDir::new("paywire-fake-rabbitmqctl").unwrap();
    fake_rabbitmqctl(&scratch.path, 0, false);
    let out = ci_wait_for_rabbitmq(&scratch.path, 30);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("answers but did not finish booting"),
        "{stderr}"
    );
}
