//! The one error-to-response mapping of every Paywire API.
//!
//! A service's error type says once, per variant, what the caller is told ([`ApiError::reply`]:
//! status, stable code, whether the message shows the error's details), and
//! [`api_error!`](crate::api_error!) implements actix's `ResponseError` with [`respond`],
//! which renders the JSON [`ErrorBody`], hides server-side details, logs server errors and
//! adds `Retry-After` to every `503` (issue 17: a client must be able to tell "try again"
//! from "broken") and to every `429` (its own wait, [`Reply::retry_after`]).

use std::borrow::Cow;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};

use crate::db::{DbError, DbFault, PoolError};
use crate::http::ErrorBody;

/// Seconds a client is asked to wait before repeating a request answered `503`.
pub const RETRY_AFTER_SECS: u32 = 1;

/// What a failed request answers. Implemented once per service error type, as one match.
pub trait ApiError: std::error::Error + 'static {
    fn reply(&self) -> Reply;
}

/// Status, stable code and message of one error answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub code: &'static str,
    message: Message,
    body: Option<serde_json::Value>,
    headers: Vec<(HeaderName, &'static str)>,
    retry_after: Option<u64>,
}

#[derive(Debug, Clone)]
enum Message {
    /// The error's own `Display` (client errors, and server errors marked `detail()`).
    Detail,
    /// A fixed text: server-side details stay in the log.
    Fixed(Cow<'static, str>),
}

impl Reply {
    /// `status` with `code`. Client errors (4xx) show the error's message; server errors a
    /// generic text for their status, so internal details never reach the caller.
    pub fn new(status: StatusCode, code: &'static str) -> Self {
        let message = if status.is_server_error() {
            Message::Fixed(Cow::Borrowed(generic_message(status)))
        } else {
            Message::Detail
        };
        Self {
            status,
            code,
            message,
            body: None,
            headers: Vec::new(),
            retry_after: None,
        }
    }

    /// `500 internal_error`: a defect or corrupt data, never worth retrying as is.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
    }

    /// Shows the error's own message even on a server error (it names no internals, e.g.
    /// "the channel did not answer").
    pub fn detail(mut self) -> Self {
        self.message = Message::Detail;
        self
    }

    /// A fixed message instead of the error's own.
    pub fn message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = Message::Fixed(message.into());
        self
    }

    /// A body in another protocol's shape (the sandbox answers as WeChat Pay does) instead
    /// of [`ErrorBody`].
    pub fn body(mut self, body: impl serde::Serialize) -> Self {
        self.body = Some(serde_json::to_value(body).expect("error bodies serialize"));
        self
    }

    /// An extra response header (`WWW-Authenticate` on a 401).
    pub fn header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// `Retry-After: secs` (at least 1) instead of the `503` default
    /// ([`RETRY_AFTER_SECS`]); a `429` says how long its limit holds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// A database failure, by what it means for the caller: unavailable or contended →
    /// `503` with `Retry-After`; anything else is a defect → `500`.
    pub fn database(fault: DbFault) -> Self {
        match fault {
            DbFault::Unavailable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
                    .message("the database is unavailable; retry later")
            }
            DbFault::Conflict => Self::new(StatusCode::SERVICE_UNAVAILABLE, "database_busy")
                .message("the request collided with concurrent changes; retry"),
            DbFault::Permanent => Self::internal(),
        }
    }

    /// [`Reply::database`] for a failed query.
    pub fn query(e: &diesel::result::Error) -> Self {
        Self::database(DbFault::of_query(e))
    }

    /// [`Reply::database`] for a pool that gave no connection.
    pub fn pool(e: &PoolError) -> Self {
        Self::database(DbFault::of_pool(e))
    }
}

impl ApiError for DbError {
    fn reply(&self) -> Reply {
        Reply::database(self.fault())
    }
}

fn generic_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            "a service this request depends on is unavailable; retry later"
        }
        StatusCode::BAD_GATEWAY => "an upstream service failed",
        StatusCode::GATEWAY_TIMEOUT => "an upstream service did not answer in time",
        _ => "internal error",
    }
}

/// Renders `error` as its HTTP answer. The one place every service error becomes a response.
pub fn respond<E: ApiError + ?Sized>(error: &E) -> HttpResponse {
    let reply = error.reply();
    let status = reply.status;
    // Whatever the caller is not told is logged, so the reason is never lost.
    let hidden = reply.body.is_some() || matches!(reply.message, Message::Fixed(_));
    if status.is_server_error() {
        tracing::error!(error = %error, code = reply.code, status = status.as_u16(), "request failed");
    } else if hidden {
        tracing::warn!(error = %error, code = reply.code, status = status.as_u16(), "request refused");
    }
    let mut resp = HttpResponse::build(status);
    if let Some(secs) = reply.retry_after {
        resp.insert_header((header::RETRY_AFTER, secs.to_string()));
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
    }
    for (name, value) in reply.headers {
        resp.insert_header((name, value));
    }
    match reply.body {
        Some(body) => resp.json(body),
        None => {
            let message = match reply.message {
                Message::Detail => error.to_string(),
                Message::Fixed(m) => m.into_owned(),
            };
            resp.json(ErrorBody::new(reply.code, message))
        }
    }
}

