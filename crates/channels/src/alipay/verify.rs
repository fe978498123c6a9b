//! Response and notification verification.
//!
//! A response signature covers the exact raw JSON text of the `<method>_response` (or
//! `error_response`) value, escapes such as `\/` included: we take it with
//! [`serde_json::value::RawValue`] and parse the business fields from those same bytes.
//! A notification signature covers the sorted form parameters without `sign` and
//! `sign_type` (rsaCheckV1, reference §2.5).

use std::collections::{HashMap, HashSet};

use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::value::RawValue;

use super::sign::{PARAM_SIGN, PARAM_SIGN_TYPE, SIGN_TYPE_RSA2, content_excluding};
use crate::{ChannelError, NotifyError, rsa_sha256};

/// Key of gateway-level errors (bad app id, bad signature, missing parameter).
pub const ERROR_RESPONSE_KEY: &str = "error_response";

/// `alipay.trade.query` → `alipay_trade_query_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The parts of a response envelope, borrowed from the raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseParts<'a> {
    /// The exact raw JSON of the `<method>_response` or `error_response` value.
    pub content: &'a str,
    /// Whether `content` came from `error_response`.
    pub is_error: bool,
    /// `sign`, if present and non-empty.
    pub sign: Option<String>,
}

/// Extracts the signed substring and the `sign` from a response envelope. `Err` holds
/// why the envelope is unusable.
pub fn extract_response<'a>(raw: &'a str, response_key: &str) -> Result<ResponseParts<'a>, String> {
    let envelope: HashMap<String, &'a RawValue> =
        serde_json::from_str(raw).map_err(|e| format!("response is not a JSON object: {e}"))?;
    let (content, is_error) = match (envelope.get(response_key), envelope.get(ERROR_RESPONSE_KEY)) {
        (Some(content), _) => (*content, false),
        (None, Some(content)) => (*content, true),
        (None, None) => return Err(format!("neither {response_key} nor {ERROR_RESPONSE_KEY}")),
    };
    let sign = match envelope.get(PARAM_SIGN) {
        Some(raw_sign) => serde_json::from_str::<Option<String>>(raw_sign.get())
            .map_err(|_| "sign is not a string".to_owned())?
            .filter(|s| !s.is_empty()),
        None => None,
    };
    Ok(ResponseParts {
        content: content.get(),
        is_error,
        sign,
    })
}

/// Extracts and verifies a response. A `<method>_response` must carry a valid signature.
/// An unsigned `error_response` is passed through with `is_error`: Alipay leaves gateway
/// errors unsigned when it cannot identify the app, and an error can only make the caller
/// stop or retry, never believe a payment state.
pub fn verify_response<'a>(
    key: &RsaPublicKey,
    raw: &'a str,
    response_key: &str,
) -> Result<ResponseParts<'a>, ChannelError> {
    let parts = extract_response(raw, response_key).map_err(ChannelError::BadResponseSignature)?;
    match &parts.sign {
        Some(sign) if rsa_sha256::verify(key, parts.content.as_bytes(), sign) => Ok(parts),
        Some(_) => Err(ChannelError::BadResponseSignature(
            "response signature does not verify".into(),
        )),
        None if parts.is_error => Ok(parts),
        None => Err(ChannelError::BadResponseSignature(
            "response without sign".into(),
        )),
    }
}

/// Builds a signed response envelope the way Alipay does: `{"<key>":<content>,"sign":"…"}`
/// with the signature over `content` exactly as given (for the sandbox and tests).
pub fn signed_response(key: &RsaPrivateKey, response_key: &str, content: &str) -> String {
    let sign = rsa_sha256::sign(key, content.as_bytes());
    format!(
        "{{{}:{content},\"sign\":{}}}",
        serde_json::Value::from(response_key),
        serde_json::Value::from(sign)
    )
}

/// The notification sign content: sorted `k=v&…` without `sign` and `sign_type`.
pub fn notify_sign_content(params: &[(String, String)]) -> String {
    content_excluding(params, &[PARAM_SIGN, PARAM_SIGN_TYPE])
}

/// Signs notification parameters the way Alipay does (for the sandbox and tests).
pub fn sign_notification(key: &RsaPrivateKey, params: &[(String, String)]) -> String {
    rsa_sha256::sign(key, notify_sign_content(params).as_bytes())
}

