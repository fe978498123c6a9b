//! The identity provider's signing keys: a JSON Web Key Set (RFC 7517), kept by `kid`.
//!
//! Only asymmetric keys are taken (RS256 and EdDSA/Ed25519): a service then holds nothing
//! that could mint a user token. A key's algorithm comes from its `alg`, or from its type
//! when `alg` is absent, and a token must name that same algorithm, so a token cannot
//! choose how it is checked (the algorithm-confusion attack).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::health::Component;

/// One verification key and the only algorithm it verifies.
#[derive(Clone)]
pub struct Key {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Where the key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Url(String),
}

impl Source {
    pub fn parse(setting: &str) -> Self {
        if setting.starts_with("https://") || setting.starts_with("http://") {
            Source::Url(setting.to_owned())
        } else {
            Source::File(PathBuf::from(setting))
        }
    }
}

/// Parses a JWKS document into its usable signing keys. Keys for other uses or
/// algorithms, and keys without a `kid`, are skipped; a set left with none is an error.
pub fn parse(json: &str) -> Result<HashMap<String, Key>, String> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            continue;
        }
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::OctetKeyPair(p), None | Some(KeyAlgorithm::EdDSA))
                if p.curve == EllipticCurve::Ed25519 =>
            {
                Algorithm::EdDSA
            }
            _ => continue,
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
        keys.insert(
            kid,
            Key {
                algorithm,
                decoding,
            },
        );
    }
    if keys.is_empty() {
        return Err("no RS256 or Ed25519 signing key with a kid".into());
    }
    Ok(keys)
}

/// The keys in force, replaced whole when the set is fetched again.
#[derive(Debug)]
pub struct KeySet {
    source: Source,
    keys: RwLock<Arc<HashMap<String, Key>>>,
}

impl KeySet {
    /// A file is read now (a bad file stops the start-up); a URL starts empty and is
    /// filled by [`KeySet::refresh_every`].
    pub fn load(setting: &str) -> Result<Self, String> {
        let source = Source::parse(setting);
        let keys = match &source {
            Source::File(path) => {
                let json = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                parse(&json).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Source::Url(_) => HashMap::new(),
        };
        Ok(Self {
            source,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn get(&self, kid: &str) -> Option<Key> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kid)
            .cloned()
    }

    fn replace(&self, keys: HashMap<String, Key>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    /// Fetches a URL source once; the keys in force stay when the fetch fails.
    pub async fn fetch(&self, client: &reqwest::Client) -> Result<usize, String> {
        let Source::Url(url) = &self.source else {
            return Ok(0);
        };
        let response = client
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("fetching the JWKS: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching the JWKS: HTTP {}", response.status()));
        }
        let body = response
            .text()
            .await
            .map_err(|e| format!("reading the JWKS: {e}"))?;
        let keys = parse(&body)?;
        let count = keys.len();
        self.replace(keys);
        Ok(count)
    }

    /// For a URL source: fetch now and then every `period`, so rotated keys arrive
    /// without a restart. `ready` is up once a set has been fetched (user requests
    /// cannot be verified before); a later failed fetch keeps the last good set.
    pub async fn refresh_every(self: Arc<Self>, period: Duration, ready: Component) {
        let client = reqwest::Client::new();
        loop {
            match self.fetch(&client).await {
                Ok(count) => {
                    ready.up();
                    tracing::debug!(keys = count, "identity provider keys fetched");
                }
                Err(error) => {
                    tracing::warn!(%error, "identity provider keys not refreshed");
                }
            }
            // Retry sooner while no key set has arrived yet.
            let wait = if ready.is_up() {
                period
            } else {
                period.min(Duration::from_secs(5))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_JWKS: &str = include_str!("../../../../deploy/test-keys/idp/jwks.json");

    #[test]
    fn the_test_set_yields_an_rsa_and_an_ed25519_key() {
        let keys = parse(TEST_JWKS).unwrap();
        assert_eq!(keys["paywire-test-idp-rsa"].algorithm, Algorithm::RS256);
        assert_eq!(keys["paywire-test-idp-ed25519"].algorithm, Algorithm::EdDSA);
    }

    #[test]
    fn symmetric_encryption_and_kidless_keys_are_skipped() {
        let json = r#"{"keys":[
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","use":"enc","kid":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"RSA","alg":"RS512","kid":"rs512","n":"AQAB","e":"AQAB"},
            {"kty":"OKP","crv":"Ed25519","kid":"ok","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let keys = parse(json).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ok"]);
    }

    #[test]
    fn a_set_without_usable_keys_or_not_a_set_is_an_error() {
        assert!(parse(r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#).is_err());
        assert!(parse(r#"{"keys":[]}"#).is_err());
        assert!(parse("<html>").is_err());
    }

    #[test]
    fn sources_are_urls_or_files() {
        assert_eq!(
            Source::parse("https://idp.example.com/jwks"),
            Source::Url("https://idp.example.com/jwks".into())
        );
        assert_eq!(
            Source::parse("/etc/paywire/jwks.json"),
            Source::File("/etc/paywire/jwks.json".into())
        );
        assert!(KeySet::load("/nonexistent/jwks.json").is_err());
    }
}
