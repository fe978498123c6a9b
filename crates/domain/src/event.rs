//! Events that cross service boundaries, with versioned schemas.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BizType, EventId, Fen, OrderId, PayChannel, PayNo, UserId};

/// Envelope for every event on the broker. `event_type` names the payload schema and its
/// version; consumers reject types they do not know instead of guessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope<T> {
    pub event_id: EventId,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub data: T,
}

/// A payment attempt was confirmed paid by its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayResultV1 {
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub biz_type: BizType,
    /// The business record the order pays for (a choose-course id for courses).
    pub biz_id: String,
    pub channel: PayChannel,
    pub amount_fen: Fen,
    /// The channel's own transaction number (`transaction_id` / `trade_no`).
    pub channel_trade_no: String,
    pub paid_at: DateTime<Utc>,
}

impl PayResultV1 {
    pub const EVENT_TYPE: &'static str = "pay.result.v1";

    pub fn into_envelope(
        self,
        event_id: EventId,
        occurred_at: DateTime<Utc>,
    ) -> EventEnvelope<Self> {
        EventEnvelope {
            event_id,
            event_type: Self::EVENT_TYPE.to_owned(),
            occurred_at,
            data: self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pay_result_schema_is_stable() {
        let ev = PayResultV1 {
            pay_no: PayNo::from(7),
            order_id: OrderId::from(8),
            user_id: UserId::parse("s1").unwrap(),
            biz_type: BizType::Course,
            biz_id: "9".into(),
            channel: PayChannel::Wechat,
            amount_fen: Fen::new(10099).unwrap(),
            channel_trade_no: "4200001".into(),
            paid_at: "2026-01-02T03:04:05Z".parse().unwrap(),
        }
        .into_envelope(EventId::from(1), "2026-01-02T03:04:06Z".parse().unwrap());
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "event_id": "1",
                "event_type": "pay.result.v1",
                "occurred_at": "2026-01-02T03:04:06Z",
                "data": {
                    "pay_no": "7", "order_id": "8", "user_id": "s1",
                    "biz_type": "course", "biz_id": "9", "channel": "wechat",
                    "amount_fen": 10099, "channel_trade_no": "4200001",
                    "paid_at": "2026-01-02T03:04:05Z"
                }
            })
        );
        let back: EventEnvelope<PayResultV1> = serde_json::from_value(json).unwrap();
        assert_eq!(back, ev);
    }
}
