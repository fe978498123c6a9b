//! Alipay OpenAPI (`gateway.do`, RSA2): face-to-face QR payments (`alipay.trade.precreate`)
//! with page/wap pay builders as alternatives, query, close, refund and refund query.
//!
//! Requests are form parameters signed over their sorted `k=v` list; responses are
//! verified over the exact raw `*_response` JSON substring; notifications are form posts
//! verified without `sign` and `sign_type`. Public sources: Alipay open platform, "自行实现签名"
//! and "异步通知验签" (opendocs.alipay.com/common/02kf5q, /common/02mse7).

pub mod bill;
pub mod client;
pub mod sign;
pub mod transformers;
pub mod verify;
pub mod wire;

pub use client::{Alipay, AlipayConfig};

// Test-only defaults shared across the project (sandbox, gateway, xtask). Never use
// them outside local development and tests.
/// Test-only default app id.
pub const DEV_APP_ID: &str = "2021000000000001";
/// Test-only default seller (merchant PID).
pub const DEV_SELLER_ID: &str = "2088000000000001";
/// Test-only key paths, relative to the repository root. The gateway signs with the app
/// private key and verifies with the Alipay public key; the sandbox the other way round.
pub const DEV_APP_PRIVATE_KEY_PATH: &str = "deploy/test-keys/alipay/app_private_key.pem";
pub const DEV_APP_PUBLIC_KEY_PATH: &str = "deploy/test-keys/alipay/app_public_key.pem";
pub const DEV_ALIPAY_PRIVATE_KEY_PATH: &str = "deploy/test-keys/alipay/alipay_private_key.pem";
pub const DEV_ALIPAY_PUBLIC_KEY_PATH: &str = "deploy/test-keys/alipay/alipay_public_key.pem";
/// Test-only default gateway (the channel sandbox).
pub const DEV_GATEWAY_URL: &str = "http://127.0.0.1:8090/gateway.do";
/// Test-only default notification URL (the payment gateway's callback route).
pub const DEV_NOTIFY_URL: &str = "http://127.0.0.1:8083/api/callback/alipay";
