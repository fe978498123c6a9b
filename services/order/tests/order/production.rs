//! Production mode: the development JWT secret and service token and the broker's guest
//! account are refused by name; real-looking secrets pass.

use order::{SERVICE_NAME, Settings};
use paywire_platform::production::{Environment, check};
use secrecy::SecretString;

#[test]
fn development_defaults_are_refused_and_real_secrets_pass() {
    let refusal = check(SERVICE_NAME, Environment::Production, &Settings::default()).unwrap_err();
    let named: Vec<&str> = refusal
        .findings
        .iter()
        .map(|f| f.setting.as_str())
        .collect();
    assert_eq!(
        named,
        [
            "auth.jwks",
            "auth.jwt_secret",
            "auth.service_token",
            "auth.callers.operator",
            "amqp.url"
        ]
    );

    let mut real = Settings::default();
    real.auth.jwks = "https://idp.example.com/.well-known/jwks.json".into();
    real.auth.issuer = "https://idp.example.com/".into();
    real.auth.audience = "paywire".into();
    real.auth.service_token =
        SecretString::from("1f2e3d4c5b6a79880f1e2d3c4b5a69788796a5b4".to_owned());
    real.auth.callers.insert(
        "operator".into(),
        SecretString::from("6e5d4c3b2a19f8e7d6c5b4a3928170f6e5d4c3b2".to_owned()),
    );
    real.amqp.url = "amqp://paywire:Hq3v9Lm2Xc7Rt5Wz@127.0.0.1:5672/%2f".into();
    assert_eq!(
        check(SERVICE_NAME, Environment::Production, &real),
        Ok(Environment::Production)
    );

    // A cluster list: every node is checked, not only the first.
    let node = |n: u8| format!("amqp://paywire:Hq3v9Lm2Xc7Rt5Wz@mq-{n}:5672/%2f");
    real.amqp.url = format!("{},{}, {}", node(0), node(1), node(2));
    assert_eq!(
        check(SERVICE_NAME, Environment::Production, &real),
        Ok(Environment::Production)
    );
    real.amqp.url = format!("{},amqp://guest:guest@mq-1:5672/%2f", node(0));
    let refusal = check(SERVICE_NAME, Environment::Production, &real).unwrap_err();
    assert_eq!(
        refusal
            .to_string()
            .matches("uses RabbitMQ's default guest account")
            .count(),
        1,
        "{refusal}"
    );
    real.amqp.url = " , ".into();
    let refusal = check(SERVICE_NAME, Environment::Production, &real).unwrap_err();
    assert!(refusal.to_string().contains("amqp.url"), "{refusal}");
}

/// The binary refuses before touching the database or the broker, and prints no secret.
#[test]
fn the_binary_refuses_development_secrets_in_production() {
    paywire_testkit::production::assert_refused(
        env!("CARGO_BIN_EXE_order"),
        &[("PAYWIRE__AUTH__SERVICE_TOKEN", "")],
        &[
            "auth.jwks (PAYWIRE__AUTH__JWKS): is not set",
            "auth.jwt_secret (PAYWIRE__AUTH__JWT_SECRET): is the development value",
            "auth.service_token (PAYWIRE__AUTH__SERVICE_TOKEN): is empty",
            "auth.callers.operator (PAYWIRE__AUTH__CALLERS__OPERATOR): is the development value",
            "amqp.url (PAYWIRE__AMQP__URL): uses RabbitMQ's default guest account",
        ],
        &[paywire_platform::config::DEV_JWT_SECRET, "guest:guest"],
    );
}

/// Issue 9: an empty service token refuses the start in development too (an empty
/// `X-Service-Token:` would otherwise have matched it); the binary says which setting,
/// before touching the database or the broker.
#[test]
fn the_binary_refuses_an_empty_service_token_in_development() {
    let run = paywire_testkit::production::run_in_production(
        env!("CARGO_BIN_EXE_order"),
        &[
            ("PAYWIRE__ENVIRONMENT", "development"),
            ("PAYWIRE__AUTH__SERVICE_TOKEN", ""),
        ],
        std::time::Duration::from_secs(30),
    );
    let status = run
        .exit
        .unwrap_or_else(|| panic!("order kept running:\n{}", run.output));
    assert!(!status.success(), "order started:\n{}", run.output);
    assert!(
        run.output
            .contains("order refuses to start: 1 setting is unusable in any environment"),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("auth.service_token (PAYWIRE__AUTH__SERVICE_TOKEN): is empty"),
        "{}",
        run.output
    );
}
