//! The sandbox's one error type, mapped to HTTP in one place.
//!
//! WeChat Pay API errors are answered in WeChat's own shape (`{"code","message"}`),
//! because the sandbox plays WeChat Pay; the sandbox's own API (wallet, inspection)
//! answers with Paywire's `ErrorBody`.

use actix_web::http::StatusCode;
use paywire_platform::api_error::{ApiError, Reply};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    // ---- WeChat Pay API v3 (WeChat's error shape) ----
    /// The merchant's `Authorization` is missing, malformed, stale or does not verify.
    /// The reason is for our logs only: WeChat answers a fixed message.
    #[error("signature rejected: {0}")]
    SignError(String),
    #[error("{0}")]
    ParamError(String),
    #[error("appid and mchid are not bound")]
    AppidMchidNotMatch,
    #[error("out_trade_no already used with other parameters")]
    OutTradeNoUsed,
    #[error("order closed")]
    OrderClosed,
    #[error("order does not exist")]
    OrderNotExist,
    /// Closing a paid order. APIv3's answer is not documented (`ORDERPAID` is the APIv2
    /// spelling); we answer `400 TRADE_ERROR 订单已支付` so callers see a business error
    /// they must resolve by querying.
    #[error("order already paid")]
    OrderPaid,
    #[error("no such WeChat Pay API")]
    WechatNotFound,
    #[error("system error: {0}")]
    WechatSystem(String),
    /// Refunding a trade that is not paid (NOTPAY, CLOSED).
    #[error("trade cannot be refunded: {0}")]
    RefundNotAllowed(&'static str),
    #[error("refund exceeds what is left to refund")]
    RefundExceeds,
    #[error("out_refund_no already used with other parameters")]
    OutRefundNoUsed,
    /// A bill asked for a day without any trade.
    #[error("no statement for that day")]
    NoStatement,

    // ---- Alipay OpenAPI (answered inside Alipay's signed envelope, HTTP 200) ----
    /// `40001 Missing Required Arguments` in `error_response`.
    #[error("alipay: missing {1}")]
    AlipayMissing(&'static str, String),
    /// `40002 Invalid Arguments` (signature, app_id, method, biz_content).
    #[error("alipay: invalid argument {0}: {1}")]
    AlipayInvalid(&'static str, String),
    /// `40004 Business Failed` with an `ACQ.*` sub code.
    #[error("alipay: business failure {0}")]
    AlipayBusiness(&'static str, &'static str),
    /// `20000 Service Currently Unavailable` (also the injected 5xx).
    #[error("alipay: system error: {0}")]
    AlipaySystem(String),

    // ---- the sandbox's own API (Paywire's ErrorBody) ----
    #[error("no trade has this code")]
    UnknownCode,
    #[error("the trade is closed and cannot be paid")]
    TradeClosed,
    #[error("the trade expired and cannot be paid")]
    TradeExpired,
    #[error("the trade is already paid")]
    AlreadyPaid,
    #[error("invalid fault spec: {0}")]
    InvalidFaultSpec(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Alipay's error fields (`code`, `msg`, `sub_code`, `sub_msg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlipayErrorFields {
    pub code: &'static str,
    pub msg: &'static str,
    pub sub_code: &'static str,
    pub sub_msg: String,
}

/// WeChat Pay's error body.
#[derive(Debug, Serialize)]
struct WechatErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl SandboxError {
    /// Alipay's error fields, for the Alipay variants.
    pub fn alipay_fields(&self) -> AlipayErrorFields {
        let fields = |code, msg, sub_code, sub_msg: String| AlipayErrorFields {
            code,
            msg,
            sub_code,
            sub_msg,
        };
        match self {
            SandboxError::AlipayMissing(sub, what) => fields(
                "40001",
                "Missing Required Arguments",
                sub,
                format!("缺少必选参数{what}"),
            ),
            SandboxError::AlipayInvalid(sub, why) => {
                fields("40002", "Invalid Arguments", sub, why.clone())
            }
            SandboxError::AlipayBusiness(sub, msg) => {
                fields("40004", "Business Failed", sub, (*msg).to_owned())
            }
            _ => fields(
                "20000",
                "Service Currently Unavailable",
                "isp.unknow-error",
                "系统繁忙".to_owned(),
            ),
        }
    }
}

/// WeChat Pay API errors answer in WeChat's shape; the sandbox's own API with `ErrorBody`.
/// Server errors show their message: the sandbox is a test tool, not a product.
impl ApiError for SandboxError {
    fn reply(&self) -> Reply {
        use StatusCode as S;
        let wechat = |status, code: &'static str, message: &str| {
            Reply::new(status, code).body(WechatErrorBody { code, message })
        };
        match self {
            SandboxError::SignError(_) => wechat(S::UNAUTHORIZED, "SIGN_ERROR", "签名错误"),
            SandboxError::ParamError(m) => wechat(S::BAD_REQUEST, "PARAM_ERROR", m),
            SandboxError::AppidMchidNotMatch => wechat(
                S::BAD_REQUEST,
                "APPID_MCHID_NOT_MATCH",
                "AppID和mch_id不匹配",
            ),
            SandboxError::OutTradeNoUsed => {
                wechat(S::FORBIDDEN, "OUT_TRADE_NO_USED", "商户订单号重复")
            }
            SandboxError::OrderClosed => wechat(S::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭"),
            SandboxError::OrderNotExist => wechat(S::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
            SandboxError::OrderPaid => wechat(S::BAD_REQUEST, "TRADE_ERROR", "订单已支付"),
            SandboxError::WechatNotFound => {
                wechat(S::NOT_FOUND, "RESOURCE_NOT_EXISTS", "请求的资源不存在")
            }
            SandboxError::WechatSystem(_) => {
                wechat(S::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "系统错误")
            }
            SandboxError::RefundNotAllowed(why) => wechat(S::BAD_REQUEST, "INVALID_REQUEST", why),
            SandboxError::RefundExceeds => wechat(
                S::BAD_REQUEST,
                "INVALID_REQUEST",
                "申请退款金额超过订单可退金额",
            ),
            SandboxError::OutRefundNoUsed => {
                wechat(S::BAD_REQUEST, "INVALID_REQUEST", "商户退款单号已被使用")
            }
            SandboxError::NoStatement => {
                wechat(S::BAD_REQUEST, "NO_STATEMENT_EXIST", "账单文件不存在")
            }
            // Alipay errors are answered inside Alipay's signed envelope; these arms only
            // serve a handler that lets one escape.
            SandboxError::AlipayMissing(..)
            | SandboxError::AlipayInvalid(..)
            | SandboxError::AlipayBusiness(..) => Reply::new(S::BAD_REQUEST, "internal").detail(),
            SandboxError::AlipaySystem(_) | SandboxError::Internal(_) => {
                Reply::new(S::INTERNAL_SERVER_ERROR, "internal").detail()
            }
            SandboxError::InvalidFaultSpec(_) => Reply::new(S::BAD_REQUEST, "invalid_fault_spec"),
            SandboxError::UnknownCode => Reply::new(S::NOT_FOUND, "unknown_code"),
            SandboxError::TradeClosed => Reply::new(S::CONFLICT, "trade_closed"),
            SandboxError::TradeExpired => Reply::new(S::CONFLICT, "trade_expired"),
            SandboxError::AlreadyPaid => Reply::new(S::CONFLICT, "already_paid"),
        }
    }
}
paywire_platform::api_error!(SandboxError);
