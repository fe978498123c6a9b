//! The cashier as a person uses it: headless Chromium (Debian's `chromium`, driven over
//! WebDriver by Debian's `chromium-driver` from Rust, see `paywire_e2e::browser` for why)
//! against the whole platform in this process, with the cashier in front of it.
//! Screenshots of every step land in `target/browser-artifacts/<scenario>/<step>.png`
//! (`failed.png`: the page a failing scenario stopped on).
//!
//! Needs `apt-get install -y chromium chromium-driver`; no Node.js.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use paywire_e2e::browser::{
    Browser, Chromedriver, artifacts_dir, attr, require_tools, test_id, text,
};
use paywire_e2e::{Options, Platform};
use serde_json::json;

/// How long an unpaid order may take to show as closed (order TTL plus the delay queue).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the catalogue showed for the course being bought.
#[derive(Debug)]
struct Course {
    name: String,
    price: String,
    id: String,
}

fn card(course_id: &str) -> String {
    format!(r#"[data-testid="course-card"][data-course-id="{course_id}"]"#)
}

/// A student id no other run uses.
fn fresh_user(who: &str) -> String {
    format!("{who}-{}", paywire_testkit::unique_suffix())
}

/// Signs in through the dev sign-in page as a fresh student.
async fn sign_in(b: &Browser, cashier: &str, who: &str) -> anyhow::Result<String> {
    let user = fresh_user(who);
    b.goto(&format!("{cashier}/login?next=/")).await?;
    b.fill("login-user-id", &user).await?;
    b.click("login-submit").await?;
    b.wait_url("back on the catalogue", |u| u.path() == "/")
        .await?;
    let shown = text(&b.by_id("current-user").await?).await?;
    ensure!(shown == user, "signed in as {shown:?}, expected {user:?}");
    Ok(user)
}

/// From the catalogue, buys the first paid course: lands on the checkout page.
async fn start_checkout(b: &Browser) -> anyhow::Result<(Course, String)> {
    let paid = b
        .visible(r#"[data-testid="course-card"][data-charge="paid"]"#)
        .await?;
    let name = text(
        &paid
            .find(fantoccini::Locator::Css(&test_id("course-name")))
            .await?,
    )
    .await?;
    let price = text(
        &paid
            .find(fantoccini::Locator::Css(&test_id("course-price")))
            .await?,
    )
    .await?;
    let id = attr(&paid, "data-course-id").await?;
    ensure!(
        !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit()),
        "course ids are decimal strings: {id:?}"
    );
    let course = Course {
        name: name.trim().to_owned(),
        price: price.trim().to_owned(),
        id,
    };
    b.shot("01-catalogue").await?;
    paid.find(fantoccini::Locator::Css(&test_id("choose-button")))
        .await?
        .click()
        .await?;
    let url = b
        .wait_url("/checkout?order_id=<digits>&course_id=<digits>", |u| {
            let digits = |k: &str| {
                u.query_pairs()
                    .find(|(q, _)| q == k)
                    .is_some_and(|(_, v)| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()))
            };
            u.path() == "/checkout" && digits("order_id") && digits("course_id")
        })
        .await?;
    let query = |k: &str| {
        url.query_pairs()
            .find(|(q, _)| q == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    ensure!(
        query("course_id") == course.id,
        "the exact id string travels: {} vs {}",
        query("course_id"),
        course.id
    );
    let order_id = query("order_id");
    // The price the server charges is the price the catalogue showed.
    let charged = text(&b.by_id("order-price").await?).await?;
    ensure!(
        charged.trim() == course.price,
        "checkout price {charged:?}, catalogue {:?}",
        course.price
    );
    let shown_order = text(&b.present(&test_id("order-id")).await?).await?;
    ensure!(
        shown_order == order_id,
        "order id {shown_order:?} vs {order_id:?}"
    );
    b.by_id("channel-choice").await?;
    b.shot("02-checkout").await?;
    Ok((course, order_id))
}

/// Chooses a channel, checks the QR code and answers the code the wallet must scan.
async fn show_qr(b: &Browser, channel: &str, prefix: &str) -> anyhow::Result<String> {
    b.click(&format!("channel-{channel}")).await?;
    b.by_id("qr-image").await?;
    // Inside a collapsed <details>: read, not seen.
    let code = b
        .present(&test_id("code-url"))
        .await?
        .prop("value")
        .await?
        .unwrap_or_default();
    ensure!(
        code.starts_with(prefix),
        "{channel} code {code} should start with {prefix}"
    );
    let qr = b.present(&test_id("qr-code")).await?;
    ensure!(attr(&qr, "data-channel").await? == channel);
    let src = attr(&b.by_id("qr-image").await?, "src").await?;
    ensure!(
        src.starts_with("data:image/"),
        "the QR code is drawn in the browser"
    );
    let countdown = text(&b.present(&test_id("countdown")).await?).await?;
    ensure!(
        has_mm_ss(&countdown),
        "countdown {countdown:?} shows no mm:ss"
    );
    let status = b.present(&test_id("pay-status")).await?;
    ensure!(attr(&status, "data-state").await? == "waiting");
    b.shot("03-checkout-qr").await?;
    Ok(code)
}

/// Whether `s` contains two digits, a colon and two digits.
fn has_mm_ss(s: &str) -> bool {
    s.as_bytes().windows(5).any(|w| {
        w[0].is_ascii_digit()
            && w[1].is_ascii_digit()
            && w[2] == b':'
            && w[3].is_ascii_digit()
            && w[4].is_ascii_digit()
    })
}

/// The payer's phone: the sandbox wallet page, in another tab, takes the scanned code
/// and pays.
async fn pay_in_wallet(b: &Browser, wallet: &str, code: &str) -> anyhow::Result<()> {
    let cashier = b.open_tab(wallet).await?;
    b.fill("code-input", code).await?;
    b.shot("04-wallet-scanned").await?;
    b.click("code-submit").await?;
    // The trade now shows as paid: listed with its code, no longer offering to pay.
    b.wait_script(
        "the wallet lists the trade as paid",
        r#"return [...document.querySelectorAll('[data-testid="trade-row"]')].some((row) =>
             row.textContent.includes(arguments[0])
             && !row.querySelector('[data-testid="pay-button"]')
             && row.getClientRects().length > 0);"#,
        vec![json!(code)],
    )
    .await?;
    b.shot("05-wallet-paid").await?;
    b.back_to(cashier).await
}

async fn expect_paid(b: &Browser, cashier: &str, course: &Course) -> anyhow::Result<()> {
    let status = b
        .visible(r#"[data-testid="pay-status"][data-state="paid"]"#)
        .await?;
    let said = text(&status).await?;
    ensure!(
        said.contains("Paid — start learning"),
        "pay status {said:?}"
    );
    b.by_id("success").await?;
    ensure!(
        b.is_hidden(&test_id("qr-panel")).await?,
        "no QR code once paid"
    );
    b.shot("06-success").await?;
    b.click("my-courses-link").await?;
    b.wait_url("my courses", |u| {
        u.as_str() == format!("{cashier}/my-courses")
    })
    .await?;
    expect_can_learn(b, course).await?;
    let row = b.visible(&my_course_row(&course.id)).await?;
    let valid = text(
        &row.find(fantoccini::Locator::Css(&test_id("my-course-valid")))
            .await?,
    )
    .await?;
    ensure!(valid.contains('–'), "validity {valid:?} shows no range");
    b.shot("07-my-courses").await
}

fn my_course_row(course_id: &str) -> String {
    format!(r#"[data-testid="my-course-row"][data-course-id="{course_id}"]"#)
}

/// "My courses" lists `course` by name, ready to learn.
async fn expect_can_learn(b: &Browser, course: &Course) -> anyhow::Result<()> {
    let row = b.visible(&my_course_row(&course.id)).await?;
    let name = text(
        &row.find(fantoccini::Locator::Css(&test_id("my-course-name")))
            .await?,
    )
    .await?;
    ensure!(
        name.trim() == course.name,
        "row {name:?}, bought {:?}",
        course.name
    );
    let status = row
        .find(fantoccini::Locator::Css(&test_id("my-course-status")))
        .await?;
    ensure!(attr(&status, "data-state").await? == "can_learn");
    Ok(())
}

async fn purchase(
    chromedriver: &Chromedriver,
    platform: &Platform,
    cashier: &str,
    channel: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    let wallet = format!("{}/sandbox/wallet", platform.sandbox_url);
    chromedriver
        .browser(channel)
        .await?
        .run(async |b| {
            sign_in(b, cashier, channel).await?;
            let (course, _order) = start_checkout(b).await?;
            let code = show_qr(b, channel, prefix).await?;
            pay_in_wallet(b, &wallet, &code).await?;
            expect_paid(b, cashier, &course).await
        })
        .await
        .with_context(|| format!("scenario {channel}"))
}

/// Bought with Alipay, refunded by an operator (as `cargo xtask refund` does): "My
/// courses" shows the course refunded, and the catalogue sells it again.
async fn refunded_course(
    chromedriver: &Chromedriver,
    platform: &Platform,
    cashier: &str,
) -> anyhow::Result<()> {
    let wallet = format!("{}/sandbox/wallet", platform.sandbox_url);
    chromedriver
        .browser("refunded")
        .await?
        .run(async |b| {
            let user = sign_in(b, cashier, "refunded").await?;
            let (course, order_id) = start_checkout(b).await?;
            let code = show_qr(b, "alipay", "https://qr.alipay.com/").await?;
            pay_in_wallet(b, &wallet, &code).await?;
            expect_paid(b, cashier, &course).await?;

            let (status, ticket) = platform.operator_refund(&order_id, json!(null)).await?;
            ensure!(status == 201, "refund answered {status}: {ticket}");
            platform
                .student_exactly(&user)
                .wait_for_learn_status(&course.id, "refunded")
                .await?;
            b.goto(&format!("{cashier}/my-courses")).await?;
            let row = b.visible(&my_course_row(&course.id)).await?;
            let badge = row
                .find(fantoccini::Locator::Css(&test_id("my-course-status")))
                .await?;
            ensure!(attr(&badge, "data-state").await? == "refunded");
            let said = text(&badge).await?;
            ensure!(said.contains("Refunded"), "badge {said:?}");
            let valid = text(
                &row.find(fantoccini::Locator::Css(&test_id("my-course-valid")))
                    .await?,
            )
            .await?;
            ensure!(valid.contains("Refunded"), "validity column {valid:?}");
            b.shot("08-refunded").await?;

            // Bought again: the catalogue opens a new order for the same course.
            b.goto(&format!("{cashier}/")).await?;
            let (again, second) = start_checkout(b).await?;
            ensure!(
                again.id == course.id && second != order_id,
                "{again:?} {second}"
            );
            let code = show_qr(b, "alipay", "https://qr.alipay.com/").await?;
            pay_in_wallet(b, &wallet, &code).await?;
            expect_paid(b, cashier, &course).await?;
            b.shot("09-bought-again").await
        })
        .await
        .context("scenario refunded")
}

/// A free course is enrolled at once and shows in "my courses"; prices are formatted
/// from integer fen without floating point.
async fn free_course(chromedriver: &Chromedriver, cashier: &str) -> anyhow::Result<()> {
    chromedriver
        .browser("free")
        .await?
        .run(async |b| {
            // Signing in is required to choose: the catalogue sends a stranger to login.
            b.goto(&format!("{cashier}/")).await?;
            let free = r#"[data-testid="course-card"][data-charge="free"]"#;
            let card_el = b.visible(free).await?;
            let id = attr(&card_el, "data-course-id").await?;
            card_el
                .find(fantoccini::Locator::Css(&test_id("choose-button")))
                .await?
                .click()
                .await?;
            b.wait_url("the login page", |u| {
                u.path() == "/login" && u.query().is_some_and(|q| q.starts_with("next="))
            })
            .await?;
            sign_in(b, cashier, "free").await?;
            b.shot("01-catalogue").await?;
            let card_el = b.visible(&card(&id)).await?;
            let name = text(
                &card_el
                    .find(fantoccini::Locator::Css(&test_id("course-name")))
                    .await?,
            )
            .await?;
            let course = Course {
                name: name.trim().to_owned(),
                price: String::new(),
                id,
            };
            card_el
                .find(fantoccini::Locator::Css(&test_id("choose-button")))
                .await?
                .click()
                .await?;
            let result = b
                .visible(&format!(
                    "{} {}",
                    card(&course.id),
                    test_id("choose-result")
                ))
                .await?;
            ensure!(attr(&result, "data-state").await? == "can_learn");
            let said = text(&result).await?;
            ensure!(said.contains("Enrolled"), "choose result {said:?}");
            ensure!(
                b.url().await?.path() == "/",
                "no checkout for a free course"
            );
            b.shot("02-enrolled").await?;
            b.goto(&format!("{cashier}/my-courses")).await?;
            expect_can_learn(b, &course).await?;
            b.shot("03-my-courses").await?;

            let formatted = b
                .client
                .execute(
                    "return [0, 1, 10, 99, 100, 4990, 123456, 9007199254740991]\
                     .map((f) => window.paywire.yuan(f));",
                    vec![],
                )
                .await?;
            ensure!(
                formatted
                    == json!([
                        "0.00",
                        "0.01",
                        "0.10",
                        "0.99",
                        "1.00",
                        "49.90",
                        "1234.56",
                        "90071992547409.91"
                    ]),
                "yuan() formatted {formatted}"
            );
            for bad in [json!(-1), json!(1.5)] {
                let shown = b
                    .client
                    .execute(
                        "return window.paywire.yuan(arguments[0]);",
                        vec![bad.clone()],
                    )
                    .await?;
                ensure!(shown == json!("?"), "yuan({bad}) = {shown}");
            }
            Ok(())
        })
        .await
        .context("scenario free")
}

/// An order left unpaid past its time shows as closed.
async fn expired_order(chromedriver: &Chromedriver, cashier: &str) -> anyhow::Result<()> {
    chromedriver
        .browser("expired")
        .await?
        .run(async |b| {
            sign_in(b, cashier, "expired").await?;
            start_checkout(b).await?;
            show_qr(b, "wechat", "weixin://").await?;
            // "I have paid" before paying: the active query finds nothing (or reports that
            // the channel cannot be reached) and says so, without claiming success.
            b.click("paid-button").await?;
            b.wait_script(
                "an answer to 'I have paid'",
                r#"const el = document.querySelector('[data-testid="pay-result-message"]');
                   return !!el && !el.hidden && !/Checking/.test(el.textContent);"#,
                vec![],
            )
            .await?;
            let msg = b.present(&test_id("pay-result-message")).await?;
            let said = text(&msg).await?;
            ensure!(!said.contains("Payment found"), "claimed {said:?}");
            b.shot("04-not-paid-yet").await?;
            b.visible_within(
                r#"[data-testid="pay-status"][data-state="closed"]"#,
                CLOSE_TIMEOUT,
            )
            .await?;
            let closed = text(&b.by_id("closed-message").await?).await?;
            ensure!(
                closed.contains("Order closed — the payment time ran out"),
                "closed message {closed:?}"
            );
            ensure!(
                b.is_hidden(&test_id("qr-panel")).await?,
                "no QR code for a closed order"
            );
            b.shot("05-closed").await
        })
        .await
        .context("scenario expired")
}

fn shots(scenario: &str) -> anyhow::Result<Vec<String>> {
    let dir = artifacts_dir().join(scenario);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<anyhow::Result<_>>()?;
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_student_enrols_free_and_buys_with_wechat_pay_by_clicking() -> anyhow::Result<()> {
    let mut platform = Platform::start().await?;
    let cashier = platform.start_cashier().await?;
    let chromedriver = Chromedriver::start().await?;
    free_course(&chromedriver, &cashier).await?;
    purchase(&chromedriver, &platform, &cashier, "wechat", "weixin://").await?;
    ensure!(
        shots("free")? == ["01-catalogue.png", "02-enrolled.png", "03-my-courses.png"],
        "free: {:?}",
        shots("free")?
    );
    let wechat = shots("wechat")?;
    for step in [
        "02-checkout",
        "05-wallet-paid",
        "06-success",
        "07-my-courses",
    ] {
        ensure!(
            wechat.contains(&format!("{step}.png")),
            "{step} missing: {wechat:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_student_buys_with_alipay_by_clicking() -> anyhow::Result<()> {
    let mut platform = Platform::start().await?;
    let cashier = platform.start_cashier().await?;
    let chromedriver = Chromedriver::start().await?;
    purchase(
        &chromedriver,
        &platform,
        &cashier,
        "alipay",
        "https://qr.alipay.com/",
    )
    .await?;
    ensure!(
        shots("alipay")?.len() == 7,
        "alipay: {:?}",
        shots("alipay")?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refunded_course_shows_as_refunded_and_is_bought_again() -> anyhow::Result<()> {
    let mut platform = Platform::start().await?;
    let cashier = platform.start_cashier().await?;
    let chromedriver = Chromedriver::start().await?;
    refunded_course(&chromedriver, &platform, &cashier).await?;
    let shots = shots("refunded")?;
    for step in ["08-refunded", "09-bought-again"] {
        ensure!(
            shots.contains(&format!("{step}.png")),
            "{step} missing: {shots:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_left_unpaid_shows_as_closed() -> anyhow::Result<()> {
    // The attempt expires at the channel before the order times out (seed 000).
    let mut platform = Platform::start_with(Options {
        order_ttl_secs: Some(12),
        attempt_ttl_secs: Some(6),
    })
    .await?;
    let cashier = platform.start_cashier().await?;
    let chromedriver = Chromedriver::start().await?;
    expired_order(&chromedriver, &cashier).await?;
    ensure!(shots("expired")?.contains(&"05-closed.png".to_owned()));
    Ok(())
}

#[test]
fn missing_chromium_or_driver_is_reported_with_the_install_command() {
    for (chromium, driver) in [
        ("/nonexistent/chromium", "/bin/sh"),
        ("/bin/sh", "/nonexistent/chromedriver"),
    ] {
        let err = require_tools(Path::new(chromium), Path::new(driver)).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("apt-get install -y chromium chromium-driver"),
            "{err}"
        );
        assert!(
            err.contains("/nonexistent/"),
            "names the missing file: {err}"
        );
    }
}

#[test]
fn mm_ss_is_recognised() {
    assert!(has_mm_ss("expires in 14:59"));
    assert!(!has_mm_ss("expires in 1:59"));
    assert!(!has_mm_ss(""));
}
