//! Interoperability with independent, widely used SDKs from npm (`crates/e2e/interop`):
//! they must accept what our channel clients send, what our sandbox answers and the
//! callbacks our sandbox sends. It proves both sides speak the real protocol, not just
//! each other.
//!
//! Needs Node ≥ 18 and npm; `npm ci` runs here when `node_modules` is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use paywire_channels::wechat::{
    DEV_APIV3_KEY, DEV_APPID, DEV_MCHID, DEV_MERCHANT_SERIAL_NO, DEV_WECHATPAY_PUBLIC_KEY_ID,
    WechatPay, WechatPayConfig, WechatPayKeyring,
};
use paywire_channels::{CloseOutcome, CreatePayment, PaymentChannel, PaymentState, keys};
use paywire_domain::{Fen, PayNo};
use paywire_e2e::test_key;
use paywire_platform::config::HttpSettings;
use serde::Serialize;
use serde_json::{Value, json};

const INTEROP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop");
/// Packages the scripts import; one missing means `node_modules` must be (re)installed.
const SDKS: [&str; 2] = ["wechatpay-axios-plugin", "alipay-sdk"];

fn http0() -> HttpSettings {
    HttpSettings {
        host: "127.0.0.1".into(),
        port: 0,
        workers: 1,
    }
}

fn spawn_logged<F, E>(name: &'static str, fut: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            eprintln!("{name} stopped: {e}");
        }
    })
}

/// Aborts the servers of a test when it ends, passed or not.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn require_tool(tool: &str) -> anyhow::Result<()> {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ensure!(
        found,
        "the interop test needs `{tool}` (Node.js ≥ 18 with npm) on PATH: it runs \
         independent channel SDKs from npm against our sandbox"
    );
    Ok(())
}

/// Installs the pinned SDKs once per test process (tests run in parallel threads).
fn ensure_sdks() -> anyhow::Result<()> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("node")?;
    require_tool("npm")?;
    let modules = Path::new(INTEROP_DIR).join("node_modules");
    if SDKS.iter().all(|sdk| modules.join(sdk).is_dir()) {
        return Ok(());
    }
    let out = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(INTEROP_DIR)
        .output()
        .context("running npm ci")?;
    ensure!(
        out.status.success(),
        "npm ci in {INTEROP_DIR} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The channel sandbox in-process, with the test keys.
async fn start_sandbox(tasks: &mut Tasks) -> anyhow::Result<String> {
    let mut settings = channel_sandbox::Settings {
        http: http0(),
        ..Default::default()
    };
    settings.wechat.merchant_public_key_path = test_key("wechat/merchant_public_key.pem");
    settings.wechat.wechatpay_private_key_path = test_key("wechat/wechatpay_private_key.pem");
    let sandbox = channel_sandbox::build(settings).await.context("sandbox")?;
    let url = format!("http://127.0.0.1:{}", sandbox.port());
    tasks.0.push(spawn_logged("channel-sandbox", sandbox.run()));
    Ok(url)
}

/// One request exactly as it arrived: the bytes a channel's SDK must accept.
#[derive(Debug, Clone, Serialize)]
struct Recorded {
    method: String,
    /// Path and query as sent (the signed canonical URL).
    url: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A transparent HTTP proxy in front of the sandbox that writes down every request.
struct Recorder {
    target: String,
    http: reqwest::Client,
    seen: Mutex<Vec<Recorded>>,
}

async fn record_and_forward(
    req: HttpRequest,
    body: web::Bytes,
    recorder: web::Data<Recorder>,
) -> HttpResponse {
    let url = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    recorder.seen.lock().unwrap().push(Recorded {
        method: req.method().as_str().to_owned(),
        url: url.clone(),
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .expect("a method actix accepted");
    let mut forward = recorder
        .http
        .request(method, format!("{}{url}", recorder.target));
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            forward = forward.header(name, value);
        }
    }
    let answer = match forward.body(body.to_vec()).send().await {
        Ok(answer) => answer,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let mut reply = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(answer.status().as_u16()).expect("valid status"),
    );
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            reply.insert_header((name.as_str(), value.as_bytes()));
        }
    }
    match answer.bytes().await {
        Ok(bytes) => reply.body(bytes),
        Err(e) => HttpResponse::BadGateway().body(e.to_string()),
    }
}

