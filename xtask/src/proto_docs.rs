//! `cargo xtask proto-docs`: `proto-docs/` written from the code, so the documents cannot
//! drift from what the services do.
//!
//! * Each service's OpenAPI comes from its handlers' `#[utoipa::path]` annotations and the
//!   `ToSchema` of the types they take and answer (`paywire-contracts` for everything
//!   services say to each other); this module adds what every document shares: the local
//!   servers (the public listener for the document, the internal listener on every path
//!   served there, see [`listener`]), the security schemes and the platform's `/health`.
//! * The AsyncAPI takes its message names, envelopes, schemas and examples from the event
//!   types and its addresses from the broker topology constants; the AMQP bindings and
//!   the prose around them are declared here.
//!
//! The drift test [`tests::proto_docs_are_what_the_code_generates`] fails when a file
//! differs and names the command that rewrites them.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use paywire_contracts::{
    Event, EventEnvelope, OrderTimeoutV1, PayResultV1, RefundResultV1, openapi as names,
};
use paywire_domain::topology::{
    LEARNING_PAY_RESULT_QUEUE, ORDER_PAY_RESULT_QUEUE, PAY_RESULT_EXCHANGE,
};
use paywire_domain::{
    BizType, EventId, Fen, OrderId, PayChannel, PayNo, RefundNo, RefundReason, RefundStatus, UserId,
};
use paywire_messaging::topology::dead_letter_queue_name;
use paywire_platform::auth::SERVICE_TOKEN_HEADER;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder, SecurityRequirement};

use crate::layout::{self, SERVICES};

/// The command that rewrites `proto-docs/`; the drift test's message names it.
pub const REGENERATE: &str = "cargo xtask proto-docs";

/// The description of a document's server: the public listener.
pub const PUBLIC_SERVER: &str =
    "public listener, local development (`cargo xtask up`): user API, callbacks, pages";
/// The description of an internal path's server.
pub const INTERNAL_SERVER: &str = "internal listener, local development (`cargo xtask up`): \
     other services, Prometheus and health checks only; never exposed";

/// Which of a service's two listeners serves a path (issue 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// User API, callbacks, pages, the channels' APIs.
    Public,
    /// `/internal/*`, `/metrics`, `/health*`, the sandbox's admin API.
    Internal,
}

/// Where `path` is served, by the naming every service follows; the drift tests ask the
/// services' real routers whether each documented path is there and not on the other
/// listener.
pub fn listener(path: &str) -> Listener {
    let internal = path.starts_with("/internal/")
        || path == "/metrics"
        || path == "/health"
        || path.starts_with("/health/")
        || path.starts_with("/sandbox/admin/");
    if internal {
        Listener::Internal
    } else {
        Listener::Public
    }
}

/// Services whose API is documented from code. `channel-sandbox` stands in for the
/// channels and speaks their protocols, whose types belong to `paywire-channels` and whose
/// reference is the channels' own documentation: its document stays hand-written, checked
/// route by route by the drift tests.
pub const GENERATED_OPENAPI: &[&str] = &["order", "payment-gateway", "learning-center", "cashier"];

pub const ASYNCAPI: &str = "proto-docs/pay-result.asyncapi.yaml";

/// Every generated file: its path from the repository root and its content.
pub fn documents() -> Vec<(String, String)> {
    let mut docs: Vec<(String, String)> = GENERATED_OPENAPI
        .iter()
        .map(|name| {
            (
                format!("proto-docs/{name}.openapi.yaml"),
                yaml(&openapi(name)),
            )
        })
        .collect();
    docs.push((ASYNCAPI.to_owned(), yaml(&asyncapi())));
    docs
}

/// `cargo xtask proto-docs`.
pub fn write() -> anyhow::Result<()> {
    for (rel, text) in documents() {
        let path: PathBuf = layout::repo_root().join(&rel);
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old == text {
            println!("{rel}: unchanged");
            continue;
        }
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        println!("{rel}: written ({} lines)", text.lines().count());
    }
    Ok(())
}

