//! Alipay OpenAPI (`gateway.do`, RSA2, face-to-face QR payments) as the merchant sees it.
//!
//! * [`routes`]: the one gateway endpoint and its methods;
//! * [`state`]: trades (which exist only once scanned) and refunds.
//!
//! All crypto is `paywire_channels::alipay`'s: request sign content (with the Java
//! variant as a fallback), response envelopes signed over the emitted substring, and
//! notification signatures over the form minus `sign`/`sign_type`.

pub mod bill;
pub mod routes;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::web;
use chrono::Utc;
use paywire_channels::alipay::{self as channel, sign, verify};
use paywire_channels::{keys, rsa_sha256};
use paywire_domain::PayChannel;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};

use crate::SandboxError;
use crate::faults::Faults;
use crate::notify::{ALIPAY_RETRY_SCHEDULE, Notifier, Outgoing, alipay_acknowledged};
use state::{AlipayBook, AlipayRefund, AlipayStatus, AlipayTrade, alipay_time};

/// The app the sandbox knows and Alipay's own key. Defaults: the test-only identity under
/// `deploy/test-keys/alipay/` (paths relative to the working directory, else to the
/// repository root, so tests started from any crate find them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AlipaySettings {
    pub app_id: String,
    pub seller_id: String,
    /// Verifies the merchant's requests.
    pub app_public_key_path: String,
    /// Signs responses and notifications as Alipay.
    pub alipay_private_key_path: String,
    /// Write `/` as `\/` in responses, as Alipay does, so clients must verify the raw
    /// text rather than a re-serialisation.
    pub escape_slashes: bool,
}

impl Default for AlipaySettings {
    fn default() -> Self {
        Self {
            app_id: channel::DEV_APP_ID.into(),
            seller_id: channel::DEV_SELLER_ID.into(),
            app_public_key_path: channel::DEV_APP_PUBLIC_KEY_PATH.into(),
            alipay_private_key_path: channel::DEV_ALIPAY_PRIVATE_KEY_PATH.into(),
            escape_slashes: true,
        }
    }
}