async fn start_recorder(
    tasks: &mut Tasks,
    target: &str,
) -> anyhow::Result<(String, web::Data<Recorder>)> {
    let recorder = web::Data::new(Recorder {
        target: target.to_owned(),
        http: reqwest::Client::new(),
        seen: Mutex::new(Vec::new()),
    });
    let listener = paywire_platform::http::bind(&http0())?;
    let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let shared = recorder.clone();
    let server = paywire_platform::http::serve(listener, 1, move |cfg| {
        cfg.app_data(shared.clone())
            .default_service(web::to(record_and_forward));
    })?;
    tasks.0.push(spawn_logged("recorder", server));
    Ok((url, recorder))
}

fn unique_pay_no() -> PayNo {
    // Snowflake-shaped and unique per call within the sandbox's fresh world.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let millis = u64::try_from(Utc::now().timestamp_millis()).unwrap_or_default();
    format!("{}", (millis << 22) | n)
        .parse()
        .expect("valid pay_no")
}

/// Our WeChat channel client, exactly as the gateway builds it, aimed at `api_base`.
fn wechat_client(api_base: &str) -> anyhow::Result<WechatPay> {
    Ok(WechatPay::new(WechatPayConfig {
        api_base: api_base.to_owned(),
        mchid: DEV_MCHID.into(),
        appid: DEV_APPID.into(),
        merchant_serial_no: DEV_MERCHANT_SERIAL_NO.into(),
        merchant_private_key: keys::private_key_from_file(test_key(
            "wechat/merchant_private_key.pem",
        ))?,
        apiv3_key: secrecy::SecretString::from(DEV_APIV3_KEY),
        keyring: WechatPayKeyring::new().with_key(
            DEV_WECHATPAY_PUBLIC_KEY_ID,
            keys::public_key_from_file(test_key("wechat/wechatpay_public_key.pem"))?,
        ),
        notify_url: "http://127.0.0.1:8083/api/callback/wechat".into(),
        refund_notify_url: None,
        timeout: Duration::from_secs(10),
    })?)
}

/// Drives our WeChat client through prepay, query and close (which queries, then closes)
/// via the recorder, and returns the requests as they went over the wire.
async fn record_wechat_gateway_requests(
    tasks: &mut Tasks,
    sandbox_url: &str,
) -> anyhow::Result<Vec<Recorded>> {
    let (proxy_url, recorder) = start_recorder(tasks, sandbox_url).await?;
    let wechat = wechat_client(&proxy_url)?;
    let pay_no = unique_pay_no();
    let created = wechat
        .create_payment(&CreatePayment {
            pay_no,
            amount: Fen::new(1999)?,
            description: "Paywire interop: Rust for beginners".into(),
            expires_at: Utc::now() + chrono::Duration::minutes(30),
            attach: Some(r#"{"order_id":"1"}"#.into()),
        })
        .await?;
    ensure!(created.code_url.starts_with("weixin://"), "{created:?}");
    let state = wechat.query_payment(pay_no).await?;
    ensure!(state == PaymentState::NotPaid, "{state:?}");
    let closed = wechat.close_payment(pay_no).await?;
    ensure!(closed == CloseOutcome::Closed, "{closed:?}");
    let seen = recorder.seen.lock().unwrap().clone();
    let kinds: Vec<(&str, bool)> = seen
        .iter()
        .map(|r| (r.method.as_str(), r.url.ends_with("/close")))
        .collect();
    ensure!(
        kinds
            == [
                ("POST", false),
                ("GET", false),
                ("GET", false),
                ("POST", true)
            ],
        "unexpected request sequence: {kinds:?}"
    );
    Ok(seen)
}

fn wechat_fixture(requests: &[Recorded]) -> Value {
    json!({
        "mchid": DEV_MCHID,
        "appid": DEV_APPID,
        "merchant_serial_no": DEV_MERCHANT_SERIAL_NO,
        "wechatpay_public_key_id": DEV_WECHATPAY_PUBLIC_KEY_ID,
        "apiv3_key": DEV_APIV3_KEY,
        "merchant_private_key_path": test_key("wechat/merchant_private_key.pem"),
        "merchant_public_key_path": test_key("wechat/merchant_public_key.pem"),
        "wechatpay_public_key_path": test_key("wechat/wechatpay_public_key.pem"),
        "gateway_requests": requests,
    })
}

/// A fixture file removed when the test ends.
struct Fixture(PathBuf);

impl Fixture {
    fn write(channel: &str, value: &Value) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "paywire-interop-{channel}-{}.json",
            paywire_testkit::unique_suffix()
        ));
        std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
        Ok(Self(path))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a script reported: exit success and its JSON result line.