/// Verifies decoded notification parameters (rsaCheckV1). Duplicate keys are refused
/// (which value was signed would be ambiguous). When the full content fails and empty
/// values are present, the Java SDK's variant (empty values dropped) is tried as well.
pub fn verify_notification(
    key: &RsaPublicKey,
    params: &[(String, String)],
) -> Result<(), NotifyError> {
    let mut seen = HashSet::new();
    if let Some((k, _)) = params.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(NotifyError::Malformed(format!("duplicate parameter {k}")));
    }
    let value = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if let Some(kind) = value(PARAM_SIGN_TYPE)
        && kind != SIGN_TYPE_RSA2
    {
        return Err(NotifyError::BadSignature);
    }
    let sign = value(PARAM_SIGN)
        .filter(|s| !s.is_empty())
        .ok_or(NotifyError::BadSignature)?;
    if rsa_sha256::verify(key, notify_sign_content(params).as_bytes(), sign) {
        return Ok(());
    }
    if params.iter().any(|(_, v)| v.is_empty()) {
        let non_empty: Vec<(String, String)> = params
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .cloned()
            .collect();
        if rsa_sha256::verify(key, notify_sign_content(&non_empty).as_bytes(), sign) {
            return Ok(());
        }
    }
    Err(NotifyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::test_support::with_value;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/alipay");

    fn vector(name: &str) -> String {
        std::fs::read_to_string(format!("{VECTORS}/{name}")).unwrap()
    }

    fn form(body: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(body).unwrap()
    }

    const A4_KEY: &str = "alipay_offline_material_image_upload_response";

    #[test]
    fn a4_substring_extraction_matches_the_node_sdk() {
        let expected = vector("a4_expected.txt");
        for file in ["a4_normal.json", "a4_whitespace.json"] {
            let raw = vector(file);
            let parts = extract_response(&raw, A4_KEY).unwrap();
            assert_eq!(parts.content, expected, "{file}");
            // The `\/` escapes are kept: re-serializing would lose them.
            assert!(parts.content.contains(r"http:\/\/"));
            assert!(!parts.is_error);
            assert!(parts.sign.as_deref().unwrap().starts_with("P8xrBWqZ"));
        }
        let raw = vector("a4_sign_in_data.json");
        let parts = extract_response(&raw, A4_KEY).unwrap();
        assert_eq!(parts.content, vector("a4_expected_sign_in_data.txt"));
        // The outer sign, not the one inside the data.
        assert!(parts.sign.as_deref().unwrap().starts_with("P8xrBWqZ"));
    }

    #[test]
    fn a3_real_response_signature_verifies_over_the_exact_substring() {
        let key =
            keys::public_key_from_file(format!("{VECTORS}/a3_alipay_public_key.pem")).unwrap();
        let raw = vector("a3_response.json");
        let parts = verify_response(&key, &raw, "alipay_open_file_upload_response").unwrap();
        assert_eq!(
            parts.content,
            r#"{"code":"10000","msg":"Success","file_id":"CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"}"#
        );
        // Same data, re-serialized with a space: the signature no longer covers it.
        let spaced = raw.replace(r#""code":"10000""#, r#""code": "10000""#);
        assert!(matches!(
            verify_response(&key, &spaced, "alipay_open_file_upload_response"),
            Err(ChannelError::BadResponseSignature(_))
        ));
        // Another key does not verify it.
        let other = keys::public_key_from_file(format!("{KEYS}/alipay_public_key.pem")).unwrap();
        assert!(matches!(
            verify_response(&other, &raw, "alipay_open_file_upload_response"),
            Err(ChannelError::BadResponseSignature(_))
        ));
        // Asking for another method's response: the envelope does not carry it.
        assert!(matches!(
            verify_response(&key, &raw, "alipay_trade_query_response"),
            Err(ChannelError::BadResponseSignature(_))
        ));
    }

    #[test]
    fn a1_real_notification_verifies_only_without_sign_type() {
        let key =
            keys::public_key_from_file(format!("{VECTORS}/a1_alipay_public_key.pem")).unwrap();
        let params = form(&vector("a1_notify_body.txt"));
        assert_eq!(verify_notification(&key, &params), Ok(()));
        let content = notify_sign_content(&params);
        assert!(content.starts_with("app_id=2019073166072302&auth_app_id=2019073166072302&buyer_id=2088102534368455&buyer_logon_id=xud***@126.com&buyer_pay_amount=0.10&charset=utf-8&fund_bill_list=[{\"amount\":\"0.10\",\"fundChannel\":\"ALIPAYACCOUNT\"}]&gmt_create="));
        assert!(content.ends_with("&trade_status=TRADE_SUCCESS&version=1.0"));
        // Including sign_type (the request rule) does not verify this notification.
        let sign = params.iter().find(|(k, _)| k == "sign").unwrap().1.clone();
        let with_type = content_excluding(&params, &[PARAM_SIGN]);
        assert!(!rsa_sha256::verify(&key, with_type.as_bytes(), &sign));
        // Without sign_type in the body at all it verifies too (Node SDK case 2).
        let no_type: Vec<_> = params
            .iter()
            .filter(|(k, _)| k != "sign_type")
            .cloned()
            .collect();
        assert_eq!(verify_notification(&key, &no_type), Ok(()));
    }

    #[test]
    fn a1_negative_and_tampered_notifications_fail() {
        let key =
            keys::public_key_from_file(format!("{VECTORS}/a1_alipay_public_key.pem")).unwrap();
        let fail = form(&vector("a1_fail_notify_body.txt"));
        assert_eq!(
            verify_notification(&key, &fail),
            Err(NotifyError::BadSignature)
        );
        let params = form(&vector("a1_notify_body.txt"));
        let tampered = with_value(&params, "total_amount", "100.10");
        assert_eq!(
            verify_notification(&key, &tampered),
            Err(NotifyError::BadSignature)
        );
        let unsigned: Vec<_> = params
            .iter()
            .filter(|(k, _)| k != "sign")
            .cloned()
            .collect();
        assert_eq!(
            verify_notification(&key, &unsigned),
            Err(NotifyError::BadSignature)
        );
        let rsa1 = with_value(&params, "sign_type", "RSA");
        assert_eq!(
            verify_notification(&key, &rsa1),
            Err(NotifyError::BadSignature)
        );
        let mut duplicated = params.clone();
        duplicated.push(("total_amount".into(), "0.10".into()));
        assert!(matches!(
            verify_notification(&key, &duplicated),
            Err(NotifyError::Malformed(_))
        ));
    }

    #[test]
    fn signed_notification_round_trip_with_empty_values() {
        let private =
            keys::private_key_from_file(format!("{KEYS}/alipay_private_key.pem")).unwrap();
        let public = keys::public_key_from_file(format!("{KEYS}/alipay_public_key.pem")).unwrap();
        let mut params = vec![
            ("app_id".to_owned(), "2021000000000001".to_owned()),
            ("body".to_owned(), String::new()),
            ("trade_status".to_owned(), "TRADE_SUCCESS".to_owned()),
        ];
        // Signed by the Java rule (empty values dropped): still accepted.
        let java_sign = rsa_sha256::sign(
            &private,
            b"app_id=2021000000000001&trade_status=TRADE_SUCCESS",
        );
        params.push(("sign".into(), java_sign));
        assert_eq!(verify_notification(&public, &params), Ok(()));
        params.pop();
        let sign = sign_notification(&private, &params);
        params.push(("sign".into(), sign));
        params.push(("sign_type".into(), "RSA2".into()));
        assert_eq!(verify_notification(&public, &params), Ok(()));
    }

    #[test]
    fn signed_response_round_trip_and_error_responses() {
        let private =
            keys::private_key_from_file(format!("{KEYS}/alipay_private_key.pem")).unwrap();
        let public = keys::public_key_from_file(format!("{KEYS}/alipay_public_key.pem")).unwrap();
        let key = response_key("alipay.trade.query");
        assert_eq!(key, "alipay_trade_query_response");
        let content =
            r#"{"code":"10000","msg":"Success","qr_code":"https:\/\/qr.alipay.com\/bax01"}"#;
        let raw = signed_response(&private, &key, content);
        let parts = verify_response(&public, &raw, &key).unwrap();
        assert_eq!(parts.content, content);
        // Unsigned business response: refused.
        let unsigned = format!(r#"{{"{key}":{content}}}"#);
        assert!(matches!(
            verify_response(&public, &unsigned, &key),
            Err(ChannelError::BadResponseSignature(_))
        ));
        let empty_sign = format!(r#"{{"{key}":{content},"sign":""}}"#);
        assert!(matches!(
            verify_response(&public, &empty_sign, &key),
            Err(ChannelError::BadResponseSignature(_))
        ));
        // Unsigned gateway error: passed through as an error.
        let error = r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"},"sign":""}"#;
        let parts = verify_response(&public, error, &key).unwrap();
        assert!(parts.is_error);
        assert!(parts.content.contains("isv.invalid-signature"));
        // A signed error with a wrong signature: refused.
        let forged = r#"{"error_response":{"code":"40002","msg":"x"},"sign":"AAAA"}"#;
        assert!(matches!(
            verify_response(&public, forged, &key),
            Err(ChannelError::BadResponseSignature(_))
        ));
        for garbage in [
            "",
            "<html>502</html>",
            "[1]",
            r#"{"sign":"x"}"#,
            r#"{"alipay_trade_query_response":{},"sign":1}"#,
        ] {
            assert!(
                matches!(
                    verify_response(&public, garbage, &key),
                    Err(ChannelError::BadResponseSignature(_))
                ),
                "{garbage:?}"
            );
        }
    }
}