/// `path` as given if it exists, else relative to the repository root (test-only keys).
fn resolve(path: &str) -> PathBuf {
    let given = Path::new(path);
    if given.exists() || given.is_absolute() {
        return given.to_owned();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    if root.exists() {
        root
    } else {
        given.to_owned()
    }
}

/// Alipay's side of the sandbox.
pub struct AlipaySandbox {
    pub app_id: String,
    pub seller_id: String,
    app_key: RsaPublicKey,
    signing_key: Arc<RsaPrivateKey>,
    escape_slashes: bool,
    pub trades: AlipayBook,
    /// Bill zips behind their `bill_download_url` tokens.
    pub bills: crate::statements::Files,
    notifier: Arc<Notifier>,
    pub faults: Arc<Faults>,
}

paywire_platform::debug_fields!(AlipaySandbox { app_id });

fn value<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl AlipaySandbox {
    pub fn from_settings(
        settings: &AlipaySettings,
        notifier: Arc<Notifier>,
        faults: Arc<Faults>,
    ) -> anyhow::Result<Self> {
        let app_key = keys::public_key_from_file(resolve(&settings.app_public_key_path))?;
        let signing_key = keys::private_key_from_file(resolve(&settings.alipay_private_key_path))?;
        Ok(Self {
            app_id: settings.app_id.clone(),
            seller_id: settings.seller_id.clone(),
            app_key,
            signing_key: Arc::new(signing_key),
            escape_slashes: settings.escape_slashes,
            trades: AlipayBook::default(),
            bills: crate::statements::Files::default(),
            notifier,
            faults,
        })
    }

    /// The gateway's checks before any method runs, in Alipay's order; returns the
    /// method. Errors belong in `error_response`.
    pub fn check_request(&self, params: &[(String, String)]) -> Result<String, SandboxError> {
        let sign = value(params, sign::PARAM_SIGN)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SandboxError::AlipayMissing("isv.missing-signature", "sign".into()))?;
        let method = value(params, "method")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SandboxError::AlipayMissing("isv.missing-method", "method".into()))?;
        let app_id = value(params, "app_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SandboxError::AlipayMissing("isv.missing-app-id", "app_id".into()))?;
        if app_id != self.app_id {
            return Err(SandboxError::AlipayInvalid(
                "isv.invalid-app-id",
                "无效的AppID参数".into(),
            ));
        }
        match value(params, sign::PARAM_SIGN_TYPE) {
            Some(sign::SIGN_TYPE_RSA2) => {}
            Some(_) => {
                return Err(SandboxError::AlipayInvalid(
                    "isv.invalid-signature-type",
                    "无效的签名类型".into(),
                ));
            }
            None => {
                return Err(SandboxError::AlipayMissing(
                    "isv.missing-signature-type",
                    "sign_type".into(),
                ));
            }
        }
        let content = sign::sign_content(params);
        let verified = rsa_sha256::verify(&self.app_key, content.as_bytes(), sign)
            // Java clients leave empty values out of what they sign.
            || (params.iter().any(|(_, v)| v.is_empty())
                && rsa_sha256::verify(
                    &self.app_key,
                    sign::sign_content_without_empty(params).as_bytes(),
                    sign,
                ));
        if !verified {
            tracing::warn!(%content, "alipay request signature does not verify");
            return Err(SandboxError::AlipayInvalid(
                "isv.invalid-signature",
                "验签出错".into(),
            ));
        }
        Ok(method.to_owned())
    }

    /// `{"<key>":<content>,"sign":"…"}` with the signature over the exact emitted
    /// `content`; `spoil` signs other bytes instead (the `bad_signature` fault).
    pub fn envelope(&self, key: &str, content: &serde_json::Value, spoil: bool) -> String {
        let mut inner = content.to_string();
        if self.escape_slashes {
            // Outside strings JSON has no `/`, so this only touches string contents.
            inner = inner.replace('/', "\\/");
        }
        if spoil {
            let sign = rsa_sha256::sign(&self.signing_key, format!("{inner} ").as_bytes());
            return format!(
                "{{{}:{inner},\"sign\":{}}}",
                serde_json::Value::from(key),
                serde_json::Value::from(sign)
            );
        }
        verify::signed_response(&self.signing_key, key, &inner)
    }

    /// Sends `trade_status_sync` for a payment, unless `pay_without_notify` keeps it back.
    pub fn notify_paid(&self, trade: &AlipayTrade) -> Option<String> {
        if self
            .faults
            .pay_invisible(PayChannel::Alipay, &trade.out_trade_no)
        {
            self.trades.hide(&trade.out_trade_no);
            return None;
        }
        if self
            .faults
            .pay_without_notify(PayChannel::Alipay, &trade.out_trade_no)
        {
            return None;
        }
        let params = self.trade_params(trade);
        self.send(trade, "TRADE_SUCCESS", params)
    }

    /// A partial refund re-sends TRADE_SUCCESS with the refund fields; a full one sends
    /// TRADE_CLOSED with `gmt_close` (reference §2.5).
    pub fn notify_refunded(&self, trade: &AlipayTrade, refund: &AlipayRefund) -> Option<String> {
        let mut params = self.trade_params(trade);
        params.push(("out_biz_no".into(), refund.out_request_no.clone()));
        params.push(("refund_fee".into(), trade.refunded().to_yuan_string()));
        params.push(("gmt_refund".into(), alipay_time(refund.at)));
        if let Some(closed) = trade.closed_at {
            params.push(("gmt_close".into(), alipay_time(closed)));
        }
        let status = trade.status.map_or("TRADE_SUCCESS", AlipayStatus::as_str);
        self.send(trade, status, params)
    }

    /// The business fields every trade notification carries.
    fn trade_params(&self, trade: &AlipayTrade) -> Vec<(String, String)> {
        let total = trade.params.total.to_yuan_string();
        let mut p: Vec<(String, String)> = vec![
            ("app_id".into(), self.app_id.clone()),
            ("auth_app_id".into(), self.app_id.clone()),
            ("out_trade_no".into(), trade.out_trade_no.clone()),
            ("seller_id".into(), self.seller_id.clone()),
            (
                "trade_status".into(),
                trade
                    .status
                    .map_or("WAIT_BUYER_PAY", AlipayStatus::as_str)
                    .into(),
            ),
            ("total_amount".into(), total.clone()),
            ("receipt_amount".into(), total.clone()),
            ("invoice_amount".into(), total.clone()),
            ("buyer_pay_amount".into(), total.clone()),
            ("point_amount".into(), "0.00".into()),
            ("subject".into(), trade.params.subject.clone()),
            (
                "gmt_create".into(),
                alipay_time(trade.scanned_at.unwrap_or(trade.created_at)),
            ),
            (
                "fund_bill_list".into(),
                serde_json::json!([{"amount": total, "fundChannel": "ALIPAYACCOUNT"}]).to_string(),
            ),
        ];
        if let Some(no) = &trade.trade_no {
            p.push(("trade_no".into(), no.clone()));
        }
        if let Some(buyer) = &trade.buyer {
            p.push(("buyer_id".into(), buyer.user_id.clone()));
            p.push(("buyer_logon_id".into(), buyer.logon_id.clone()));
        }
        if let Some(paid) = trade.paid_at {
            p.push(("gmt_payment".into(), alipay_time(paid)));
        }
        if let Some(body) = &trade.params.body {
            p.push(("body".into(), body.clone()));
        }
        p
    }

    /// Adds the common fields, signs and starts delivering to the trade's `notify_url`.
    fn send(
        &self,
        trade: &AlipayTrade,
        trade_status: &str,
        mut params: Vec<(String, String)>,
    ) -> Option<String> {
        let url = trade.params.notify_url.clone()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let plan = self
            .faults
            .notify_plan(PayChannel::Alipay, &trade.out_trade_no, &id);
        params.retain(|(k, _)| k != "trade_status");
        params.extend([
            ("trade_status".to_owned(), trade_status.to_owned()),
            ("notify_type".to_owned(), "trade_status_sync".to_owned()),
            // Stays the same on every retry: merchants deduplicate on it.
            ("notify_id".to_owned(), id.clone()),
            ("notify_time".to_owned(), alipay_time(Utc::now())),
            ("charset".to_owned(), "utf-8".to_owned()),
            ("version".to_owned(), "1.0".to_owned()),
            ("sign_type".to_owned(), "RSA2".to_owned()),
        ]);
        let signature = if plan.bad_signature {
            let content = verify::notify_sign_content(&params) + "&tampered=1";
            rsa_sha256::sign(&self.signing_key, content.as_bytes())
        } else {
            verify::sign_notification(&self.signing_key, &params)
        };
        params.push(("sign".to_owned(), signature));
        let body = match serde_urlencoded::to_string(&params) {
            Ok(body) => body.into_bytes(),
            Err(e) => {
                tracing::error!(error = %e, "alipay notification not encodable");
                return None;
            }
        };
        let outgoing = Outgoing {
            id,
            channel: PayChannel::Alipay,
            event_type: trade_status.to_owned(),
            url,
            content_type: "application/x-www-form-urlencoded; charset=utf-8",
            body,
            // The signature travels in the form itself.
            sign: Arc::new(|_: &[u8]| Vec::new()),
            acknowledged: alipay_acknowledged,
            schedule: &ALIPAY_RETRY_SCHEDULE,
            plan,
        };
        let id = self.notifier.dispatch(outgoing);
        self.trades
            .add_notification(&trade.out_trade_no, id.clone());
        Some(id)
    }
}