struct ScriptRun {
    success: bool,
    result: Value,
    stderr: String,
}

async fn run_script(
    script: &str,
    sandbox_url: &str,
    fixture: &Fixture,
) -> anyhow::Result<ScriptRun> {
    let run = tokio::process::Command::new("node")
        .arg(script)
        .arg(sandbox_url)
        .arg(&fixture.0)
        .current_dir(INTEROP_DIR)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .with_context(|| format!("{script} did not finish"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let Some(line) = stdout.lines().rev().find(|l| !l.trim().is_empty()) else {
        bail!("{script} printed nothing; stderr:\n{stderr}");
    };
    let result: Value = serde_json::from_str(line)
        .with_context(|| format!("{script} printed no JSON result: {stdout}\n{stderr}"))?;
    Ok(ScriptRun {
        success: out.status.success(),
        result,
        stderr,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wechat_sdk_accepts_our_gateway_requests_sandbox_answers_and_callbacks()
-> anyhow::Result<()> {
    ensure_sdks()?;
    let mut tasks = Tasks(Vec::new());
    let sandbox_url = start_sandbox(&mut tasks).await?;
    let requests = record_wechat_gateway_requests(&mut tasks, &sandbox_url).await?;
    let fixture = Fixture::write("wechat", &wechat_fixture(&requests))?;

    let run = run_script("wechat.mjs", &sandbox_url, &fixture).await?;
    let r = &run.result;
    assert!(run.success && r["ok"] == true, "{r:#}\n{}", run.stderr);
    assert_eq!(r["sdk"], "wechatpay-axios-plugin");
    // Every recorded request verified, was signed byte-identically by the SDK, and each of
    // its three tampered copies (body, URL, timestamp) was rejected.
    assert_eq!(r["gateway_requests_verified"], 4);
    assert_eq!(r["gateway_signatures_identical"], 4);
    assert_eq!(r["gateway_tampered_rejected"], 12);
    assert_eq!(
        r["sandbox_answers_verified"],
        json!(["prepay", "query", "close", "query_closed", "error_401"])
    );
    assert_eq!(r["sandbox_wrong_key_rejected"], true);
    assert_eq!(r["callbacks_verified"], 1);
    assert_eq!(r["callback_wrong_aad_rejected"], true);
    Ok(())
}

/// The check can fail: one changed byte in a recorded request makes the SDK refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wechat_sdk_refuses_a_tampered_gateway_request() -> anyhow::Result<()> {
    ensure_sdks()?;
    let mut tasks = Tasks(Vec::new());
    let sandbox_url = start_sandbox(&mut tasks).await?;
    let mut requests = record_wechat_gateway_requests(&mut tasks, &sandbox_url).await?;
    let prepay = &mut requests[0];
    assert!(prepay.body.contains("\"total\":1999"), "{}", prepay.body);
    prepay.body = prepay.body.replace("\"total\":1999", "\"total\":1");
    let fixture = Fixture::write("wechat", &wechat_fixture(&requests))?;

    let run = run_script("wechat.mjs", &sandbox_url, &fixture).await?;
    assert!(!run.success, "{:#}", run.result);
    assert_eq!(run.result["ok"], false);
    let error = run.result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("POST /v3/pay/transactions/native: the SDK rejects our signature"),
        "{error}"
    );
    Ok(())
}

#[test]
fn a_missing_node_toolchain_is_reported_clearly() {
    let err = require_tool("paywire-no-such-node")
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs `paywire-no-such-node`"), "{err}");
    assert!(err.contains("Node.js"), "{err}");
    require_tool("node").expect("node is installed here");
}
