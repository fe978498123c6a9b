//! WeChat Pay API v3, Native (QR code) payments, direct merchant.

pub mod bill;
pub mod client;
pub mod crypto;
pub mod keyring;
pub mod transformers;
pub mod wire;

/// Alias: the signing functions live in [`crypto`].
pub use crypto as signing;

pub use client::{SignedRequest, WechatPay, WechatPayConfig};
pub use keyring::WechatPayKeyring;

// Test-only defaults shared across the project (sandbox, gateway, xtask). Never use
// them outside local development and tests.
/// Test-only default merchant id.
pub const DEV_MCHID: &str = "1900009191";
/// Test-only default app id.
pub const DEV_APPID: &str = "wxd678efh567hg6787";
/// Test-only default merchant API certificate serial.
pub const DEV_MERCHANT_SERIAL_NO: &str = "7E2A1C3B4D5F60718293A4B5C6D7E8F901234567";
/// Test-only default WeChat Pay public key id (public-key mode).
pub const DEV_WECHATPAY_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000091912026112200000000000001";
/// Test-only default APIv3 key (32 ASCII bytes).
pub const DEV_APIV3_KEY: &str = "paywire-sandbox-apiv3-key-32byte";
