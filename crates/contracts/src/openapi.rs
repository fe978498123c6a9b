//! Pieces every service's generated OpenAPI document shares: the names of the security
//! schemes the handlers' annotations refer to, and the descriptions of common answers.

/// Users: `Authorization: Bearer <JWT>`.
pub const BEARER_AUTH: &str = "bearerAuth";
/// Services: the caller's own credential in a header; a route's requirement lists the
/// callers it admits (`order`, `operator`).
pub const SERVICE_TOKEN: &str = "serviceToken";

pub const UNAUTHORIZED: &str = "`unauthorized`: missing or wrong credential";
pub const CALLER_NOT_ADMITTED: &str = "`caller_not_admitted`: a valid service credential of a caller this route does not admit (the route's `serviceToken` security names the callers it admits)";
pub const BAD_REQUEST: &str = "`invalid_request`, `invalid_body`, `invalid_path` or `invalid_query`: the request is malformed (a body over 64 KiB is refused before it is read: 413 `body_too_large`)";
pub const INTERNAL_ERROR: &str = "`internal_error`: something failed on our side; details are \
     logged, not sent. While the database is unreachable any endpoint answers 503 \
     `database_unavailable` (or `database_busy`) with `Retry-After` instead";
pub const CHANNEL_UNAVAILABLE: &str =
    "`channel_unavailable`: the channel could not be reached; nothing changed, retry later";
pub const CHANNEL_REJECTED: &str = "`channel_rejected`: the channel refused, with its own code";
pub const UPSTREAM_UNAVAILABLE: &str = "`upstream_unavailable`: a Paywire service or the channel behind it cannot be reached; retry later";
pub const RATE_LIMITED: &str = "`rate_limited`: too many requests from this user (or, on \
     callbacks and sign-in, from this client address); `Retry-After` says how many seconds \
     to wait. Limits are configured per route class (`rate_limit.*`)";
pub const UPSTREAM_ERROR: &str = "`upstream_error`: a Paywire service refused or answered nonsense";

/// The error answers endpoints share, declared once: list one of these in a handler's
/// `#[utoipa::path(responses(...))]` next to its own answers, e.g.
/// `responses((status = 200, body = X), (status = 404, ...), RequestErrors)`.
pub mod answers {
    use std::collections::BTreeMap;

    use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
    use utoipa::{IntoResponses, ToSchema};

    use super::{
        BAD_REQUEST, CALLER_NOT_ADMITTED, CHANNEL_UNAVAILABLE, INTERNAL_ERROR, RATE_LIMITED,
        UNAUTHORIZED, UPSTREAM_ERROR, UPSTREAM_UNAVAILABLE,
    };
    use crate::ErrorBody;

    /// `(status, description)` pairs, each answered with an [`ErrorBody`].
    fn error_answers(list: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
        list.iter()
            .map(|&(status, description)| {
                let body = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                    .build();
                let response = ResponseBuilder::new()
                    .description(description)
                    .content("application/json", body)
                    .build();
                (status.to_owned(), RefOr::T(response))
            })
            .collect()
    }

    /// Declares a set of error answers as a type for `responses(...)`.
    macro_rules! answer_set {
        ($(#[$doc:meta])* $name:ident: $(($status:literal, $description:expr)),+ $(,)?) => {
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    error_answers(&[$(($status, $description)),+])
                }
            }
        };
    }

    answer_set!(
        /// `500`: every endpoint.
        ServerErrors: ("500", INTERNAL_ERROR)
    );
    answer_set!(
        /// `401` and `500`: an endpoint behind a credential whose `400` says more.
        AuthErrors: ("401", UNAUTHORIZED), ("500", INTERNAL_ERROR)
    );
    answer_set!(
        /// `400`, `401` and `500`: an endpoint behind a credential that reads its request.
        RequestErrors: ("400", BAD_REQUEST), ("401", UNAUTHORIZED), ("500", INTERNAL_ERROR)
    );
    answer_set!(
        /// `403`: an internal endpoint, to a caller it does not admit.
        CallerErrors: ("403", CALLER_NOT_ADMITTED)
    );
    answer_set!(
        /// `502` and `503` of an endpoint that calls another Paywire service.
        UpstreamErrors: ("502", UPSTREAM_ERROR), ("503", UPSTREAM_UNAVAILABLE)
    );
    /// `429` of a rate-limited endpoint, with its `Retry-After` header.
    #[derive(Debug)]
    pub struct RateLimited;

    impl IntoResponses for RateLimited {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            use utoipa::openapi::header::HeaderBuilder;
            use utoipa::openapi::schema::{ObjectBuilder, Type};
            let mut answers = error_answers(&[("429", RATE_LIMITED)]);
            if let Some(RefOr::T(response)) = answers.get_mut("429") {
                let seconds = HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some(
                        "seconds until the next request is admitted (at least 1)",
                    ))
                    .build();
                response
                    .headers
                    .insert("Retry-After".to_owned(), RefOr::T(seconds));
            }
            answers
        }
    }
    answer_set!(
        /// `502` and `503` of a gateway endpoint that calls a channel.
        ChannelErrors: ("502", "`channel_rejected`"), ("503", CHANNEL_UNAVAILABLE)
    );
}
