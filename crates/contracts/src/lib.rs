//! What Paywire services say to each other, declared once: the internal HTTP request and
//! response bodies (one module per serving service) and the events on the broker. The
//! producer serialises and the consumer deserialises the same type, so a change to a
//! contract is one edit, and the round-trip tests here pin the bytes on the wire.
//!
//! Public APIs for browsers stay with their services; channel protocols (WeChat Pay,
//! Alipay) belong to `paywire-channels`.

pub mod event;
pub mod learning_center;
pub mod openapi;
pub mod order;
pub mod payment_gateway;
pub mod reconciliation;

pub use event::{Event, EventEnvelope, Lenient, OrderTimeoutV1, PayResultV1, RefundResultV1};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The one error body every Paywire API returns: a stable machine code and a message.
/// Callers branch on `error`, never on `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A snake_case code, stable across releases.
    #[schema(examples("order_not_found"))]
    pub error: String,
    /// For people; may change.
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// `value` serialises to exactly `wire` (bytes, field order included), and `wire`
    /// deserialises back to `value`.
    #[test]
    fn error_body_keeps_its_wire_format() {
        assert_wire(
            &crate::ErrorBody::new("order_closed", "order 8 is closed"),
            r#"{"error":"order_closed","message":"order 8 is closed"}"#,
        );
    }

    pub fn assert_wire<T>(value: &T, wire: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_string(value).unwrap(), wire);
        assert_eq!(&serde_json::from_str::<T>(wire).unwrap(), value);
    }
}
