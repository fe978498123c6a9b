//! Issue 9's hostile probes against the running platform (the traversal rows are the
//! cashier's own suite, `services/cashier/tests/cashier/api.rs`, the Alipay seller row the
//! gateway's): oversized bodies, tokens not valid yet, an empty service credential.

use paywire_e2e::{Platform, count};
use paywire_testkit::raw_http;
use serde_json::{Value, json};

/// Issue 9: 70 KiB of JSON to order and a 100 KiB callback were parsed and answered 400.
/// Every service refuses an oversized body with 413 before reading it, and a refused
/// callback leaves no row behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_on_every_service() -> anyhow::Result<()> {
    let mut p = Platform::start().await?;
    let cashier = p.start_cashier().await?;
    let student = p.student("big");
    let json_70k = json!({"biz_type": "course", "biz_id": "7".repeat(70 * 1024)});
    for url in [
        format!("{}/api/orders", p.order_url),
        format!("{}/api/learning/choose-course", p.learning_url),
        format!("{cashier}/api/orders"),
        format!("{cashier}/dev/login"),
    ] {
        let resp = p
            .client()
            .post(&url)
            .bearer_auth(&student.token)
            .json(&json_70k)
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 413, "{url}");
        let body: Value = resp.json().await?;
        assert_eq!(body["error"], "body_too_large", "{url}");
    }

    let raw_100k = vec![b'a'; 100 * 1024];
    for (url, content_type) in [
        (
            format!("{}/api/callback/wechat", p.gateway_url),
            "application/json",
        ),
        (
            format!("{}/api/callback/alipay", p.gateway_url),
            "application/x-www-form-urlencoded",
        ),
        (
            format!("{}/gateway.do", p.sandbox_url),
            "application/x-www-form-urlencoded",
        ),
    ] {
        let resp = p
            .client()
            .post(&url)
            .header("content-type", content_type)
            .body(raw_100k.clone())
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 413, "{url}");
    }
    assert_eq!(
        count(
            &p.gateway_db,
            "SELECT count(*) AS n FROM channel_notifications"
        )
        .await?,
        0
    );
    Ok(())
}

/// A user token signed with the platform's key whose `nbf` lies `ahead_secs` in the future.
fn token_with_nbf(user: &str, ahead_secs: i64) -> String {
    use secrecy::ExposeSecret as _;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": user, "iat": now, "exp": now + 3_600, "nbf": now + ahead_secs});
    let secret = paywire_platform::config::AuthSettings::default().jwt_secret;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .expect("HS256 encoding")
}

/// Issue 9: a token with `nbf` one day ahead was accepted. It is 401 at every service that
/// takes user tokens, directly and through the cashier; the same token with `nbf` passed
/// is accepted, so the refusal is the `nbf`'s doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_valid_yet_is_401() -> anyhow::Result<()> {
    let mut p = Platform::start().await?;
    let cashier = p.start_cashier().await?;
    let user = format!("nbf-{}", paywire_testkit::unique_suffix());
    let urls = [
        format!("{}/api/learning/my-courses", p.learning_url),
        format!("{}/api/orders/1", p.order_url),
        format!("{cashier}/api/learning/my-courses"),
    ];
    let future = token_with_nbf(&user, 86_400);
    for url in &urls {
        let resp = p.client().get(url).bearer_auth(&future).send().await?;
        assert_eq!(resp.status().as_u16(), 401, "{url}");
        let body: Value = resp.json().await?;
        assert_eq!(body["error"], "unauthorized", "{url}");
    }
    let valid = token_with_nbf(&user, -60);
    for url in &urls {
        let resp = p.client().get(url).bearer_auth(&valid).send().await?;
        assert_ne!(resp.status().as_u16(), 401, "{url}");
    }
    Ok(())
}

/// Issue 9: an empty `X-Service-Token:` header is 401 on every service's internal routes
/// (the start-up refusal of an empty configured token is the order suite's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_service_credential_is_401() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for (base, method, path) in [
        (
            &p.learning_internal_url,
            "GET",
            "/internal/choose-courses/1",
        ),
        (&p.order_internal_url, "POST", "/internal/orders/1/refund"),
        (
            &p.gateway_internal_url,
            "GET",
            "/internal/payments/7301234567890123456",
        ),
    ] {
        for header in [
            "X-Service-Token:",
            "X-Service-Token: ",
            "X-Service-Token:  ",
        ] {
            let answer = raw_http::exchange(
                base,
                &format!("{method} {path} HTTP/1.1\r\n{header}\r\nContent-Length: 0"),
                b"",
            )
            .await;
            assert_eq!(
                raw_http::status(&answer),
                401,
                "{path} {header:?}: {answer}"
            );
        }
    }
    Ok(())
}

/// Issue 9: every service's internal API, health and metrics answer 404 on its public
/// listener and work on its internal one; the public APIs the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_and_metrics_are_not_on_the_public_listeners() -> anyhow::Result<()> {
    use paywire_testkit::listeners::assert_split;
    let mut p = Platform::start().await?;
    let cashier = p.start_cashier().await?;
    assert_split(
        &p.learning_url,
        &p.learning_internal_url,
        &[("GET", "/internal/choose-courses/1")],
        &[("GET", "/api/learning/courses")],
    )
    .await;
    assert_split(
        &p.order_url,
        &p.order_internal_url,
        &[("POST", "/internal/orders/1/refund")],
        &[("GET", "/api/orders/1")],
    )
    .await;
    assert_split(
        &p.gateway_url,
        &p.gateway_internal_url,
        &[
            ("POST", "/internal/payments"),
            ("GET", "/internal/payments/1"),
            ("POST", "/internal/refunds"),
        ],
        &[("POST", "/api/callback/wechat")],
    )
    .await;
    assert_split(
        &p.sandbox_url,
        &p.sandbox_internal_url,
        &[("GET", "/sandbox/admin/faults")],
        &[("GET", "/sandbox/wallet"), ("POST", "/gateway.do")],
    )
    .await;
    assert_split(
        &cashier,
        p.cashier_internal_url.as_deref().unwrap(),
        &[],
        &[("GET", "/"), ("GET", "/api/learning/courses")],
    )
    .await;
    // The order service reaches the learning center and the gateway on their internal
    // listeners: a purchase through the public API still goes through.
    let s = p.student("split");
    let (status, chosen) = s.choose_course("1002").await?;
    anyhow::ensure!(status == 200, "{chosen}");
    let (status, order) = s
        .create_order(chosen["choose_course_id"].as_str().unwrap())
        .await?;
    assert_eq!(status, 201, "{order}");
    let (status, pay) = s.pay(order["order_id"].as_str().unwrap(), "wechat").await?;
    assert_eq!(status, 200, "{pay}");
    Ok(())
}
