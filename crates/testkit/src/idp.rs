//! A TEST-ONLY identity provider: the key set in `deploy/test-keys/idp/` served like a
//! provider's JWKS endpoint, and user tokens signed with its RS256 and Ed25519 keys.

use std::path::PathBuf;

use actix_web::{HttpResponse, web};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use paywire_platform::config::{AuthSettings, HttpSettings};

/// `iss` of the test provider's tokens.
pub const ISSUER: &str = "https://idp.paywire.test/";
/// `aud` of the test provider's tokens.
pub const AUDIENCE: &str = "paywire-api";
pub const RSA_KID: &str = "paywire-test-idp-rsa";
pub const ED25519_KID: &str = "paywire-test-idp-ed25519";

/// The key set as a file.
pub fn jwks_file() -> PathBuf {
    PathBuf::from(crate::test_key("idp/jwks.json"))
}

/// The provider's JWKS endpoint, served on a free loopback port for the test's lifetime.
#[derive(Debug)]
pub struct TestIdp {
    pub jwks_url: String,
}

impl TestIdp {
    pub fn serve() -> Self {
        let jwks = std::fs::read_to_string(jwks_file()).expect("the test key set");
        let listeners = paywire_platform::http::bind(&HttpSettings::on_port(0)).unwrap();
        let port = listeners.public.local_addr().unwrap().port();
        let routes = paywire_platform::http::public_only(move |cfg: &mut web::ServiceConfig| {
            let jwks = jwks.clone();
            cfg.route(
                "/.well-known/jwks.json",
                web::get().to(move || {
                    let jwks = jwks.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(jwks)
                    }
                }),
            );
        });
        let servers = paywire_platform::http::serve(listeners, 1, routes).unwrap();
        tokio::spawn(servers.public);
        tokio::spawn(servers.internal);
        Self {
            jwks_url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        }
    }

    /// Points `auth` at this provider.
    pub fn configure(&self, auth: &mut AuthSettings) {
        auth.jwks = self.jwks_url.clone();
        auth.issuer = ISSUER.into();
        auth.audience = AUDIENCE.into();
    }
}

/// A token for `user` as the provider issues it: `alg` is `RS256` or `EdDSA`, valid for
/// ten minutes.
pub fn token(user: &str, alg: Algorithm) -> String {
    let (kid, key) = match alg {
        Algorithm::RS256 => (
            RSA_KID,
            EncodingKey::from_rsa_der(
                &std::fs::read(crate::test_key("idp/rsa_private_key.der")).unwrap(),
            ),
        ),
        Algorithm::EdDSA => (
            ED25519_KID,
            EncodingKey::from_ed_der(
                &std::fs::read(crate::test_key("idp/ed25519_private_key.der")).unwrap(),
            ),
        ),
        other => panic!("the test provider signs RS256 and EdDSA only, not {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}
