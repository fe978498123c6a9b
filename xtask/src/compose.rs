//! `deploy/compose.yaml`: where its containers listen on the host's network.

use crate::layout::Service;

/// `deploy/compose.yaml` runs every service on its default port plus this, so the
/// containers never meet `cargo xtask up` (8080–8090) on the host's network.
pub const COMPOSE_PORT_OFFSET: u16 = 20000;
/// The compose stack's own PostgreSQL and RabbitMQ (the machine's hold 5432 and 5672).
pub const COMPOSE_PG_PORT: u16 = 28432;
pub const COMPOSE_AMQP_PORT: u16 = 28672;
pub const COMPOSE_AMQP_DIST_PORT: u16 = 28673;
pub const COMPOSE_EPMD_PORT: u16 = 28369;

/// `service`'s public port in `deploy/compose.yaml`.
pub fn port(service: &Service) -> u16 {
    service.port + COMPOSE_PORT_OFFSET
}

/// `service`'s internal port in `deploy/compose.yaml` (`/internal/*`, health, metrics).
pub fn internal_port(service: &Service) -> u16 {
    service.internal_port + COMPOSE_PORT_OFFSET
}

/// The public listener.
pub fn url(service: &Service) -> String {
    format!("http://127.0.0.1:{}", port(service))
}

/// The internal listener.
pub fn internal_url(service: &Service) -> String {
    format!("http://127.0.0.1:{}", internal_port(service))
}

// ------------------------------------------------------------------ compose-smoke

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use paywire_domain::topology::{LEARNING_PAY_RESULT_QUEUE, ORDER_PAY_RESULT_QUEUE};
use paywire_domain::{PayChannel, UserId};
use paywire_platform::config::AuthSettings;

use crate::demo::{self, Endpoints};
use crate::images::{self, Binaries, Docker};
use crate::layout::{self, SERVICES};

/// The smoke run's own compose project: it never touches a `-p paywire` stack's volumes.
pub const SMOKE_PROJECT: &str = "paywire-smoke";
/// First start includes initdb, RabbitMQ's boot and every migration.
const READY_TIMEOUT: Duration = Duration::from_secs(240);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the broker's queue statistics may lag behind a routed message.
const QUEUE_STATS_PATIENCE: Duration = Duration::from_secs(30);

/// `docker-compose` (1.29) if installed, else the `docker compose` plugin (v2).
#[derive(Debug, Clone)]
pub struct Compose {
    program: PathBuf,
    prefix: Vec<String>,
    project: String,
    file: PathBuf,
    env: Vec<(String, String)>,
}

impl Compose {
    pub fn locate(docker: &Docker, project: &str, file: PathBuf) -> anyhow::Result<Self> {
        let v1 = Command::new("docker-compose")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let (program, prefix) = if v1 {
            (PathBuf::from("docker-compose"), vec![])
        } else {
            let mut probe = docker.command();
            let v2 = probe
                .args(["compose", "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !v2 {
                bail!(
                    "neither docker-compose nor `docker compose` is installed: apt-get install -y docker-compose"
                );
            }
            (
                PathBuf::from(probe.get_program()),
                vec!["compose".to_owned()],
            )
        };
        Ok(Self {
            program,
            prefix,
            project: project.to_owned(),
            file,
            env: Vec::new(),
        })
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.prefix)
            .args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(layout::repo_root());
        cmd
    }

