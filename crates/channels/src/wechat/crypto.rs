//! WeChat Pay API v3 cryptography as pure functions: message construction, RSA-SHA256
//! signatures, the `Authorization` header and AEAD_AES_256_GCM resources.
//!
//! Used by the gateway (merchant side) and by the channel sandbox (WeChat Pay side), so
//! both ends agree byte for byte. Public sources: WeChat Pay API v3 docs, "签名生成", "签名验证"
//! and "证书和回调报文解密" (pay.weixin.qq.com/docs/merchant/development/interface-rules/).

use crate::random_alphanumeric;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::RsaPrivateKey;

use crate::CryptoError;

/// Scheme of the `Authorization` header and value of `Wechatpay-Signature-Type`.
pub const SIGNATURE_TYPE: &str = "WECHATPAY2-SHA256-RSA2048";
/// Responses and callbacks older or newer than this are refused (`abs(now - ts) < 300`).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// Length of the AEAD_AES_256_GCM key (the APIv3 key, used as ASCII bytes).
pub const APIV3_KEY_LEN: usize = 32;
/// Length of the AEAD_AES_256_GCM nonce.
pub const RESOURCE_NONCE_LEN: usize = 12;

/// Header names, lower-cased (HTTP names are case-insensitive; we compare lower-case).
pub const HEADER_TIMESTAMP: &str = "wechatpay-timestamp";
pub const HEADER_NONCE: &str = "wechatpay-nonce";
pub const HEADER_SIGNATURE: &str = "wechatpay-signature";
pub const HEADER_SERIAL: &str = "wechatpay-serial";
pub const HEADER_SIGNATURE_TYPE: &str = "wechatpay-signature-type";
pub const HEADER_REQUEST_ID: &str = "request-id";

/// The signed message of a merchant request: `METHOD\nURL\nTS\nNONCE\nBODY\n`.
/// `canonical_url` is the path plus `?query` exactly as sent; `body` is `""` for GET.
pub fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: i64,
    nonce: &str,
    body: &str,
) -> String {
    format!("{method}\n{canonical_url}\n{timestamp}\n{nonce}\n{body}\n")
}

/// The signed message of a response or callback: `TS\nNONCE\nBODY\n` over the raw body
/// bytes (an empty body, e.g. 204, gives `TS\nNONCE\n\n`).
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(nonce.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// RSA-SHA256 (both channels use it), moved to a neutral module; re-exported so
/// `wechat::crypto::{sign, verify}` keep working.
pub use crate::rsa_sha256::{sign, verify};

/// The `Authorization` header value of a merchant request.
pub fn authorization(
    mchid: &str,
    serial_no: &str,
    timestamp: i64,
    nonce: &str,
    signature: &str,
) -> String {
    format!(
        "{SIGNATURE_TYPE} mchid=\"{mchid}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\",signature=\"{signature}\""
    )
}

/// The five items of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationParts {
    pub mchid: String,
    pub nonce_str: String,
    pub timestamp: String,
    pub serial_no: String,
    pub signature: String,
}

/// Parses an `Authorization` header. The five items may come in any order (each SDK
/// uses its own); each must appear exactly once, double-quoted; unknown items are refused.
pub fn parse_authorization(header: &str) -> Result<AuthorizationParts, CryptoError> {
    let malformed = |why: &str| CryptoError::MalformedAuthorization(why.to_owned());
    let rest = header
        .trim()
        .strip_prefix(SIGNATURE_TYPE)
        .ok_or_else(|| malformed("unsupported scheme"))?;
    if !rest.starts_with(' ') {
        return Err(malformed("missing space after scheme"));
    }
    let mut rest = rest.trim_start();
    let mut slots: [Option<String>; 5] = Default::default();
    const NAMES: [&str; 5] = ["mchid", "nonce_str", "timestamp", "serial_no", "signature"];
    loop {
        let (name, after_name) = rest
            .split_once('=')
            .ok_or_else(|| malformed("item without '='"))?;
        let name = name.trim();
        let after_quote = after_name
            .strip_prefix('"')
            .ok_or_else(|| malformed("value not quoted"))?;
        let (value, after_value) = after_quote
            .split_once('"')
            .ok_or_else(|| malformed("unterminated value"))?;
        let index = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| malformed("unknown item"))?;
        if slots[index].replace(value.to_owned()).is_some() {
            return Err(malformed("duplicate item"));
        }
        let after_value = after_value.trim_start();
        if after_value.is_empty() {
            break;
        }
        rest = after_value
            .strip_prefix(',')
            .ok_or_else(|| malformed("items must be separated by ','"))?
            .trim_start();
    }
    let [mchid, nonce_str, timestamp, serial_no, signature] = slots;
    let need = |v: Option<String>, what: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| malformed(&format!("missing {what}")))
    };
    Ok(AuthorizationParts {
        mchid: need(mchid, "mchid")?,
        nonce_str: need(nonce_str, "nonce_str")?,
        timestamp: need(timestamp, "timestamp")?,
        serial_no: need(serial_no, "serial_no")?,
        signature: need(signature, "signature")?,
    })
}

