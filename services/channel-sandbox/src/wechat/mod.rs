//! WeChat Pay API v3 (Native, direct merchant, public-key mode) as the merchant sees it.
//!
//! * [`routes`]: prepay, query by `out_trade_no`, close;
//! * [`signing`]: the merchant `Authorization` check and the signature on every response;
//! * [`state`]: trades and their state machine.

pub mod bill;
pub mod routes;
pub mod signing;
pub mod state;

use std::sync::Arc;

use actix_web::web;
use chrono::{DateTime, Utc};
use paywire_channels::keys;
use paywire_channels::wechat::crypto;
use paywire_domain::PayChannel;
use paywire_platform::config::expose_for_layering;
use rsa::{RsaPrivateKey, RsaPublicKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::SandboxError;
use crate::faults::Faults;
use crate::notify::{Notifier, Outgoing, WECHAT_RETRY_SCHEDULE, wechat_acknowledged};
use state::{Refund, Trade, TradeBook, rfc3339_cst};

/// The merchant the sandbox knows, and WeChat Pay's own keys. Defaults: the test-only
/// identity under `deploy/test-keys/wechat/` (paths relative to the working directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WechatSettings {
    pub mchid: String,
    pub appid: String,
    /// Serial of the merchant API certificate; the `serial_no` of `Authorization`.
    pub merchant_serial_no: String,
    /// Verifies merchant requests.
    pub merchant_public_key_path: String,
    /// Signs responses and notifications as WeChat Pay.
    pub wechatpay_private_key_path: String,
    /// `Wechatpay-Serial` of everything signed with that key (public-key mode).
    pub public_key_id: String,
    /// Encrypts notification resources (AEAD_AES_256_GCM, 32 ASCII bytes).
    #[serde(serialize_with = "expose_for_layering")]
    pub apiv3_key: SecretString,
    /// A refund answers PROCESSING and turns SUCCESS this long after (0: at once).
    pub refund_delay_ms: u64,
}

impl Default for WechatSettings {
    fn default() -> Self {
        Self {
            mchid: "1900009191".into(),
            appid: "wxd678efh567hg6787".into(),
            merchant_serial_no: "7E2A1C3B4D5F60718293A4B5C6D7E8F901234567".into(),
            merchant_public_key_path: "deploy/test-keys/wechat/merchant_public_key.pem".into(),
            wechatpay_private_key_path: "deploy/test-keys/wechat/wechatpay_private_key.pem".into(),
            public_key_id: "PUB_KEY_ID_0119000091912026112200000000000001".into(),
            apiv3_key: SecretString::from("paywire-sandbox-apiv3-key-32byte"),
            refund_delay_ms: 0,
        }
    }
}

/// Signs as WeChat Pay: `TS\nNONCE\nBODY\n` with the WeChat Pay private key.
#[derive(Clone)]
pub struct ResponseSigner {
    key: Arc<RsaPrivateKey>,
    serial: String,
}

paywire_platform::debug_fields!(ResponseSigner { serial });

impl ResponseSigner {
    /// `Wechatpay-*` headers over `body` (empty for 204) with a fresh timestamp and
    /// nonce, plus a `Request-ID`. Names are in WeChat's spelling.
    pub fn headers(&self, body: &[u8]) -> Vec<(String, String)> {
        let signed = crypto::signed_response_headers(
            &self.key,
            &self.serial,
            Utc::now().timestamp(),
            &crypto::nonce(),
            body,
        );
        let mut headers: Vec<(String, String)> = signed
            .into_iter()
            .map(|(name, value)| (wechat_header_name(&name), value))
            .collect();
        headers.push((
            "Request-ID".to_owned(),
            uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        ));
        headers
    }

