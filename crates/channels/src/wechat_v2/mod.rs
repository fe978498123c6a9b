//! WeChat Pay API v2 (XML), Native (QR code) payments, direct merchant: the protocol many
//! merchants still run (and seed 004's system paid through).
//!
//! `pay/unifiedorder` (`trade_type=NATIVE`, `code_url`), `pay/orderquery`,
//! `pay/closeorder`, `secapi/pay/refund` (mutual TLS with the merchant's API
//! certificate) and `pay/refundquery`; payment notifications (signed XML) and refund
//! notifications (`req_info`, AES-256-ECB). Public sources: WeChat Pay v2 docs, "安全规范"
//! (native.php?chapter=4_3), "统一下单" (9_1), "查询订单" (9_2), "关闭订单" (9_3), "申请退款"
//! (9_4), "查询退款" (9_5), "支付结果通知" (9_7), "退款结果通知" (9_16).

pub mod client;
pub mod crypto;
pub mod sign;
pub mod transformers;
pub mod wire;
pub mod xml;

pub use client::{WechatPayV2, WechatPayV2Config};
pub use sign::SignType;

// Test-only defaults shared across the project (sandbox, gateway, xtask). Never use
// them outside local development and tests.
/// Test-only default merchant id.
pub const DEV_MCH_ID: &str = "1900009192";
/// Test-only default app id.
pub const DEV_APPID: &str = "wx2421b1c4370ec43b";
/// Test-only default API key (32 characters).
pub const DEV_API_KEY: &str = "paywire-sandbox-v2-apikey-32char";
/// Test-only PKI (relative to the repository root, see `deploy/test-keys/README.md`).
pub const DEV_CLIENT_IDENTITY_PATH: &str = "deploy/test-keys/wechat_v2/client_identity.pem";
pub const DEV_CA_PATH: &str = "deploy/test-keys/wechat_v2/ca.pem";
pub const DEV_SERVER_CERT_PATH: &str = "deploy/test-keys/wechat_v2/server_cert.pem";
pub const DEV_SERVER_KEY_PATH: &str = "deploy/test-keys/wechat_v2/server_key.pem";
/// Test-only default endpoints (the channel sandbox: plain listener, TLS listener).
pub const DEV_API_BASE: &str = "http://127.0.0.1:8090";
pub const DEV_SECAPI_BASE: &str = "https://127.0.0.1:8443";
/// Test-only default notification URL (the payment gateway's callback route).
pub const DEV_NOTIFY_URL: &str = "http://127.0.0.1:8083/api/callback/wechat_v2";
