//! OpenAPI schemas of the newtypes whose JSON form is not their Rust form (the statuses
//! and other text enums derive theirs). Used by the generated documents in `proto-docs/`.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::id::{ChooseCourseId, CourseId, EventId, OrderId, PayNo, RefundNo};
use crate::money::MAX_FEN;
use crate::{Fen, UserId};

fn object(b: ObjectBuilder) -> RefOr<Schema> {
    RefOr::T(Schema::Object(b.build()))
}

macro_rules! id_schemas {
    ($($name:ident: $what:literal),+ $(,)?) => {$(
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                object(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[1-9][0-9]{0,18}$"))
                        .description(Some(concat!(
                            $what,
                            ": a snowflake id as a decimal string (JSON numbers lose \
                             precision above 2^53)"
                        )))
                        .examples(["7181245133201408"]),
                )
            }
        }

        impl ToSchema for $name {}
    )+};
}

id_schemas! {
    OrderId: "An order in the order service",
    PayNo: "One payment attempt (`out_trade_no` at the channel)",
    ChooseCourseId: "A student's choice of a course in the learning center",
    CourseId: "A course in the catalogue",
    EventId: "An event's id (the AMQP `message_id`, the consumers' dedupe key)",
    RefundNo: "One refund (`out_refund_no` / `out_request_no` at the channel)",
}

impl PartialSchema for Fen {
    fn schema() -> RefOr<Schema> {
        object(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0))
                .maximum(Some(MAX_FEN))
                .description(Some(
                    "An amount of CNY in fen (1 yuan = 100 fen), an integer, never a float",
                ))
                .examples([19900]),
        )
    }
}

impl ToSchema for Fen {}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
                .description(Some("The end user, as the JWT `sub` claim names them"))
                .examples(["alice"]),
        )
    }
}

impl ToSchema for UserId {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented constraints are the parsers' constraints.
    #[test]
    fn schemas_state_what_the_parsers_accept() {
        let json = |s: RefOr<Schema>| serde_json::to_value(s).unwrap();
        let id = json(OrderId::schema());
        assert_eq!(id["type"], "string");
        assert_eq!(id["pattern"], "^[1-9][0-9]{0,18}$");
        assert!("7181245133201408".parse::<OrderId>().is_ok());
        let fen = json(Fen::schema());
        assert_eq!(
            (fen["minimum"].as_i64(), fen["maximum"].as_i64()),
            (Some(0), Some(MAX_FEN))
        );
        assert!(Fen::new(MAX_FEN).is_ok() && Fen::new(MAX_FEN + 1).is_err());
        assert_eq!(json(UserId::schema())["pattern"], "^[A-Za-z0-9_-]{1,64}$");
        let channel = json(crate::PayChannel::schema());
        assert_eq!(
            channel["enum"],
            serde_json::json!(["wechat", "alipay", "wechat_v2"])
        );
    }
}