/// Mounts `GET|POST /gateway.do` and the bill downloads (`/downloadBillFile.resource`,
/// where Alipay's links point at its bill host).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/gateway.do", web::get().to(routes::gateway))
        .route("/gateway.do", web::post().to(routes::gateway))
        .route(
            "/downloadBillFile.resource",
            web::get().to(routes::download_bill),
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultSettings;
    use crate::notify::NotifySettings;

    fn sandbox(escape: bool) -> AlipaySandbox {
        let notifier =
            Arc::new(Notifier::new(&NotifySettings::default(), std::time::Duration::ZERO).unwrap());
        let faults = Arc::new(Faults::new(&FaultSettings::default()));
        let settings = AlipaySettings {
            escape_slashes: escape,
            ..AlipaySettings::default()
        };
        AlipaySandbox::from_settings(&settings, notifier, faults).unwrap()
    }

    fn alipay_public_key() -> RsaPublicKey {
        keys::public_key_from_file(resolve(channel::DEV_ALIPAY_PUBLIC_KEY_PATH)).unwrap()
    }

    #[tokio::test]
    async fn envelopes_verify_over_the_emitted_text_and_spoiled_ones_do_not() {
        let s = sandbox(true);
        let content = serde_json::json!({"code":"10000","qr_code":"https://qr.alipay.com/bax0x"});
        let raw = s.envelope("alipay_trade_precreate_response", &content, false);
        assert!(raw.contains(r"https:\/\/qr.alipay.com\/bax0x"));
        let key = alipay_public_key();
        let parts = verify::verify_response(&key, &raw, "alipay_trade_precreate_response").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(parts.content).unwrap();
        assert_eq!(parsed, content);
        let spoiled = s.envelope("alipay_trade_precreate_response", &content, true);
        assert!(
            verify::verify_response(&key, &spoiled, "alipay_trade_precreate_response").is_err()
        );
        let plain = sandbox(false).envelope("k", &content, false);
        assert!(plain.contains("https://qr.alipay.com/bax0x"));
    }

    #[tokio::test]
    async fn key_paths_resolve_from_any_directory_and_missing_keys_fail() {
        assert!(resolve(channel::DEV_APP_PUBLIC_KEY_PATH).exists());
        let notifier =
            Arc::new(Notifier::new(&NotifySettings::default(), std::time::Duration::ZERO).unwrap());
        let faults = Arc::new(Faults::new(&FaultSettings::default()));
        let settings = AlipaySettings {
            app_public_key_path: "/nonexistent.pem".into(),
            ..AlipaySettings::default()
        };
        assert!(AlipaySandbox::from_settings(&settings, notifier, faults).is_err());
    }
}
