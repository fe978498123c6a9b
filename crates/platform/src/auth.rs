//! Authentication: user JWTs (HS256, `sub` = user id) and the service credential.
//!
//! Register an [`Authenticator`] as `web::Data` and take [`AuthenticatedUser`] or
//! [`ServiceCaller`] as handler arguments; a missing or bad credential becomes a 401
//! before the handler runs.

use std::future::{Ready, ready};

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
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    service_token: SecretString,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Self {
        let secret = settings.jwt_secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        // A token that is not valid yet is refused like an expired one (issue 9: one with
        // `nbf` a day ahead was accepted).
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            service_token: settings.service_token.clone(),
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
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        UserId::parse(&data.claims.sub).map_err(|e| AuthError::InvalidToken(e.to_string()))
    }

    pub fn check_service_token(&self, presented: &str) -> Result<(), AuthError> {
        let expected = self.service_token.expose_secret().as_bytes();
        // Constant time in the content; only the length may leak (it is no secret). An
        // empty credential is never one, whatever is configured (issue 9: an empty
        // `X-Service-Token:` passed a service started with an empty token).
        if !presented.is_empty() && bool::from(expected.ct_eq(presented.as_bytes())) {
            Ok(())
        } else {
            Err(AuthError::BadServiceToken)
        }
    }

    pub fn service_token(&self) -> &SecretString {
        &self.service_token
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("missing or wrong service credential")]
    BadServiceToken,
    #[error("authenticator not configured")]
    NotConfigured,
}

impl ApiError for AuthError {
    fn reply(&self) -> Reply {
        match self {
            AuthError::NotConfigured => {
                Reply::new(StatusCode::INTERNAL_SERVER_ERROR, "unauthorized").detail()
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
        credential(
            req,
            header::AUTHORIZATION,
            AuthError::MissingToken,
            |auth, value| {
                let token = value
                    .strip_prefix("Bearer ")
                    .ok_or(AuthError::MissingToken)?;
                let user = auth.verify(token.trim())?;
                tracing::Span::current().record("user_id", user.as_str());
                Ok(AuthenticatedUser(user))
            },
        )
    }
}

/// Another Paywire service, proven by the shared service credential.
#[derive(Debug, Clone, Copy)]
pub struct ServiceCaller;

impl FromRequest for ServiceCaller {
    type Error = AuthError;
    type Future = Ready<Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let missing = AuthError::BadServiceToken;
        credential(req, SERVICE_TOKEN_HEADER, missing, |auth, presented| {
            auth.check_service_token(presented).map(|()| ServiceCaller)
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
        })
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
                exp: now + 2 * 86_400,
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
            service_token: SecretString::from(""),
        });
        assert!(empty.check_service_token("").is_err());
        assert!(empty.check_service_token("x").is_err());
    }

    #[test]
    fn service_token_must_match_exactly() {
        let a = auth("k");
        assert!(a.check_service_token("svc").is_ok());
        assert!(a.check_service_token("svc ").is_err());
        assert!(a.check_service_token("").is_err());
        assert!(a.check_service_token("sv").is_err());
        assert!(a.check_service_token("svd").is_err());
    }
}