/// A fresh nonce: 32 characters of `[0-9A-Za-z]`, like the official SDKs.
pub fn nonce() -> String {
    random_alphanumeric(32)
}

/// A fresh 12-character resource nonce for AEAD_AES_256_GCM (what WeChat Pay sends).
pub fn resource_nonce() -> String {
    random_alphanumeric(RESOURCE_NONCE_LEN)
}

fn cipher(apiv3_key: &[u8], nonce: &str) -> Result<Aes256Gcm, CryptoError> {
    // The APIv3 key is used as its 32 ASCII bytes, never hex/base64-decoded.
    if apiv3_key.len() != APIV3_KEY_LEN {
        return Err(CryptoError::InvalidAesKeyLength(apiv3_key.len()));
    }
    if nonce.len() != RESOURCE_NONCE_LEN {
        return Err(CryptoError::InvalidNonceLength(nonce.len()));
    }
    Aes256Gcm::new_from_slice(apiv3_key)
        .map_err(|_| CryptoError::InvalidAesKeyLength(apiv3_key.len()))
}

/// Decrypts an AEAD_AES_256_GCM resource: Base64 of `ciphertext || 16-byte tag`.
pub fn decrypt_resource(
    apiv3_key: &[u8],
    nonce: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, CryptoError> {
    let cipher = cipher(apiv3_key, nonce)?;
    let ciphertext = STANDARD
        .decode(ciphertext_b64)
        .map_err(|_| CryptoError::Base64)?;
    cipher
        .decrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: &ciphertext,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| CryptoError::Decrypt)
}

