//! The gateway's HTTP API as OpenAPI, generated from the handlers' annotations and the
//! contract types; `cargo xtask proto-docs` writes it to `proto-docs/`.

use utoipa::OpenApi;

use super::{callbacks, orders, payments, reconciliation, refunds};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Paywire payment gateway",
        description = "Payment attempts at the channels (WeChat Pay v3 Native, Alipay face-to-face \
precreate), the channels' payment and refund notifications, active queries (sync, the order \
timeout's close, a background compensation sweeper), automatic refunds of stray money, refunds \
the order service asks for (`/internal/refunds`), and the outbox that publishes `pay.result.v1` \
and `refund.result.v1` to the `paywire.pay-result` exchange (see `pay-result.asyncapi.yaml`).

A channel that cannot be reached is a 503 `channel_unavailable`: nothing was changed, retry \
later.

Ids are snowflake numbers sent as strings; money is an integer number of fen."
    ),
    paths(
        payments::create,
        orders::sync,
        orders::close,
        payments::get,
        refunds::create,
        refunds::get,
        reconciliation::run,
        callbacks::notification,
    ),
    security(("serviceToken" = ["order"])),
    tags(
        (name = "internal", description = "called by the order service (reconciliation: by the operators' tooling) with the caller's own credential"),
        (name = "channel", description = "called by the payment channels; authenticated by the channel's signature"),
    )
)]
pub struct ApiDoc;
