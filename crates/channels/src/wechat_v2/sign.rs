//! v2 signing ("安全规范", pay.weixin.qq.com/wiki/doc/api/native.php?chapter=4_3): every
//! field with a non-empty value except `sign`, sorted by name in byte order, joined as
//! `k=v&…` over the raw values, then `&key=<API key>`; `MD5` of that, or `HMAC-SHA256`
//! keyed with the API key, as upper-case hex. Answers and payment notifications carry a
//! `sign` over their own fields the same way; fields WeChat adds later are simply signed
//! too, so verification never needs to know them.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::xml::XmlMap;

pub const FIELD_SIGN: &str = "sign";
pub const FIELD_SIGN_TYPE: &str = "sign_type";

/// The two v2 signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SignType {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl SignType {
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// `sign_type` as written on the wire; absent means `MD5`.
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value.unwrap_or("MD5") {
            "MD5" | "" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }
}

/// `k=v&…&key=<API key>`: what the signature is computed over.
pub fn string_to_sign(fields: &XmlMap, api_key: &str) -> String {
    let mut out = String::new();
    for (k, v) in fields.iter() {
        if k == FIELD_SIGN || v.is_empty() {
            continue;
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('&');
    }
    out.push_str("key=");
    out.push_str(api_key);
    out
}

/// The upper-case hex signature of `fields` (their `sign`, if any, is ignored).
pub fn sign(fields: &XmlMap, api_key: &SecretString, sign_type: SignType) -> String {
    let key = api_key.expose_secret();
    let content = string_to_sign(fields, key);
    let digest = match sign_type {
        SignType::Md5 => Md5::digest(content.as_bytes()).to_vec(),
        SignType::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(content.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    hex::encode_upper(digest)
}

/// Adds `sign` (and `sign_type` for HMAC-SHA256, which WeChat Pay needs to know) to
/// `fields`.
pub fn sign_fields(fields: &mut XmlMap, api_key: &SecretString, sign_type: SignType) {
    fields.remove(FIELD_SIGN);
    if sign_type == SignType::HmacSha256 {
        fields.insert(FIELD_SIGN_TYPE, sign_type.as_str());
    }
    let signature = sign(fields, api_key, sign_type);
    fields.insert(FIELD_SIGN, signature);
}

/// Whether `fields` carry a valid `sign` of type `sign_type` (compared in constant time;
/// lower-case hex is accepted, as WeChat Pay's own checker does).
pub fn verify(fields: &XmlMap, api_key: &SecretString, sign_type: SignType) -> bool {
    let Some(given) = fields.non_empty(FIELD_SIGN) else {
        return false;
    };
    let expected = sign(fields, api_key, sign_type);
    expected
        .as_bytes()
        .ct_eq(given.to_ascii_uppercase().as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official example of the v2 security rules (安全规范, "举例"), see
    /// `tests/vectors/README.md` (V1).
    fn v1_fields() -> XmlMap {
        [
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ]
        .into_iter()
        .collect()
    }

    fn v1_key() -> SecretString {
        SecretString::from("192006250b4c09247ec02edce69f6a2d")
    }

    #[test]
    fn v1_official_example_md5_and_hmac() {
        assert_eq!(
            string_to_sign(&v1_fields(), "192006250b4c09247ec02edce69f6a2d"),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
        );
        assert_eq!(
            sign(&v1_fields(), &v1_key(), SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign(&v1_fields(), &v1_key(), SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
        // The example's final body, as the docs print it, verifies.
        let body = b"<xml>\n<appid>wxd930ea5d5a258f4f</appid>\n<mch_id>10000100</mch_id>\n<device_info>1000</device_info>\n<body>test</body>\n<nonce_str>ibuaiVcKdpRxkhJA</nonce_str>\n<sign>9A0A8659F005D6984697E2CA0A9CF3B7</sign>\n</xml>";
        let parsed = super::super::xml::parse(body).unwrap();
        assert!(verify(&parsed, &v1_key(), SignType::Md5));
    }

    #[test]
    fn empty_values_and_sign_are_skipped_and_order_is_bytewise() {
        let mut fields = v1_fields();
        fields.insert("attach", "");
        fields.insert("sign", "WHATEVER");
        assert_eq!(
            sign(&fields, &v1_key(), SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        let upper: XmlMap = [("b", "1"), ("B", "2"), ("a0", "3"), ("a", "4")]
            .into_iter()
            .collect();
        assert_eq!(string_to_sign(&upper, "k"), "B=2&a=4&a0=3&b=1&key=k");
    }

    #[test]
    fn tampering_wrong_key_or_wrong_type_fails() {
        for sign_type in [SignType::Md5, SignType::HmacSha256] {
            let mut fields = v1_fields();
            sign_fields(&mut fields, &v1_key(), sign_type);
            assert!(verify(&fields, &v1_key(), sign_type));
            assert_eq!(
                fields.get(FIELD_SIGN_TYPE),
                (sign_type == SignType::HmacSha256).then_some("HMAC-SHA256")
            );
            let mut lower = fields.clone();
            let s = lower.get(FIELD_SIGN).unwrap().to_ascii_lowercase();
            lower.insert(FIELD_SIGN, s);
            assert!(verify(&lower, &v1_key(), sign_type));

            let mut tampered = fields.clone();
            tampered.insert("body", "test2");
            assert!(!verify(&tampered, &v1_key(), sign_type));
            let mut added = fields.clone();
            added.insert("total_fee", "1");
            assert!(!verify(&added, &v1_key(), sign_type));
            let mut unsigned = fields.clone();
            unsigned.remove(FIELD_SIGN);
            assert!(!verify(&unsigned, &v1_key(), sign_type));
            assert!(!verify(
                &fields,
                &SecretString::from("192006250b4c09247ec02edce69f6a2e"),
                sign_type
            ));
            let other = match sign_type {
                SignType::Md5 => SignType::HmacSha256,
                SignType::HmacSha256 => SignType::Md5,
            };
            assert!(!verify(&fields, &v1_key(), other));
        }
    }

    #[test]
    fn sign_type_values() {
        assert_eq!(SignType::parse(None), Some(SignType::Md5));
        assert_eq!(SignType::parse(Some("MD5")), Some(SignType::Md5));
        assert_eq!(
            SignType::parse(Some("HMAC-SHA256")),
            Some(SignType::HmacSha256)
        );
        assert_eq!(SignType::parse(Some("RSA")), None);
    }
}