    /// Runs `args` with the terminal attached.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = self
            .command()
            .args(args)
            .status()
            .with_context(|| format!("running compose {args:?}"))?;
        if !status.success() {
            bail!("compose {args:?} failed ({status})");
        }
        Ok(())
    }

    /// Runs `args` and returns standard output.
    pub fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command()
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running compose {args:?}"))?;
        if !out.status.success() {
            bail!("compose {args:?} failed ({})", out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Containers, networks and volumes of the project: all gone.
    pub fn down(&self) -> anyhow::Result<()> {
        self.run(&["down", "--volumes", "--remove-orphans", "--timeout", "10"])
    }
}

/// Every port the compose stack listens on.
pub fn stack_ports() -> Vec<u16> {
    let mut ports: Vec<u16> = SERVICES.iter().map(port).collect();
    ports.extend(SERVICES.iter().map(internal_port));
    ports.extend([
        COMPOSE_PG_PORT,
        COMPOSE_AMQP_PORT,
        COMPOSE_AMQP_DIST_PORT,
        COMPOSE_EPMD_PORT,
    ]);
    ports
}

fn busy_ports() -> Vec<u16> {
    stack_ports()
        .into_iter()
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect()
}

/// The development compose file with throwaway secrets for the production-shaped one:
/// both must be valid for the installed Compose (1.29 rejects what v2 accepts).
fn validate_files(docker: &Docker) -> anyhow::Result<()> {
    let root = layout::repo_root();
    let dev = Compose::locate(docker, SMOKE_PROJECT, root.join("deploy/compose.yaml"))?;
    dev.output(&["config", "--quiet"])
        .context("deploy/compose.yaml is not valid")?;
    let secrets =
        std::env::temp_dir().join(format!("paywire-smoke-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&secrets)?;
    for name in [
        "order_service_token",
        "operator_token",
        "wechat_apiv3_key",
        "wechat_merchant_private_key.pem",
        "wechatpay_public_key.pem",
        "alipay_app_private_key.pem",
        "alipay_public_key.pem",
        "postgres_password",
        "database_url_order",
        "database_url_payment",
        "database_url_learning",
        "amqp_url",
        "rabbitmq.conf",
    ] {
        std::fs::write(secrets.join(name), "")?;
    }
    let mut prod = Compose::locate(
        docker,
        SMOKE_PROJECT,
        root.join("deploy/compose.production.yaml"),
    )?
    .env("PAYWIRE_SECRETS_DIR", &secrets.to_string_lossy());
    for (key, value) in [
        ("PAYWIRE_PUBLIC_URL", "https://pay.example.com"),
        (
            "PAYWIRE_JWKS_URL",
            "https://login.example.com/.well-known/jwks.json",
        ),
        ("PAYWIRE_TOKEN_ISSUER", "https://login.example.com/"),
        ("PAYWIRE_TOKEN_AUDIENCE", "paywire-api"),
        ("PAYWIRE_WECHAT_MCHID", "1230000109"),
        ("PAYWIRE_WECHAT_APPID", "wx0000000000000001"),
        ("PAYWIRE_WECHAT_MERCHANT_SERIAL_NO", "00"),
        ("PAYWIRE_WECHATPAY_PUBLIC_KEY_ID", "PUB_KEY_ID_00"),
        ("PAYWIRE_ALIPAY_APP_ID", "2021004100000000"),
        ("PAYWIRE_ALIPAY_SELLER_ID", "2088000000000000"),
    ] {
        prod = prod.env(key, value);
    }
    let checked = prod.output(&["config", "--quiet"]);
    let _ = std::fs::remove_dir_all(&secrets);
    checked.context("deploy/compose.production.yaml is not valid")?;
    Ok(())
}

/// Timed steps of the smoke run, printed as they finish and summed up at the end.
#[derive(Debug, Default)]
struct Timeline {
    started: Option<Instant>,
    steps: Vec<(String, Duration)>,
}

impl Timeline {
    fn begin(&mut self, what: &str) -> Instant {
        self.started.get_or_insert_with(Instant::now);
        println!("\n==> [compose-smoke] {what}");
        Instant::now()
    }

    fn end(&mut self, what: &str, since: Instant) {
        let took = since.elapsed();
        println!(
            "==> [compose-smoke] {what}: done in {}",
            images::seconds(took)
        );
        self.steps.push((what.to_owned(), took));
    }

    fn table(&self) -> String {
        let mut out = String::from("| step | time |\n|---|---:|\n");
        for (what, took) in &self.steps {
            out.push_str(&format!("| {what} | {} |\n", images::seconds(*took)));
        }
        if let Some(started) = self.started {
            out.push_str(&format!(
                "| total | {} |\n",
                images::seconds(started.elapsed())
            ));
        }
        out
    }
}

/// `cargo xtask compose-smoke`: build the images, run the development stack in containers,
/// buy with both channels through its HTTP ports, kill a service mid-purchase, check that
/// nothing was lost, and tear everything down, also on failure or Ctrl-C.
pub async fn smoke(binaries: Binaries) -> anyhow::Result<()> {
    let mut timeline = Timeline::default();
    let docker = Docker::locate()?;

    let t = timeline.begin("compose files are valid (development and production-shaped)");
    validate_files(&docker)?;
    timeline.end("validate compose files", t);

    let t = timeline.begin("images");
    let mut steps = images::Steps::default();
    let built = {
        let docker = docker.clone();
        tokio::task::spawn_blocking(move || {
            images::build_all(&docker, &mut steps, binaries).map(|()| steps)
        })
        .await??
    };
    println!("\n{}", built.table(&docker));
    timeline.end("build images", t);

    let compose = Compose::locate(
        &docker,
        SMOKE_PROJECT,
        layout::repo_root().join("deploy/compose.yaml"),
    )?
    .env("PAYWIRE_IMAGE_TAG", binaries.tag());
    // A stack left over by an interrupted run goes first.
    compose.down()?;
    let busy = busy_ports();
    if !busy.is_empty() {
        bail!(
            "ports {busy:?} are taken on 127.0.0.1: stop what listens there (another \
             compose stack? `docker-compose -p paywire -f deploy/compose.yaml down`)"
        );
    }

    let outcome = tokio::select! {
        r = run_stack(&docker, &compose, binaries, &mut timeline) => r,
        r = tokio::signal::ctrl_c() => {
            r.context("listening for Ctrl-C")?;
            Err(anyhow!("interrupted"))
        }
    };
    if let Err(e) = &outcome {
        println!("\n==> [compose-smoke] FAILED: {e:#}\n==> last log lines of every container:");
        let _ = compose.run(&["logs", "--no-color", "--tail", "40"]);
    }
    let t = timeline.begin("tear down (containers, networks, volumes)");
    let down = compose.down();
    let leftovers = leftovers(&docker);
    timeline.end("tear down", t);
    outcome?;
    down?;
    let leftovers = leftovers?;
    if !leftovers.is_empty() {
        bail!("left behind after `down`: {leftovers:?}");
    }
    println!("\n==> compose smoke passed\n\n{}", timeline.table());
    Ok(())
}

async fn run_stack(
    docker: &Docker,
    compose: &Compose,
    binaries: Binaries,
    timeline: &mut Timeline,
) -> anyhow::Result<()> {
    let t = timeline.begin("start the stack (docker-compose up -d)");
    compose.run(&["up", "--detach", "--no-build"])?;
    timeline.end("docker-compose up", t);

    let t = timeline.begin("wait for readiness");
    wait_ready(&SERVICES.iter().collect::<Vec<_>>()).await?;
    timeline.end("readiness", t);

    let ep = endpoints();
    let auth = AuthSettings::default();
    let run_id = chrono::Utc::now().timestamp();
    for channel in PayChannel::ALL {
        let t = timeline.begin(&format!("buy a course with {channel}"));
        let user = UserId::parse(&format!("smoke-{channel}-{run_id}"))?;
        let outcome = demo::buy_paid_course(&ep, &auth, &user, *channel, SETTLE_TIMEOUT).await?;
        if outcome.order_status != "paid" || outcome.learn_status != "can_learn" {
            bail!("{channel}: {outcome:?}");
        }
        timeline.end(&format!("buy with {channel}"), t);
    }

    let t = timeline.begin("kill learning-center mid-purchase, pay, restart it");
    kill_mid_purchase(compose, &ep, &auth, run_id).await?;
    timeline.end("kill and restart learning-center", t);

    let t = timeline.begin("production mode refuses the development settings in a container");
    production_refusal(docker, binaries)?;
    timeline.end("production refusal", t);
    Ok(())
}

fn endpoints() -> Endpoints {
    Endpoints {
        learning_center: url(layout::service("learning-center")),
        order: url(layout::service("order")),
        sandbox: url(layout::service("channel-sandbox")),
    }
}

/// Each of `services` answers `/health/ready` with 200: its database reachable, its
/// migrations applied, its relay and consumers connected (what the images' HEALTHCHECK
/// asks through `<service> ready`).
async fn wait_ready(services: &[&layout::Service]) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    let mut pending: Vec<&layout::Service> = services.to_vec();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for s in pending {
            let ok = http
                .get(format!("{}/health/ready", internal_url(s)))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                println!(
                    "    {:<16} ready after {}",
                    s.name,
                    images::seconds(started.elapsed())
                );
            } else {
                still.push(s);
            }
        }
        pending = still;
        if !pending.is_empty() {
            if started.elapsed() > READY_TIMEOUT {
                let names: Vec<&str> = pending.iter().map(|s| s.name).collect();
                bail!(
                    "not ready after {}: {names:?}",
                    images::seconds(READY_TIMEOUT)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// The learning center is SIGKILLed after the order is placed: the payment goes through,
/// the order turns paid, the paid result waits in the learning center's durable queue, and
/// once the container is back the student is enrolled — exactly once, nothing parked.
async fn kill_mid_purchase(
    compose: &Compose,
    ep: &Endpoints,
    auth: &AuthSettings,
    run_id: i64,
) -> anyhow::Result<()> {
    let user = UserId::parse(&format!("smoke-kill-{run_id}"))?;
    let api = demo::Api::new(auth, &user)?;
    let started = demo::start_purchase(ep, &api, PayChannel::Wechat).await?;
    println!("==> SIGKILL learning-center");
    compose.run(&["kill", "-s", "SIGKILL", "learning-center"])?;
    demo::pay_with_wallet(ep, &api, &started).await?;
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    demo::await_paid(ep, &api, &started, deadline).await?;
    let lc = layout::service("learning-center");
    if reqwest::get(format!("{}/health", internal_url(lc)))
        .await
        .is_ok()
    {
        bail!("learning-center still answers after SIGKILL");
    }
    // A quorum queue's message count in `list_queues` comes from statistics the broker
    // refreshes every few seconds, so the order can turn paid before the count shows the
    // copy the fanout put in the learning center's queue at the same moment: ask again.
    let asked = Instant::now();
    let waiting = loop {
        let waiting = queue_depths(compose)?
            .get(LEARNING_PAY_RESULT_QUEUE)
            .copied()
            .unwrap_or(0);
        if waiting > 0 || asked.elapsed() > QUEUE_STATS_PATIENCE {
            break waiting;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("==> learning-center is down; {LEARNING_PAY_RESULT_QUEUE} holds {waiting} message(s)");
    if waiting == 0 {
        bail!(
            "the paid result is not waiting in {LEARNING_PAY_RESULT_QUEUE} ({} after the order \
             turned paid)",
            images::seconds(asked.elapsed())
        );
    }
    println!("==> restart learning-center");
    compose.run(&["start", "learning-center"])?;
    // `start` returns once the container runs, before the service listens.
    wait_ready(&[lc]).await?;
    demo::await_learnable(ep, &api, &started, deadline).await?;
    // Both subscribers drained, nothing dead-lettered.
    let queues = [LEARNING_PAY_RESULT_QUEUE, ORDER_PAY_RESULT_QUEUE];
    let depths = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let depths = queue_depths(compose)?;
            if queues.iter().all(|q| depths.get(*q) == Some(&0)) {
                return anyhow::Ok(depths);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .map_err(|_| anyhow!("{queues:?} did not drain"))??;
    for queue in queues {
        let dlq = format!("{queue}.dlq");
        let parked = depths.get(&dlq).copied().unwrap_or(0);
        println!("==> {queue}: 0 waiting, {dlq}: {parked} parked");
        if parked != 0 {
            bail!("{parked} message(s) parked in {dlq}");
        }
    }
    let courses = my_courses(&api, ep, &started.course.id).await?;
    if courses != 1 {
        bail!(
            "the student holds course {} {courses} times",
            started.course.id
        );
    }
    println!("==> the student is enrolled exactly once; nothing was lost");
    Ok(())
}

/// Messages (ready and unacknowledged) per queue, asked of the stack's broker container.
fn queue_depths(compose: &Compose) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let out = compose.output(&[
        "exec",
        "-T",
        "rabbitmq",
        "rabbitmqctl",
        "-q",
        "list_queues",
        "name",
        "messages",
    ])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter_map(|(name, n)| Some((name.to_owned(), n.trim().parse().ok()?)))
        .collect())
}

#[derive(Debug, serde::Deserialize)]
struct MyCourses {
    courses: Vec<MyCourse>,
}

#[derive(Debug, serde::Deserialize)]
struct MyCourse {
    course_id: String,
}

/// How many of the student's enrolments are for `course_id`.
async fn my_courses(api: &demo::Api, ep: &Endpoints, course_id: &str) -> anyhow::Result<usize> {
    let mine: MyCourses = api
        .get(&format!("{}/api/learning/my-courses", ep.learning_center))
        .await?;
    Ok(mine
        .courses
        .iter()
        .filter(|c| c.course_id == course_id)
        .count())
}

/// The gateway's image, started in production mode with the stack's settings (test keys,
/// sandbox URLs, development secrets), must refuse and name them.
fn production_refusal(docker: &Docker, binaries: Binaries) -> anyhow::Result<()> {
    let keys = layout::repo_root().join("deploy/test-keys");
    let out = docker
        .command()
        .args(["run", "--rm", "--network", "host"])
        .arg("-v")
        .arg(format!("{}:/keys:ro", keys.display()))
        .args([
            "-e",
            "PAYWIRE__ENVIRONMENT=production",
            "-e",
            "PAYWIRE__WECHAT__MERCHANT_PRIVATE_KEY_PATH=/keys/wechat/merchant_private_key.pem",
            "-e",
            "PAYWIRE__ALIPAY__APP_PRIVATE_KEY_PATH=/keys/alipay/app_private_key.pem",
            &images::service_image("payment-gateway", binaries),
        ])
        .output()
        .context("docker run")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success()
        || !text.contains("refuses to start with PAYWIRE__ENVIRONMENT=production")
    {
        bail!("the gateway did not refuse production with development settings:\n{text}");
    }
    for named in [
        "auth.jwks",
        "auth.jwt_secret",
        "wechat.merchant_private_key_path",
        "alipay.app_private_key_path",
        "wechat.api_base",
    ] {
        if !text.contains(named) {
            bail!("the refusal does not name {named}:\n{text}");
        }
    }
    println!(
        "==> refused, naming every development setting:\n{}",
        text.trim()
    );
    Ok(())
}

/// Containers or volumes still labelled with the smoke project.
fn leftovers(docker: &Docker) -> anyhow::Result<Vec<String>> {
    let label = format!("label=com.docker.compose.project={SMOKE_PROJECT}");
    let mut left = Vec::new();
    for what in [["ps", "-a"], ["volume", "ls"], ["network", "ls"]] {
        let out = docker
            .command()
            .args(what)
            .args(["--quiet", "--filter", &label])
            .output()
            .context("docker ls")?;
        left.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| format!("{} {l}", what[0])),
        );
    }
    Ok(left)
}
