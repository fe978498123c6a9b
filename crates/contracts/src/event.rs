//! Events on the broker, with versioned schemas. The producer builds them and every
//! consumer decodes them through these types, so a change is one edit here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use paywire_domain::{
    BizType, EventId, Fen, OrderId, PayChannel, PayNo, RefundNo, RefundReason, RefundStatus, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Envelope for every event on the broker. `event_type` names the payload schema and its
/// version; consumers reject types they do not know instead of guessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope<T> {
    pub event_id: EventId,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub data: T,
}

/// A payload with a versioned type name (also the AMQP `type` property).
pub trait Event: Sized {
    const EVENT_TYPE: &'static str;

    fn into_envelope(self, event_id: EventId, occurred_at: DateTime<Utc>) -> EventEnvelope<Self> {
        EventEnvelope {
            event_id,
            event_type: Self::EVENT_TYPE.to_owned(),
            occurred_at,
            data: self,
        }
    }
}

/// Implements [`Event`] and mirrors its constant and constructor as inherent items, so
/// callers need not import the trait.
macro_rules! event {
    ($name:ident, $type:literal) => {
        impl Event for $name {
            const EVENT_TYPE: &'static str = $type;
        }

        impl $name {
            pub const EVENT_TYPE: &'static str = $type;

            pub fn into_envelope(
                self,
                event_id: EventId,
                occurred_at: DateTime<Utc>,
            ) -> EventEnvelope<Self> {
                Event::into_envelope(self, event_id, occurred_at)
            }
        }
    };
}

/// A value of a closed set as a consumer reads it: a name this build does not know is
/// kept as `Unknown` rather than refused, so a producer that learned a new value does not
/// get an older consumer's messages parked. On the wire it is the plain name either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lenient<T> {
    Known(T),
    Unknown(String),
}

impl<T: FromStr> Lenient<T> {
    pub fn parse(name: &str) -> Self {
        name.parse()
            .map_or_else(|_| Lenient::Unknown(name.to_owned()), Lenient::Known)
    }
}

impl<T: Copy> Lenient<T> {
    /// The value, when this build knows it.
    pub fn known(&self) -> Option<T> {
        match self {
            Lenient::Known(t) => Some(*t),
            Lenient::Unknown(_) => None,
        }
    }
}

impl<T> From<T> for Lenient<T> {
    fn from(t: T) -> Self {
        Lenient::Known(t)
    }
}

impl<T: fmt::Display> fmt::Display for Lenient<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lenient::Known(t) => t.fmt(f),
            Lenient::Unknown(name) => f.write_str(name),
        }
    }
}

impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lenient::Known(t) => t.serialize(s),
            Lenient::Unknown(name) => s.serialize_str(name),
        }
    }
}

impl<'de, T: FromStr> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Lenient::parse(&name))
    }
}

/// A payment attempt was confirmed paid by its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PayResultV1 {
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub biz_type: BizType,
    /// The business record the order pays for (a choose-course id for courses).
    pub biz_id: String,
    pub channel: PayChannel,
    /// The amount paid.
    pub amount_fen: Fen,
    /// The channel's own transaction number (`transaction_id` / `trade_no`).
    pub channel_trade_no: String,
    pub paid_at: DateTime<Utc>,
}

event!(PayResultV1, "pay.result.v1");

/// A refund (of stray money, or requested) reached a final state. Published on the
/// pay-result exchange; consumers that do not handle it ack and ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundResultV1 {
    pub refund_no: RefundNo,
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub channel: PayChannel,
    /// The amount refunded; less than the payment for a partial requested refund.
    pub amount_fen: Fen,
    /// `order_closed` and `duplicate_payment` are automatic refunds of stray money;
    /// `requested` comes from `POST /internal/refunds` (the order service refunds a paid
    /// order in full). Consumers ignore a reason they do not know.
    #[schema(value_type = RefundReason)]
    pub reason: Lenient<RefundReason>,
    /// Final states only: `succeeded` or `failed`.
    #[schema(value_type = RefundStatus)]
    pub status: Lenient<RefundStatus>,
    /// When the channel completed the refund; `null` when it failed.
    pub refunded_at: Option<DateTime<Utc>>,
}

event!(RefundResultV1, "refund.result.v1");

/// The timeout message the order service sends itself through its delay queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderTimeoutV1 {
    pub order_id: OrderId,
    pub created_at: DateTime<Utc>,
}

