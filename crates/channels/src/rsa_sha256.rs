//! RSASSA-PKCS1-v1_5 with SHA-256 and standard Base64: the signature scheme of both
//! WeChat Pay v3 and Alipay RSA2.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// RSASSA-PKCS1-v1_5 with SHA-256, standard Base64 with padding.
///
/// # Panics
/// Only for keys shorter than 496 bits, which cannot hold a SHA-256 DigestInfo; key
/// loading for both channels (`WechatPay::new`, `Alipay::new`) refuses keys under 2048 bits.
pub fn sign(key: &RsaPrivateKey, message: &[u8]) -> String {
    let digest = Sha256::digest(message);
    let signature = key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
        .expect("RSA key too small for a SHA-256 PKCS#1 v1.5 signature");
    STANDARD.encode(signature)
}

/// Checks a Base64 RSASSA-PKCS1-v1_5 SHA-256 signature; any malformation is `false`.
pub fn verify(key: &RsaPublicKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(signature) = STANDARD.decode(signature_b64.trim()) else {
        return false;
    };
    let digest = Sha256::digest(message);
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
        .is_ok()
}
