//! Serde types of the WeChat Pay v3 wire format (JSON), shared with the sandbox.

use serde::{Deserialize, Serialize};

/// `POST /v3/pay/transactions/native` request body. Field order is the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativePrepayRequest {
    pub appid: String,
    pub mchid: String,
    pub description: String,
    pub out_trade_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    pub notify_url: String,
    pub amount: PrepayAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepayAmount {
    /// Fen.
    pub total: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `POST /v3/pay/transactions/native` 200 response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativePrepayResponse {
    pub code_url: String,
}

/// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRequest {
    pub mchid: String,
}

/// `trade_state` of a transaction (reference §1.5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TradeState {
    Success,
    Refund,
    NotPay,
    Closed,
    Revoked,
    UserPaying,
    PayError,
}

impl TradeState {
    pub const ALL: &'static [TradeState] = &[
        TradeState::Success,
        TradeState::Refund,
        TradeState::NotPay,
        TradeState::Closed,
        TradeState::Revoked,
        TradeState::UserPaying,
        TradeState::PayError,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::NotPay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::UserPaying => "USERPAYING",
            TradeState::PayError => "PAYERROR",
        }
    }
}

/// Query response and decrypted `transaction` notification resource. Unpaid
/// transactions lack most fields, hence the options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    pub trade_state: TradeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_state_desc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// RFC 3339 with offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAmount {
    /// Order total in fen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// What the payer paid in fen (after coupons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_currency: Option<String>,
}

/// WeChat Pay v3 notification body (callback envelope); `resource` is AEAD_AES_256_GCM
/// encrypted with the APIv3 key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WechatNotification)]
pub struct NotificationEnvelope {
    pub id: String,
    pub create_time: String,
    pub resource_type: String,
    pub event_type: String,
    #[serde(default)]
    pub summary: String,
    pub resource: EncryptedResource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WechatEncryptedResource)]
pub struct EncryptedResource {
    pub original_type: String,
    pub algorithm: String,
    pub ciphertext: String,
    /// May be empty (reference §1.4).
    #[serde(default)]
    pub associated_data: String,
    pub nonce: String,
}

/// Body of every non-2xx response (WeChat Pay's, and ours to its notifications).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = WechatApiError)]
pub struct ApiError {
    #[schema(examples("FAIL"))]
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// `POST /v3/refund/domestic/refunds` request body. Field order is the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    pub out_refund_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    pub amount: RefundRequestAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequestAmount {
    /// Fen to give back.
    pub refund: i64,
    /// The payment's total in fen.
    pub total: i64,
    pub currency: String,
}

/// `status` of a refund (reference §1.5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefundStatus {
    Success,
    Closed,
    Processing,
    Abnormal,
}

impl RefundStatus {
    pub const ALL: &'static [RefundStatus] = &[
        RefundStatus::Success,
        RefundStatus::Closed,
        RefundStatus::Processing,
        RefundStatus::Abnormal,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Success => "SUCCESS",
            RefundStatus::Closed => "CLOSED",
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Abnormal => "ABNORMAL",
        }
    }
}

/// Refund create and refund query response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    pub out_refund_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_received_account: Option<String>,
    /// RFC 3339; present once `SUCCESS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<String>,
    pub status: RefundStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funds_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<RefundAmount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_refund: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Decrypted `refund` notification resource (`REFUND.*` events). Unlike the API
/// response the state is called `refund_status` and `mchid` is included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundNotice {
    pub mchid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    pub out_trade_no: String,
    pub refund_id: String,
    pub out_refund_no: String,
    pub refund_status: RefundStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_received_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<RefundAmount>,
}