/// Structs keep their field order; maps their declaration order (utoipa's
/// `preserve_order`) or, in the AsyncAPI built as JSON, sorted keys.
fn yaml(doc: &impl serde::Serialize) -> String {
    let text = serde_norway::to_string(doc).expect("a JSON value is valid YAML");
    format!("# Generated from the code by `{REGENERATE}`; edit the code, not this file.\n{text}")
}

/// One service's OpenAPI document.
pub fn openapi(service: &str) -> utoipa::openapi::OpenApi {
    let mut doc = match service {
        "order" => order::routes::openapi::ApiDoc::openapi(),
        "payment-gateway" => payment_gateway::routes::openapi::ApiDoc::openapi(),
        "learning-center" => learning_center::routes::openapi::ApiDoc::openapi(),
        "cashier" => cashier::openapi::ApiDoc::openapi(),
        other => panic!("{other}: its OpenAPI document is not generated"),
    };
    let known = SERVICES
        .iter()
        .find(|s| s.name == service)
        .unwrap_or_else(|| panic!("{service}: not a service"));
    doc.servers = Some(vec![
        ServerBuilder::new()
            .url(known.base_url())
            .description(Some(PUBLIC_SERVER))
            .build(),
    ]);
    // The platform mounts `/health` (and its alias `/health/live`) and `/metrics` on every
    // service.
    let liveness = |id: &str| {
        OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some("Liveness probe"))
            .security(SecurityRequirement::default())
            .response("200", status_response("the service is up", "ok"))
            .build()
    };
    doc.paths
        .add_path_operation("/health", vec![HttpMethod::Get], liveness("health"));
    doc.paths.add_path_operation(
        "/health/live",
        vec![HttpMethod::Get],
        liveness("health_live"),
    );
    let metrics = OperationBuilder::new()
        .operation_id(Some("metrics"))
        .summary(Some("Prometheus metrics (text exposition format 0.0.4)"))
        .security(SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new()
                .description(
                    "the process's metrics: HTTP, outbox, consumers, channels, payments, build info",
                )
                .content(
                    "text/plain; version=0.0.4",
                    ContentBuilder::new()
                        .schema(Some(RefOr::T(Schema::Object(
                            ObjectBuilder::new().schema_type(Type::String).build(),
                        ))))
                        .build(),
                )
                .build(),
        )
        .build();
    doc.paths
        .add_path_operation("/metrics", vec![HttpMethod::Get], metrics);
    // ... and `/health/ready` (platform::http: dependencies checked where there are some).
    doc.paths
        .add_path_operation("/health/ready", vec![HttpMethod::Get], ready());
    // Paths of the internal listener name it as their only server.
    for (path, item) in doc.paths.paths.iter_mut() {
        if listener(path) == Listener::Internal {
            item.servers = Some(vec![
                ServerBuilder::new()
                    .url(known.internal_url())
                    .description(Some(INTERNAL_SERVER))
                    .build(),
            ]);
        }
    }
    // The cashier checks neither credential: it proxies the first and drops the second.
    let (bearer, service_token) = if service == "cashier" {
        (
            "Not checked here: passed through to the proxied APIs, which verify it.",
            "Never accepted and never forwarded by this service.",
        )
    } else {
        (
            "User token; `sub` is the user id. In production RS256 or EdDSA, signed by the \
             identity provider (`auth.jwks`, with `iss` and `aud`); in development HS256 \
             (`cargo xtask token <user-id>`).",
            "The calling service's own credential (its `auth.service_token`; the operators' \
             tooling has one too), accepted on `/internal/*` only, which the internal listener alone \
             serves. The credential names the \
             caller (`auth.callers.<name>` here); each route's requirement lists the callers \
             it admits, and answers 403 `caller_not_admitted` to the others.",
        )
    };
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        names::BEARER_AUTH,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(bearer))
                .build(),
        ),
    );
    components.add_security_scheme(
        names::SERVICE_TOKEN,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            SERVICE_TOKEN_HEADER,
            service_token,
        ))),
    );
    doc
}

