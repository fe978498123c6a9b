//! The WeChat Pay verification keys, selected by `Wechatpay-Serial`.
//!
//! Several keys at once so rotation works: a `PUB_KEY_ID_…` public key (public-key mode)
//! and any number of platform-certificate serials may be configured side by side.

use std::fmt;

use chrono::{DateTime, Utc};
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use serde::Deserialize;
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

use super::crypto::{
    self, HEADER_NONCE, HEADER_SERIAL, HEADER_SIGNATURE, HEADER_SIGNATURE_TYPE, HEADER_TIMESTAMP,
    MAX_CLOCK_SKEW_SECS, SIGNATURE_TYPE,
};
use crate::{CryptoError, NotifyError};

/// Associated data of encrypted certificates in `GET /v3/certificates`.
pub const CERTIFICATE_AAD: &str = "certificate";

/// Reads a platform certificate (X.509 PEM): its serial as WeChat Pay writes it in
/// `Wechatpay-Serial` (upper-case hex, no leading zero bytes) and its RSA public key.
pub fn certificate_from_pem(pem: &str) -> Result<(String, RsaPublicKey), CryptoError> {
    let invalid =
        |what: &str, e: &dyn fmt::Display| CryptoError::InvalidKey(format!("{what}: {e}"));
    let cert =
        Certificate::from_pem(pem.trim().as_bytes()).map_err(|e| invalid("certificate", &e))?;
    let tbs = &cert.tbs_certificate;
    let serial: String = tbs
        .serial_number
        .as_bytes()
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02X}"))
        .collect();
    if serial.is_empty() {
        return Err(CryptoError::InvalidKey("certificate serial is zero".into()));
    }
    let spki = tbs
        .subject_public_key_info
        .to_der()
        .map_err(|e| invalid("certificate public key", &e))?;
    let key = RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| invalid("certificate public key is not RSA", &e))?;
    Ok((serial, key))
}

#[derive(Deserialize)]
struct CertificateList {
    data: Vec<CertificateEntry>,
}

#[derive(Deserialize)]
struct CertificateEntry {
    serial_no: String,
    encrypt_certificate: EncryptedCertificate,
}

#[derive(Deserialize)]
struct EncryptedCertificate {
    algorithm: String,
    nonce: String,
    #[serde(default)]
    associated_data: String,
    ciphertext: String,
}

/// Decrypts a (verified) `GET /v3/certificates` body into `(serial, PEM)` pairs. The
/// serial read from each certificate must equal the listed `serial_no`.
pub fn certificates_from_download(
    body: &[u8],
    apiv3_key: &[u8],
) -> Result<Vec<(String, String)>, CryptoError> {
    let list: CertificateList = serde_json::from_slice(body)
        .map_err(|e| CryptoError::InvalidKey(format!("certificate list: {e}")))?;
    list.data
        .into_iter()
        .map(|entry| {
            let enc = entry.encrypt_certificate;
            if enc.algorithm != super::wire::ALGORITHM_AEAD_AES_256_GCM {
                return Err(CryptoError::InvalidKey(format!(
                    "certificate algorithm {}",
                    enc.algorithm
                )));
            }
            let plain = crypto::decrypt_resource(
                apiv3_key,
                &enc.nonce,
                &enc.associated_data,
                &enc.ciphertext,
            )?;
            let pem = String::from_utf8(plain)
                .map_err(|_| CryptoError::InvalidKey("certificate is not UTF-8".into()))?;
            let (serial, _) = certificate_from_pem(&pem)?;
            if !serial.eq_ignore_ascii_case(&entry.serial_no) {
                return Err(CryptoError::InvalidKey(format!(
                    "certificate serial {serial} listed as {}",
                    entry.serial_no
                )));
            }
            Ok((serial, pem))
        })
        .collect()
}

/// Prefix of a WeChat Pay public-key id (public-key mode).
pub const PUBLIC_KEY_ID_PREFIX: &str = "PUB_KEY_ID_";

#[derive(Clone, Default)]
pub struct WechatPayKeyring {
    /// In insertion order; the last public-key id is the one we announce in requests.
    keys: Vec<(String, RsaPublicKey)>,
}

impl fmt::Debug for WechatPayKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatPayKeyring")
            .field("serials", &self.serials().collect::<Vec<_>>())
            .finish()
    }
}

