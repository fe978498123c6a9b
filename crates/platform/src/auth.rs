//! Authentication: user JWTs (`sub` = user id) and the service credential.
//!
//! User tokens are verified one of two ways, chosen by `auth.jwks`:
//! * **identity provider** (production): RS256 or EdDSA signatures by a key of the
//!   provider's JWKS ([`jwks`]), with required `iss`, `aud`, `exp` and `iat`, a checked
//!   `nbf` and a capped lifetime; HS256 tokens are refused;
//! * **development**: HS256 with `auth.jwt_secret`, the tokens dev sign-in and
//!   `cargo xtask token` issue.
//!
//! Internal calls carry the calling service's own credential (`X-Service-Token`); the
//! receiving service knows each admitted caller's credential by name (`auth.callers`), so
//! the credential says who calls, and each internal route names the callers it admits
//! ([`ServiceCaller<FromOrder>`](ServiceCaller), [`FromOperator`]).
//!
//! Register an [`Authenticator`] as `web::Data` and take [`AuthenticatedUser`] or
//! [`ServiceCaller`] as handler arguments; a missing or bad credential becomes a 401, a
//! caller the route does not admit a 403, before the handler runs.

pub mod jwks;

use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use paywire_domain::UserId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::api_error::{ApiError, Reply};
use crate::config::AuthSettings;

/// Header carrying the service credential on internal calls.
pub const SERVICE_TOKEN_HEADER: &str = "X-Service-Token";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
}

pub struct Authenticator {
    /// Signs development tokens ([`Authenticator::issue`]); a service verifying identity
    /// provider tokens refuses what it signs.
    encoding: EncodingKey,
    users: UserTokens,
    max_lifetime: i64,
    service_token: SecretString,
    callers: Vec<(String, SecretString)>,
}

/// How user tokens are verified.
enum UserTokens {
    /// Development: HS256 with `auth.jwt_secret`.
    Shared {
        decoding: DecodingKey,
        validation: Box<Validation>,
    },
    /// The identity provider's key set, and the claims its tokens must carry.
    Provider {
        keys: Arc<jwks::KeySet>,
        issuer: String,
        audience: String,
    },
}