/// The schemas of the events and of everything they refer to.
#[derive(Debug, OpenApi)]
#[openapi(components(schemas(EventId, PayResultV1, RefundResultV1, OrderTimeoutV1)))]
struct EventSchemas;

/// Fixed times and ids for the examples, so the document is the same on every run.
fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("a literal RFC 3339 time")
}

fn envelope_schema<E: Event>(data: &str) -> Value {
    json!({
        "type": "object",
        "description": format!("`EventEnvelope<{data}>`: `event_id` is also the AMQP `message_id`"),
        "required": ["event_id", "event_type", "occurred_at", "data"],
        "properties": {
            "event_id": {"$ref": "#/components/schemas/EventId"},
            "event_type": {"const": E::EVENT_TYPE},
            "occurred_at": {"type": "string", "format": "date-time"},
            "data": {"$ref": format!("#/components/schemas/{data}")},
        },
    })
}

/// A message of the document: name, payload and example from the event type.
fn message<E: Event + serde::Serialize>(
    title: &str,
    envelope: &str,
    example_name: &str,
    example: EventEnvelope<E>,
) -> Value {
    assert_eq!(example.event_type, E::EVENT_TYPE);
    json!({
        "name": E::EVENT_TYPE,
        "title": title,
        "contentType": "application/json",
        "correlationId": {
            "description": "AMQP `message_id`, equal to the envelope's `event_id`; consumers deduplicate by it",
            "location": "$message.header#/message_id",
        },
        "headers": {
            "type": "object",
            "description": "AMQP basic properties set by the relay",
            "properties": {
                "message_id": {"type": "string", "description": "equals `event_id`"},
                "type": {"const": E::EVENT_TYPE},
                "content_type": {"const": "application/json"},
                "delivery_mode": {"const": 2},
                "traceparent": {
                    "type": "string",
                    "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                    "description": "AMQP header: W3C trace context of the relay's publish span, which continues the trace stored with the outbox row; consumers continue it. Absent when the row was written outside a trace; a malformed value is ignored",
                },
            },
        },
        "payload": {"$ref": format!("#/components/schemas/{envelope}")},
        "bindings": {"amqp": {
            "contentEncoding": "utf-8",
            "messageType": E::EVENT_TYPE,
            "bindingVersion": "0.3.0",
        }},
        "examples": [{"name": example_name, "payload": example}],
    })
}

fn amqp_queue(name: &str) -> Value {
    json!({
        "is": "queue",
        "queue": {"name": name, "durable": true, "exclusive": false, "autoDelete": false, "vhost": "/"},
    })
}

/// An AMQP channel binding of a queue (the pay-result subscribers).
fn queue_binding(name: &str) -> Value {
    let mut binding = amqp_queue(name);
    binding["bindingVersion"] = "0.3.0".into();
    binding
}

/// The queue arguments `paywire_messaging::topology` declares for a consumed queue.
fn consumed_queue_arguments(queue: &str) -> Value {
    json!({
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue_name(queue),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": 20,
    })
}

/// What the `paywire.pay-result` exchange carries, to every subscriber's queue.
const PAY_RESULT_MESSAGES: &[&str] = &["payResultV1", "refundResultV1"];

/// A service's queue on the `paywire.pay-result` exchange: both results arrive there.
fn pay_result_queue(queue: &str, title: &str, description: &str) -> Value {
    json!({
        "address": queue,
        "title": title,
        "description": description,
        "servers": [{"$ref": "#/servers/local"}],
        "messages": messages(PAY_RESULT_MESSAGES),
        "bindings": {"amqp": queue_binding(queue)},
        "x-queue-arguments": consumed_queue_arguments(queue),
    })
}

