//! PEM loading for RSA keys: PKCS#8 (`BEGIN PRIVATE KEY`) and PKCS#1
//! (`BEGIN RSA PRIVATE KEY`) private keys, SPKI (`BEGIN PUBLIC KEY`) and PKCS#1
//! (`BEGIN RSA PUBLIC KEY`) public keys. WeChat issues PKCS#8, Alipay tools often PKCS#1.

use std::path::Path;

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::CryptoError;

/// A parser of one PEM encoding; its error is worded by the encoding's library.
type Parse<K> = fn(&str) -> Result<K, String>;

/// Parses `pem`, a `{KIND} KEY` block read by `standard` (PKCS#8 or SPKI, named in errors)
/// or an `RSA {KIND} KEY` block read by `pkcs1`. Error messages never echo the input: it is
/// secret.
fn from_pem<K>(
    pem: &str,
    kind: &str,
    pkcs1: Parse<K>,
    standard: (&str, Parse<K>),
) -> Result<K, CryptoError> {
    let pem = pem.trim();
    let (name, parse) = if pem.starts_with(&format!("-----BEGIN RSA {kind} KEY-----")) {
        ("PKCS#1", pkcs1)
    } else if pem.starts_with(&format!("-----BEGIN {kind} KEY-----")) {
        standard
    } else {
        return Err(CryptoError::InvalidKey(format!(
            "expected a PEM '{kind} KEY' or 'RSA {kind} KEY' block"
        )));
    };
    let kind = kind.to_lowercase();
    parse(pem).map_err(|e| CryptoError::InvalidKey(format!("{name} {kind} key: {e}")))
}

/// Parses a private key from PEM text, PKCS#8 or PKCS#1.
pub fn private_key_from_pem(pem: &str) -> Result<RsaPrivateKey, CryptoError> {
    let pkcs1: Parse<_> = |p| RsaPrivateKey::from_pkcs1_pem(p).map_err(|e| e.to_string());
    let pkcs8: Parse<_> = |p| RsaPrivateKey::from_pkcs8_pem(p).map_err(|e| e.to_string());
    from_pem(pem, "PRIVATE", pkcs1, ("PKCS#8", pkcs8))
}

/// Parses a public key from PEM text, SPKI or PKCS#1.
pub fn public_key_from_pem(pem: &str) -> Result<RsaPublicKey, CryptoError> {
    let pkcs1: Parse<_> = |p| RsaPublicKey::from_pkcs1_pem(p).map_err(|e| e.to_string());
    let spki: Parse<_> = |p| RsaPublicKey::from_public_key_pem(p).map_err(|e| e.to_string());
    from_pem(pem, "PUBLIC", pkcs1, ("SPKI", spki))
}

/// Reads and parses a private key file (PKCS#8 or PKCS#1 PEM).
pub fn private_key_from_file(path: impl AsRef<Path>) -> Result<RsaPrivateKey, CryptoError> {
    private_key_from_pem(&read(path.as_ref())?)
}

/// Reads and parses a public key file (SPKI or PKCS#1 PEM).
pub fn public_key_from_file(path: impl AsRef<Path>) -> Result<RsaPublicKey, CryptoError> {
    public_key_from_pem(&read(path.as_ref())?)
}

fn read(path: &Path) -> Result<String, CryptoError> {
    std::fs::read_to_string(path).map_err(|e| CryptoError::KeyFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::pkcs8::LineEnding;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/wechat");

    #[test]
    fn loads_pkcs8_and_spki_files_of_one_pair() {
        let private = private_key_from_file(format!("{KEYS}/merchant_private_key.pem")).unwrap();
        let public = public_key_from_file(format!("{KEYS}/merchant_public_key.pem")).unwrap();
        assert_eq!(RsaPublicKey::from(&private), public);
    }

    #[test]
    fn loads_pkcs1_private_and_public_keys() {
        let private = private_key_from_file(format!("{KEYS}/merchant_private_key.pem")).unwrap();
        let pkcs1 = private.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert_eq!(private_key_from_pem(&pkcs1).unwrap(), private);
        let public_pkcs1 = RsaPublicKey::from(&private)
            .to_pkcs1_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(
            public_key_from_pem(&public_pkcs1).unwrap(),
            RsaPublicKey::from(&private)
        );
    }

    #[test]
    fn rejects_wrong_block_garbage_and_missing_file() {
        let public_pem =
            std::fs::read_to_string(format!("{KEYS}/merchant_public_key.pem")).unwrap();
        let Err(CryptoError::InvalidKey(wrong_block)) = private_key_from_pem(&public_pem) else {
            panic!("a public key read as a private one");
        };
        assert_eq!(
            wrong_block,
            "expected a PEM 'PRIVATE KEY' or 'RSA PRIVATE KEY' block"
        );
        let Err(CryptoError::InvalidKey(garbage)) =
            public_key_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
        else {
            panic!("garbage read as a key");
        };
        assert!(garbage.starts_with("SPKI public key: "), "{garbage}");
        assert!(!garbage.contains("AAAA"), "{garbage}");
        assert!(matches!(
            private_key_from_file("/nonexistent/key.pem"),
            Err(CryptoError::KeyFile { .. })
        ));
    }
}
