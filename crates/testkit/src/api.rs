//! Checks of a service's error-to-response mapping ([`paywire_platform::api_error`]).

use actix_web::ResponseError;
use actix_web::http::StatusCode;
use paywire_platform::api_error::ApiError;
use paywire_platform::http::ErrorBody;

/// Every error answers its status and stable code.
pub fn assert_replies<E: ApiError + ResponseError>(
    cases: impl IntoIterator<Item = (E, u16, &'static str)>,
) {
    for (err, status, code) in cases {
        assert_eq!(err.status_code().as_u16(), status, "{err}");
        assert_eq!(err.reply().code, code);
    }
}

/// `err` answers `500 internal_error` without its own message, which holds `secret`.
pub fn assert_hides_details(err: impl ResponseError, secret: &str) {
    let resp = err.error_response();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = actix_web::body::MessageBody::try_into_bytes(resp.into_body()).unwrap();
    let body: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(body.error, "internal_error");
    assert!(!body.message.contains(secret));
}