/// Clock skew tolerated on `exp` and `nbf`, seconds.
const LEEWAY_SECS: u64 = 5;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    /// Development HS256 verification, or the identity provider's when `auth.jwks` is set
    /// (a JWKS file is read here: a missing or unusable one is an error; a URL is fetched
    /// by [`Authenticator::key_refresh`]).
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthError> {
        let secret = settings.jwt_secret.expose_secret().as_bytes();
        let users = if settings.jwks.is_empty() {
            UserTokens::Shared {
                decoding: DecodingKey::from_secret(secret),
                validation: Box::new(validation(Algorithm::HS256, &["exp", "sub", "iat"])),
            }
        } else {
            if settings.issuer.is_empty() || settings.audience.is_empty() {
                return Err(AuthError::KeySet(
                    "auth.issuer and auth.audience are required with auth.jwks".into(),
                ));
            }
            UserTokens::Provider {
                keys: Arc::new(jwks::KeySet::load(&settings.jwks).map_err(AuthError::KeySet)?),
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
            }
        };
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            users,
            max_lifetime: i64::try_from(settings.max_token_lifetime_secs).unwrap_or(i64::MAX),
            service_token: settings.service_token.clone(),
            callers: settings
                .callers
                .iter()
                .map(|(name, secret)| (name.clone(), secret.clone()))
                .collect(),
        })
    }

    /// The task that keeps a JWKS URL's keys fresh, when there is one: run it on the
    /// service's runtime. It reports to `readiness` as `identity-provider-keys`, up once
    /// the first set has arrived (no user request can be verified before).
    pub fn key_refresh(
        &self,
        period: std::time::Duration,
        readiness: &crate::health::Readiness,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        match &self.users {
            UserTokens::Provider { keys, .. } if matches!(keys.source(), jwks::Source::Url(_)) => {
                let ready = readiness.component("identity-provider-keys");
                Some(keys.clone().refresh_every(period, ready))
            }
            _ => None,
        }
    }

    /// Issues a user token valid for `ttl` (dev login, `cargo xtask token`, tests).
    pub fn issue(&self, user: &UserId, ttl: chrono::Duration) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user.as_str().to_owned(),
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let invalid = |e: &dyn std::fmt::Display| AuthError::InvalidToken(e.to_string());
        let claims = match &self.users {
            UserTokens::Shared {
                decoding,
                validation,
            } => jsonwebtoken::decode::<Claims>(token, decoding, validation),
            UserTokens::Provider {
                keys,
                issuer,
                audience,
            } => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
                let kid = header
                    .kid
                    .ok_or_else(|| invalid(&"the token names no key (kid)"))?;
                let key = keys
                    .get(&kid)
                    .ok_or_else(|| invalid(&format!("unknown key {kid}")))?;
                // The key decides the algorithm, never the token.
                if header.alg != key.algorithm {
                    return Err(invalid(&format!(
                        "key {kid} signs {:?}, the token says {:?}",
                        key.algorithm, header.alg
                    )));
                }
                let mut validation =
                    validation(key.algorithm, &["exp", "sub", "iat", "iss", "aud"]);
                validation.set_issuer(&[issuer]);
                validation.set_audience(&[audience]);
                jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            }
        }
        .map_err(|e| invalid(&e))?
        .claims;
        // A stolen long-lived token is a long-lived breach: cap what a token may claim.
        if claims.exp - claims.iat > self.max_lifetime {
            return Err(invalid(&format!(
                "lifetime {} s exceeds {} s",
                claims.exp - claims.iat,
                self.max_lifetime
            )));
        }
        UserId::parse(&claims.sub).map_err(|e| invalid(&e))
    }

    /// The admitted caller (`auth.callers`) whose credential `presented` is. Every
    /// configured credential is compared, each in constant time in its content (only
    /// lengths may leak; they are no secret), so the timing does not tell which matched.
    /// An empty credential is never one, whatever is configured (issue 9: an empty
    /// `X-Service-Token:` passed a service started with an empty token).
    pub fn identify(&self, presented: &str) -> Result<&str, AuthError> {
        let mut caller = None;
        for (name, secret) in &self.callers {
            let expected = secret.expose_secret().as_bytes();
            let matches = !presented.is_empty() && bool::from(expected.ct_eq(presented.as_bytes()));
            if matches && caller.is_none() {
                caller = Some(name.as_str());
            }
        }
        caller.ok_or(AuthError::BadServiceToken)
    }

    /// The credential this service presents when it calls another.
    pub fn service_token(&self) -> &SecretString {
        &self.service_token
    }
}

/// `exp` and `nbf` checked with [`LEEWAY_SECS`] (a token not valid yet is refused like an
/// expired one: issue 9 found one with `nbf` a day ahead accepted), `required` present.
fn validation(algorithm: Algorithm, required: &[&str]) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(required);
    validation
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("missing or wrong service credential")]
    BadServiceToken,
    #[error("{caller} may not call this route")]
    CallerNotAdmitted { caller: String },
    #[error("authenticator not configured")]
    NotConfigured,
    #[error("identity provider keys: {0}")]
    KeySet(String),
}

impl ApiError for AuthError {
    fn reply(&self) -> Reply {
        match self {
            AuthError::NotConfigured | AuthError::KeySet(_) => {
                Reply::new(StatusCode::INTERNAL_SERVER_ERROR, "unauthorized").detail()
            }
            AuthError::CallerNotAdmitted { .. } => {
                Reply::new(StatusCode::FORBIDDEN, "caller_not_admitted")
            }
            _ => Reply::new(StatusCode::UNAUTHORIZED, "unauthorized")
                .header(header::WWW_AUTHENTICATE, "Bearer"),
        }
    }
}
crate::api_error!(AuthError);

fn authenticator(req: &HttpRequest) -> Result<&web::Data<Authenticator>, AuthError> {
    req.app_data::<web::Data<Authenticator>>()
        .ok_or(AuthError::NotConfigured)
}

/// What every credential extractor does: `check` the text of the request's `header`
/// against the registered [`Authenticator`]; no such header (or none in text) is `missing`.
fn credential<T>(
    req: &HttpRequest,
    header: impl header::AsHeaderName,
    missing: AuthError,
    check: impl FnOnce(&Authenticator, &str) -> Result<T, AuthError>,
) -> Ready<Result<T, AuthError>> {
    ready(authenticator(req).and_then(|auth| {
        let value = req
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .ok_or(missing)?;
        check(auth, value)
    }))
}

/// The end user behind a request, from a valid `Authorization: Bearer <JWT>`.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub UserId);

