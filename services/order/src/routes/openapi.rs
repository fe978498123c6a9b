//! The order service's HTTP API as OpenAPI, generated from the handlers' annotations and
//! the contract types; `cargo xtask proto-docs` writes it to `proto-docs/`.

use utoipa::OpenApi;

use super::{internal, orders};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Paywire order service",
        description = "One open order per business record (a course choice), priced by the \
learning center (never by the client), paid through the payment gateway, and marked paid when \
the pay result arrives on the broker (queue `order.pay-result`, see `pay-result.asyncapi.yaml`).

An order left unpaid for `timeout.order_ttl_secs` (default 1800 s, longer than the gateway's \
900 s attempt expiry) is settled through a delay queue (`order.timeout.v1`): the gateway queries \
the channel for each open attempt; paid → the pay result marks it paid; otherwise every attempt \
is closed at its channel, then the order is `closed`. The course choice stays awaiting payment, \
so the student can order it again.

Refunds are a business decision, not a student action: `POST /internal/orders/{order_id}/refund` \
(service credential) asks the gateway for the full refund of the attempt that paid the order; \
the order becomes `refunded` when the gateway's `refund.result.v1` (`reason: requested`, \
`status: succeeded`, full amount, that attempt) arrives. Refunds of stray money never change \
the order.

Ids are snowflake numbers sent as strings; money is an integer number of fen."
    ),
    paths(
        orders::create,
        orders::get,
        orders::pay,
        orders::pay_result,
        internal::refund,
    ),
    security(("bearerAuth" = []))
)]
pub struct ApiDoc;
