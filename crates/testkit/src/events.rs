//! Events as the consumers' unit tests build them.

use paywire_contracts::PayResultV1;
use paywire_domain::{BizType, Fen, OrderId, PayChannel, PayNo, UserId};

/// A course's pay result: attempt 7 paid order 8 of student `s1` for choice `9`, 100 fen
/// by WeChat Pay.
pub fn pay_result() -> PayResultV1 {
    PayResultV1 {
        pay_no: PayNo::from(7),
        order_id: OrderId::from(8),
        user_id: UserId::parse("s1").unwrap(),
        biz_type: BizType::Course,
        biz_id: "9".into(),
        channel: PayChannel::Wechat,
        amount_fen: Fen::new(100).unwrap(),
        channel_trade_no: "t".into(),
        paid_at: "2026-11-22T10:00:00Z".parse().unwrap(),
    }
}
