//! `req_info` of refund notifications ("退款结果通知", pay.weixin.qq.com/wiki/doc/api/
//! native.php?chapter=9_16): Base64 of AES-256-ECB (PKCS#7 padding) of an XML document,
//! keyed by the lower-case hex MD5 of the API key (32 ASCII bytes).
//!
//! ECB carries no authentication: a body that decrypts and parses proves only that it was
//! made with the key (or cut from blocks that were). The caller therefore checks the
//! outer `appid`/`mch_id`, requires every field it uses, and the gateway moves only a
//! refund it started itself for that very trade and refund number.

use aes::Aes256;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};

use crate::CryptoError;

const BLOCK: usize = 16;
/// The largest `req_info` accepted (its plaintext is a few hundred bytes).
const MAX_CIPHERTEXT: usize = 16 * 1024;

fn cipher(api_key: &SecretString) -> Aes256 {
    let key = hex::encode(Md5::digest(api_key.expose_secret().as_bytes()));
    Aes256::new(GenericArray::from_slice(key.as_bytes()))
}

/// Decrypts a `req_info` value to its plaintext bytes (the inner XML).
pub fn decrypt_req_info(api_key: &SecretString, req_info: &str) -> Result<Vec<u8>, CryptoError> {
    let mut data = STANDARD
        .decode(req_info.trim())
        .map_err(|_| CryptoError::Base64)?;
    if data.is_empty() || data.len() % BLOCK != 0 || data.len() > MAX_CIPHERTEXT {
        return Err(CryptoError::Decrypt);
    }
    let cipher = cipher(api_key);
    for block in data.chunks_exact_mut(BLOCK) {
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
    }
    // PKCS#7: the last byte says how many padding bytes there are, all of that value.
    let pad = usize::from(*data.last().ok_or(CryptoError::Decrypt)?);
    if pad == 0
        || pad > BLOCK
        || data[data.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        return Err(CryptoError::Decrypt);
    }
    data.truncate(data.len() - pad);
    Ok(data)
}

/// Encrypts a `req_info` value (the channel sandbox plays WeChat Pay with it).
pub fn encrypt_req_info(api_key: &SecretString, plaintext: &[u8]) -> String {
    let pad = BLOCK - plaintext.len() % BLOCK;
    let mut data = plaintext.to_vec();
    data.extend(std::iter::repeat_n(pad as u8, pad));
    let cipher = cipher(api_key);
    for block in data.chunks_exact_mut(BLOCK) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretString {
        SecretString::from("192006250b4c09247ec02edce69f6a2d")
    }

    #[test]
    fn round_trip_and_padding_of_every_length() {
        for len in [0, 1, 15, 16, 17, 31, 32, 100] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let sealed = encrypt_req_info(&key(), &plain);
            assert_eq!(decrypt_req_info(&key(), &sealed).unwrap(), plain, "{len}");
        }
    }

    #[test]
    fn the_key_is_the_lower_case_hex_md5_of_the_api_key() {
        // Independent of our cipher(): AES-256-ECB of one padded block with the key
        // spelled out, then decrypted through the public function.
        let derived = hex::encode(Md5::digest(b"192006250b4c09247ec02edce69f6a2d"));
        assert_eq!(derived.len(), 32);
        assert_eq!(derived, derived.to_ascii_lowercase());
        let aes = Aes256::new(GenericArray::from_slice(derived.as_bytes()));
        let mut block = *b"<root>1</root>\x02\x02";
        aes.encrypt_block(GenericArray::from_mut_slice(&mut block));
        assert_eq!(
            decrypt_req_info(&key(), &STANDARD.encode(block)).unwrap(),
            b"<root>1</root>"
        );
    }

    #[test]
    fn wrong_key_truncation_and_garbage_fail() {
        let sealed = encrypt_req_info(
            &key(),
            b"<root><refund_status>SUCCESS</refund_status></root>",
        );
        let other = SecretString::from("192006250b4c09247ec02edce69f6a2e");
        // A wrong key yields garbage whose padding is (almost always) invalid; when it
        // happens to be valid the plaintext is not the XML, which the caller refuses.
        assert_ne!(
            decrypt_req_info(&other, &sealed).ok(),
            Some(b"<root><refund_status>SUCCESS</refund_status></root>".to_vec())
        );
        let raw = STANDARD.decode(&sealed).unwrap();
        for bad in [
            STANDARD.encode(&raw[..raw.len() - 1]),
            String::new(),
            "not base64!".into(),
            STANDARD.encode(vec![0u8; MAX_CIPHERTEXT + BLOCK]),
        ] {
            assert!(decrypt_req_info(&key(), &bad).is_err(), "{bad:.20}");
        }
    }
}
