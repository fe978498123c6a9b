//! What Paywire services say to each other, declared once: the internal HTTP request and
//! response bodies (one module per serving service) and the events on the broker. The
//! producer serialises and the consumer deserialises the same type, so a change to a
//! contract is one edit, and the round-trip tests here pin the bytes on the wire.
//!
//! Public APIs for browsers stay with their services; channel protocols (WeChat Pay,
//! Alipay) belong to `paywire-channels`.

pub mod event;
pub mod learning_center;
pub mod order;
pub mod payment_gateway;

pub use event::{Event, EventEnvelope, Lenient, OrderTimeoutV1, PayResultV1, RefundResultV1};

#[cfg(test)]
pub(crate) mod test_support {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// `value` serialises to exactly `wire` (bytes, field order included), and `wire`
    /// deserialises back to `value`.
    pub fn assert_wire<T>(value: &T, wire: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_string(value).unwrap(), wire);
        assert_eq!(&serde_json::from_str::<T>(wire).unwrap(), value);
    }
}
