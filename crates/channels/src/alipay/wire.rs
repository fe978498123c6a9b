//! Serde types of the Alipay `gateway.do` wire format, shared with the sandbox. Amounts
//! are decimal-yuan strings (`"19.90"`), times `yyyy-MM-dd HH:mm:ss` in Beijing time.

use serde::{Deserialize, Serialize};

pub const METHOD_PRECREATE: &str = "alipay.trade.precreate";
pub const METHOD_PAGE_PAY: &str = "alipay.trade.page.pay";
pub const METHOD_WAP_PAY: &str = "alipay.trade.wap.pay";
pub const METHOD_QUERY: &str = "alipay.trade.query";
pub const METHOD_CLOSE: &str = "alipay.trade.close";
pub const METHOD_REFUND: &str = "alipay.trade.refund";
pub const METHOD_REFUND_QUERY: &str = "alipay.trade.fastpay.refund.query";

pub const PRODUCT_FACE_TO_FACE: &str = "FACE_TO_FACE_PAYMENT";
pub const PRODUCT_PAGE_PAY: &str = "FAST_INSTANT_TRADE_PAY";
pub const PRODUCT_WAP_PAY: &str = "QUICK_WAP_WAY";

/// `code` of a successful call.
pub const CODE_SUCCESS: &str = "10000";
/// `code` of "service unavailable": retry.
pub const CODE_UNAVAILABLE: &str = "20000";
/// `code` of a business failure (details in `sub_code`).
pub const CODE_BUSINESS_FAILED: &str = "40004";

pub const SUB_TRADE_NOT_EXIST: &str = "ACQ.TRADE_NOT_EXIST";
pub const SUB_SYSTEM_ERROR: &str = "ACQ.SYSTEM_ERROR";
pub const SUB_TRADE_HAS_SUCCESS: &str = "ACQ.TRADE_HAS_SUCCESS";
pub const SUB_TRADE_HAS_CLOSE: &str = "ACQ.TRADE_HAS_CLOSE";
pub const SUB_TRADE_HAS_FINISHED: &str = "ACQ.TRADE_HAS_FINISHED";

/// `refund_status` of a successful refund (refund query).
pub const REFUND_SUCCESS: &str = "REFUND_SUCCESS";
/// `fund_change` when this refund call moved money.
pub const FUND_CHANGE_YES: &str = "Y";
/// Notification type of trade notifications.
pub const NOTIFY_TYPE_TRADE_STATUS_SYNC: &str = "trade_status_sync";

/// `biz_content` of `alipay.trade.precreate`, `page.pay` and `wap.pay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeCreateBiz {
    pub out_trade_no: String,
    pub total_amount: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quit_url: Option<String>,
}

/// `biz_content` of `alipay.trade.query` and `alipay.trade.close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRefBiz {
    pub out_trade_no: String,
}

/// `biz_content` of `alipay.trade.refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundBiz {
    pub out_trade_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    pub refund_amount: String,
    pub out_request_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<String>,
}

/// `biz_content` of `alipay.trade.fastpay.refund.query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundQueryBiz {
    pub out_trade_no: String,
    pub out_request_no: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_options: Vec<String>,
}

/// The fields every `*_response` (and `error_response`) carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseStatus {
    pub code: String,
    #[serde(default)]
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_msg: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecreateResponse {
    pub out_trade_no: String,
    pub qr_code: String,
}

/// `trade_status` (reference §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeStatus {
    WaitBuyerPay,
    TradeClosed,
    TradeSuccess,
    TradeFinished,
}

impl TradeStatus {
    pub const ALL: &'static [TradeStatus] = &[
        TradeStatus::WaitBuyerPay,
        TradeStatus::TradeClosed,
        TradeStatus::TradeSuccess,
        TradeStatus::TradeFinished,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::TradeClosed => "TRADE_CLOSED",
            TradeStatus::TradeSuccess => "TRADE_SUCCESS",
            TradeStatus::TradeFinished => "TRADE_FINISHED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

/// `alipay.trade.query` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeQueryResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_logon_id: Option<String>,
    pub trade_status: TradeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_pay_amount: Option<String>,
    /// Payment time; present once paid (also on a fully refunded, closed trade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_pay_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_user_id: Option<String>,
}

/// `alipay.trade.close` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
}

/// `alipay.trade.refund` success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_logon_id: Option<String>,
    /// `Y` when this call moved money; `N` also for a repeated, already done refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fund_change: Option<String>,
    /// Cumulative refunded amount of the trade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_fee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmt_refund_pay: Option<String>,
}

/// `alipay.trade.fastpay.refund.query` success body. An unknown refund comes back as a
/// success without `out_request_no`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundQueryResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_request_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmt_refund_pay: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_status_names_match_the_wire() {
        for status in TradeStatus::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<TradeStatus>(&json).unwrap(), *status);
            assert_eq!(TradeStatus::parse(status.as_str()), Some(*status));
        }
        assert!(serde_json::from_str::<TradeStatus>("\"TRADE_PENDING\"").is_err());
        assert_eq!(TradeStatus::parse("trade_success"), None);
    }

    #[test]
    fn biz_content_serializes_in_field_order_without_absent_options() {
        let biz = TradeCreateBiz {
            out_trade_no: "7301".into(),
            total_amount: "19.90".into(),
            subject: "Rust 入门".into(),
            product_code: None,
            time_expire: Some("2026-03-01 10:30:00".into()),
            body: None,
            quit_url: None,
        };
        assert_eq!(
            serde_json::to_string(&biz).unwrap(),
            r#"{"out_trade_no":"7301","total_amount":"19.90","subject":"Rust 入门","time_expire":"2026-03-01 10:30:00"}"#
        );
        let query = RefundQueryBiz {
            out_trade_no: "1".into(),
            out_request_no: "2".into(),
            query_options: vec![],
        };
        assert_eq!(
            serde_json::to_string(&query).unwrap(),
            r#"{"out_trade_no":"1","out_request_no":"2"}"#
        );
    }

    #[test]
    fn documented_query_response_parses() {
        // Shape of the AlipayTradeQueryResponse documentation sample.
        let r: TradeQueryResponse = serde_json::from_str(
            r#"{"code":"10000","msg":"Success","trade_no":"2013112011001004330000121536","out_trade_no":"6823789339978248","buyer_logon_id":"159****5620","trade_status":"TRADE_SUCCESS","total_amount":"88.88","receipt_amount":"15.25","buyer_pay_amount":"8.88","send_pay_date":"2014-11-27 15:45:57","buyer_user_id":"2088101117955611","fund_bill_list":[{"fund_channel":"ALIPAYACCOUNT","amount":"10.00"}]}"#,
        )
        .unwrap();
        assert_eq!(r.trade_status, TradeStatus::TradeSuccess);
        assert_eq!(r.total_amount.as_deref(), Some("88.88"));
        let s: ResponseStatus = serde_json::from_str(
            r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","buyer_pay_amount":"0.00"}"#,
        )
        .unwrap();
        assert_eq!(s.sub_code.as_deref(), Some(SUB_TRADE_NOT_EXIST));
    }
}