/// Implements actix's `ResponseError` for an [`ApiError`] through [`respond`]:
/// `paywire_platform::api_error!(OrderError);`
#[macro_export]
macro_rules! api_error {
    ($ty:ty) => {
        impl $crate::__actix_web::ResponseError for $ty {
            fn status_code(&self) -> $crate::__actix_web::http::StatusCode {
                $crate::api_error::ApiError::reply(self).status
            }
            fn error_response(&self) -> $crate::__actix_web::HttpResponse {
                $crate::api_error::respond(self)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error("thing {0} not found")]
        NotFound(u32),
        #[error("secret detail {0}")]
        Broken(String),
        #[error("channel timed out")]
        Channel,
        #[error("database: {0}")]
        Database(#[from] DieselError),
        #[error("database pool: {0}")]
        Pool(#[from] PoolError),
        #[error("bad signature")]
        Protocol,
    }

    impl ApiError for TestError {
        fn reply(&self) -> Reply {
            match self {
                TestError::NotFound(_) => Reply::new(StatusCode::NOT_FOUND, "not_found"),
                TestError::Broken(_) => Reply::internal(),
                TestError::Channel => {
                    Reply::new(StatusCode::SERVICE_UNAVAILABLE, "channel_unavailable").detail()
                }
                TestError::Database(e) => Reply::query(e),
                TestError::Pool(e) => Reply::pool(e),
                TestError::Protocol => Reply::new(StatusCode::UNAUTHORIZED, "SIGN_ERROR")
                    .body(serde_json::json!({"code": "SIGN_ERROR", "message": "签名错误"}))
                    .header(header::WWW_AUTHENTICATE, "Bearer"),
            }
        }
    }
    crate::api_error!(TestError);

    fn render(e: &TestError) -> (u16, Option<String>, serde_json::Value) {
        let resp = actix_web::ResponseError::error_response(e);
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = actix_web::body::MessageBody::try_into_bytes(resp.into_body()).unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    fn unreachable_database() -> PoolError {
        PoolError::Backend(diesel_async::pooled_connection::PoolError::ConnectionError(
            diesel::ConnectionError::BadConnection("connection refused".into()),
        ))
    }

    #[test]
    fn client_errors_show_their_message() {
        let (status, retry, body) = render(&TestError::NotFound(7));
        assert_eq!((status, retry), (404, None));
        assert_eq!(body["error"], "not_found");
        assert_eq!(body["message"], "thing 7 not found");
        assert_eq!(
            actix_web::ResponseError::status_code(&TestError::NotFound(7)),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn server_errors_hide_their_details_unless_marked() {
        let (status, _, body) = render(&TestError::Broken("password=x".into()));
        assert_eq!(status, 500);
        assert_eq!(body["error"], "internal_error");
        assert_eq!(body["message"], "internal error");
        let (status, _, body) = render(&TestError::Channel);
        assert_eq!(status, 503);
        assert_eq!(body["message"], "channel timed out");
    }

    #[test]
    fn an_unreachable_database_is_503_with_retry_after_never_500() {
        for err in [
            TestError::Pool(unreachable_database()),
            TestError::Pool(PoolError::Timeout(deadpool::managed::TimeoutType::Wait)),
            TestError::Database(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new("server closed the connection unexpectedly".to_owned()),
            )),
            TestError::Database(DieselError::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new("terminating connection due to administrator command".to_owned()),
            )),
        ] {
            let (status, retry, body) = render(&err);
            assert_eq!(status, 503, "{err}");
            assert_eq!(retry.as_deref(), Some("1"), "{err}");
            assert_eq!(body["error"], "database_unavailable", "{err}");
            assert!(!body["message"].as_str().unwrap().contains("refused"));
        }
    }

    #[test]
    fn contention_asks_for_a_retry_and_defects_are_500() {
        let (status, retry, body) = render(&TestError::Database(DieselError::DatabaseError(
            DatabaseErrorKind::SerializationFailure,
            Box::new("could not serialize access".to_owned()),
        )));
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert_eq!(body["error"], "database_busy");
        let (status, retry, body) = render(&TestError::Database(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate key".to_owned()),
        )));
        assert_eq!((status, retry), (500, None));
        assert_eq!(body["error"], "internal_error");
    }

    #[test]
    fn protocol_bodies_and_headers_replace_the_error_body() {
        let resp = actix_web::ResponseError::error_response(&TestError::Protocol);
        assert_eq!(
            resp.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        let (status, _, body) = render(&TestError::Protocol);
        assert_eq!(status, 401);
        assert_eq!(
            body,
            serde_json::json!({"code": "SIGN_ERROR", "message": "签名错误"})
        );
    }

    #[test]
    fn sources_stay_chained() {
        let err = TestError::Pool(unreachable_database());
        let source = std::error::Error::source(&err).expect("pool error is the source");
        assert!(source.to_string().contains("connection refused"));
    }
}