impl WechatPayKeyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key for `serial`; builder style.
    pub fn with_key(mut self, serial: impl Into<String>, key: RsaPublicKey) -> Self {
        self.insert(serial, key);
        self
    }

    /// Adds (or replaces) the key for `serial`.
    pub fn insert(&mut self, serial: impl Into<String>, key: RsaPublicKey) {
        let serial = serial.into();
        self.keys.retain(|(s, _)| *s != serial);
        self.keys.push((serial, key));
    }

    /// Adds a platform certificate (X.509 PEM) under its own serial; returns the serial.
    pub fn insert_certificate_pem(&mut self, pem: &str) -> Result<String, CryptoError> {
        let (serial, key) = certificate_from_pem(pem)?;
        self.insert(serial.clone(), key);
        Ok(serial)
    }

    /// Builder style [`insert_certificate_pem`](Self::insert_certificate_pem).
    pub fn with_certificate_pem(mut self, pem: &str) -> Result<Self, CryptoError> {
        self.insert_certificate_pem(pem)?;
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn serials(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(s, _)| s.as_str())
    }

    pub fn get(&self, serial: &str) -> Option<&RsaPublicKey> {
        self.keys.iter().find(|(s, _)| s == serial).map(|(_, k)| k)
    }

    /// The serial a merchant sends in its `Wechatpay-Serial` request header: the newest
    /// public-key id, else the newest certificate serial.
    pub fn request_serial(&self) -> Option<&str> {
        self.keys
            .iter()
            .rev()
            .find(|(s, _)| s.starts_with(PUBLIC_KEY_ID_PREFIX))
            .or_else(|| self.keys.last())
            .map(|(s, _)| s.as_str())
    }

    /// Verifies a WeChat Pay signed message (API response or callback): signature type
    /// (if present), known serial, timestamp within `abs(now - ts) < 300 s`, and the
    /// signature over `TS\nNONCE\nBODY\n` on the raw body bytes.
    pub fn verify_signed(
        &self,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), NotifyError> {
        let required = |name: &str| {
            crypto::header(headers, name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| NotifyError::Malformed(format!("missing header {name}")))
        };
        if let Some(kind) = crypto::header(headers, HEADER_SIGNATURE_TYPE)
            && kind.trim() != SIGNATURE_TYPE
        {
            return Err(NotifyError::BadSignature);
        }
        let serial = required(HEADER_SERIAL)?;
        let timestamp = required(HEADER_TIMESTAMP)?;
        let nonce = required(HEADER_NONCE)?;
        let signature = required(HEADER_SIGNATURE)?;
        let key = self.get(serial).ok_or(NotifyError::UnknownSerial)?;
        let ts: i64 = timestamp
            .parse()
            .map_err(|_| NotifyError::Malformed("non-numeric timestamp".into()))?;
        // Both directions: a far-future timestamp is as suspicious as an old one.
        if now.timestamp().abs_diff(ts) >= MAX_CLOCK_SKEW_SECS.unsigned_abs() {
            return Err(NotifyError::StaleTimestamp);
        }
        let message = crypto::response_message(timestamp, nonce, body);
        if crypto::verify(key, &message, signature) {
            Ok(())
        } else {
            Err(NotifyError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use chrono::TimeZone;
    use rsa::RsaPrivateKey;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/wechat");
    const W2_TS: i64 = 1624523846;

    fn w1_public() -> RsaPublicKey {
        keys::public_key_from_file(format!("{VECTORS}/w1_public_key.pem")).unwrap()
    }

    fn w2_request() -> (Vec<(String, String)>, Vec<u8>) {
        let body = std::fs::read(format!("{VECTORS}/w2_body.json")).unwrap();
        let signature = std::fs::read_to_string(format!("{VECTORS}/w2_signature.txt")).unwrap();
        let headers = vec![
            ("content-type".into(), "application/json".into()),
            (
                "wechatpay-nonce".into(),
                "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz".into(),
            ),
            ("wechatpay-timestamp".into(), W2_TS.to_string()),
            ("wechatpay-serial".into(), "D7CE59D1F522D701".into()),
            ("wechatpay-signature".into(), signature),
        ];
        (headers, body)
    }

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).unwrap()
    }

    /// `ring`'s verdict on `headers` and `body` at the W2 vector's own time.
    fn verify_at_w2(
        ring: &WechatPayKeyring,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), NotifyError> {
        ring.verify_signed(headers, body, at(W2_TS))
    }

    /// `ring`'s verdict on the W2 callback as it was sent.
    fn verify_w2(ring: &WechatPayKeyring) -> Result<(), NotifyError> {
        let (headers, body) = w2_request();
        verify_at_w2(ring, &headers, &body)
    }

    fn w2_keyring() -> WechatPayKeyring {
        WechatPayKeyring::new().with_key("D7CE59D1F522D701", w1_public())
    }

    #[test]
    fn w2_complete_callback_verifies() {
        assert_eq!(verify_w2(&w2_keyring()), Ok(()));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let (headers, body) = w2_request();
        let upper: Vec<_> = headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_uppercase(), v))
            .collect();
        assert_eq!(verify_at_w2(&w2_keyring(), &upper, &body), Ok(()));
    }

    #[test]
    fn window_is_strictly_under_300_seconds_both_ways() {
        let (headers, body) = w2_request();
        let ring = w2_keyring();
        assert_eq!(ring.verify_signed(&headers, &body, at(W2_TS + 299)), Ok(()));
        assert_eq!(ring.verify_signed(&headers, &body, at(W2_TS - 299)), Ok(()));
        for now in [W2_TS + 300, W2_TS + 301, W2_TS - 300, W2_TS - 301] {
            assert_eq!(
                ring.verify_signed(&headers, &body, at(now)),
                Err(NotifyError::StaleTimestamp),
                "now = ts {:+}",
                now - W2_TS
            );
        }
    }

    #[test]
    fn tampered_body_or_signature_is_rejected() {
        let (headers, mut body) = w2_request();
        let ring = w2_keyring();
        let last = body.len() - 2;
        body[last] = b' ';
        assert_eq!(
            verify_at_w2(&ring, &headers, &body),
            Err(NotifyError::BadSignature)
        );
        let (mut headers, body) = w2_request();
        headers[4].1 = headers[4].1.replacen('t', 'u'.to_string().as_str(), 1);
        assert_eq!(
            verify_at_w2(&ring, &headers, &body),
            Err(NotifyError::BadSignature)
        );
    }

    #[test]
    fn unknown_serial_is_rejected_even_if_another_key_would_verify() {
        let ring = WechatPayKeyring::new().with_key("PUB_KEY_ID_OTHER", w1_public());
        assert_eq!(verify_w2(&ring), Err(NotifyError::UnknownSerial));
    }

    #[test]
    fn a_key_under_the_right_serial_but_wrong_material_fails() {
        let other = keys::public_key_from_file(format!("{KEYS}/wechatpay_public_key.pem")).unwrap();
        let ring = WechatPayKeyring::new().with_key("D7CE59D1F522D701", other);
        assert_eq!(verify_w2(&ring), Err(NotifyError::BadSignature));
    }

    #[test]
    fn signature_type_is_checked_when_present() {
        let (mut headers, body) = w2_request();
        let ring = w2_keyring();
        headers.push(("wechatpay-signature-type".into(), SIGNATURE_TYPE.into()));
        assert_eq!(verify_at_w2(&ring, &headers, &body), Ok(()));
        headers.last_mut().unwrap().1 = "WECHATPAY2-SM2-WITH-SM3".into();
        assert_eq!(
            verify_at_w2(&ring, &headers, &body),
            Err(NotifyError::BadSignature)
        );
    }

    #[test]
    fn missing_headers_or_bad_timestamp_are_malformed() {
        let ring = w2_keyring();
        for drop in [
            "wechatpay-nonce",
            "wechatpay-timestamp",
            "wechatpay-serial",
            "wechatpay-signature",
        ] {
            let (headers, body) = w2_request();
            let headers: Vec<_> = headers.into_iter().filter(|(n, _)| n != drop).collect();
            assert!(
                matches!(
                    verify_at_w2(&ring, &headers, &body),
                    Err(NotifyError::Malformed(_))
                ),
                "without {drop}"
            );
        }
        let (mut headers, body) = w2_request();
        headers[2].1 = "16245238x6".into();
        assert!(matches!(
            verify_at_w2(&ring, &headers, &body),
            Err(NotifyError::Malformed(_))
        ));
    }

    #[test]
    fn rotation_keeps_both_keys_and_announces_newest_public_key_id() {
        let sandbox: RsaPrivateKey =
            keys::private_key_from_file(format!("{KEYS}/wechatpay_private_key.pem")).unwrap();
        let ring = WechatPayKeyring::new()
            .with_key("PUB_KEY_ID_OLD", w1_public())
            .with_key("ABCDEF0123", w1_public())
            .with_key("PUB_KEY_ID_NEW", RsaPublicKey::from(&sandbox));
        assert_eq!(ring.request_serial(), Some("PUB_KEY_ID_NEW"));
        let now = at(1_800_000_000);
        let body = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=x"}"#;
        let headers = crypto::signed_response_headers(
            &sandbox,
            "PUB_KEY_ID_NEW",
            now.timestamp(),
            "N1",
            body,
        );
        assert_eq!(ring.verify_signed(&headers, body, now), Ok(()));
        // The same signature claimed under the old id does not verify.
        let mut old = headers.clone();
        old[3].1 = "PUB_KEY_ID_OLD".into();
        assert_eq!(
            ring.verify_signed(&old, body, now),
            Err(NotifyError::BadSignature)
        );
        let certs_only = WechatPayKeyring::new().with_key("ABCDEF0123", w1_public());
        assert_eq!(certs_only.request_serial(), Some("ABCDEF0123"));
        assert_eq!(WechatPayKeyring::new().request_serial(), None);
    }

    const W4_KEY: &[u8] = b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
    const W5_SERIAL: &str = "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC";

    fn w5_body() -> Vec<u8> {
        std::fs::read(format!("{VECTORS}/w5_download_certificate_response.json")).unwrap()
    }

    #[test]
    fn w5_certificate_download_decrypts_with_w4_key_and_loads_into_the_keyring() {
        let certs = certificates_from_download(&w5_body(), W4_KEY).unwrap();
        assert_eq!(certs.len(), 1);
        let (serial, pem) = &certs[0];
        assert_eq!(serial, W5_SERIAL);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let mut ring = WechatPayKeyring::new().with_key("PUB_KEY_ID_1", w1_public());
        assert_eq!(ring.insert_certificate_pem(pem).unwrap(), W5_SERIAL);
        assert!(ring.get(W5_SERIAL).is_some());
        // Both modes side by side; the public-key id is still the one announced.
        assert_eq!(ring.request_serial(), Some("PUB_KEY_ID_1"));
    }

    #[test]
    fn certificate_download_with_wrong_key_or_tampered_listing_fails() {
        assert_eq!(
            certificates_from_download(&w5_body(), b"another-apiv3-key-of-32-bytes-xx"),
            Err(CryptoError::Decrypt)
        );
        let listed_wrong = String::from_utf8(w5_body())
            .unwrap()
            .replace(W5_SERIAL, "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427ED");
        assert!(matches!(
            certificates_from_download(listed_wrong.as_bytes(), W4_KEY),
            Err(CryptoError::InvalidKey(_))
        ));
        assert!(matches!(
            certificates_from_download(b"{}", W4_KEY),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    #[test]
    fn platform_certificate_mode_verifies_by_certificate_serial() {
        // A certificate-mode keyring verifies only what is signed under the
        // certificate's serial with the certificate's key.
        let pem = &certificates_from_download(&w5_body(), W4_KEY).unwrap()[0].1;
        let ring = WechatPayKeyring::new().with_certificate_pem(pem).unwrap();
        assert_eq!(ring.request_serial(), Some(W5_SERIAL));
        let sandbox =
            keys::private_key_from_file(format!("{KEYS}/wechatpay_private_key.pem")).unwrap();
        let now = at(1_800_000_000);
        let headers =
            crypto::signed_response_headers(&sandbox, W5_SERIAL, now.timestamp(), "N", b"{}");
        // Not Tenpay's key: refused.
        assert_eq!(
            ring.verify_signed(&headers, b"{}", now),
            Err(NotifyError::BadSignature)
        );
        assert!(matches!(
            certificate_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    #[test]
    fn empty_body_204_response_verifies() {
        let sandbox =
            keys::private_key_from_file(format!("{KEYS}/wechatpay_private_key.pem")).unwrap();
        let ring = WechatPayKeyring::new().with_key("PUB_KEY_ID_1", RsaPublicKey::from(&sandbox));
        let now = at(1_800_000_000);
        let headers =
            crypto::signed_response_headers(&sandbox, "PUB_KEY_ID_1", now.timestamp(), "N", b"");
        assert_eq!(ring.verify_signed(&headers, b"", now), Ok(()));
        assert_eq!(
            ring.verify_signed(&headers, b"{}", now),
            Err(NotifyError::BadSignature)
        );
    }
}
