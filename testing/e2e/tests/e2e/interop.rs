//! Interoperability with independent, widely used SDKs from npm (`testing/e2e/interop`):
//! they must accept what our channel clients send, what our sandbox answers and the
//! callbacks our sandbox sends. It proves both sides speak the real protocol, not just
//! each other.
//!
//! Needs Node ≥ 18 and npm (Debian 12's `nodejs` 18.19+ and `npm` do); `npm ci` runs here
//! when `node_modules` is missing or older than `package-lock.json`. `package.json`
//! pins `urllib` 4.4.0 under `alipay-sdk`: later 4.x use `undici` 7, which needs Node 20
//! ("ReferenceError: File is not defined" on 18).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use paywire_channels::alipay::{Alipay, AlipayConfig, DEV_APP_ID, DEV_SELLER_ID};
use paywire_channels::wechat::{
    DEV_APIV3_KEY, DEV_APPID, DEV_MCHID, DEV_MERCHANT_SERIAL_NO, DEV_WECHATPAY_PUBLIC_KEY_ID,
    WechatPay, WechatPayConfig, WechatPayKeyring,
};
use paywire_channels::{
    CloseOutcome, CreatePayment, CreateRefund, PaymentChannel, PaymentState, RefundState, keys,
};
use paywire_domain::{Fen, PayNo, RefundNo};
use paywire_e2e::test_key;
use paywire_platform::config::HttpSettings;
use serde::Serialize;
use serde_json::{Value, json};

const INTEROP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop");
/// Packages the scripts import; one missing means `node_modules` must be (re)installed.
const SDKS: [&str; 2] = ["wechatpay-axios-plugin", "alipay-sdk"];

