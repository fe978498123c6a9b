//! The cashier's HTTP API as OpenAPI, generated from the handlers' annotations;
//! `cargo xtask proto-docs` writes it to `proto-docs/`. The proxied prefixes are
//! documented by the services behind them.

use paywire_domain::{CourseId, OrderId};
use utoipa::OpenApi;

use crate::{login, pages};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Paywire cashier",
        description = "The browser's one origin: the cashier pages (catalogue, checkout, my \
courses, dev sign-in), their assets, and the public APIs reverse-proxied as an API gateway \
would:

| prefix | upstream | documented in |
|---|---|---|
| `/api/learning/*` | learning center (`upstream.learning_center_url`) | `learning-center.openapi.yaml` |
| `/api/orders/*` | order service (`upstream.order_url`) | `order.openapi.yaml` |

Method, path, query, body, status and end-to-end headers (including `Authorization`) pass \
unchanged; answers are streamed. Hop-by-hop headers and `X-Service-Token` are not forwarded; \
`X-Forwarded-For/Host/Proto` are set. Nothing else (e.g. `/internal/*`) is reachable through \
this service. Proxy failures use the error body: `upstream_unavailable` (502), \
`upstream_timeout` (504), `body_too_large` (413)."
    ),
    paths(
        login::dev_login,
        pages::catalogue,
        pages::checkout,
        pages::my_courses,
        pages::login,
        pages::asset,
    ),
    // Named by the checkout page's query parameters, which do not register schemas.
    components(schemas(OrderId, CourseId))
)]
pub struct ApiDoc;