event!(OrderTimeoutV1, "order.timeout.v1");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_wire;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn pay_result_v1_keeps_its_wire_format() {
        let ev = PayResultV1 {
            pay_no: PayNo::from(7),
            order_id: OrderId::from(8),
            user_id: UserId::parse("s1").unwrap(),
            biz_type: BizType::Course,
            biz_id: "9".into(),
            channel: PayChannel::Wechat,
            amount_fen: Fen::new(10099).unwrap(),
            channel_trade_no: "4200001".into(),
            paid_at: at("2026-01-02T03:04:05Z"),
        }
        .into_envelope(EventId::from(1), at("2026-01-02T03:04:06Z"));
        assert_wire(
            &ev,
            r#"{"event_id":"1","event_type":"pay.result.v1","occurred_at":"2026-01-02T03:04:06Z","data":{"pay_no":"7","order_id":"8","user_id":"s1","biz_type":"course","biz_id":"9","channel":"wechat","amount_fen":10099,"channel_trade_no":"4200001","paid_at":"2026-01-02T03:04:05Z"}}"#,
        );
    }

    #[test]
    fn refund_result_v1_keeps_its_wire_format() {
        let ev = RefundResultV1 {
            refund_no: RefundNo::from(5),
            pay_no: PayNo::from(7),
            order_id: OrderId::from(8),
            channel: PayChannel::Alipay,
            amount_fen: Fen::new(1999).unwrap(),
            reason: RefundReason::DuplicatePayment.into(),
            status: RefundStatus::Succeeded.into(),
            refunded_at: Some(at("2026-01-02T03:04:05Z")),
        }
        .into_envelope(EventId::from(1), at("2026-01-02T03:04:06Z"));
        assert_wire(
            &ev,
            r#"{"event_id":"1","event_type":"refund.result.v1","occurred_at":"2026-01-02T03:04:06Z","data":{"refund_no":"5","pay_no":"7","order_id":"8","channel":"alipay","amount_fen":1999,"reason":"duplicate_payment","status":"succeeded","refunded_at":"2026-01-02T03:04:05Z"}}"#,
        );
        let failed = RefundResultV1 {
            reason: RefundReason::Requested.into(),
            status: RefundStatus::Failed.into(),
            refunded_at: None,
            ..ev.data
        };
        assert_wire(
            &failed,
            r#"{"refund_no":"5","pay_no":"7","order_id":"8","channel":"alipay","amount_fen":1999,"reason":"requested","status":"failed","refunded_at":null}"#,
        );
    }

    #[test]
    fn order_timeout_v1_keeps_its_wire_format() {
        let ev = OrderTimeoutV1 {
            order_id: OrderId::from(8),
            created_at: at("2026-01-02T03:04:05.123456Z"),
        }
        .into_envelope(EventId::from(3), at("2026-01-02T03:04:05.123456Z"));
        assert_wire(
            &ev,
            r#"{"event_id":"3","event_type":"order.timeout.v1","occurred_at":"2026-01-02T03:04:05.123456Z","data":{"order_id":"8","created_at":"2026-01-02T03:04:05.123456Z"}}"#,
        );
    }

    #[test]
    fn unknown_reasons_and_statuses_are_kept_and_travel_unchanged() {
        let wire = r#"{"refund_no":"5","pay_no":"7","order_id":"8","channel":"alipay","amount_fen":1999,"reason":"goodwill","status":"reversed","refunded_at":null}"#;
        let ev: RefundResultV1 = serde_json::from_str(wire).unwrap();
        assert_eq!(ev.reason, Lenient::Unknown("goodwill".into()));
        assert_eq!((ev.reason.known(), ev.status.known()), (None, None));
        assert_eq!(ev.status.to_string(), "reversed");
        assert_eq!(serde_json::to_string(&ev).unwrap(), wire);
        assert_eq!(
            Lenient::<RefundStatus>::parse("failed"),
            Lenient::Known(RefundStatus::Failed)
        );
        // Not a name at all is still malformed.
        let number = wire.replace(r#""goodwill""#, "3");
        assert!(serde_json::from_str::<RefundResultV1>(&number).is_err());
    }

    #[test]
    fn malformed_ids_and_amounts_are_refused() {
        let good = r#"{"refund_no":"5","pay_no":"7","order_id":"8","channel":"alipay","amount_fen":1999,"reason":"requested","status":"failed","refunded_at":null}"#;
        assert!(serde_json::from_str::<RefundResultV1>(good).is_ok());
        for bad in [
            good.replace(r#""alipay""#, r#""paypal""#),
            good.replace(r#""order_id":"8""#, r#""order_id":8"#),
            good.replace("1999", "-1"),
            good.replace("1999", "19.99"),
        ] {
            assert!(
                serde_json::from_str::<RefundResultV1>(&bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(<PayResultV1 as Event>::EVENT_TYPE, PayResultV1::EVENT_TYPE);
    }
}