impl FromRequest for AuthenticatedUser {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(bearer_user(req).map(|user| {
            tracing::Span::current().record("user_id", user.as_str());
            AuthenticatedUser(user)
        }))
    }
}

/// The user of a valid `Authorization: Bearer <JWT>` on `req` (also what the per-user rate
/// limits key on).
pub fn bearer_user(req: &HttpRequest) -> Result<UserId, AuthError> {
    credential(
        req,
        header::AUTHORIZATION,
        AuthError::MissingToken,
        |auth, value| {
            let token = value
                .strip_prefix("Bearer ")
                .ok_or(AuthError::MissingToken)?;
            auth.verify(token.trim())
        },
    )
    .into_inner()
}

/// Names of the callers of internal routes (keys of `auth.callers`).
pub mod caller {
    /// The order service (it calls the gateway and the learning center).
    pub const ORDER: &str = "order";
    /// The operators' tooling (refunds are a business decision, not a student's).
    pub const OPERATOR: &str = "operator";
}

/// The callers an internal route admits: the extractor's type parameter.
pub trait Admits {
    const CALLERS: &'static [&'static str];
}

/// Routes only the order service calls.
#[derive(Debug)]
pub struct FromOrder;

impl Admits for FromOrder {
    const CALLERS: &'static [&'static str] = &[caller::ORDER];
}

/// Routes for the operators' tooling.
#[derive(Debug)]
pub struct FromOperator;

impl Admits for FromOperator {
    const CALLERS: &'static [&'static str] = &[caller::OPERATOR];
}

/// Another Paywire service or the operators' tooling, proven by its own credential and
/// admitted by the route's `A`; any other caller is refused with `403
/// caller_not_admitted` (the order service cannot refund, the operators' credential
/// cannot create payments).
#[derive(Debug)]
pub struct ServiceCaller<A: Admits> {
    pub name: String,
    admits: PhantomData<A>,
}

