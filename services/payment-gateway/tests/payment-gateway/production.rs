//! Production mode: the gateway refuses every development secret, test key, sandbox URL
//! and sandbox identity, names each, shows none; real-looking settings pass.

use std::collections::BTreeSet;
use std::path::PathBuf;

use payment_gateway::{SERVICE_NAME, Settings};
use paywire_platform::production::{Environment, check};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use secrecy::SecretString;

/// Two throwaway key pairs (merchant/app private key, channel public key) in a temp dir.
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "paywire-gateway-prod-{}-{}",
            std::process::id(),
            paywire_testkit::unique_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = rand::thread_rng();
        for name in ["merchant", "channel"] {
            let key = RsaPrivateKey::new(&mut rng, 2048).unwrap();
            let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
            std::fs::write(dir.join(format!("{name}_private.pem")), private.as_bytes()).unwrap();
            let public = key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap();
            std::fs::write(dir.join(format!("{name}_public.pem")), public).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// What a real deployment looks like: generated keys, random secrets, the channels' own
/// endpoints, a public HTTPS callback address, real-looking merchant ids.
fn real_looking(keys: &Keys) -> Settings {
    let mut s = Settings::default();
    s.auth.jwt_secret = secret("0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978");
    s.auth.jwks = "https://idp.example.com/.well-known/jwks.json".into();
    s.auth.issuer = "https://idp.example.com/".into();
    s.auth.audience = "paywire".into();
    s.auth.callers.insert(
        "order".into(),
        secret("b7e4c2a19f8d6e5c4b3a29180706f5e4d3c2b1a0"),
    );
    s.auth.callers.insert(
        "operator".into(),
        secret("5d1c9e0a7b3f46e2a8c4d6b0f1e3a5c7d9b2e4f6"),
    );
    s.amqp.url = "amqps://paywire:Zx8qL2vR7mN4tY6w@mq.internal:5671/paywire".into();
    s.wechat.apiv3_key = secret("Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1");
    s.wechat.merchant_private_key_path = keys.path("merchant_private.pem");
    s.wechat.wechatpay_public_key_path = keys.path("channel_public.pem");
    s.wechat.api_base = "https://api.mch.weixin.qq.com".into();
    s.wechat.notify_url = "https://pay.example.com/api/callback/wechat".into();
    s.wechat.mchid = "1230000109".into();
    s.alipay.app_private_key_path = keys.path("merchant_private.pem");
    s.alipay.alipay_public_key_path = keys.path("channel_public.pem");
    s.alipay.gateway_url = "https://openapi.alipay.com/gateway.do".into();
    s.alipay.notify_url = "https://pay.example.com/api/callback/alipay".into();
    s.alipay.app_id = "2021004100000000".into();
    s.wechat_v2.api_key = secret("R8t2Y5u7I9o1P3a5S7d9F2g4H6j8K1l3");
    s.wechat_v2.api_base = "https://api.mch.weixin.qq.com".into();
    s.wechat_v2.secapi_base = "https://api.mch.weixin.qq.com".into();
    s.wechat_v2.notify_url = "https://pay.example.com/api/callback/wechat_v2".into();
    s.wechat_v2.mch_id = "1230000110".into();
    s.wechat_v2.client_identity_path = keys.path("apiclient_identity.pem");
    s.wechat_v2.extra_root_ca_path = String::new();
    s
}

fn refused(settings: &Settings) -> BTreeSet<String> {
    match check(SERVICE_NAME, Environment::Production, settings) {
        Ok(_) => BTreeSet::new(),
        Err(refusal) => refusal.findings.iter().map(|f| f.setting.clone()).collect(),
    }
}

fn repo_path(rel: &str) -> String {
    paywire_testkit::repo_root()
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn real_looking_settings_start_in_production() {
    let keys = Keys::generate();
    assert_eq!(
        check(SERVICE_NAME, Environment::Production, &real_looking(&keys)),
        Ok(Environment::Production)
    );
}

#[test]
fn development_defaults_are_all_named() {
    let keys = Keys::generate();
    let mut s = Settings::default();
    // Resolve the relative default key paths as the binary would from the repo root.
    for path in [
        &mut s.wechat.merchant_private_key_path,
        &mut s.wechat.wechatpay_public_key_path,
        &mut s.alipay.app_private_key_path,
        &mut s.alipay.alipay_public_key_path,
        &mut s.wechat_v2.client_identity_path,
    ] {
        *path = repo_path(path);
    }
    drop(keys);
    let expected: BTreeSet<String> = [
        "auth.jwks",
        "auth.jwt_secret",
        "auth.callers.order",
        "auth.callers.operator",
        "amqp.url",
        "wechat.apiv3_key",
        "wechat.merchant_private_key_path",
        "wechat.wechatpay_public_key_path",
        "wechat.api_base",
        "wechat.notify_url",
        "wechat.mchid",
        "alipay.app_private_key_path",
        "alipay.alipay_public_key_path",
        "alipay.gateway_url",
        "alipay.notify_url",
        "alipay.app_id",
        "wechat_v2.api_key",
        "wechat_v2.api_base",
        "wechat_v2.secapi_base",
        "wechat_v2.notify_url",
        "wechat_v2.mch_id",
        "wechat_v2.client_identity_path",
        "wechat_v2.extra_root_ca_path",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(refused(&s), expected);
}

/// One development value at a time on top of real-looking settings: exactly that one
/// setting is named.
#[test]
fn each_development_value_alone_is_refused() {
    let keys = Keys::generate();
    type Spoil = fn(&mut Settings);
    let cases: &[(&str, Spoil)] = &[
        // HS256 development tokens instead of the identity provider's.
        ("auth.jwks", |s| s.auth.jwks = String::new()),
        ("auth.jwks", |s| {
            s.auth.jwks = "http://idp.example.com/.well-known/jwks.json".into()
        }),
        ("auth.jwks", |s| {
            s.auth.jwks = repo_path("deploy/test-keys/idp/jwks.json")
        }),
        ("auth.issuer", |s| s.auth.issuer = String::new()),
        ("auth.audience", |s| s.auth.audience = String::new()),
        ("auth.callers.order", |s| {
            s.auth.callers.insert(
                "order".into(),
                secret(paywire_platform::config::DEV_SERVICE_TOKEN),
            );
        }),
        ("amqp.url", |s| {
            s.amqp.url = "amqp://guest:guest@mq.internal:5672/%2f".into()
        }),
        ("wechat.apiv3_key", |s| {
            s.wechat.apiv3_key = secret(paywire_channels::wechat::DEV_APIV3_KEY)
        }),
        ("wechat.merchant_private_key_path", |s| {
            s.wechat.merchant_private_key_path =
                repo_path("deploy/test-keys/wechat/merchant_private_key.pem")
        }),
        ("wechat.wechatpay_public_key_path", |s| {
            s.wechat.wechatpay_public_key_path =
                repo_path("deploy/test-keys/wechat/wechatpay_public_key.pem")
        }),
        ("wechat.api_base", |s| {
            s.wechat.api_base = "http://127.0.0.1:8090".into()
        }),
        ("wechat.api_base", |s| {
            s.wechat.api_base = "http://channel-sandbox:8090".into()
        }),
        ("wechat.notify_url", |s| {
            s.wechat.notify_url = "http://127.0.0.1:8083/api/callback/wechat".into()
        }),
        ("wechat.notify_url", |s| s.wechat.notify_url = String::new()),
        ("wechat.mchid", |s| {
            s.wechat.mchid = paywire_channels::wechat::DEV_MCHID.into()
        }),
        ("alipay.app_private_key_path", |s| {
            s.alipay.app_private_key_path = repo_path("deploy/test-keys/alipay/app_private_key.pem")
        }),
        ("alipay.alipay_public_key_path", |s| {
            s.alipay.alipay_public_key_path =
                repo_path("deploy/test-keys/alipay/alipay_public_key.pem")
        }),
        ("alipay.gateway_url", |s| {
            s.alipay.gateway_url = paywire_channels::alipay::DEV_GATEWAY_URL.into()
        }),
        ("alipay.notify_url", |s| {
            s.alipay.notify_url = "http://pay.example.com/api/callback/alipay".into()
        }),
        ("alipay.app_id", |s| {
            s.alipay.app_id = paywire_channels::alipay::DEV_APP_ID.into()
        }),
        ("wechat_v2.api_key", |s| {
            s.wechat_v2.api_key = secret(paywire_channels::wechat_v2::DEV_API_KEY)
        }),
        ("wechat_v2.api_base", |s| {
            s.wechat_v2.api_base = paywire_channels::wechat_v2::DEV_API_BASE.into()
        }),
        ("wechat_v2.secapi_base", |s| {
            s.wechat_v2.secapi_base = paywire_channels::wechat_v2::DEV_SECAPI_BASE.into()
        }),
        ("wechat_v2.notify_url", |s| {
            s.wechat_v2.notify_url = paywire_channels::wechat_v2::DEV_NOTIFY_URL.into()
        }),
        ("wechat_v2.mch_id", |s| {
            s.wechat_v2.mch_id = paywire_channels::wechat_v2::DEV_MCH_ID.into()
        }),
        ("wechat_v2.client_identity_path", |s| {
            s.wechat_v2.client_identity_path =
                repo_path(paywire_channels::wechat_v2::DEV_CLIENT_IDENTITY_PATH)
        }),
        ("wechat_v2.extra_root_ca_path", |s| {
            s.wechat_v2.extra_root_ca_path = repo_path(paywire_channels::wechat_v2::DEV_CA_PATH)
        }),
    ];
    for (setting, spoil) in cases {
        let mut s = real_looking(&keys);
        spoil(&mut s);
        assert_eq!(
            refused(&s),
            BTreeSet::from([setting.to_string()]),
            "spoiling {setting}"
        );
    }
}

#[test]
fn a_disabled_channel_is_not_checked() {
    let keys = Keys::generate();
    let mut s = real_looking(&keys);
    s.alipay = Default::default();
    s.alipay.enabled = false;
    s.wechat_v2 = Default::default();
    s.wechat_v2.enabled = false;
    assert!(refused(&s).is_empty());
}

/// The binary itself, with its defaults and a short JWT secret from the environment:
/// it exits before touching the database, naming every setting, showing no secret.
#[test]
fn the_binary_refuses_development_settings_in_production() {
    let out = paywire_testkit::production::assert_refused(
        env!("CARGO_BIN_EXE_payment-gateway"),
        &[("PAYWIRE__AUTH__JWT_SECRET", "short-jwt-value")],
        &[
            "auth.jwt_secret (PAYWIRE__AUTH__JWT_SECRET): is 15 bytes long",
            "wechat.apiv3_key (PAYWIRE__WECHAT__APIV3_KEY): is the development value",
            "wechat.merchant_private_key_path",
            "TEST-ONLY key",
            "alipay.gateway_url",
            "wechat_v2.api_key (PAYWIRE__WECHAT_V2__API_KEY): is the development value",
            // The operators' credential too: they reconcile through /internal/*.
            "auth.callers.operator (PAYWIRE__AUTH__CALLERS__OPERATOR)",
            "23 settings are not fit for production",
        ],
        &[
            "short-jwt-value",
            paywire_channels::wechat::DEV_APIV3_KEY,
            paywire_channels::wechat_v2::DEV_API_KEY,
            paywire_platform::config::DEV_SERVICE_TOKEN,
            paywire_platform::config::DEV_OPERATOR_TOKEN,
        ],
    );
    assert!(!out.contains("BEGIN"), "key material printed:\n{out}");
}
