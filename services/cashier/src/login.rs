//! Dev sign-in: issues the same HS256 user JWT the services accept, for whichever user id
//! is asked. Mounted only when `dev_login.enabled`.

use actix_web::{HttpResponse, web};
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::RateLimited;
use paywire_domain::UserId;
use paywire_platform::auth::Authenticator;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::CashierError;

#[derive(Debug)]
pub struct DevLogin {
    pub auth: Authenticator,
    pub ttl: chrono::Duration,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    /// Checked by hand so a bad id is a clear `invalid_request`.
    #[schema(value_type = UserId)]
    pub user_id: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginAnswer {
    /// The JWT.
    pub token: String,
    pub user_id: UserId,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Development sign-in: act as any student
///
/// Issues the same HS256 user JWT the services accept (`sub` = `user_id`). Mounted only
/// when `dev_login.enabled` (default true for local development; the compose file sets it
/// explicitly). Production turns it off and signs users in through a real identity
/// provider; then this path answers 404. The pages keep the token in `localStorage` and
/// send it as `Authorization: Bearer`. Limited per client address (`rate_limit.dev_login`,
/// default 30 a minute).
#[utoipa::path(
    post,
    path = "/dev/login",
    operation_id = "devLogin",
    request_body = LoginBody,
    responses(
        (status = 200, description = "a token for that student (`Cache-Control: no-store`)", body = LoginAnswer),
        (status = 400, description = "`invalid_request` (bad user id) or `invalid_body`", body = ErrorBody),
        (status = 404, description = "`not_found`: dev sign-in is disabled", body = ErrorBody),
        RateLimited,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
pub async fn dev_login(
    login: web::Data<DevLogin>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, CashierError> {
    let user = UserId::parse(body.user_id.trim())
        .map_err(|e| CashierError::InvalidRequest(e.to_string()))?;
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