fn messages(names: &[&str]) -> Value {
    names
        .iter()
        .map(|m| {
            (
                (*m).to_owned(),
                json!({"$ref": format!("#/components/messages/{m}")}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn operation(action: &str, title: &str, channel: &str, message: &str) -> Value {
    let bindings = if action == "send" {
        json!({"amqp": {"deliveryMode": 2, "mandatory": true, "bindingVersion": "0.3.0"}})
    } else {
        json!({"amqp": {"ack": true, "bindingVersion": "0.3.0"}})
    };
    json!({
        "action": action,
        "title": title,
        "channel": {"$ref": format!("#/channels/{channel}")},
        "messages": [{"$ref": format!("#/channels/{channel}/messages/{message}")}],
        "bindings": bindings,
    })
}

const ASYNCAPI_DESCRIPTION: &str = "\
The payment gateway announces every payment a channel confirmed on the durable fanout exchange \
`paywire.pay-result`. Each subscribing service has its own durable quorum queue bound to it, so \
every subscriber receives every pay result.

The same exchange carries `refund.result.v1`: the gateway announces the final state of every \
refund, of stray money (a payment confirmed for a closed attempt, or for an order another \
attempt already paid) and of refunds the order service asked for. Consumers acknowledge event \
types they do not handle (AMQP `type`) without effect; a message without a type, or a known \
type with a malformed body, is parked.

The order service sends itself `order.timeout.v1` through a delay queue: its outbox row \
(written in the order's create transaction) is relayed through the default exchange to \
`order.timeout.delay.<ttl>s` (quorum, no consumers, `x-message-ttl` = the order TTL, 1800 s by \
default: longer than the gateway's 900 s attempt expiry). On expiry the broker dead-letters it \
(at-least-once) through the durable direct exchange `order.timeout` to the queue \
`order.timeout` (with its own retry and dead-letter queues). The TTL is part of the delay \
queue's name because queue arguments cannot change. These three are described with the \
`x-amqp` extension rather than AMQP bindings because the xtask drift test checks the bindings \
against the pay-result topology only.

Delivery is at least once, effects are exactly once:
* the gateway writes the event to its outbox in the same transaction as the payment's \
`unpaid → paid` change; a relay publishes it persistently (delivery mode 2) with publisher \
confirms and marks the outbox row published only after the broker's ack, so a crash can \
re-publish the same event (same `message_id`);
* consumers acknowledge manually, after committing; in the same transaction as their effect \
they record `(consumer, message_id)` in `processed_messages`, so a redelivered or re-published \
duplicate is recognised and only acknowledged;
* a transiently failing message is retried through `<queue>.retry.<n>` delay queues (1 s, 5 s, \
30 s by default), then parked in `<queue>.dlq`; a message the broker has delivered more than \
`x-delivery-limit` times (a consumer crash loop) is parked too.

Ids are snowflake numbers sent as strings; money is an integer number of fen.";

/// The AsyncAPI document of the pay-result exchange and the order timeout, as JSON.
pub fn asyncapi() -> Value {
    // The order service's defaults name the timeout's queues and exchange.
    let timeouts = order::timeout::TimeoutSettings::default();
    let delay_queue = timeouts.delay_queue_name();
    let pay = PayResultV1 {
        pay_no: PayNo::from(7_181_245_133_201_407),
        order_id: OrderId::from(7_181_245_133_201_406),
        user_id: UserId::parse("student-1").expect("a valid user id"),
        biz_type: BizType::Course,
        biz_id: "7181245133201405".into(),
        channel: PayChannel::Wechat,
        amount_fen: Fen::new(9900).expect("a valid amount"),
        channel_trade_no: "4200002026010212345678".into(),
        paid_at: at("2026-01-02T03:04:05Z"),
    }
    .into_envelope(
        EventId::from(7_181_245_133_201_409),
        at("2026-01-02T03:04:06Z"),
    );
    let refund = RefundResultV1 {
        refund_no: RefundNo::from(7_181_245_133_201_508),
        pay_no: PayNo::from(7_181_245_133_201_407),
        order_id: OrderId::from(7_181_245_133_201_406),
        channel: PayChannel::Alipay,
        amount_fen: Fen::new(9900).expect("a valid amount"),
        reason: RefundReason::DuplicatePayment.into(),
        status: RefundStatus::Succeeded.into(),
        refunded_at: Some(at("2026-01-02T03:20:05Z")),
    }
    .into_envelope(
        EventId::from(7_181_245_133_201_509),
        at("2026-01-02T03:20:06Z"),
    );
    let timeout = OrderTimeoutV1 {
        order_id: OrderId::from(7_181_245_133_201_406),
        created_at: at("2026-01-02T02:50:00Z"),
    }
    .into_envelope(
        EventId::from(7_181_245_133_201_410),
        at("2026-01-02T02:50:00Z"),
    );

    let mut schemas = serde_json::to_value(
        EventSchemas::openapi()
            .components
            .expect("declared components")
            .schemas,
    )
    .expect("schemas serialise");
    let schemas = schemas.as_object_mut().expect("a map of schemas");
    schemas.insert(
        "PayResultEnvelope".into(),
        envelope_schema::<PayResultV1>("PayResultV1"),
    );
    schemas.insert(
        "RefundResultEnvelope".into(),
        envelope_schema::<RefundResultV1>("RefundResultV1"),
    );
    schemas.insert(
        "OrderTimeoutEnvelope".into(),
        envelope_schema::<OrderTimeoutV1>("OrderTimeoutV1"),
    );

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Paywire pay results, refund results and order timeouts",
            "version": env!("CARGO_PKG_VERSION"),
            "description": ASYNCAPI_DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {"local": {
            "host": "127.0.0.1:5672",
            "protocol": "amqp",
            "protocolVersion": "0.9.1",
            "pathname": "/",
            "description": "local development RabbitMQ (guest/guest, vhost `/`)",
        }},
        "channels": {
            "payResultExchange": {
                "address": PAY_RESULT_EXCHANGE,
                "title": "pay-result fanout exchange",
                "servers": [{"$ref": "#/servers/local"}],
                "messages": messages(PAY_RESULT_MESSAGES),
                "bindings": {"amqp": {
                    "is": "routingKey",
                    "exchange": {"name": PAY_RESULT_EXCHANGE, "type": "fanout", "durable": true, "autoDelete": false, "vhost": "/"},
                    "bindingVersion": "0.3.0",
                }},
            },
            "orderPayResultQueue": pay_result_queue(
                ORDER_PAY_RESULT_QUEUE,
                "the order service's queue",
                "Bound to `paywire.pay-result`. A pay result marks the order paid; one for a \
    closed order, or for an order paid by another attempt, is logged as stray (the gateway refunds it). A \
    `refund.result.v1` of a requested refund that succeeded for the attempt that paid the order, in full, \
    marks the order `refunded`; other refund results change nothing.",
            ),
            "learningCenterPayResultQueue": pay_result_queue(
                LEARNING_PAY_RESULT_QUEUE,
                "the learning center's queue",
                "Bound to `paywire.pay-result`; the learning center enrols the student. A \
    `refund.result.v1` of a requested refund that succeeded for the attempt that enrolled a student counts \
    once (by `refund_no`); once those refunds reach the choice's price, the choice becomes `refunded` and \
    the enrolment `revoked` (learn status `refunded`); a partial refund keeps access.",
            ),
            "orderTimeoutDelayQueue": {
                "address": delay_queue,
                "title": "the order timeout delay queue (default TTL)",
                "description": "No consumers. The order service's relay publishes here through the default \
    exchange (routing key = the queue name); messages wait `x-message-ttl`, then dead-letter to the \
    `order.timeout` exchange. Named `order.timeout.delay.<order_ttl_secs>s`.",
                "servers": [{"$ref": "#/servers/local"}],
                "messages": messages(&["orderTimeoutV1"]),
                "x-amqp": amqp_queue(&delay_queue),
                "x-queue-arguments": {
                    "x-queue-type": "quorum",
                    "x-message-ttl": timeouts.order_ttl_secs * 1000,
                    "x-dead-letter-exchange": timeouts.exchange,
                    "x-dead-letter-routing-key": timeouts.queue,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            },
            "orderTimeoutExchange": {
                "address": timeouts.exchange,
                "title": "the order timeout exchange",
                "description": "Direct exchange; the delay queue dead-letters into it with routing key `order.timeout`.",
                "servers": [{"$ref": "#/servers/local"}],
                "messages": messages(&["orderTimeoutV1"]),
                "x-amqp": {
                    "is": "routingKey",
                    "exchange": {"name": timeouts.exchange, "type": "direct", "durable": true, "autoDelete": false, "vhost": "/"},
                },
            },
            "orderTimeoutQueue": {
                "address": timeouts.queue,
                "title": "the order service's timeout queue",
                "description": "Bound to `order.timeout` with routing key `order.timeout`. An order still \
    unpaid is settled by the gateway (`POST /internal/orders/{order_id}/payments/close`): `paid` → nothing \
    (the pay result marks it paid); `closed` → `unpaid → closed` here. A gateway or channel that cannot be \
    reached is retried through `order.timeout.retry.<n>` (1 s, 10 s, 60 s, 300 s, 1800 s by default), then \
    parked in `order.timeout.dlq`.",
                "servers": [{"$ref": "#/servers/local"}],
                "messages": messages(&["orderTimeoutV1"]),
                "x-amqp": amqp_queue(&timeouts.queue),
                "x-queue-arguments": consumed_queue_arguments(&timeouts.queue),
            },
        },
        "operations": {
            "publishPayResult": operation("send", "payment-gateway publishes a confirmed payment", "payResultExchange", "payResultV1"),
            "orderReceivesPayResult": operation("receive", "order marks the order paid (manual ack, deduplicated by message_id)", "orderPayResultQueue", "payResultV1"),
            "learningCenterReceivesPayResult": operation("receive", "learning-center enrols the student (manual ack, deduplicated by message_id)", "learningCenterPayResultQueue", "payResultV1"),
            "publishRefundResult": operation("send", "payment-gateway publishes the final state of a refund", "payResultExchange", "refundResultV1"),
            "learningCenterReceivesRefundResult": operation("receive", "learning-center revokes a course refunded in full (manual ack, deduplicated by message_id and refund_no)", "learningCenterPayResultQueue", "refundResultV1"),
            "orderReceivesRefundResult": operation("receive", "order marks a fully refunded order refunded (manual ack, deduplicated by message_id)", "orderPayResultQueue", "refundResultV1"),
            "scheduleOrderTimeout": operation("send", "order schedules an order's timeout (outbox row in the create transaction)", "orderTimeoutDelayQueue", "orderTimeoutV1"),
            "orderReceivesTimeout": operation("receive", "order settles an expired order (manual ack, deduplicated by message_id)", "orderTimeoutQueue", "orderTimeoutV1"),
        },
        "components": {
            "messages": {
                "payResultV1": message("A payment attempt was confirmed paid by its channel", "PayResultEnvelope", "wechat course payment", pay),
                "refundResultV1": message("A refund reached a final state", "RefundResultEnvelope", "a second payment of a paid order went back", refund),
                "orderTimeoutV1": message("An order's time to be paid ran out", "OrderTimeoutEnvelope", "timeout of a course order", timeout),
            },
            "schemas": schemas,
        },
    })
}

/// A probe's 200: `{"status": <status>}` (the platform's `/health` and `/health/ready`).
fn status_response(description: &str, status: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::T(Schema::Object(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .property(
                            "status",
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .enum_values(Some([status])),
                        )
                        .required("status")
                        .build(),
                ))))
                .build(),
        )
        .build()
}

/// `GET /health/ready`: 200 `{"status":"ready","checks":{…}}` or 503 with a stable code.
fn ready() -> utoipa::openapi::path::Operation {
    let checks = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "each dependency and background part by name (`database`, `migrations`, \
             `outbox-relay`, `consumer:<queue>`) and its state; empty for a service that \
             depends on none",
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["up"])),
        ));
    let ready_body = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["ready"])),
        )
        .required("status")
        .property("checks", checks)
        .required("checks");
    OperationBuilder::new()
        .operation_id(Some("ready"))
        .summary(Some("Readiness probe"))
        .description(Some(
            "Whether the service can do its work: its database hands out a working \
             connection, every migration of this build is applied, and its outbox relay and \
             consumers hold a live broker session. Otherwise 503 with `Retry-After` and \
             `database_unavailable` (e.g. during a PostgreSQL restart), `migrations_pending` \
             (the `migrate` step has not run) or `not_ready` (the message names the parts \
             that are starting or down). Route traffic by this; `/health/live` only says the \
             process answers. The images' HEALTHCHECK asks it through `<service> ready`.",
        ))
        .security(SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new()
                .description("ready")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::T(Schema::Object(ready_body.build()))))
                        .build(),
                )
                .build(),
        )
        .response(
            "503",
            ResponseBuilder::new()
                .description(
                    "`database_unavailable`, `migrations_pending` or `not_ready`: not ready; ask \
                     again after `Retry-After` seconds",
                )
                .header(
                    "Retry-After",
                    utoipa::openapi::HeaderBuilder::new()
                        .schema(Some(RefOr::T(Schema::Object(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(1))
                                .build(),
                        ))))
                        .build(),
                )
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "Error",
                        ))))
                        .build(),
                )
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first line where two texts differ, for a message a person can act on.
    fn first_difference(old: &str, new: &str) -> String {
        let (mut old_lines, mut new_lines) = (old.lines(), new.lines());
        for n in 1.. {
            match (old_lines.next(), new_lines.next()) {
                (None, None) => break,
                (a, b) if a == b => continue,
                (a, b) => {
                    return format!(
                        "line {n}:\n  file: {}\n  code: {}",
                        a.unwrap_or("<end>"),
                        b.unwrap_or("<end>")
                    );
                }
            }
        }
        "only line endings differ".into()
    }

    #[test]
    fn proto_docs_are_what_the_code_generates() {
        let mut stale = Vec::new();
        for (rel, generated) in documents() {
            let path = layout::repo_root().join(&rel);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != generated {
                stale.push(format!("{rel}: {}", first_difference(&on_disk, &generated)));
            }
        }
        assert!(
            stale.is_empty(),
            "proto-docs/ is stale; run `{REGENERATE}` and commit the result.\n{}",
            stale.join("\n")
        );
    }

    #[test]
    fn the_difference_is_reported_by_line() {
        assert_eq!(
            first_difference("a\nb\nc\n", "a\nx\nc\n"),
            "line 2:\n  file: b\n  code: x"
        );
        assert!(first_difference("a\n", "a\nb\n").contains("file: <end>"));
    }

    /// Every example is a real event: it deserialises into its type.
    #[test]
    fn asyncapi_examples_are_events_the_consumers_accept() {
        let doc = asyncapi();
        let example = |m: &str| doc["components"]["messages"][m]["examples"][0]["payload"].clone();
        let pay: EventEnvelope<PayResultV1> =
            serde_json::from_value(example("payResultV1")).unwrap();
        assert_eq!(pay.event_type, PayResultV1::EVENT_TYPE);
        let refund: EventEnvelope<RefundResultV1> =
            serde_json::from_value(example("refundResultV1")).unwrap();
        assert_eq!(refund.event_type, RefundResultV1::EVENT_TYPE);
        let timeout: EventEnvelope<OrderTimeoutV1> =
            serde_json::from_value(example("orderTimeoutV1")).unwrap();
        assert_eq!(timeout.event_type, OrderTimeoutV1::EVENT_TYPE);
    }
}
