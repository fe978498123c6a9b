//! The payment gateway's internal API (service credential), for the order service: create
//! (or reuse) a payment attempt, ask the channel about an order's attempts (`sync`), close
//! an expired order's attempts (`close`), and refund the attempt that paid an order.

use chrono::{DateTime, SecondsFormat, Utc};
use paywire_domain::{
    BizType, Fen, OrderId, PayChannel, PayNo, PaymentStatus, RefundNo, RefundReason, RefundStatus,
    UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The header that carries a refund request's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// `POST /internal/payments` body. The gateway checks it further (positive amount,
/// a description the channels accept, a business id that fits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount_fen: Fen,
    pub channel: PayChannel,
    /// What the payer sees at the channel (WeChat Pay allows 127 characters).
    #[schema(min_length = 1, max_length = 127)]
    pub description: String,
    pub biz_type: BizType,
    /// The business record the order pays for (a choose-course id for courses).
    #[schema(min_length = 1, max_length = 64)]
    pub biz_id: String,
}

/// A payment attempt: what the student pays (a QR code for `code_url`). Answer of
/// `POST /internal/payments` (201 new, 200 a live attempt reused) and
/// `GET /internal/payments/{pay_no}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentAttempt {
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub channel: PayChannel,
    /// QR code content for the payer; `null` until the channel answered with a code.
    #[schema(examples("weixin://wxpay/bizpayurl?pr=abc"))]
    pub code_url: Option<String>,
    /// Whole seconds, as the channel was told.
    #[serde(serialize_with = "rfc3339_seconds")]
    pub expires_at: DateTime<Utc>,
    pub status: PaymentStatus,
}

fn rfc3339_seconds<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Answer of `POST /internal/orders/{order_id}/payments/sync`: whether the channel says an
/// attempt of the order is paid (the gateway then records it exactly as if its callback
/// had come).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncResult {
    pub order_id: OrderId,
    pub paid: bool,
    /// The attempt that paid the order, when `paid`.
    pub pay_no: Option<PayNo>,
}

/// How `POST /internal/orders/{order_id}/payments/close` settled the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseOutcome {
    /// An attempt turned out paid: the gateway recorded it and emits the pay result.
    Paid,
    /// Every attempt is closed at its channel (or there was none); none can be paid now.
    Closed,
}

/// Answer of `POST /internal/orders/{order_id}/payments/close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CloseResult {
    pub order_id: OrderId,
    pub outcome: CloseOutcome,
    /// The attempt that paid the order, when `outcome` is `paid`.
    pub pay_no: Option<PayNo>,
}

/// `POST /internal/refunds` body. The idempotency key travels as the `Idempotency-Key`
/// header or as `request_id` (both, if given, must agree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestRefund {
    pub order_id: OrderId,
    pub pay_no: PayNo,
    pub amount_fen: Fen,
    /// What the payer sees at the channel; absent or empty → a generic text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 80)]
    pub reason: Option<String>,
    /// The idempotency key, when it does not come as the `Idempotency-Key` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub request_id: Option<String>,
}