/// Encrypts a resource the way WeChat Pay does; the inverse of [`decrypt_resource`].
pub fn encrypt_resource(
    apiv3_key: &[u8],
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String, CryptoError> {
    let cipher = cipher(apiv3_key, nonce)?;
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: plaintext,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(STANDARD.encode(ciphertext))
}

/// The headers WeChat Pay puts on a response or callback: signs `TS\nNONCE\nBODY\n` with
/// `key` and names the verifying key `serial` (a `PUB_KEY_ID_…` or certificate serial).
/// Names are lower-case.
pub fn signed_response_headers(
    key: &RsaPrivateKey,
    serial: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let timestamp = timestamp.to_string();
    let signature = sign(key, &response_message(&timestamp, nonce, body));
    vec![
        (HEADER_TIMESTAMP.to_owned(), timestamp),
        (HEADER_NONCE.to_owned(), nonce.to_owned()),
        (HEADER_SIGNATURE.to_owned(), signature),
        (HEADER_SERIAL.to_owned(), serial.to_owned()),
        (HEADER_SIGNATURE_TYPE.to_owned(), SIGNATURE_TYPE.to_owned()),
    ]
}

/// Case-insensitive header lookup in a list of `(name, value)` pairs.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use rsa::RsaPublicKey;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

    fn vector(name: &str) -> String {
        std::fs::read_to_string(format!("{VECTORS}/{name}")).unwrap()
    }

    fn w1_keys() -> (RsaPrivateKey, RsaPublicKey) {
        (
            keys::private_key_from_file(format!("{VECTORS}/w1_private_key.pem")).unwrap(),
            keys::public_key_from_file(format!("{VECTORS}/w1_public_key.pem")).unwrap(),
        )
    }

    #[test]
    fn w1_signature_of_source_matches_wechatpay_go() {
        let (private, public) = w1_keys();
        let expected = vector("w1_signature.txt");
        assert_eq!(sign(&private, b"source"), expected);
        assert_eq!(expected.len(), 344, "RSA-2048 signature in base64");
        assert!(verify(&public, b"source", &expected));
        assert!(!verify(&public, b"wrong source", &expected));
        assert!(!verify(&public, b"", &expected));
        assert!(!verify(&public, b"source", ""));
        assert!(!verify(&public, b"source", "invalid base64 signature"));
    }

    #[test]
    fn w1_tampered_signature_is_rejected() {
        let (_, public) = w1_keys();
        let mut sig = STANDARD.decode(vector("w1_signature.txt")).unwrap();
        sig[10] ^= 0x01;
        assert!(!verify(&public, b"source", &STANDARD.encode(sig)));
    }

    #[test]
    fn w2_callback_signature_verifies_over_raw_body() {
        let (_, public) = w1_keys();
        let body = vector("w2_body.json");
        let signature = vector("w2_signature.txt");
        let message = response_message(
            "1624523846",
            "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz",
            body.as_bytes(),
        );
        assert!(verify(&public, &message, &signature));
        // One changed byte of the body, or another timestamp, breaks it.
        let tampered = body.replace("签约成功", "签约失败");
        let message = response_message(
            "1624523846",
            "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz",
            tampered.as_bytes(),
        );
        assert!(!verify(&public, &message, &signature));
        let message = response_message(
            "1624523847",
            "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz",
            body.as_bytes(),
        );
        assert!(!verify(&public, &message, &signature));
    }

    const W4_KEY: &[u8] = b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
    const W4_NONCE: &str = "uluk4a9R25RW";
    const W4_AAD: &str = "associatedData";
    const W4_CIPHERTEXT: &str = "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=";

    #[test]
    fn w4_aes_256_gcm_both_directions() {
        // wechatpay-java AeadAesCipherTest / TestConfig (reference §1.7 W4).
        assert_eq!(
            encrypt_resource(W4_KEY, W4_NONCE, W4_AAD, b"message").unwrap(),
            W4_CIPHERTEXT
        );
        assert_eq!(
            decrypt_resource(W4_KEY, W4_NONCE, W4_AAD, W4_CIPHERTEXT).unwrap(),
            b"message"
        );
    }

    #[test]
    fn decryption_fails_with_wrong_key_aad_nonce_or_tampered_ciphertext() {
        let wrong_key = b"b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
        assert_eq!(
            decrypt_resource(wrong_key, W4_NONCE, W4_AAD, W4_CIPHERTEXT),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            decrypt_resource(W4_KEY, W4_NONCE, "otherData", W4_CIPHERTEXT),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            decrypt_resource(W4_KEY, "uluk4a9R25RX", W4_AAD, W4_CIPHERTEXT),
            Err(CryptoError::Decrypt)
        );
        let mut ct = STANDARD.decode(W4_CIPHERTEXT).unwrap();
        ct[0] ^= 1;
        assert_eq!(
            decrypt_resource(W4_KEY, W4_NONCE, W4_AAD, &STANDARD.encode(ct)),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            decrypt_resource(W4_KEY, W4_NONCE, W4_AAD, "not base64!"),
            Err(CryptoError::Base64)
        );
    }

    #[test]
    fn aes_rejects_bad_key_and_nonce_lengths() {
        // W2/W3 upstream use 16-byte keys (AES-128): WeChat APIv3 keys are 32 bytes.
        assert_eq!(
            decrypt_resource(b"testMchAPIv3Key0", W4_NONCE, W4_AAD, W4_CIPHERTEXT),
            Err(CryptoError::InvalidAesKeyLength(16))
        );
        assert_eq!(
            encrypt_resource(W4_KEY, "0123456789abcdef", W4_AAD, b"x"),
            Err(CryptoError::InvalidNonceLength(16))
        );
    }

    #[test]
    fn empty_associated_data_round_trips() {
        let ct = encrypt_resource(W4_KEY, W4_NONCE, "", b"{}").unwrap();
        assert_eq!(decrypt_resource(W4_KEY, W4_NONCE, "", &ct).unwrap(), b"{}");
    }

    #[test]
    fn request_message_has_five_lines_each_newline_terminated() {
        assert_eq!(
            request_message(
                "GET",
                "/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1230000109",
                1554208460,
                "593BEC0C930BF1AFEB40B4A08C8FB242",
                ""
            ),
            "GET\n/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1230000109\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
        );
        // A body that itself ends in '\n' still gets the terminating '\n'.
        assert_eq!(
            request_message("POST", "/v3/x", 1, "n", "{}\n"),
            "POST\n/v3/x\n1\nn\n{}\n\n"
        );
    }

    #[test]
    fn response_message_with_body_and_empty_body() {
        assert_eq!(
            response_message("1", "abc", b"{\"a\":1}"),
            b"1\nabc\n{\"a\":1}\n"
        );
        assert_eq!(
            response_message("1624523846", "N", b""),
            b"1624523846\nN\n\n"
        );
    }

    #[test]
    fn authorization_round_trip() {
        let header = authorization("1900009191", "7E2A", 1554208460, "NONCE", "c2ln+/=");
        assert_eq!(
            header,
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1900009191\",nonce_str=\"NONCE\",timestamp=\"1554208460\",serial_no=\"7E2A\",signature=\"c2ln+/=\""
        );
        let parts = parse_authorization(&header).unwrap();
        assert_eq!(
            parts,
            AuthorizationParts {
                mchid: "1900009191".into(),
                nonce_str: "NONCE".into(),
                timestamp: "1554208460".into(),
                serial_no: "7E2A".into(),
                signature: "c2ln+/=".into(),
            }
        );
    }

    #[test]
    fn authorization_items_in_any_order() {
        // PHP order, then Python order (reference §1.2), with a space after a comma.
        let php = r#"WECHATPAY2-SHA256-RSA2048 mchid="1",serial_no="S",timestamp="2",nonce_str="N",signature="X""#;
        let python = r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",signature="X", timestamp="2",serial_no="S""#;
        for header in [php, python] {
            let p = parse_authorization(header).unwrap();
            assert_eq!(
                (p.mchid.as_str(), p.nonce_str.as_str(), p.timestamp.as_str()),
                ("1", "N", "2")
            );
            assert_eq!((p.serial_no.as_str(), p.signature.as_str()), ("S", "X"));
        }
    }

    #[test]
    fn authorization_malformed_headers_are_refused() {
        let bad = [
            r#"Bearer mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X""#,
            r#"WECHATPAY2-SHA256-RSA2048mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",timestamp="2",serial_no="S""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2",nonce_str="N",timestamp="2",serial_no="S",signature="X""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str="N",timestamp="2",serial_no="S",signature="X""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",timestamp="2",serial_no="S",signature="X",extra="y""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1" nonce_str="N",timestamp="2",serial_no="S",signature="X""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="",nonce_str="N",timestamp="2",serial_no="S",signature="X""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1,nonce_str="N""#,
            "",
        ];
        for header in bad {
            assert!(
                matches!(
                    parse_authorization(header),
                    Err(CryptoError::MalformedAuthorization(_))
                ),
                "accepted {header:?}"
            );
        }
    }

    #[test]
    fn nonces_are_32_alphanumerics_and_differ() {
        let a = nonce();
        let b = nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        let r = resource_nonce();
        assert_eq!(r.len(), 12);
        assert!(r.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn signed_response_headers_verify_with_the_public_key() {
        let (private, public) = w1_keys();
        let headers = signed_response_headers(&private, "PUB_KEY_ID_X", 1700000000, "NONCE", b"");
        assert_eq!(header(&headers, "Wechatpay-Serial"), Some("PUB_KEY_ID_X"));
        assert_eq!(
            header(&headers, "WECHATPAY-SIGNATURE-TYPE"),
            Some(SIGNATURE_TYPE)
        );
        let message = response_message("1700000000", "NONCE", b"");
        assert!(verify(
            &public,
            &message,
            header(&headers, HEADER_SIGNATURE).unwrap()
        ));
    }
}