/// Event type of a successful payment notification.
pub const EVENT_TRANSACTION_SUCCESS: &str = "TRANSACTION.SUCCESS";
/// Refund notification event types.
pub const EVENT_REFUND_SUCCESS: &str = "REFUND.SUCCESS";
pub const EVENT_REFUND_ABNORMAL: &str = "REFUND.ABNORMAL";
pub const EVENT_REFUND_CLOSED: &str = "REFUND.CLOSED";
/// `resource.original_type` of payment and refund notifications.
pub const ORIGINAL_TYPE_TRANSACTION: &str = "transaction";
pub const ORIGINAL_TYPE_REFUND: &str = "refund";
/// The only resource algorithm WeChat Pay uses.
pub const ALGORITHM_AEAD_AES_256_GCM: &str = "AEAD_AES_256_GCM";
pub const CURRENCY_CNY: &str = "CNY";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepay_request_serializes_in_documented_order() {
        let req = NativePrepayRequest {
            appid: "wx1".into(),
            mchid: "19".into(),
            description: "课程".into(),
            out_trade_no: "123".into(),
            time_expire: Some("2026-01-01T08:00:00+08:00".into()),
            attach: None,
            notify_url: "https://x/n".into(),
            amount: PrepayAmount {
                total: 1990,
                currency: Some(CURRENCY_CNY.into()),
            },
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"appid":"wx1","mchid":"19","description":"课程","out_trade_no":"123","time_expire":"2026-01-01T08:00:00+08:00","notify_url":"https://x/n","amount":{"total":1990,"currency":"CNY"}}"#
        );
    }

    #[test]
    fn trade_state_names_match_the_wire() {
        for state in TradeState::ALL {
            let json = serde_json::to_string(state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<TradeState>(&json).unwrap(), *state);
        }
        assert!(serde_json::from_str::<TradeState>("\"ACCEPT\"").is_err());
    }

    #[test]
    fn unpaid_query_response_with_few_fields_parses() {
        // Shape of a real NOTPAY answer: no transaction_id, no success_time, no payer.
        let json = r#"{"amount":{"payer_currency":"CNY","total":1},"appid":"wx1","mchid":"19","out_trade_no":"1","promotion_detail":[],"scene_info":{"device_id":""},"trade_state":"NOTPAY","trade_state_desc":"订单未支付"}"#;
        let tx: Transaction = serde_json::from_str(json).unwrap();
        assert_eq!(tx.trade_state, TradeState::NotPay);
        assert_eq!(tx.transaction_id, None);
        assert_eq!(tx.amount.unwrap().total, Some(1));
    }

    #[test]
    fn refund_request_serializes_in_documented_order() {
        let req = RefundRequest {
            transaction_id: None,
            out_trade_no: Some("123".into()),
            out_refund_no: "456".into(),
            reason: Some("重复支付".into()),
            notify_url: Some("https://x/r".into()),
            amount: RefundRequestAmount {
                refund: 100,
                total: 1990,
                currency: CURRENCY_CNY.into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"out_trade_no":"123","out_refund_no":"456","reason":"重复支付","notify_url":"https://x/r","amount":{"refund":100,"total":1990,"currency":"CNY"}}"#
        );
    }

    #[test]
    fn refund_status_names_match_the_wire() {
        for status in RefundStatus::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(
                serde_json::from_str::<RefundStatus>(&json).unwrap(),
                *status
            );
        }
        assert!(serde_json::from_str::<RefundStatus>("\"REFUND\"").is_err());
    }

    #[test]
    fn documented_refund_response_and_notice_parse() {
        // Shapes of the official samples (wechatpay-skills CreateRefund / refund notify).
        let refund: Refund = serde_json::from_str(
            r#"{"refund_id":"50000000382019052709732678859","out_refund_no":"1217752501201407033233368018","transaction_id":"1217752501201407033233368018","out_trade_no":"1217752501201407033233368018","channel":"ORIGINAL","user_received_account":"招商银行信用卡0403","success_time":"2020-12-01T16:18:12+08:00","create_time":"2020-12-01T16:18:12+08:00","status":"SUCCESS","funds_account":"UNSETTLED","amount":{"total":100,"refund":100,"from":[],"payer_total":90,"payer_refund":90,"settlement_refund":100,"settlement_total":100,"discount_refund":10,"currency":"CNY"},"promotion_detail":[]}"#,
        )
        .unwrap();
        assert_eq!(refund.status, RefundStatus::Success);
        assert_eq!(refund.amount.unwrap().refund, Some(100));
        let notice: RefundNotice = serde_json::from_str(
            r#"{"mchid":"1900000100","transaction_id":"1008450740201411110005820873","out_trade_no":"20150806125346","refund_id":"50200207182018070300011301001","out_refund_no":"7752501201407033233368018","refund_status":"SUCCESS","success_time":"2018-06-08T10:34:56+08:00","user_received_account":"招商银行信用卡0403","amount":{"total":999,"refund":999,"payer_total":999,"payer_refund":999}}"#,
        )
        .unwrap();
        assert_eq!(notice.refund_status, RefundStatus::Success);
        assert_eq!(notice.out_refund_no, "7752501201407033233368018");
    }

    #[test]
    fn envelope_and_error_parse() {
        let env: NotificationEnvelope = serde_json::from_str(
            r#"{"id":"EV-1","create_time":"2015-05-20T13:29:35+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"AA==","associated_data":"","nonce":"abcdefghijkl"}}"#,
        )
        .unwrap();
        assert_eq!(env.event_type, EVENT_TRANSACTION_SUCCESS);
        assert_eq!(env.resource.associated_data, "");
        let err: ApiError = serde_json::from_str(
            r#"{"code":"PARAM_ERROR","message":"bad","detail":{"field":"x"}}"#,
        )
        .unwrap();
        assert_eq!(err.code, "PARAM_ERROR");
        assert!(err.detail.is_some());
    }
}
