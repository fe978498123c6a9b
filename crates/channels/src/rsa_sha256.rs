//! RSASSA-PKCS1-v1_5 with SHA-256 and standard Base64: the signature scheme of both
//! WeChat Pay v3 and Alipay RSA2.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// RSASSA-PKCS1-v1_5 with SHA-256, standard Base64 with padding.
///
/// The private-key operation is blinded with fresh randomness from the OS (issue 9:
/// unblinded, its timing depends on the key). The signature is the same: PKCS#1 v1.5
/// signing is deterministic.
///
/// # Panics
/// Only for keys shorter than 496 bits, which cannot hold a SHA-256 DigestInfo; key
/// loading for both channels (`WechatPay::new`, `Alipay::new`) refuses keys under 2048 bits.
pub fn sign(key: &RsaPrivateKey, message: &[u8]) -> String {
    let digest = Sha256::digest(message);
    let signature = key
        .sign_with_rng(
            &mut rand::rngs::OsRng,
            Pkcs1v15Sign::new::<Sha256>(),
            &digest,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/alipay");

    /// Blinding changes how the signature is computed, not what it is: the unblinded
    /// reference and the blinded one agree, and it verifies only for its message.
    #[test]
    fn blinded_signatures_equal_the_reference_and_verify() {
        let key =
            crate::keys::private_key_from_file(format!("{KEYS}/app_private_key.pem")).unwrap();
        let digest = Sha256::digest(b"out_trade_no=1&total_amount=0.01");
        let reference = STANDARD.encode(key.sign(Pkcs1v15Sign::new::<Sha256>(), &digest).unwrap());
        let signed = sign(&key, b"out_trade_no=1&total_amount=0.01");
        assert_eq!(signed, reference);
        assert_eq!(sign(&key, b"out_trade_no=1&total_amount=0.01"), signed);
        let public = key.to_public_key();
        assert!(verify(
            &public,
            b"out_trade_no=1&total_amount=0.01",
            &signed
        ));
        assert!(!verify(
            &public,
            b"out_trade_no=1&total_amount=0.02",
            &signed
        ));
    }
}
