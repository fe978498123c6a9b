//! The sandbox's one error type, mapped to HTTP in one place.
//!
//! WeChat Pay API errors are answered in WeChat's own shape (`{"code","message"}`),
//! because the sandbox plays WeChat Pay; the sandbox's own API (wallet, inspection)
//! answers with Paywire's `ErrorBody`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use paywire_platform::http::ErrorBody;
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
    /// `(code, message)` for WeChat API errors; `None` for the sandbox's own errors.
    fn wechat_code(&self) -> Option<(&'static str, String)> {
        let fixed = |code: &'static str, message: &str| Some((code, message.to_owned()));
        match self {
            SandboxError::SignError(_) => fixed("SIGN_ERROR", "签名错误"),
            SandboxError::ParamError(m) => Some(("PARAM_ERROR", m.clone())),
            SandboxError::AppidMchidNotMatch => {
                fixed("APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
            }
            SandboxError::OutTradeNoUsed => fixed("OUT_TRADE_NO_USED", "商户订单号重复"),
            SandboxError::OrderClosed => fixed("ORDER_CLOSED", "订单已关闭"),
            SandboxError::OrderNotExist => fixed("ORDER_NOT_EXIST", "订单不存在"),
            SandboxError::OrderPaid => fixed("TRADE_ERROR", "订单已支付"),
            SandboxError::WechatNotFound => fixed("RESOURCE_NOT_EXISTS", "请求的资源不存在"),
            SandboxError::WechatSystem(_) => fixed("SYSTEM_ERROR", "系统错误"),
            SandboxError::RefundNotAllowed(why) => Some(("INVALID_REQUEST", (*why).to_owned())),
            SandboxError::RefundExceeds => fixed("INVALID_REQUEST", "申请退款金额超过订单可退金额"),
            SandboxError::OutRefundNoUsed => fixed("INVALID_REQUEST", "商户退款单号已被使用"),
            _ => None,
        }
    }

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

    fn sandbox_code(&self) -> &'static str {
        match self {
            SandboxError::InvalidFaultSpec(_) => "invalid_fault_spec",
            SandboxError::UnknownCode => "unknown_code",
            SandboxError::TradeClosed => "trade_closed",
            SandboxError::TradeExpired => "trade_expired",
            SandboxError::AlreadyPaid => "already_paid",
            _ => "internal",
        }
    }
}

impl ResponseError for SandboxError {
    fn status_code(&self) -> StatusCode {
        match self {
            SandboxError::SignError(_) => StatusCode::UNAUTHORIZED,
            SandboxError::ParamError(_)
            | SandboxError::RefundNotAllowed(_)
            | SandboxError::RefundExceeds
            | SandboxError::OutRefundNoUsed
            | SandboxError::InvalidFaultSpec(_)
            | SandboxError::AlipayMissing(..)
            | SandboxError::AlipayInvalid(..)
            | SandboxError::AlipayBusiness(..)
            | SandboxError::AppidMchidNotMatch
            | SandboxError::OrderClosed
            | SandboxError::OrderPaid => StatusCode::BAD_REQUEST,
            SandboxError::OutTradeNoUsed => StatusCode::FORBIDDEN,
            SandboxError::OrderNotExist
            | SandboxError::WechatNotFound
            | SandboxError::UnknownCode => StatusCode::NOT_FOUND,
            SandboxError::TradeClosed | SandboxError::TradeExpired | SandboxError::AlreadyPaid => {
                StatusCode::CONFLICT
            }
            SandboxError::WechatSystem(_)
            | SandboxError::AlipaySystem(_)
            | SandboxError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() || matches!(self, SandboxError::SignError(_)) {
            tracing::warn!(error = %self, "request refused");
        }
        let mut resp = HttpResponse::build(status);
        match self.wechat_code() {
            Some((code, message)) => resp.json(WechatErrorBody {
                code,
                message: &message,
            }),
            None => resp.json(ErrorBody::new(self.sandbox_code(), self.to_string())),
        }
    }
}
