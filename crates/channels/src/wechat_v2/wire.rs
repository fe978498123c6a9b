//! WeChat Pay API v2 wire values: paths, field values, error codes and the typed views of
//! verified answers (every value a string on the wire).

use serde::Deserialize;

pub const PATH_UNIFIED_ORDER: &str = "/pay/unifiedorder";
pub const PATH_ORDER_QUERY: &str = "/pay/orderquery";
pub const PATH_CLOSE_ORDER: &str = "/pay/closeorder";
/// Served only over mutual TLS with the merchant's API certificate.
pub const PATH_REFUND: &str = "/secapi/pay/refund";
pub const PATH_REFUND_QUERY: &str = "/pay/refundquery";

pub const SUCCESS: &str = "SUCCESS";
pub const FAIL: &str = "FAIL";
pub const TRADE_TYPE_NATIVE: &str = "NATIVE";
pub const FEE_TYPE_CNY: &str = "CNY";

// `err_code` values (result_code FAIL) this client tells apart.
pub const ERR_SYSTEMERROR: &str = "SYSTEMERROR";
pub const ERR_BIZERR_NEED_RETRY: &str = "BIZERR_NEED_RETRY";
pub const ERR_FREQUENCY_LIMITED: &str = "FREQUENCY_LIMITED";
pub const ERR_ORDERPAID: &str = "ORDERPAID";
pub const ERR_ORDERCLOSED: &str = "ORDERCLOSED";
pub const ERR_ORDERNOTEXIST: &str = "ORDERNOTEXIST";
pub const ERR_REFUNDNOTEXIST: &str = "REFUNDNOTEXIST";
pub const ERR_OUT_TRADE_NO_USED: &str = "OUT_TRADE_NO_USED";
pub const ERR_SIGNERROR: &str = "SIGNERROR";
pub const ERR_PARAM_ERROR: &str = "PARAM_ERROR";
pub const ERR_NOTENOUGH: &str = "NOTENOUGH";

/// `trade_state` of `pay/orderquery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SUCCESS" => Self::Success,
            "REFUND" => Self::Refund,
            "NOTPAY" => Self::NotPay,
            "CLOSED" => Self::Closed,
            "REVOKED" => Self::Revoked,
            "USERPAYING" => Self::UserPaying,
            "PAYERROR" => Self::PayError,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Refund => "REFUND",
            Self::NotPay => "NOTPAY",
            Self::Closed => "CLOSED",
            Self::Revoked => "REVOKED",
            Self::UserPaying => "USERPAYING",
            Self::PayError => "PAYERROR",
        }
    }
}

/// `refund_status` (`refund_status_$n` of the refund query, `refund_status` of the
/// refund notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    Success,
    RefundClose,
    Processing,
    /// The payer's account could not take the money back: a human has to act.
    Change,
}

impl RefundStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SUCCESS" => Self::Success,
            "REFUNDCLOSE" => Self::RefundClose,
            "PROCESSING" => Self::Processing,
            "CHANGE" => Self::Change,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::RefundClose => "REFUNDCLOSE",
            Self::Processing => "PROCESSING",
            Self::Change => "CHANGE",
        }
    }
}

/// `pay/unifiedorder`, business fields of a `SUCCESS`/`SUCCESS` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct UnifiedOrderAnswer {
    pub trade_type: Option<String>,
    pub prepay_id: Option<String>,
    pub code_url: Option<String>,
}

/// `pay/orderquery` and the payment notification: the trade's facts.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderFacts {
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub trade_state: Option<String>,
    pub total_fee: Option<String>,
    pub fee_type: Option<String>,
    pub time_end: Option<String>,
}

/// `secapi/pay/refund`, business fields of an accepted refund.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundAnswer {
    pub out_trade_no: Option<String>,
    pub out_refund_no: Option<String>,
    pub refund_id: Option<String>,
    pub refund_fee: Option<String>,
}

/// The decrypted `req_info` of a refund notification.
#[derive(Debug, Clone, Deserialize)]
pub struct RefundInfo {
    pub transaction_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub refund_id: Option<String>,
    pub out_refund_no: Option<String>,
    pub total_fee: Option<String>,
    pub refund_fee: Option<String>,
    pub refund_status: Option<String>,
    pub success_time: Option<String>,
}
