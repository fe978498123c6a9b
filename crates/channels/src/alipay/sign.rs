//! Request signing: every parameter except `sign` (so `sign_type` is included), sorted by
//! key in byte order, joined as `k=v` with `&` over the raw (not URL-encoded) values, then
//! RSA-SHA256 with the app private key, standard Base64 (reference §2.2).

use rsa::RsaPrivateKey;

use crate::rsa_sha256;

/// `sign_type` we send and accept.
pub const SIGN_TYPE_RSA2: &str = "RSA2";
pub const PARAM_SIGN: &str = "sign";
pub const PARAM_SIGN_TYPE: &str = "sign_type";

/// Sorted `k=v&…` over `params` without the keys in `excluded`. Empty values are kept:
/// the Node and Python SDKs sign them, Java drops them (see [`sign_content_without_empty`]).
pub fn content_excluding(params: &[(String, String)], excluded: &[&str]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !excluded.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The request sign content: all parameters except `sign`.
pub fn sign_content(params: &[(String, String)]) -> String {
    content_excluding(params, &[PARAM_SIGN])
}

/// The Java SDK's variant: empty values dropped as well. We never send empty values, so
/// both variants agree on our requests; a strict verifier (the sandbox) may try both.
pub fn sign_content_without_empty(params: &[(String, String)]) -> String {
    let non_empty: Vec<(String, String)> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    sign_content(&non_empty)
}

/// Signs request parameters: Base64 RSA-SHA256 of [`sign_content`].
pub fn sign_params(key: &RsaPrivateKey, params: &[(String, String)]) -> String {
    rsa_sha256::sign(key, sign_content(params).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use rsa::RsaPublicKey;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/alipay");

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn content_is_sorted_raw_and_keeps_sign_type() {
        let params = p(&[
            ("timestamp", "2026-03-01 10:00:00"),
            ("sign", "ignored"),
            ("method", "alipay.trade.query"),
            ("app_id", "2021000000000001"),
            ("sign_type", "RSA2"),
            ("biz_content", r#"{"out_trade_no":"7301"}"#),
            ("charset", "utf-8"),
        ]);
        assert_eq!(
            sign_content(&params),
            r#"app_id=2021000000000001&biz_content={"out_trade_no":"7301"}&charset=utf-8&method=alipay.trade.query&sign_type=RSA2&timestamp=2026-03-01 10:00:00"#
        );
    }

    #[test]
    fn byte_order_sorting_and_empty_values() {
        // Upper-case sorts before lower-case; `a` before `a0`; the empty value stays
        // unless explicitly dropped.
        let params = p(&[("a0", "2"), ("a", ""), ("B", "3"), ("b", "4")]);
        assert_eq!(sign_content(&params), "B=3&a=&a0=2&b=4");
        assert_eq!(sign_content_without_empty(&params), "B=3&a0=2&b=4");
    }

    #[test]
    fn signature_verifies_with_the_app_public_key_only() {
        let private = keys::private_key_from_file(format!("{KEYS}/app_private_key.pem")).unwrap();
        let public = keys::public_key_from_file(format!("{KEYS}/app_public_key.pem")).unwrap();
        assert_eq!(RsaPublicKey::from(&private), public);
        let params = p(&[("app_id", "1"), ("method", "alipay.trade.query")]);
        let sign = sign_params(&private, &params);
        assert!(rsa_sha256::verify(
            &public,
            b"app_id=1&method=alipay.trade.query",
            &sign
        ));
        assert!(!rsa_sha256::verify(
            &public,
            b"app_id=2&method=alipay.trade.query",
            &sign
        ));
        let other = keys::public_key_from_file(format!("{KEYS}/alipay_public_key.pem")).unwrap();
        assert!(!rsa_sha256::verify(
            &other,
            b"app_id=1&method=alipay.trade.query",
            &sign
        ));
        // Deterministic (PKCS#1 v1.5): the same content gives the same signature.
        assert_eq!(sign, sign_params(&private, &params));
    }
}