    /// Like [`Self::headers`], but the signature covers other bytes, so it is well
    /// formed and does not verify (the `bad_signature` fault).
    pub fn bad_headers(&self, body: &[u8]) -> Vec<(String, String)> {
        let mut tampered = body.to_vec();
        tampered.extend_from_slice(b"tampered");
        let mut headers = self.headers(&tampered);
        // Keep the original's timestamp/nonce shape; only the signature is wrong.
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("Request-ID"));
        headers.push((
            "Request-ID".to_owned(),
            uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        ));
        headers
    }
}

/// `wechatpay-signature-type` → `Wechatpay-Signature-Type`.
fn wechat_header_name(lower: &str) -> String {
    lower
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// WeChat Pay's side of the sandbox: who it trusts, how it signs, and its trades.
pub struct WechatSandbox {
    pub mchid: String,
    pub appid: String,
    merchant_serial_no: String,
    merchant_key: RsaPublicKey,
    signer: ResponseSigner,
    apiv3_key: SecretString,
    pub trades: TradeBook,
    /// Bills behind their `download_url` tokens.
    pub bills: crate::statements::Files,
    notifier: Arc<Notifier>,
    pub faults: Arc<Faults>,
    refund_delay: std::time::Duration,
}

paywire_platform::debug_fields!(WechatSandbox { mchid, appid });

impl WechatSandbox {
    pub fn from_settings(
        settings: &WechatSettings,
        notifier: Arc<Notifier>,
        faults: Arc<Faults>,
    ) -> anyhow::Result<Self> {
        let merchant_key = keys::public_key_from_file(&settings.merchant_public_key_path)?;
        let signing_key = keys::private_key_from_file(&settings.wechatpay_private_key_path)?;
        let key_len = settings.apiv3_key.expose_secret().len();
        anyhow::ensure!(
            key_len == crypto::APIV3_KEY_LEN,
            "wechat.apiv3_key must be {} bytes, got {key_len}",
            crypto::APIV3_KEY_LEN
        );
        Ok(Self {
            mchid: settings.mchid.clone(),
            appid: settings.appid.clone(),
            merchant_serial_no: settings.merchant_serial_no.clone(),
            merchant_key,
            signer: ResponseSigner {
                key: Arc::new(signing_key),
                serial: settings.public_key_id.clone(),
            },
            apiv3_key: settings.apiv3_key.clone(),
            trades: TradeBook::default(),
            bills: crate::statements::Files::default(),
            notifier,
            faults,
            refund_delay: std::time::Duration::from_millis(settings.refund_delay_ms),
        })
    }

    pub fn signer(&self) -> &ResponseSigner {
        &self.signer
    }

    /// Checks a merchant request's `Authorization` against the raw request; returns the
    /// authenticated mchid.
    pub fn verify_request(
        &self,
        method: &str,
        canonical_url: &str,
        authorization: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<String, SandboxError> {
        let reject = |why: &str| SandboxError::SignError(why.to_owned());
        let header = authorization.ok_or_else(|| reject("no Authorization header"))?;
        let parts = crypto::parse_authorization(header)
            .map_err(|e| SandboxError::SignError(e.to_string()))?;
        if parts.mchid != self.mchid {
            return Err(reject("unknown mchid"));
        }
        if parts.serial_no != self.merchant_serial_no {
            return Err(reject("serial_no is not the merchant certificate serial"));
        }
        let timestamp: i64 = parts
            .timestamp
            .parse()
            .map_err(|_| reject("timestamp is not a number"))?;
        if (now.timestamp() - timestamp).abs() > crypto::MAX_CLOCK_SKEW_SECS {
            return Err(reject("timestamp outside the 5-minute window"));
        }
        let body = std::str::from_utf8(body).map_err(|_| reject("body is not UTF-8"))?;
        let message =
            crypto::request_message(method, canonical_url, timestamp, &parts.nonce_str, body);
        if !crypto::verify(&self.merchant_key, message.as_bytes(), &parts.signature) {
            return Err(reject("signature does not verify"));
        }
        Ok(parts.mchid)
    }

    /// Builds the `TRANSACTION.SUCCESS` notification of a paid trade and starts
    /// delivering it to the trade's `notify_url`; `None` when the `pay_without_notify`
    /// fault keeps it back.
    pub fn notify_paid(&self, trade: &Trade) -> Result<Option<String>, SandboxError> {
        let otn = trade.out_trade_no.as_str();
        if self.faults.pay_invisible(PayChannel::Wechat, otn) {
            self.trades.hide(&trade.mchid, otn);
            return Ok(None);
        }
        if self.faults.pay_without_notify(PayChannel::Wechat, otn) {
            return Ok(None);
        }
        let plaintext = serde_json::to_vec(&trade.transaction())
            .map_err(|e| SandboxError::Internal(e.to_string()))?;
        let event = Event {
            event_type: "TRANSACTION.SUCCESS",
            summary: "支付成功",
            original_type: "transaction",
        };
        let id = self.send(trade, &trade.params.notify_url, event, &plaintext)?;
        Ok(Some(id))
    }

    /// Sends `REFUND.SUCCESS` for a finished refund to the refund's `notify_url` (none
    /// given: nothing to send, as the sandbox has no merchant-level default).
    pub fn notify_refunded(
        &self,
        trade: &Trade,
        refund: &Refund,
    ) -> Result<Option<String>, SandboxError> {
        let Some(url) = refund.params.notify_url.as_deref() else {
            return Ok(None);
        };
        let plaintext = serde_json::to_vec(&refund.notification_resource(trade))
            .map_err(|e| SandboxError::Internal(e.to_string()))?;
        let event = Event {
            event_type: "REFUND.SUCCESS",
            summary: "退款成功",
            original_type: "refund",
        };
        self.send(trade, url, event, &plaintext).map(Some)
    }

    /// Moves a new refund to SUCCESS after the configured delay, then notifies.
    pub fn finish_refund_later(self: &Arc<Self>, out_refund_no: String) {
        let sandbox = self.clone();
        self.notifier.spawn(async move {
            tokio::time::sleep(sandbox.refund_delay).await;
            let Some((trade, refund)) =
                sandbox
                    .trades
                    .complete_refund(&sandbox.mchid, &out_refund_no, Utc::now())
            else {
                return;
            };
            tracing::info!(
                out_refund_no,
                out_trade_no = trade.out_trade_no.as_str(),
                "refund succeeded"
            );
            if let Err(e) = sandbox.notify_refunded(&trade, &refund) {
                tracing::error!(error = %e, "refund notification not sent");
            }
        });
    }

    /// Encrypts `plaintext` into WeChat's envelope and starts delivering it.
    fn send(
        &self,
        trade: &Trade,
        url: &str,
        event: Event,
        plaintext: &[u8],
    ) -> Result<String, SandboxError> {
        let id = uuid::Uuid::new_v4().to_string();
        let otn = trade.out_trade_no.as_str();
        let plan = self.faults.notify_plan(PayChannel::Wechat, otn, &id);
        let body = self.notification(&id, &event, plaintext, Utc::now())?;
        let signer = self.signer.clone();
        let bad = plan.bad_signature;
        let outgoing = Outgoing {
            id,
            channel: PayChannel::Wechat,
            event_type: event.event_type.to_owned(),
            url: url.to_owned(),
            content_type: "application/json",
            body,
            sign: Arc::new(move |body: &[u8]| {
                if bad {
                    signer.bad_headers(body)
                } else {
                    signer.headers(body)
                }
            }),
            acknowledged: wechat_acknowledged,
            schedule: &WECHAT_RETRY_SCHEDULE,
            plan,
        };
        let id = self.notifier.dispatch(outgoing);
        self.trades.add_notification(&trade.mchid, otn, id.clone());
        Ok(id)
    }

    /// The notification body, byte for byte as WeChat Pay sends it; the AAD is the
    /// resource's type (`transaction`, `refund`).
    fn notification(
        &self,
        id: &str,
        event: &Event,
        plaintext: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, SandboxError> {
        let nonce = crypto::resource_nonce();
        let ciphertext = crypto::encrypt_resource(
            self.apiv3_key.expose_secret().as_bytes(),
            &nonce,
            event.original_type,
            plaintext,
        )
        .map_err(|e| SandboxError::Internal(e.to_string()))?;
        let envelope = NotificationEnvelope {
            id,
            create_time: rfc3339_cst(now),
            resource_type: "encrypt-resource",
            event_type: event.event_type,
            summary: event.summary,
            resource: EncryptedResource {
                original_type: event.original_type,
                algorithm: "AEAD_AES_256_GCM",
                ciphertext,
                associated_data: event.original_type,
                nonce,
            },
        };
        serde_json::to_vec(&envelope).map_err(|e| SandboxError::Internal(e.to_string()))
    }
}

#[derive(Debug)]
struct Event {
    event_type: &'static str,
    summary: &'static str,
    original_type: &'static str,
}

#[derive(Debug, Serialize)]
struct NotificationEnvelope<'a> {
    id: &'a str,
    create_time: String,
    resource_type: &'static str,
    event_type: &'static str,
    summary: &'static str,
    resource: EncryptedResource,
}

#[derive(Debug, Serialize)]
struct EncryptedResource {
    original_type: &'static str,
    algorithm: &'static str,
    ciphertext: String,
    associated_data: &'static str,
    nonce: String,
}

/// Mounts `/v3/...`; every response under it is signed by [`signing::sign_responses`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Bill files are not signed by WeChat Pay (the signed `tradebill` answer's SHA1
    // vouches for them): routed ahead of the signing scope.
    cfg.route(
        "/v3/billdownload/file",
        web::get().to(routes::download_bill),
    );
    cfg.service(
        web::scope("/v3")
            .wrap(actix_web::middleware::from_fn(signing::sign_responses))
            .route(
                "/pay/transactions/native",
                web::post().to(routes::prepay_native),
            )
            .route(
                "/pay/transactions/out-trade-no/{out_trade_no}",
                web::get().to(routes::query_by_out_trade_no),
            )
            .route(
                "/pay/transactions/id/{transaction_id}",
                web::get().to(routes::query_by_transaction_id),
            )
            .route(
                "/pay/transactions/out-trade-no/{out_trade_no}/close",
                web::post().to(routes::close),
            )
            .route("/bill/tradebill", web::get().to(routes::trade_bill))
            .route("/refund/domestic/refunds", web::post().to(routes::refund))
            .route(
                "/refund/domestic/refunds/{out_refund_no}",
                web::get().to(routes::query_refund),
            )
            .default_service(web::to(routes::not_found)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NotifySettings;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/wechat");

    fn settings() -> WechatSettings {
        WechatSettings {
            merchant_public_key_path: format!("{KEYS}/merchant_public_key.pem"),
            wechatpay_private_key_path: format!("{KEYS}/wechatpay_private_key.pem"),
            ..WechatSettings::default()
        }
    }

    fn sandbox() -> WechatSandbox {
        let notifier =
            Arc::new(Notifier::new(&NotifySettings::default(), std::time::Duration::ZERO).unwrap());
        let faults = Arc::new(Faults::new(&crate::faults::FaultSettings::default()));
        WechatSandbox::from_settings(&settings(), notifier, faults).unwrap()
    }

    fn merchant_key() -> RsaPrivateKey {
        keys::private_key_from_file(format!("{KEYS}/merchant_private_key.pem")).unwrap()
    }

    fn auth(ts: i64, url: &str, body: &str, mchid: &str, serial: &str) -> String {
        let nonce = crypto::nonce();
        let msg = crypto::request_message("POST", url, ts, &nonce, body);
        let sig = crypto::sign(&merchant_key(), msg.as_bytes());
        crypto::authorization(mchid, serial, ts, &nonce, &sig)
    }

    #[tokio::test]
    async fn request_verification_accepts_good_and_refuses_each_defect() {
        let s = sandbox();
        let now = Utc::now();
        let ts = now.timestamp();
        let url = "/v3/pay/transactions/native";
        let body = r#"{"a":1}"#;
        let serial = "7E2A1C3B4D5F60718293A4B5C6D7E8F901234567";
        let good = auth(ts, url, body, "1900009191", serial);
        let ok = s.verify_request("POST", url, Some(&good), body.as_bytes(), now);
        assert_eq!(ok.unwrap(), "1900009191");

        let refused =
            |r: Result<String, SandboxError>| matches!(r, Err(SandboxError::SignError(_)));
        assert!(refused(s.verify_request(
            "POST",
            url,
            None,
            body.as_bytes(),
            now
        )));
        // Body, URL or method differ from what was signed.
        assert!(refused(s.verify_request(
            "POST",
            url,
            Some(&good),
            b"{\"a\":2}",
            now
        )));
        assert!(refused(s.verify_request(
            "POST",
            "/v3/other",
            Some(&good),
            body.as_bytes(),
            now
        )));
        assert!(refused(s.verify_request(
            "GET",
            url,
            Some(&good),
            body.as_bytes(),
            now
        )));
        // Wrong mchid or serial in the header, even with a valid signature.
        let other_mch = auth(ts, url, body, "1900000000", serial);
        assert!(refused(s.verify_request(
            "POST",
            url,
            Some(&other_mch),
            body.as_bytes(),
            now
        )));
        let other_serial = auth(ts, url, body, "1900009191", "ABCDEF");
        assert!(refused(s.verify_request(
            "POST",
            url,
            Some(&other_serial),
            body.as_bytes(),
            now
        )));
        // Stale or future timestamps beyond 5 minutes; within is fine.
        let stale = auth(ts - 301, url, body, "1900009191", serial);
        assert!(refused(s.verify_request(
            "POST",
            url,
            Some(&stale),
            body.as_bytes(),
            now
        )));
        let future = auth(ts + 301, url, body, "1900009191", serial);
        assert!(refused(s.verify_request(
            "POST",
            url,
            Some(&future),
            body.as_bytes(),
            now
        )));
        let recent = auth(ts - 290, url, body, "1900009191", serial);
        assert!(
            s.verify_request("POST", url, Some(&recent), body.as_bytes(), now)
                .is_ok()
        );
        // Signed by another key (WeChat Pay's own, not the merchant's).
        let wechat_key =
            keys::private_key_from_file(format!("{KEYS}/wechatpay_private_key.pem")).unwrap();
        let nonce = crypto::nonce();
        let sig = crypto::sign(
            &wechat_key,
            crypto::request_message("POST", url, ts, &nonce, body).as_bytes(),
        );
        let foreign = crypto::authorization("1900009191", serial, ts, &nonce, &sig);
        assert!(refused(s.verify_request(
            "POST",
            url,
            Some(&foreign),
            body.as_bytes(),
            now
        )));
        assert!(refused(s.verify_request(
            "POST",
            url,
            Some("Bearer x"),
            body.as_bytes(),
            now
        )));
    }

    #[tokio::test]
    async fn apiv3_key_must_be_32_bytes() {
        let notifier =
            Arc::new(Notifier::new(&NotifySettings::default(), std::time::Duration::ZERO).unwrap());
        let faults = Arc::new(Faults::new(&crate::faults::FaultSettings::default()));
        let mut bad = settings();
        bad.apiv3_key = SecretString::from("short");
        assert!(WechatSandbox::from_settings(&bad, notifier.clone(), faults.clone()).is_err());
        let mut missing = settings();
        missing.merchant_public_key_path = "/nonexistent.pem".into();
        assert!(WechatSandbox::from_settings(&missing, notifier, faults).is_err());
    }

    #[test]
    fn header_names_are_spelled_like_wechat() {
        assert_eq!(
            wechat_header_name("wechatpay-signature-type"),
            "Wechatpay-Signature-Type"
        );
        assert_eq!(wechat_header_name("wechatpay-nonce"), "Wechatpay-Nonce");
    }
}
