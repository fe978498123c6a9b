//! `cargo xtask token <user-id>`: a dev JWT signed like the services verify it.

use paywire_domain::UserId;
use paywire_platform::auth::Authenticator;
use paywire_platform::config::AuthSettings;
use secrecy::SecretString;

pub const TOKEN_TTL_HOURS: i64 = 24;

/// The services' default auth settings, with `$PAYWIRE__AUTH__JWT_SECRET` applied as the
/// services themselves would apply it.
pub fn auth_settings() -> AuthSettings {
    let mut settings = AuthSettings::default();
    if let Ok(secret) = std::env::var("PAYWIRE__AUTH__JWT_SECRET")
        && !secret.is_empty()
    {
        settings.jwt_secret = SecretString::from(secret);
    }
    settings
}

pub fn issue(settings: &AuthSettings, user: &UserId) -> String {
    Authenticator::new(&AuthSettings {
        // Development tokens: issued with the HS256 secret whatever verifies them.
        jwks: String::new(),
        ..settings.clone()
    })
    .expect("HS256 settings build an authenticator")
    .issue(user, chrono::Duration::hours(TOKEN_TTL_HOURS))
}

pub fn run(user: &UserId) -> anyhow::Result<()> {
    println!("{}", issue(&auth_settings(), user));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_the_same_secret_only() {
        let user = UserId::parse("student-1").unwrap();
        let dev = AuthSettings::default();
        let token = issue(&dev, &user);
        assert_eq!(
            Authenticator::new(&dev).unwrap().verify(&token).unwrap(),
            user
        );

        let other = AuthSettings {
            jwt_secret: SecretString::from("another-secret"),
            ..AuthSettings::default()
        };
        assert!(Authenticator::new(&other).unwrap().verify(&token).is_err());
    }

    #[test]
    fn tokens_live_24_hours() {
        use base64::Engine;
        let token = issue(&AuthSettings::default(), &UserId::parse("u1").unwrap());
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(claims["sub"], "u1");
        let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert_eq!(ttl, 24 * 3600);
    }
}