/// A refund as the gateway reports it: answer of `POST /internal/refunds` (201 new, 200
/// the refund of an earlier request with the same key) and `GET /internal/refunds/{refund_no}`.
/// `status` is final when `succeeded` or `failed` (then `refund.result.v1` follows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundView {
    pub refund_no: RefundNo,
    pub pay_no: PayNo,
    pub order_id: OrderId,
    pub channel: PayChannel,
    pub amount_fen: Fen,
    pub reason: RefundReason,
    pub status: RefundStatus,
    /// The caller's idempotency key (requested refunds only).
    pub request_id: Option<String>,
    /// When the channel completed the refund.
    pub refunded_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_wire;

    #[test]
    fn create_payment_keeps_its_wire_format_and_refuses_extra_fields() {
        let wire = r#"{"order_id":"8","user_id":"s1","amount_fen":19900,"channel":"alipay","description":"Rust 入门","biz_type":"course","biz_id":"11"}"#;
        assert_wire(
            &CreatePayment {
                order_id: OrderId::from(8),
                user_id: UserId::parse("s1").unwrap(),
                amount_fen: Fen::new(19900).unwrap(),
                channel: PayChannel::Alipay,
                description: "Rust 入门".into(),
                biz_type: BizType::Course,
                biz_id: "11".into(),
            },
            wire,
        );
        let extra = wire.replace(r#""biz_id":"11""#, r#""biz_id":"11","total_fen":1"#);
        assert!(serde_json::from_str::<CreatePayment>(&extra).is_err());
        let float = wire.replace("19900", "199.00");
        assert!(serde_json::from_str::<CreatePayment>(&float).is_err());
    }

    #[test]
    fn payment_attempt_keeps_its_wire_format_in_whole_seconds() {
        let attempt = PaymentAttempt {
            pay_no: PayNo::from(7),
            order_id: OrderId::from(8),
            channel: PayChannel::Wechat,
            code_url: Some("weixin://wxpay/bizpayurl?pr=abc".into()),
            expires_at: "2026-01-02T03:34:05Z".parse().unwrap(),
            status: PaymentStatus::Unpaid,
        };
        assert_wire(
            &attempt,
            r#"{"pay_no":"7","order_id":"8","channel":"wechat","code_url":"weixin://wxpay/bizpayurl?pr=abc","expires_at":"2026-01-02T03:34:05Z","status":"unpaid"}"#,
        );
        let no_code = PaymentAttempt {
            code_url: None,
            expires_at: "2026-01-02T03:34:05.999Z".parse().unwrap(),
            ..attempt
        };
        assert_eq!(
            serde_json::to_string(&no_code).unwrap(),
            r#"{"pay_no":"7","order_id":"8","channel":"wechat","code_url":null,"expires_at":"2026-01-02T03:34:05Z","status":"unpaid"}"#
        );
    }

    #[test]
    fn sync_and_close_results_keep_their_wire_format() {
        assert_wire(
            &SyncResult {
                order_id: OrderId::from(8),
                paid: true,
                pay_no: Some(PayNo::from(7)),
            },
            r#"{"order_id":"8","paid":true,"pay_no":"7"}"#,
        );
        assert_wire(
            &SyncResult {
                order_id: OrderId::from(8),
                paid: false,
                pay_no: None,
            },
            r#"{"order_id":"8","paid":false,"pay_no":null}"#,
        );
        assert_wire(
            &CloseResult {
                order_id: OrderId::from(8),
                outcome: CloseOutcome::Paid,
                pay_no: Some(PayNo::from(7)),
            },
            r#"{"order_id":"8","outcome":"paid","pay_no":"7"}"#,
        );
        assert_wire(
            &CloseResult {
                order_id: OrderId::from(8),
                outcome: CloseOutcome::Closed,
                pay_no: None,
            },
            r#"{"order_id":"8","outcome":"closed","pay_no":null}"#,
        );
        assert!(
            serde_json::from_str::<CloseResult>(r#"{"order_id":"8","outcome":"open"}"#).is_err()
        );
    }

    #[test]
    fn request_refund_keeps_its_wire_format_with_optional_fields() {
        let full = RequestRefund {
            order_id: OrderId::from(8),
            pay_no: PayNo::from(7),
            amount_fen: Fen::new(19900).unwrap(),
            reason: Some("订单退款".into()),
            request_id: None,
        };
        // What the order service sends (the key goes in the header).
        assert_wire(
            &full,
            r#"{"order_id":"8","pay_no":"7","amount_fen":19900,"reason":"订单退款"}"#,
        );
        assert_wire(
            &RequestRefund {
                reason: None,
                request_id: Some("k1".into()),
                ..full.clone()
            },
            r#"{"order_id":"8","pay_no":"7","amount_fen":19900,"request_id":"k1"}"#,
        );
        // Explicit nulls are accepted as absent; unknown fields are refused.
        let nulls: RequestRefund = serde_json::from_str(
            r#"{"order_id":"8","pay_no":"7","amount_fen":19900,"reason":null,"request_id":null}"#,
        )
        .unwrap();
        assert_eq!((nulls.reason, nulls.request_id), (None, None));
        assert!(
            serde_json::from_str::<RequestRefund>(
                r#"{"order_id":"8","pay_no":"7","amount_fen":19900,"refund_all":true}"#
            )
            .is_err()
        );
    }

    #[test]
    fn refund_view_keeps_its_wire_format() {
        let pending = RefundView {
            refund_no: RefundNo::from(5),
            pay_no: PayNo::from(7),
            order_id: OrderId::from(8),
            channel: PayChannel::Wechat,
            amount_fen: Fen::new(19900).unwrap(),
            reason: RefundReason::Requested,
            status: RefundStatus::Pending,
            request_id: Some("order-8-full-refund".into()),
            refunded_at: None,
        };
        assert_wire(
            &pending,
            r#"{"refund_no":"5","pay_no":"7","order_id":"8","channel":"wechat","amount_fen":19900,"reason":"requested","status":"pending","request_id":"order-8-full-refund","refunded_at":null}"#,
        );
        assert_wire(
            &RefundView {
                reason: RefundReason::OrderClosed,
                status: RefundStatus::Succeeded,
                request_id: None,
                refunded_at: Some("2026-01-02T03:04:05Z".parse().unwrap()),
                ..pending
            },
            r#"{"refund_no":"5","pay_no":"7","order_id":"8","channel":"wechat","amount_fen":19900,"reason":"order_closed","status":"succeeded","request_id":null,"refunded_at":"2026-01-02T03:04:05Z"}"#,
        );
    }
}