fn http0() -> HttpSettings {
    HttpSettings {
        workers: 1,
        ..HttpSettings::on_port(0)
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
    if SDKS.iter().all(|sdk| modules.join(sdk).is_dir()) && installed_from_current_lock(&modules) {
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

/// Whether `node_modules` was installed from today's `package-lock.json`: npm writes its
/// own copy (`node_modules/.package-lock.json`) when it installs, so a lock file changed
/// since (a pin moved, say) is newer than that copy and calls for `npm ci` again.
fn installed_from_current_lock(modules: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(&Path::new(INTEROP_DIR).join("package-lock.json")),
        modified(&modules.join(".package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => installed >= lock,
        _ => false,
    }
}

/// The channel sandbox in-process, with the test keys.
async fn start_sandbox(tasks: &mut Tasks) -> anyhow::Result<String> {
    let mut settings = channel_sandbox::Settings {
        http: http0(),
        ..Default::default()
    };
    settings.wechat.merchant_public_key_path = test_key("wechat/merchant_public_key.pem");
    settings.wechat.wechatpay_private_key_path = test_key("wechat/wechatpay_private_key.pem");
    settings.alipay.app_public_key_path = test_key("alipay/app_public_key.pem");
    settings.alipay.alipay_private_key_path = test_key("alipay/alipay_private_key.pem");
    settings.wechat_v2.use_test_keys_in(&test_key("wechat_v2"));
    let sandbox = channel_sandbox::build(settings).await.context("sandbox")?;
    let url = format!("http://127.0.0.1:{}", sandbox.port());
    tasks
        .0
        .push(spawn_logged("channel-sandbox", sandbox.run_until_stopped()));
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

/// Path under the recorder where the sandbox's notifications for recorded payments go;
/// acknowledged on the spot, not recorded (the SDK checks notifications in the scripts).
const MERCHANT_NOTIFY_PATH: &str = "/merchant/notify";

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
    if req.path().starts_with(MERCHANT_NOTIFY_PATH) {
        // Both channels' acknowledgement: a 2xx (WeChat) whose body is `success` (Alipay).
        return HttpResponse::Ok().body("success");
    }
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
    let listeners = paywire_platform::http::bind(&http0())?;
    let url = format!("http://127.0.0.1:{}", listeners.public.local_addr()?.port());
    let shared = recorder.clone();
    let servers = paywire_platform::http::serve(
        listeners,
        1,
        paywire_platform::http::public_only(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(shared.clone())
                .default_service(web::to(record_and_forward));
        }),
    )?;
    tasks.0.push(spawn_logged("recorder", servers.public));
    tasks
        .0
        .push(spawn_logged("recorder (internal)", servers.internal));
    Ok((url, recorder))
}

/// Snowflake-shaped and unique per call within the sandbox's fresh world.
fn unique_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let millis = u64::try_from(Utc::now().timestamp_millis()).unwrap_or_default();
    format!("{}", (millis << 22) | n)
}

fn unique_pay_no() -> PayNo {
    unique_id().parse().expect("valid pay_no")
}

/// Our WeChat channel client, exactly as the gateway builds it, aimed at `api_base`.
fn wechat_client(api_base: &str, notify_url: &str) -> anyhow::Result<WechatPay> {
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
        notify_url: notify_url.to_owned(),
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
    let wechat = wechat_client(
        &proxy_url,
        &format!("{proxy_url}{MERCHANT_NOTIFY_PATH}/wechat"),
    )?;
    let payment = |pay_no: PayNo| CreatePayment {
        pay_no,
        amount: Fen::new(1999).expect("valid amount"),
        description: "Paywire interop: Rust 入门".into(),
        expires_at: Utc::now() + chrono::Duration::minutes(30),
        attach: Some(r#"{"order_id":"1"}"#.into()),
    };

    let unpaid = unique_pay_no();
    let created = wechat.create_payment(&payment(unpaid)).await?;
    ensure!(created.code_url.starts_with("weixin://"), "{created:?}");
    let state = wechat.query_payment(unpaid).await?;
    ensure!(state == PaymentState::NotPaid, "{state:?}");
    let closed = wechat.close_payment(unpaid).await?;
    ensure!(closed == CloseOutcome::Closed, "{closed:?}");

    let paid = unique_pay_no();
    let created = wechat.create_payment(&payment(paid)).await?;
    let wallet = reqwest::Client::new()
        .post(format!("{sandbox_url}/sandbox/wallet/pay"))
        .json(&json!({ "code": created.code_url }))
        .send()
        .await?;
    ensure!(wallet.status() == 200, "wallet: {}", wallet.text().await?);
    let PaymentState::Paid(confirmed) = wechat.query_payment(paid).await? else {
        bail!("the paid trade is not reported paid");
    };
    let refund_no: RefundNo = unique_id().parse()?;
    let refund = CreateRefund {
        refund_no,
        pay_no: paid,
        channel_trade_no: confirmed.channel_trade_no.clone(),
        refund_amount: Fen::new(500)?,
        total_amount: confirmed.amount,
        reason: "课程退款 interop".into(),
    };
    let refunded = wechat.refund(&refund).await?;
    ensure!(
        !matches!(refunded, RefundState::Failed { .. }),
        "{refunded:?}"
    );
    let queried = wechat.query_refund(refund_no, paid).await?;
    ensure!(
        !matches!(queried, RefundState::Failed { .. }),
        "{queried:?}"
    );

    let seen = recorder.seen.lock().unwrap().clone();
    let calls: Vec<String> = seen
        .iter()
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    // The unpaid trade: prepay, query, then close (which queries first).
    ensure!(
        calls.len() > 4
            && calls[0] == "POST /v3/pay/transactions/native"
            && calls[1].starts_with("GET /v3/pay/transactions/out-trade-no/")
            && calls[2].starts_with("GET /v3/pay/transactions/out-trade-no/")
            && calls[3].ends_with("/close"),
        "unexpected request sequence: {calls:?}"
    );
    for want in [
        "POST /v3/refund/domestic/refunds",
        "GET /v3/refund/domestic/refunds/",
    ] {
        ensure!(
            calls.iter().any(|c| c.starts_with(want)),
            "{want} not sent: {calls:?}"
        );
    }
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

/// Our Alipay channel client, exactly as the gateway builds it, aimed at `gateway_url`.
fn alipay_client(gateway_url: &str, notify_url: &str) -> anyhow::Result<Alipay> {
    Ok(Alipay::new(AlipayConfig {
        gateway_url: gateway_url.to_owned(),
        app_id: DEV_APP_ID.into(),
        seller_id: DEV_SELLER_ID.into(),
        app_private_key: keys::private_key_from_file(test_key("alipay/app_private_key.pem"))?,
        alipay_public_key: keys::public_key_from_file(test_key("alipay/alipay_public_key.pem"))?,
        notify_url: notify_url.to_owned(),
        timeout: Duration::from_secs(10),
    })?)
}

/// The `method` parameter of a recorded Alipay request (form body or URL query).
fn alipay_method(r: &Recorded) -> Option<String> {
    let url = reqwest::Url::parse(&format!("http://recorded{}", r.url)).ok()?;
    let from_body = reqwest::Url::parse(&format!("http://recorded/?{}", r.body)).ok()?;
    url.query_pairs()
        .chain(from_body.query_pairs())
        .find(|(k, _)| k == "method")
        .map(|(_, v)| v.into_owned())
}

/// Drives our Alipay client through every call it makes (precreate, query and close of an
/// unpaid trade; precreate, query, refund and refund query of a paid one) via the
/// recorder, and returns the requests as they went over the wire.
async fn record_alipay_gateway_requests(
    tasks: &mut Tasks,
    sandbox_url: &str,
) -> anyhow::Result<Vec<Recorded>> {
    let (proxy_url, recorder) = start_recorder(tasks, sandbox_url).await?;
    let alipay = alipay_client(
        &format!("{proxy_url}/gateway.do"),
        &format!("{proxy_url}{MERCHANT_NOTIFY_PATH}/alipay"),
    )?;
    let payment = |pay_no: PayNo| CreatePayment {
        pay_no,
        amount: Fen::new(1999).expect("valid amount"),
        description: "Paywire interop: Rust 入门".into(),
        expires_at: Utc::now() + chrono::Duration::minutes(30),
        attach: Some(r#"{"order_id":"1"}"#.into()),
    };

    let unpaid = unique_pay_no();
    let created = alipay.create_payment(&payment(unpaid)).await?;
    ensure!(
        created.code_url.starts_with("https://qr.alipay.com/"),
        "{created:?}"
    );
    let state = alipay.query_payment(unpaid).await?;
    ensure!(state == PaymentState::NotPaid, "{state:?}");
    let closed = alipay.close_payment(unpaid).await?;
    ensure!(closed == CloseOutcome::Closed, "{closed:?}");

    let paid = unique_pay_no();
    let created = alipay.create_payment(&payment(paid)).await?;
    let wallet = reqwest::Client::new()
        .post(format!("{sandbox_url}/sandbox/wallet/pay"))
        .json(&json!({ "code": created.code_url }))
        .send()
        .await?;
    ensure!(wallet.status() == 200, "wallet: {}", wallet.text().await?);
    let PaymentState::Paid(confirmed) = alipay.query_payment(paid).await? else {
        bail!("the paid trade is not reported paid");
    };
    let refund_no: RefundNo = unique_id().parse()?;
    let refund = CreateRefund {
        refund_no,
        pay_no: paid,
        channel_trade_no: confirmed.channel_trade_no.clone(),
        refund_amount: Fen::new(500)?,
        total_amount: confirmed.amount,
        reason: "课程退款 interop".into(),
    };
    let refunded = alipay.refund(&refund).await?;
    ensure!(
        matches!(refunded, RefundState::Succeeded { .. }),
        "{refunded:?}"
    );
    let queried = alipay.query_refund(refund_no, paid).await?;
    ensure!(
        matches!(queried, RefundState::Succeeded { .. }),
        "{queried:?}"
    );

    let seen = recorder.seen.lock().unwrap().clone();
    let methods: Vec<String> = seen.iter().filter_map(alipay_method).collect();
    ensure!(
        methods.len() == seen.len(),
        "a request without method: {seen:?}"
    );
    for want in [
        "alipay.trade.precreate",
        "alipay.trade.query",
        "alipay.trade.close",
        "alipay.trade.refund",
        "alipay.trade.fastpay.refund.query",
    ] {
        ensure!(
            methods.iter().any(|m| m == want),
            "{want} not sent: {methods:?}"
        );
    }
    Ok(seen)
}

fn alipay_fixture(requests: &[Recorded]) -> Value {
    json!({
        "app_id": DEV_APP_ID,
        "seller_id": DEV_SELLER_ID,
        "app_private_key_path": test_key("alipay/app_private_key.pem"),
        "app_public_key_path": test_key("alipay/app_public_key.pem"),
        "alipay_public_key_path": test_key("alipay/alipay_public_key.pem"),
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
    let n = requests.len();
    assert_eq!(r["gateway_requests_verified"], n);
    assert_eq!(r["gateway_signatures_identical"], n);
    assert_eq!(r["gateway_tampered_rejected"], 3 * n);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alipay_sdk_accepts_our_gateway_requests_sandbox_answers_and_notifications()
-> anyhow::Result<()> {
    ensure_sdks()?;
    let mut tasks = Tasks(Vec::new());
    let sandbox_url = start_sandbox(&mut tasks).await?;
    let requests = record_alipay_gateway_requests(&mut tasks, &sandbox_url).await?;
    let methods: Vec<String> = requests.iter().filter_map(alipay_method).collect();
    let fixture = Fixture::write("alipay", &alipay_fixture(&requests))?;

    let run = run_script("alipay.mjs", &sandbox_url, &fixture).await?;
    let r = &run.result;
    assert!(run.success && r["ok"] == true, "{r:#}\n{}", run.stderr);
    assert_eq!(r["sdk"], "alipay-sdk");
    // Every recorded call verified, was signed byte-identically by the SDK, and each of
    // its three tampered copies (biz_content, timestamp, method) was rejected.
    let n = requests.len();
    assert_eq!(r["gateway_requests_verified"], n);
    assert_eq!(r["gateway_signatures_identical"], n);
    assert_eq!(r["gateway_tampered_rejected"], 3 * n);
    assert_eq!(r["gateway_methods"], json!(methods));
    assert_eq!(
        r["sandbox_answers_verified"],
        json!([
            "precreate",
            "query_not_exist",
            "close_not_exist",
            "query_paid"
        ])
    );
    assert_eq!(r["sandbox_wrong_key_rejected"], true);
    assert_eq!(r["notifications_verified"], 1);
    Ok(())
}

/// The check can fail: one changed character in a recorded Alipay request makes the SDK
/// refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alipay_sdk_refuses_a_tampered_gateway_request() -> anyhow::Result<()> {
    ensure_sdks()?;
    let mut tasks = Tasks(Vec::new());
    let sandbox_url = start_sandbox(&mut tasks).await?;
    let mut requests = record_alipay_gateway_requests(&mut tasks, &sandbox_url).await?;
    let precreate = &mut requests[0];
    assert!(
        precreate.body.contains("Paywire+interop"),
        "{}",
        precreate.body
    );
    precreate.body = precreate.body.replace("Paywire+interop", "Paywire+interoq");
    let fixture = Fixture::write("alipay", &alipay_fixture(&requests))?;

    let run = run_script("alipay.mjs", &sandbox_url, &fixture).await?;
    assert!(!run.success, "{:#}", run.result);
    assert_eq!(run.result["ok"], false);
    let error = run.result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("POST alipay.trade.precreate: the SDK rejects our signature"),
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