impl<A: Admits> FromRequest for ServiceCaller<A> {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let missing = AuthError::BadServiceToken;
        credential(req, SERVICE_TOKEN_HEADER, missing, |auth, presented| {
            let name = auth.identify(presented)?;
            if !A::CALLERS.contains(&name) {
                return Err(AuthError::CallerNotAdmitted {
                    caller: name.to_owned(),
                });
            }
            Ok(ServiceCaller {
                name: name.to_owned(),
                admits: PhantomData,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(secret: &str) -> Authenticator {
        Authenticator::new(&AuthSettings {
            jwt_secret: SecretString::from(secret),
            service_token: SecretString::from("svc"),
            callers: [
                (caller::ORDER.to_owned(), SecretString::from("svc")),
                (caller::OPERATOR.to_owned(), SecretString::from("ops")),
            ]
            .into(),
            ..AuthSettings::default()
        })
        .unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_user() {
        let a = auth("k1");
        let user = UserId::parse("student-7").unwrap();
        let token = a.issue(&user, chrono::Duration::minutes(5));
        assert_eq!(a.verify(&token).unwrap(), user);
    }

    #[test]
    fn tokens_from_another_key_or_expired_are_refused() {
        let user = UserId::parse("s").unwrap();
        let foreign = auth("k2").issue(&user, chrono::Duration::minutes(5));
        assert!(auth("k1").verify(&foreign).is_err());
        let expired = auth("k1").issue(&user, chrono::Duration::minutes(-5));
        assert!(auth("k1").verify(&expired).is_err());
        assert!(auth("k1").verify("not.a.jwt").is_err());
    }

    /// A token whose `nbf` lies ahead is refused (beyond the 5 s leeway); one whose `nbf`
    /// has passed is accepted.
    #[test]
    fn tokens_not_valid_yet_are_refused() {
        #[derive(Serialize)]
        struct WithNbf<'a> {
            sub: &'a str,
            iat: i64,
            exp: i64,
            nbf: i64,
        }
        let now = chrono::Utc::now().timestamp();
        let token = |nbf: i64| {
            let claims = WithNbf {
                sub: "student-7",
                iat: now,
                exp: now + 12 * 3_600,
                nbf,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"k1"),
            )
            .unwrap()
        };
        assert!(matches!(
            auth("k1").verify(&token(now + 86_400)),
            Err(AuthError::InvalidToken(_))
        ));
        assert!(auth("k1").verify(&token(now + 60)).is_err());
        assert_eq!(
            auth("k1").verify(&token(now - 60)).unwrap().as_str(),
            "student-7"
        );
    }

    #[test]
    fn an_empty_credential_is_refused_even_against_an_empty_configured_token() {
        let empty = Authenticator::new(&AuthSettings {
            jwt_secret: SecretString::from("k"),
            callers: [(caller::ORDER.to_owned(), SecretString::from(""))].into(),
            ..AuthSettings::default()
        })
        .unwrap();
        assert!(empty.identify("").is_err());
        assert!(empty.identify("x").is_err());
    }

    #[test]
    fn a_credential_names_its_caller_exactly() {
        let a = auth("k");
        assert_eq!(a.identify("svc").unwrap(), caller::ORDER);
        assert_eq!(a.identify("ops").unwrap(), caller::OPERATOR);
        for wrong in ["svc ", "", "sv", "svd", "opsx", "SVC"] {
            assert!(a.identify(wrong).is_err(), "{wrong:?}");
        }
    }

    /// Each route admits the callers it names: the order service's credential does not
    /// open an operators' route, nor the operators' an order-only one.
    #[actix_web::test]
    async fn routes_admit_only_their_callers() {
        use actix_web::{App, HttpResponse, test};
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(auth("k")))
                .route(
                    "/by-order",
                    web::post().to(|c: ServiceCaller<FromOrder>| async move {
                        HttpResponse::Ok().body(c.name)
                    }),
                )
                .route(
                    "/by-operator",
                    web::post().to(|c: ServiceCaller<FromOperator>| async move {
                        HttpResponse::Ok().body(c.name)
                    }),
                ),
        )
        .await;
        for (path, token, status) in [
            ("/by-order", Some("svc"), 200),
            ("/by-order", Some("ops"), 403),
            ("/by-operator", Some("ops"), 200),
            ("/by-operator", Some("svc"), 403),
            ("/by-order", Some("guess"), 401),
            ("/by-order", Some(""), 401),
            ("/by-operator", None, 401),
        ] {
            let mut req = test::TestRequest::post().uri(path);
            if let Some(token) = token {
                req = req.insert_header((SERVICE_TOKEN_HEADER, token));
            }
            let resp = test::call_service(&app, req.to_request()).await;
            assert_eq!(resp.status().as_u16(), status, "{path} {token:?}");
            if status == 403 {
                let body: serde_json::Value = test::read_body_json(resp).await;
                assert_eq!(body["error"], "caller_not_admitted");
            }
        }
    }

    mod identity_provider {
        use super::*;

        const IDP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/idp");
        const RSA_KID: &str = "paywire-test-idp-rsa";
        const ED_KID: &str = "paywire-test-idp-ed25519";
        const ISS: &str = "https://idp.test";
        const AUD: &str = "paywire";

        fn provider() -> Authenticator {
            Authenticator::new(&AuthSettings {
                jwks: format!("{IDP}/jwks.json"),
                issuer: ISS.into(),
                audience: AUD.into(),
                ..AuthSettings::default()
            })
            .unwrap()
        }

        fn rsa_key() -> EncodingKey {
            EncodingKey::from_rsa_der(include_bytes!(
                "../../../deploy/test-keys/idp/rsa_private_key.der"
            ))
        }

        fn ed_key() -> EncodingKey {
            EncodingKey::from_ed_der(include_bytes!(
                "../../../deploy/test-keys/idp/ed25519_private_key.der"
            ))
        }

        /// Claims an identity provider would issue, adjusted by `edit`.
        fn claims(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
            let now = chrono::Utc::now().timestamp();
            let mut c = serde_json::json!({
                "sub": "student-7", "iss": ISS, "aud": AUD,
                "iat": now, "exp": now + 600,
            });
            edit(&mut c);
            c
        }

        fn sign(
            alg: Algorithm,
            kid: Option<&str>,
            key: &EncodingKey,
            c: &serde_json::Value,
        ) -> String {
            let mut header = Header::new(alg);
            header.kid = kid.map(str::to_owned);
            jsonwebtoken::encode(&header, c, key).unwrap()
        }

        fn refused(token: &str) -> String {
            match provider().verify(token) {
                Err(AuthError::InvalidToken(why)) => why,
                other => panic!("accepted or wrong error: {other:?}"),
            }
        }

        #[test]
        fn rs256_and_eddsa_tokens_of_the_provider_verify() {
            let rs = sign(Algorithm::RS256, Some(RSA_KID), &rsa_key(), &claims(|_| {}));
            let ed = sign(Algorithm::EdDSA, Some(ED_KID), &ed_key(), &claims(|_| {}));
            assert_eq!(provider().verify(&rs).unwrap().as_str(), "student-7");
            assert_eq!(provider().verify(&ed).unwrap().as_str(), "student-7");
        }

        #[test]
        fn development_hs256_tokens_are_refused() {
            let dev = auth(crate::config::DEV_JWT_SECRET).issue(
                &UserId::parse("student-7").unwrap(),
                chrono::Duration::minutes(5),
            );
            refused(&dev);
            // Even one naming a provider kid: the key decides the algorithm.
            let hs = sign(
                Algorithm::HS256,
                Some(RSA_KID),
                &EncodingKey::from_secret(b"anything"),
                &claims(|_| {}),
            );
            assert!(refused(&hs).contains("RS256"));
        }

        #[test]
        fn a_token_must_name_a_known_key_with_its_algorithm() {
            let c = claims(|_| {});
            assert!(refused(&sign(Algorithm::RS256, None, &rsa_key(), &c)).contains("kid"));
            assert!(
                refused(&sign(
                    Algorithm::RS256,
                    Some("rotated-away"),
                    &rsa_key(),
                    &c
                ))
                .contains("unknown key")
            );
            // The Ed25519 key's kid on an RSA signature, and a signature by the other key.
            refused(&sign(Algorithm::RS256, Some(ED_KID), &rsa_key(), &c));
            refused(&sign(Algorithm::EdDSA, Some(RSA_KID), &ed_key(), &c));
        }

        #[test]
        fn issuer_audience_and_time_claims_are_required_and_checked() {
            let now = chrono::Utc::now().timestamp();
            type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
            let cases: Vec<(&str, Edit)> = vec![
                (
                    "wrong iss",
                    Box::new(|c| c["iss"] = "https://evil.test".into()),
                ),
                ("wrong aud", Box::new(|c| c["aud"] = "another-api".into())),
                (
                    "no iss",
                    Box::new(|c| drop(c.as_object_mut().unwrap().remove("iss"))),
                ),
                (
                    "no aud",
                    Box::new(|c| drop(c.as_object_mut().unwrap().remove("aud"))),
                ),
                (
                    "no iat",
                    Box::new(|c| drop(c.as_object_mut().unwrap().remove("iat"))),
                ),
                (
                    "no exp",
                    Box::new(|c| drop(c.as_object_mut().unwrap().remove("exp"))),
                ),
                ("expired", Box::new(move |c| c["exp"] = (now - 60).into())),
                (
                    "nbf ahead",
                    Box::new(move |c| c["nbf"] = (now + 3600).into()),
                ),
                (
                    "lifetime over a day",
                    Box::new(move |c| c["exp"] = (now + 2 * 86_400).into()),
                ),
            ];
            for (case, edit) in cases {
                let token = sign(Algorithm::EdDSA, Some(ED_KID), &ed_key(), &claims(edit));
                assert!(provider().verify(&token).is_err(), "{case} was accepted");
            }
        }

        #[test]
        fn a_tampered_token_is_refused() {
            let token = sign(Algorithm::RS256, Some(RSA_KID), &rsa_key(), &claims(|_| {}));
            let other = sign(
                Algorithm::RS256,
                Some(RSA_KID),
                &rsa_key(),
                &claims(|c| c["sub"] = "student-8".into()),
            );
            // student-8's claims under student-7's signature.
            let parts: Vec<&str> = token.split('.').collect();
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                other.split('.').nth(1).unwrap(),
                parts[2]
            );
            refused(&forged);
        }

        #[test]
        fn a_provider_needs_issuer_audience_and_a_usable_set() {
            let bad = |edit: fn(&mut AuthSettings)| {
                let mut s = AuthSettings {
                    jwks: format!("{IDP}/jwks.json"),
                    issuer: ISS.into(),
                    audience: AUD.into(),
                    ..AuthSettings::default()
                };
                edit(&mut s);
                matches!(Authenticator::new(&s), Err(AuthError::KeySet(_)))
            };
            assert!(bad(|s| s.issuer.clear()));
            assert!(bad(|s| s.audience.clear()));
            assert!(bad(|s| s.jwks = "/nonexistent/jwks.json".into()));
            assert!(bad(|s| s.jwks = format!("{IDP}/rsa_private_key.pem")));
        }
    }
}
