//! Production mode: the development JWT secret, the order service's development credential
//! and the broker's guest
//! account are refused by name; real-looking secrets pass.

use learning_center::{SERVICE_NAME, Settings};
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
            "auth.callers.order",
            "amqp.url"
        ]
    );

    let mut real = Settings::default();
    real.auth.jwks = "https://idp.example.com/.well-known/jwks.json".into();
    real.auth.issuer = "https://idp.example.com/".into();
    real.auth.audience = "paywire".into();
    real.auth.callers.insert(
        "order".into(),
        SecretString::from("1f2e3d4c5b6a79880f1e2d3c4b5a69788796a5b4".to_owned()),
    );
    real.amqp.url = "amqp://paywire:Hq3v9Lm2Xc7Rt5Wz@127.0.0.1:5672/%2f".into();
    assert_eq!(
        check(SERVICE_NAME, Environment::Production, &real),
        Ok(Environment::Production)
    );
}

/// The binary refuses before touching the database or the broker, and prints no secret.
#[test]
fn the_binary_refuses_development_secrets_in_production() {
    paywire_testkit::production::assert_refused(
        env!("CARGO_BIN_EXE_learning-center"),
        &[("PAYWIRE__AUTH__CALLERS__ORDER", "")],
        &[
            "auth.jwks (PAYWIRE__AUTH__JWKS): is not set",
            "auth.jwt_secret (PAYWIRE__AUTH__JWT_SECRET): is the development value",
            "auth.callers.order (PAYWIRE__AUTH__CALLERS__ORDER): is empty",
            "amqp.url (PAYWIRE__AMQP__URL): uses RabbitMQ's default guest account",
        ],
        &[paywire_platform::config::DEV_JWT_SECRET, "guest:guest"],
    );
}
