//! Dev sign-in: issues the same HS256 user JWT the services accept, for whichever user id
//! is asked. Mounted only when `dev_login.enabled`.

use actix_web::{HttpResponse, web};
use paywire_domain::UserId;
use paywire_platform::auth::Authenticator;
use serde::{Deserialize, Serialize};

use crate::WebError;

#[derive(Debug)]
pub struct DevLogin {
    pub auth: Authenticator,
    pub ttl: chrono::Duration,
}

#[derive(Debug, Deserialize)]
pub struct LoginBody {
    pub user_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LoginAnswer {
    pub token: String,
    pub user_id: UserId,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn dev_login(
    login: web::Data<DevLogin>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, WebError> {
    let user =
        UserId::parse(body.user_id.trim()).map_err(|e| WebError::InvalidRequest(e.to_string()))?;
    tracing::Span::current().record("user_id", user.as_str());
    let token = login.auth.issue(&user, login.ttl);
    tracing::info!("dev login issued a token");
    Ok(HttpResponse::Ok()
        // A credential: never cached by the browser or anything in between.
        .insert_header(("Cache-Control", "no-store"))
        .json(LoginAnswer {
            token,
            user_id: user,
            expires_at: chrono::Utc::now() + login.ttl,
        }))
}
