//! Pieces every service's generated OpenAPI document shares: the names of the security
//! schemes the handlers' annotations refer to, and the descriptions of common answers.

/// Users: `Authorization: Bearer <JWT>`.
pub const BEARER_AUTH: &str = "bearerAuth";
/// Services: the shared credential in a header.
pub const SERVICE_TOKEN: &str = "serviceToken";

pub const UNAUTHORIZED: &str = "`unauthorized`: missing or wrong credential";
pub const BAD_REQUEST: &str = "`invalid_request`, `invalid_body`, `invalid_path` or `invalid_query`: the request is malformed";
pub const INTERNAL_ERROR: &str = "`internal_error`: something failed on our side; details are \
     logged, not sent. While the database is unreachable any endpoint answers 503 \
     `database_unavailable` (or `database_busy`) with `Retry-After` instead";
pub const CHANNEL_UNAVAILABLE: &str =
    "`channel_unavailable`: the channel could not be reached; nothing changed, retry later";
pub const CHANNEL_REJECTED: &str = "`channel_rejected`: the channel refused, with its own code";
pub const UPSTREAM_UNAVAILABLE: &str = "`upstream_unavailable`: a Paywire service or the channel behind it cannot be reached; retry later";
pub const UPSTREAM_ERROR: &str = "`upstream_error`: a Paywire service refused or answered nonsense";
