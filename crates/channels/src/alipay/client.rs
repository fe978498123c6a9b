//! `Alipay`: the Alipay OpenAPI channel over HTTP (`gateway.do`, form POST, RSA2).
//!
//! Every request is signed; every response is verified over its exact `*_response`
//! substring before anything in it is believed.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use paywire_domain::{PayChannel, PayNo, RefundNo};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::de::DeserializeOwned;

use super::bill::{
    self, BillDownloadUrlBiz, BillDownloadUrlResponse, METHOD_BILL_DOWNLOAD_URL, SUB_BILL_NOT_EXIST,
};
use super::sign::{SIGN_TYPE_RSA2, sign_params};
use super::transformers::{
    self, channel_refund_id, format_time, parse_amount, parse_time, status_error,
};
use super::verify::{self, response_key};
use super::wire::{
    CODE_SUCCESS, CloseResponse, FUND_CHANGE_YES, METHOD_CLOSE, METHOD_PAGE_PAY, METHOD_PRECREATE,
    METHOD_QUERY, METHOD_REFUND, METHOD_REFUND_QUERY, METHOD_WAP_PAY, PRODUCT_PAGE_PAY,
    PRODUCT_WAP_PAY, PrecreateResponse, REFUND_SUCCESS, RefundBiz, RefundQueryBiz,
    RefundQueryResponse, RefundResponse, ResponseStatus, SUB_TRADE_HAS_CLOSE,
    SUB_TRADE_HAS_FINISHED, SUB_TRADE_HAS_SUCCESS, TradeCreateBiz, TradeQueryResponse, TradeRefBiz,
    TradeStatus,
};
use crate::http;
use crate::{
    ChannelError, CloseOutcome, ConfirmedPayment, CreatePayment, CreateRefund, CreatedPayment,
    Notification, NotificationReply, NotificationRequest, NotifyError, PaymentChannel,
    PaymentState, RefundState, Statement,
};

const USER_AGENT: &str = concat!("paywire-channels/", env!("CARGO_PKG_VERSION"), " (alipay)");
const CHARSET: &str = "utf-8";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=utf-8";

/// What an app needs to talk to Alipay.
pub struct AlipayConfig {
    /// The full `gateway.do` URL, e.g. `https://openapi.alipay.com/gateway.do`.
    pub gateway_url: String,
    pub app_id: String,
    /// The merchant PID (`2088…`); notifications for another seller are refused.
    pub seller_id: String,
    pub app_private_key: RsaPrivateKey,
    /// Alipay's public key (支付宝公钥), not the app's.
    pub alipay_public_key: RsaPublicKey,
    pub notify_url: String,
    pub timeout: Duration,
}

impl fmt::Debug for AlipayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("AlipayConfig")
            .field("gateway_url", &self.gateway_url)
            .field("app_id", &self.app_id)
            .field("seller_id", &self.seller_id)
            .field("app_private_key", &"[REDACTED]")
            .field("notify_url", &self.notify_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The two payments made in the payer's browser.
#[derive(Debug, Clone, Copy)]
enum BrowserPay<'a> {
    /// `alipay.trade.page.pay`, desktop.
    Page,
    /// `alipay.trade.wap.pay`, mobile; the payer who gives up goes to `quit_url`.
    Wap { quit_url: Option<&'a str> },
}

/// A verified response: the HTTP status and the exact signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedResponse {
    /// The raw JSON of `<method>_response` (or an unsigned `error_response`).
    pub content: String,
    pub is_error: bool,
}

#[derive(Debug)]
pub struct Alipay {
    config: AlipayConfig,
    http: reqwest::Client,
}

impl Alipay {
    /// Checks the configuration and builds the HTTP client.
    pub fn new(config: AlipayConfig) -> Result<Self, ChannelError> {
        let config_err = |m: String| ChannelError::Config(m);
        http::base_url("gateway_url", &config.gateway_url)?;
        for (name, value) in [("app_id", &config.app_id), ("seller_id", &config.seller_id)] {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(config_err(format!("{name} must be non-empty digits")));
            }
        }
        if config.notify_url.is_empty() {
            return Err(config_err("notify_url is required".into()));
        }
        http::check_key_size(&config.app_private_key, "app")?;
        let http = http::client(config.timeout, USER_AGENT)?;
        Ok(Self { config, http })
    }

    pub fn config(&self) -> &AlipayConfig {
        &self.config
    }

    /// The signed parameters of a call at `timestamp` (deterministic, for tests). Empty
    /// optional values are never sent, so every verifier variant agrees.
    pub fn build_request_at(
        &self,
        method: &str,
        biz_content: &str,
        extra: &[(&str, &str)],
        timestamp: DateTime<Utc>,
    ) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = [
            ("app_id", self.config.app_id.as_str()),
            ("method", method),
            ("format", "JSON"),
            ("charset", CHARSET),
            ("sign_type", SIGN_TYPE_RSA2),
            ("timestamp", &format_time(timestamp)),
            ("version", "1.0"),
            ("biz_content", biz_content),
        ]
        .iter()
        .chain(extra.iter())
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sign = sign_params(&self.config.app_private_key, &params);
        params.push(("sign".to_owned(), sign));
        params
    }

    /// Verifies a response body for `method`. Alipay answers 200 even for business
    /// errors; anything else, or an unverifiable 5xx, is a transport problem.
    pub fn verify_response(
        &self,
        status: u16,
        body: &str,
        method: &str,
    ) -> Result<VerifiedResponse, ChannelError> {
        match verify::verify_response(&self.config.alipay_public_key, body, &response_key(method)) {
            Ok(parts) if status == 200 => Ok(VerifiedResponse {
                content: parts.content.to_owned(),
                is_error: parts.is_error,
            }),
            Ok(_) | Err(_) if status >= 500 || status == 429 => {
                Err(ChannelError::Unavailable(format!("HTTP {status}")))
            }
            Ok(_) => Err(ChannelError::UnexpectedResponse(format!("HTTP {status}"))),
            Err(e) => Err(e),
        }
    }

    /// Signs, sends and verifies one call.
    async fn execute(
        &self,
        method: &str,
        biz_content: &str,
        extra: &[(&str, &str)],
    ) -> Result<VerifiedResponse, ChannelError> {
        let params = self.build_request_at(method, biz_content, extra, Utc::now());
        let body = serde_urlencoded::to_string(&params)
            .map_err(|e| ChannelError::Config(format!("form encoding: {e}")))?;
        let request = self
            .http
            .post(&self.config.gateway_url)
            .header("Content-Type", FORM_CONTENT_TYPE)
            .body(body);
        let http::Received { status, body, .. } = http::send(request).await?;
        tracing::debug!(status, method, "alipay response");
        let text = String::from_utf8_lossy(&body);
        self.verify_response(status, &text, method)
    }

    fn biz<T: serde::Serialize>(value: &T) -> Result<String, ChannelError> {
        serde_json::to_string(value).map_err(|e| ChannelError::Config(format!("biz_content: {e}")))
    }

    /// `biz_content` of a payment of `product_code` (`None` for precreate).
    pub fn create_biz(
        &self,
        req: &CreatePayment,
        product_code: Option<&str>,
        quit_url: Option<&str>,
    ) -> Result<String, ChannelError> {
        Self::biz(&TradeCreateBiz {
            out_trade_no: req.pay_no.to_string(),
            total_amount: req.amount.to_yuan_string(),
            subject: req.description.clone(),
            product_code: product_code.map(Into::into),
            time_expire: Some(format_time(req.expires_at)),
            body: req.attach.clone().filter(|a| !a.is_empty()),
            quit_url: quit_url.map(Into::into),
        })
    }

    /// The signed parameters of `alipay.trade.precreate` at `at`.
    pub fn precreate_request_at(
        &self,
        req: &CreatePayment,
        at: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, ChannelError> {
        let biz = self.create_biz(req, None, None)?;
        Ok(self.build_request_at(
            METHOD_PRECREATE,
            &biz,
            &[("notify_url", &self.config.notify_url)],
            at,
        ))
    }

    /// The signed parameters of a payment in the payer's browser, which comes back to
    /// `return_url`.
    fn browser_pay_request_at(
        &self,
        kind: BrowserPay<'_>,
        req: &CreatePayment,
        return_url: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, ChannelError> {
        let (method, biz) = match kind {
            BrowserPay::Page => (
                METHOD_PAGE_PAY,
                self.create_biz(req, Some(PRODUCT_PAGE_PAY), None)?,
            ),
            BrowserPay::Wap { quit_url } => (
                METHOD_WAP_PAY,
                self.create_biz(req, Some(PRODUCT_WAP_PAY), quit_url)?,
            ),
        };
        Ok(self.build_request_at(
            method,
            &biz,
            &[
                ("notify_url", &self.config.notify_url),
                ("return_url", return_url.unwrap_or("")),
            ],
            at,
        ))
    }

    /// A signed `alipay.trade.page.pay` URL (GET) for a desktop browser; no network.
    pub fn page_pay_url(
        &self,
        req: &CreatePayment,
        return_url: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<String, ChannelError> {
        let params = self.browser_pay_request_at(BrowserPay::Page, req, return_url, at)?;
        let query = serde_urlencoded::to_string(&params)
            .map_err(|e| ChannelError::Config(format!("query encoding: {e}")))?;
        Ok(format!("{}?{query}", self.config.gateway_url))
    }

    /// A self-submitting HTML form posting a signed `alipay.trade.wap.pay` to the
    /// gateway, for mobile browsers; no network.
    pub fn wap_pay_form(
        &self,
        req: &CreatePayment,
        return_url: Option<&str>,
        quit_url: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<String, ChannelError> {
        let wap = BrowserPay::Wap { quit_url };
        let params = self.browser_pay_request_at(wap, req, return_url, at)?;
        let mut html = format!(
            "<form id=\"alipaysubmit\" name=\"alipaysubmit\" action=\"{}?charset={CHARSET}\" method=\"POST\">",
            html_escape(&self.config.gateway_url)
        );
        for (k, v) in &params {
            html.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\"/>",
                html_escape(k),
                html_escape(v)
            ));
        }
        html.push_str("<input type=\"submit\" value=\"ok\" style=\"display:none;\"/></form>");
        html.push_str("<script>document.forms['alipaysubmit'].submit();</script>");
        Ok(html)
    }

    fn status_of(response: &VerifiedResponse) -> Result<ResponseStatus, ChannelError> {
        serde_json::from_str(&response.content)
            .map_err(|e| ChannelError::UnexpectedResponse(format!("response status: {e}")))
    }

    /// The business body of a successful response, or the mapped error.
    fn success_body<T: DeserializeOwned>(response: &VerifiedResponse) -> Result<T, ChannelError> {
        let status = Self::status_of(response)?;
        if response.is_error || status.code != CODE_SUCCESS {
            return Err(status_error(&status, !response.is_error));
        }
        serde_json::from_str(&response.content)
            .map_err(|e| ChannelError::UnexpectedResponse(format!("response body: {e}")))
    }

    /// Interprets a verified precreate response for `pay_no`.
    pub fn interpret_precreate(
        &self,
        pay_no: PayNo,
        response: &VerifiedResponse,
    ) -> Result<CreatedPayment, ChannelError> {
        let body: PrecreateResponse = Self::success_body(response)?;
        if body.out_trade_no != pay_no.to_string() {
            return Err(ChannelError::UnexpectedResponse(
                "precreate answered for another out_trade_no".into(),
            ));
        }
        if body.qr_code.is_empty() {
            return Err(ChannelError::UnexpectedResponse("empty qr_code".into()));
        }
        Ok(CreatedPayment {
            code_url: body.qr_code,
        })
    }

    /// Interprets a verified query response. A trade Alipay does not know yet (a
    /// precreated code nobody scanned) is not paid.
    pub fn interpret_query(
        &self,
        pay_no: PayNo,
        response: &VerifiedResponse,
    ) -> Result<PaymentState, ChannelError> {
        match Self::success_body::<TradeQueryResponse>(response) {
            Ok(body) => transformers::payment_state(pay_no, &body),
            Err(ChannelError::NotFound) => Ok(PaymentState::NotPaid),
            Err(e) => Err(e),
        }
    }

    /// Interprets a verified close response. `None`: the refusal says nothing certain;
    /// query to decide.
    pub fn interpret_close(
        &self,
        response: &VerifiedResponse,
    ) -> Result<Option<CloseOutcome>, ChannelError> {
        match Self::success_body::<CloseResponse>(response) {
            Ok(_) | Err(ChannelError::NotFound) => Ok(Some(CloseOutcome::Closed)),
            Err(ChannelError::Rejected { code, .. })
                if code == SUB_TRADE_HAS_CLOSE && !response.is_error =>
            {
                Ok(Some(CloseOutcome::Closed))
            }
            Err(ChannelError::Rejected { code, .. })
                if (code == SUB_TRADE_HAS_SUCCESS || code == SUB_TRADE_HAS_FINISHED)
                    && !response.is_error =>
            {
                Ok(Some(CloseOutcome::AlreadyPaid))
            }
            Err(ChannelError::Rejected { .. }) if !response.is_error => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Interprets a verified refund response. `Ok(None)`: accepted without moving money
    /// now (`fund_change` `N`, e.g. a repeated request): ask the refund query.
    pub fn interpret_refund(
        &self,
        req: &CreateRefund,
        response: &VerifiedResponse,
    ) -> Result<Option<RefundState>, ChannelError> {
        let body: RefundResponse = Self::success_body(response)?;
        if body
            .out_trade_no
            .as_deref()
            .is_some_and(|t| t != req.pay_no.to_string())
        {
            return Err(ChannelError::UnexpectedResponse(
                "refund answered for another out_trade_no".into(),
            ));
        }
        if body.fund_change.as_deref() != Some(FUND_CHANGE_YES) {
            return Ok(None);
        }
        let trade_no = body
            .trade_no
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(&req.channel_trade_no);
        match body.gmt_refund_pay.as_deref() {
            Some(t) => Ok(Some(RefundState::Succeeded {
                channel_refund_id: channel_refund_id(trade_no, &req.refund_no.to_string()),
                refunded_at: parse_time(t).ok_or_else(|| {
                    ChannelError::UnexpectedResponse("gmt_refund_pay is not a time".into())
                })?,
            })),
            // Money moved but no time given: the refund query supplies it.
            None => Ok(None),
        }
    }

    /// Interprets a verified refund-query response for `refund_no` of `pay_no`. A success
    /// without `out_request_no` is how Alipay says it knows no such refund.
    pub fn interpret_refund_query(
        &self,
        refund_no: RefundNo,
        pay_no: PayNo,
        response: &VerifiedResponse,
        now: DateTime<Utc>,
    ) -> Result<RefundState, ChannelError> {
        let body: RefundQueryResponse = Self::success_body(response)?;
        let Some(out_request_no) = body.out_request_no.as_deref() else {
            return Err(ChannelError::NotFound);
        };
        if out_request_no != refund_no.to_string()
            || body
                .out_trade_no
                .as_deref()
                .is_some_and(|t| t != pay_no.to_string())
        {
            return Err(ChannelError::UnexpectedResponse(
                "refund query answered for another refund or trade".into(),
            ));
        }
        if let Some(amount) = body.refund_amount.as_deref() {
            parse_amount(amount).map_err(ChannelError::UnexpectedResponse)?;
        }
        if body.refund_status.as_deref() != Some(REFUND_SUCCESS) {
            return Ok(RefundState::Processing);
        }
        let refunded_at = match body.gmt_refund_pay.as_deref() {
            Some(t) => parse_time(t).ok_or_else(|| {
                ChannelError::UnexpectedResponse("gmt_refund_pay is not a time".into())
            })?,
            // Older gateways omit the time: the moment we learnt it is the best we have.
            None => now,
        };
        let trade_no = body.trade_no.as_deref().unwrap_or("");
        Ok(RefundState::Succeeded {
            channel_refund_id: channel_refund_id(trade_no, out_request_no),
            refunded_at,
        })
    }

    fn query_biz(pay_no: PayNo) -> Result<String, ChannelError> {
        Self::biz(&TradeRefBiz {
            out_trade_no: pay_no.to_string(),
        })
    }

    /// `biz_content` of `alipay.trade.refund`; `out_request_no` is our refund number.
    pub fn refund_biz(req: &CreateRefund) -> Result<String, ChannelError> {
        Self::biz(&RefundBiz {
            out_trade_no: req.pay_no.to_string(),
            trade_no: None,
            refund_amount: req.refund_amount.to_yuan_string(),
            out_request_no: req.refund_no.to_string(),
            refund_reason: Some(req.reason.clone()).filter(|r| !r.is_empty()),
        })
    }

    /// `biz_content` of `alipay.trade.fastpay.refund.query` (asking for the refund time).
    pub fn refund_query_biz(refund_no: RefundNo, pay_no: PayNo) -> Result<String, ChannelError> {
        Self::biz(&RefundQueryBiz {
            out_trade_no: pay_no.to_string(),
            out_request_no: refund_no.to_string(),
            query_options: vec!["gmt_refund_pay".into()],
        })
    }

    /// Verifies and parses a notification (form-urlencoded body).
    pub fn notification(&self, req: &NotificationRequest<'_>) -> Result<Notification, NotifyError> {
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(req.body)
            .map_err(|e| NotifyError::Malformed(format!("form body: {e}")))?;
        verify::verify_notification(&self.config.alipay_public_key, &params)?;
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let required =
            |name: &str| get(name).ok_or_else(|| NotifyError::Malformed(format!("missing {name}")));
        // Both are required: a notification signed by Alipay for another app or seller
        // (or one that leaves the seller out) is not about our money (issue 9).
        if get("app_id") != Some(self.config.app_id.as_str())
            || get("seller_id") != Some(self.config.seller_id.as_str())
        {
            return Err(NotifyError::WrongMerchant);
        }
        let pay_no: PayNo = required("out_trade_no")?
            .parse()
            .map_err(|_| NotifyError::Malformed("out_trade_no is not a pay_no".into()))?;
        let trade_no = required("trade_no")?;
        // Refunds re-send the trade notification with the refund fields added.
        if let Some(out_biz_no) = get("out_biz_no")
            && (get("refund_fee").is_some() || get("gmt_refund").is_some())
        {
            let refund_no: RefundNo = out_biz_no
                .parse()
                .map_err(|_| NotifyError::Malformed("out_biz_no is not a refund_no".into()))?;
            if let Some(fee) = get("refund_fee") {
                parse_amount(fee).map_err(NotifyError::Malformed)?;
            }
            let refunded_at = parse_time(required("gmt_refund")?)
                .ok_or_else(|| NotifyError::Malformed("gmt_refund is not a time".into()))?;
            return Ok(Notification::RefundUpdated {
                refund_no,
                pay_no,
                state: RefundState::Succeeded {
                    channel_refund_id: channel_refund_id(trade_no, out_biz_no),
                    refunded_at,
                },
            });
        }
        let status = required("trade_status")?;
        match TradeStatus::parse(status) {
            Some(TradeStatus::TradeSuccess | TradeStatus::TradeFinished) => {}
            Some(TradeStatus::TradeClosed) => return Ok(Notification::TradeClosed { pay_no }),
            Some(_) => return Err(NotifyError::Unsupported(format!("trade_status {status}"))),
            None => return Err(NotifyError::Malformed(format!("trade_status {status}"))),
        }
        let amount = parse_amount(required("total_amount")?).map_err(NotifyError::Malformed)?;
        let paid_at = parse_time(required("gmt_payment")?)
            .ok_or_else(|| NotifyError::Malformed("gmt_payment is not a time".into()))?;
        Ok(Notification::PaymentSucceeded(ConfirmedPayment {
            pay_no,
            channel_trade_no: trade_no.to_owned(),
            amount,
            paid_at,
        }))
    }
}

/// Alipay retries until the body is exactly `success`. Verification failures answer
/// 400 and internal failures 500 (`failure`, so Alipay delivers again); a verified
/// notification we have no use for (`Unsupported`, e.g. `WAIT_BUYER_PAY`) is acknowledged, since a redelivery would get the same answer for 24 hours.
pub fn acknowledge(result: &Result<(), NotifyError>) -> NotificationReply {
    let (status, body): (u16, &[u8]) = match result {
        Ok(()) | Err(NotifyError::Unsupported(_)) => (200, b"success"),
        Err(NotifyError::Internal(_)) => (500, b"failure"),
        Err(
            NotifyError::BadSignature
            | NotifyError::StaleTimestamp
            | NotifyError::UnknownSerial
            | NotifyError::Malformed(_)
            | NotifyError::Decrypt
            | NotifyError::WrongMerchant,
        ) => (400, b"failure"),
    };
    NotificationReply {
        status,
        content_type: "text/plain",
        body: body.to_vec(),
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[async_trait]
impl PaymentChannel for Alipay {
    fn channel(&self) -> PayChannel {
        PayChannel::Alipay
    }

    #[tracing::instrument(skip_all, fields(channel = "alipay", pay_no = %req.pay_no))]
    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ChannelError> {
        let biz = self.create_biz(req, None, None)?;
        let response = self
            .execute(
                METHOD_PRECREATE,
                &biz,
                &[("notify_url", &self.config.notify_url)],
            )
            .await?;
        self.interpret_precreate(req.pay_no, &response)
    }

    #[tracing::instrument(skip_all, fields(channel = "alipay", pay_no = %pay_no))]
    async fn query_payment(&self, pay_no: PayNo) -> Result<PaymentState, ChannelError> {
        let response = self
            .execute(METHOD_QUERY, &Self::query_biz(pay_no)?, &[])
            .await?;
        self.interpret_query(pay_no, &response)
    }

    /// Closes; on a refusal that says nothing certain, the trade's state decides.
    #[tracing::instrument(skip_all, fields(channel = "alipay", pay_no = %pay_no))]
    async fn close_payment(&self, pay_no: PayNo) -> Result<CloseOutcome, ChannelError> {
        let response = self
            .execute(METHOD_CLOSE, &Self::query_biz(pay_no)?, &[])
            .await?;
        if let Some(outcome) = self.interpret_close(&response)? {
            return Ok(outcome);
        }
        match self.query_payment(pay_no).await? {
            PaymentState::Paid(_) | PaymentState::Refunded(_) => Ok(CloseOutcome::AlreadyPaid),
            PaymentState::Closed => Ok(CloseOutcome::Closed),
            PaymentState::NotPaid => Err(status_error(&Self::status_of(&response)?, true)),
        }
    }

    #[tracing::instrument(skip_all, fields(channel = "alipay", refund_no = %req.refund_no, pay_no = %req.pay_no))]
    async fn refund(&self, req: &CreateRefund) -> Result<RefundState, ChannelError> {
        let response = self
            .execute(METHOD_REFUND, &Self::refund_biz(req)?, &[])
            .await?;
        match self.interpret_refund(req, &response)? {
            Some(state) => Ok(state),
            None => match self.query_refund(req.refund_no, req.pay_no).await {
                // Accepted but not visible yet: wait for the notification or query later.
                Err(ChannelError::NotFound) => Ok(RefundState::Processing),
                other => other,
            },
        }
    }

    #[tracing::instrument(skip_all, fields(channel = "alipay", refund_no = %refund_no, pay_no = %pay_no))]
    async fn query_refund(
        &self,
        refund_no: RefundNo,
        pay_no: PayNo,
    ) -> Result<RefundState, ChannelError> {
        let response = self
            .execute(
                METHOD_REFUND_QUERY,
                &Self::refund_query_biz(refund_no, pay_no)?,
                &[],
            )
            .await?;
        self.interpret_refund_query(refund_no, pay_no, &response, Utc::now())
    }

    /// `alipay.data.dataservice.bill.downloadurl.query` (`bill_type=trade`), then the zip
    /// at `bill_download_url` (a pre-signed link: no credentials go with it), read with
    /// each file's CRC-32 checked.
    #[tracing::instrument(skip_all, fields(channel = "alipay", %date))]
    async fn statement(&self, date: NaiveDate) -> Result<Statement, ChannelError> {
        let biz = Self::biz(&BillDownloadUrlBiz {
            bill_type: "trade",
            bill_date: bill::bill_date(date),
        })?;
        let response = self.execute(METHOD_BILL_DOWNLOAD_URL, &biz, &[]).await?;
        let answer: BillDownloadUrlResponse = match Self::success_body(&response) {
            Ok(answer) => answer,
            Err(ChannelError::Rejected { code, .. }) if code == SUB_BILL_NOT_EXIST => {
                return Ok(Statement::empty(date));
            }
            Err(e) => return Err(e),
        };
        let url = reqwest::Url::parse(answer.bill_download_url.trim())
            .map_err(|e| ChannelError::UnexpectedResponse(format!("bill_download_url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ChannelError::UnexpectedResponse(
                "bill_download_url is not http(s)".into(),
            ));
        }
        let received = http::send(self.http.get(url)).await?;
        if received.status != 200 {
            return Err(if received.status >= 500 {
                ChannelError::Unavailable(format!("bill download HTTP {}", received.status))
            } else {
                ChannelError::UnexpectedResponse(format!("bill download HTTP {}", received.status))
            });
        }
        bill::parse(date, &received.body)
    }

    fn parse_notification(
        &self,
        req: &NotificationRequest<'_>,
    ) -> Result<Notification, NotifyError> {
        self.notification(req)
    }

    fn acknowledge(&self, result: &Result<(), NotifyError>) -> NotificationReply {
        acknowledge(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alipay::sign::sign_content;
    use crate::alipay::{DEV_APP_ID, DEV_SELLER_ID};
    use crate::test_support::{now, pay_no, refund_no};
    use crate::{keys, rsa_sha256};
    use chrono::TimeZone;
    use paywire_domain::Fen;
    use serde_json::json;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/alipay");
    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

    fn alipay_private() -> RsaPrivateKey {
        keys::private_key_from_file(format!("{KEYS}/alipay_private_key.pem")).unwrap()
    }

    fn config(gateway_url: &str) -> AlipayConfig {
        AlipayConfig {
            gateway_url: gateway_url.into(),
            app_id: DEV_APP_ID.into(),
            seller_id: DEV_SELLER_ID.into(),
            app_private_key: keys::private_key_from_file(format!("{KEYS}/app_private_key.pem"))
                .unwrap(),
            alipay_public_key: keys::public_key_from_file(format!("{KEYS}/alipay_public_key.pem"))
                .unwrap(),
            notify_url: "https://gateway.example/api/callback/alipay".into(),
            timeout: Duration::from_secs(5),
        }
    }

    fn alipay() -> Alipay {
        Alipay::new(config("http://127.0.0.1:8090/gateway.do")).unwrap()
    }

    fn create() -> CreatePayment {
        CreatePayment {
            pay_no: pay_no(),
            amount: Fen::new(10099).unwrap(),
            description: "Rust 入门".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 30, 0).unwrap(),
            attach: None,
        }
    }

    fn create_refund() -> CreateRefund {
        CreateRefund {
            refund_no: refund_no(),
            pay_no: pay_no(),
            channel_trade_no: "2026030122001400000000000001".into(),
            refund_amount: Fen::new(29).unwrap(),
            total_amount: Fen::new(10099).unwrap(),
            reason: "重复支付".into(),
        }
    }

    /// A response as the sandbox ("Alipay") signs it, verified by the client.
    fn answer(method: &str, content: serde_json::Value) -> VerifiedResponse {
        let raw = verify::signed_response(
            &alipay_private(),
            &response_key(method),
            &content.to_string(),
        );
        alipay().verify_response(200, &raw, method).unwrap()
    }

    /// A successful answer to `method` carrying `fields`.
    fn success(method: &str, fields: serde_json::Value) -> VerifiedResponse {
        let mut content = json!({"code": "10000", "msg": "Success"});
        let object = content.as_object_mut().unwrap();
        object.extend(fields.as_object().unwrap().clone());
        answer(method, content)
    }

    fn error(method: &str, code: &str, sub_code: &str) -> VerifiedResponse {
        answer(
            method,
            json!({"code": code, "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "m"}),
        )
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn precreate_request_is_exact_and_signed_with_the_app_key() {
        let params = alipay().precreate_request_at(&create(), now()).unwrap();
        let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "app_id",
                "method",
                "format",
                "charset",
                "sign_type",
                "timestamp",
                "version",
                "biz_content",
                "notify_url",
                "sign"
            ]
        );
        assert_eq!(param(&params, "timestamp"), Some("2026-03-01 10:00:00"));
        assert_eq!(param(&params, "method"), Some("alipay.trade.precreate"));
        assert_eq!(param(&params, "sign_type"), Some("RSA2"));
        assert_eq!(
            param(&params, "biz_content"),
            Some(
                r#"{"out_trade_no":"7301234567890123456","total_amount":"100.99","subject":"Rust 入门","time_expire":"2026-03-01 10:30:00"}"#
            )
        );
        let app_public = keys::public_key_from_file(format!("{KEYS}/app_public_key.pem")).unwrap();
        let sign = param(&params, "sign").unwrap();
        assert!(rsa_sha256::verify(
            &app_public,
            sign_content(&params).as_bytes(),
            sign
        ));
        // Deterministic for a fixed time.
        assert_eq!(
            params,
            alipay().precreate_request_at(&create(), now()).unwrap()
        );
    }

    #[test]
    fn empty_optional_values_are_not_sent() {
        let params =
            alipay().build_request_at("alipay.trade.query", "{}", &[("return_url", "")], now());
        assert!(param(&params, "return_url").is_none());
        assert!(params.iter().all(|(_, v)| !v.is_empty()));
    }

    #[test]
    fn verify_response_refuses_tampered_unsigned_and_transport_errors() {
        let alipay = alipay();
        let key = response_key(METHOD_QUERY);
        let content = r#"{"code":"10000","msg":"Success","trade_status":"WAIT_BUYER_PAY"}"#;
        let raw = verify::signed_response(&alipay_private(), &key, content);
        assert_eq!(
            alipay
                .verify_response(200, &raw, METHOD_QUERY)
                .unwrap()
                .content,
            content
        );
        let tampered = raw.replace("WAIT_BUYER_PAY", "TRADE_SUCCESS");
        assert!(matches!(
            alipay.verify_response(200, &tampered, METHOD_QUERY),
            Err(ChannelError::BadResponseSignature(_))
        ));
        // Signed by the app key instead of Alipay's.
        let forged = verify::signed_response(&alipay.config.app_private_key, &key, content);
        assert!(matches!(
            alipay.verify_response(200, &forged, METHOD_QUERY),
            Err(ChannelError::BadResponseSignature(_))
        ));
        assert!(matches!(
            alipay.verify_response(502, "<html>Bad Gateway</html>", METHOD_QUERY),
            Err(ChannelError::Unavailable(_))
        ));
        assert!(matches!(
            alipay.verify_response(404, &raw, METHOD_QUERY),
            Err(ChannelError::UnexpectedResponse(_))
        ));
    }

    #[test]
    fn precreate_results() {
        let alipay = alipay();
        let ok = success(
            METHOD_PRECREATE,
            json!({"out_trade_no": "7301234567890123456", "qr_code": "https://qr.alipay.com/bax03431ljhokirwl38f00a7"}),
        );
        assert_eq!(
            alipay.interpret_precreate(pay_no(), &ok).unwrap().code_url,
            "https://qr.alipay.com/bax03431ljhokirwl38f00a7"
        );
        let other = success(
            METHOD_PRECREATE,
            json!({"out_trade_no": "42", "qr_code": "https://qr.alipay.com/bax0"}),
        );
        assert!(matches!(
            alipay.interpret_precreate(pay_no(), &other),
            Err(ChannelError::UnexpectedResponse(_))
        ));
        assert!(matches!(
            alipay.interpret_precreate(pay_no(), &error(METHOD_PRECREATE, "40004", "ACQ.TOTAL_FEE_EXCEED")),
            Err(ChannelError::Rejected { code, .. }) if code == "ACQ.TOTAL_FEE_EXCEED"
        ));
    }

    #[test]
    fn query_results_including_trade_not_exist_before_the_scan() {
        let alipay = alipay();
        let paid = success(
            METHOD_QUERY,
            json!({"trade_no": "2026030122001400000000000001", "out_trade_no": "7301234567890123456",
            "trade_status": "TRADE_SUCCESS", "total_amount": "100.99", "send_pay_date": "2026-03-01 10:05:00"}),
        );
        match alipay.interpret_query(pay_no(), &paid).unwrap() {
            PaymentState::Paid(p) => {
                assert_eq!(p.amount, Fen::new(10099).unwrap());
                assert_eq!(
                    p.paid_at,
                    Utc.with_ymd_and_hms(2026, 3, 1, 2, 5, 0).unwrap()
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            alipay
                .interpret_query(
                    pay_no(),
                    &error(METHOD_QUERY, "40004", "ACQ.TRADE_NOT_EXIST")
                )
                .unwrap(),
            PaymentState::NotPaid
        );
        assert!(matches!(
            alipay.interpret_query(pay_no(), &error(METHOD_QUERY, "20000", "isp.unknow-error")),
            Err(ChannelError::Unavailable(_))
        ));
        assert!(matches!(
            alipay.interpret_query(pay_no(), &error(METHOD_QUERY, "40004", "ACQ.SYSTEM_ERROR")),
            Err(ChannelError::Unavailable(_))
        ));
        // An unsigned gateway error is only ever an error.
        let unsigned = r#"{"error_response":{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"x"},"sign":""}"#;
        let response = alipay.verify_response(200, unsigned, METHOD_QUERY).unwrap();
        assert!(matches!(
            alipay.interpret_query(pay_no(), &response),
            Err(ChannelError::Rejected { .. })
        ));
        let bad_sig = r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}}"#;
        let response = alipay.verify_response(200, bad_sig, METHOD_QUERY).unwrap();
        assert!(matches!(
            alipay.interpret_query(pay_no(), &response),
            Err(ChannelError::Rejected { code, .. }) if code == "isv.invalid-signature"
        ));
        let garbage = success(METHOD_QUERY, json!({"trade_status": "PENDING"}));
        assert!(matches!(
            alipay.interpret_query(pay_no(), &garbage),
            Err(ChannelError::UnexpectedResponse(_))
        ));
    }

    #[test]
    fn close_results() {
        let alipay = alipay();
        let close = |r: VerifiedResponse| alipay.interpret_close(&r);
        assert_eq!(
            close(success(
                METHOD_CLOSE,
                json!({"out_trade_no": "7301234567890123456"})
            ))
            .unwrap(),
            Some(CloseOutcome::Closed)
        );
        for (sub_code, outcome) in [
            ("ACQ.TRADE_NOT_EXIST", Some(CloseOutcome::Closed)),
            ("ACQ.TRADE_HAS_CLOSE", Some(CloseOutcome::Closed)),
            ("ACQ.TRADE_HAS_SUCCESS", Some(CloseOutcome::AlreadyPaid)),
            ("ACQ.TRADE_STATUS_ERROR", None),
        ] {
            assert_eq!(
                close(error(METHOD_CLOSE, "40004", sub_code)).unwrap(),
                outcome,
                "{sub_code}"
            );
        }
        assert!(matches!(
            close(error(METHOD_CLOSE, "20000", "isp.unknow-error")),
            Err(ChannelError::Unavailable(_))
        ));
        let unsigned =
            r#"{"error_response":{"code":"40004","msg":"x","sub_code":"ACQ.TRADE_HAS_CLOSE"}}"#;
        let response = alipay.verify_response(200, unsigned, METHOD_CLOSE).unwrap();
        assert!(matches!(
            close(response),
            Err(ChannelError::Rejected { .. })
        ));
    }

    #[test]
    fn refund_body_and_results() {
        let alipay = alipay();
        assert_eq!(
            Alipay::refund_biz(&create_refund()).unwrap(),
            r#"{"out_trade_no":"7301234567890123456","refund_amount":"0.29","out_request_no":"7309876543210987654","refund_reason":"重复支付"}"#
        );
        let moved = success(
            METHOD_REFUND,
            json!({"trade_no": "2026030122001400000000000001", "out_trade_no": "7301234567890123456",
            "fund_change": "Y", "refund_fee": "0.29", "gmt_refund_pay": "2026-03-01 10:06:00"}),
        );
        assert_eq!(
            alipay.interpret_refund(&create_refund(), &moved).unwrap(),
            Some(RefundState::Succeeded {
                channel_refund_id: "2026030122001400000000000001:7309876543210987654".into(),
                refunded_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 6, 0).unwrap(),
            })
        );
        let repeated = success(
            METHOD_REFUND,
            json!({"trade_no": "2026030122001400000000000001", "out_trade_no": "7301234567890123456", "fund_change": "N"}),
        );
        assert_eq!(
            alipay
                .interpret_refund(&create_refund(), &repeated)
                .unwrap(),
            None
        );
        let foreign = success(
            METHOD_REFUND,
            json!({"out_trade_no": "42", "fund_change": "Y", "gmt_refund_pay": "2026-03-01 10:06:00"}),
        );
        assert!(matches!(
            alipay.interpret_refund(&create_refund(), &foreign),
            Err(ChannelError::UnexpectedResponse(_))
        ));
        assert!(matches!(
            alipay.interpret_refund(&create_refund(), &error(METHOD_REFUND, "40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")),
            Err(ChannelError::Rejected { code, .. }) if code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
        ));
        assert!(matches!(
            alipay.interpret_refund(
                &create_refund(),
                &error(METHOD_REFUND, "40004", "ACQ.SYSTEM_ERROR")
            ),
            Err(ChannelError::Unavailable(_))
        ));
    }

    #[test]
    fn refund_query_results() {
        let alipay = alipay();
        let q = |content: serde_json::Value| {
            alipay.interpret_refund_query(
                refund_no(),
                pay_no(),
                &answer(METHOD_REFUND_QUERY, content),
                now(),
            )
        };
        let base = json!({"code": "10000", "msg": "Success", "trade_no": "2026030122001400000000000001",
            "out_trade_no": "7301234567890123456", "out_request_no": "7309876543210987654",
            "total_amount": "100.99", "refund_amount": "0.29", "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": "2026-03-01 10:06:00.123"});
        assert_eq!(
            q(base.clone()).unwrap(),
            RefundState::Succeeded {
                channel_refund_id: "2026030122001400000000000001:7309876543210987654".into(),
                refunded_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 6, 0).unwrap()
                    + chrono::Duration::milliseconds(123),
            }
        );
        let mut no_time = base.clone();
        no_time.as_object_mut().unwrap().remove("gmt_refund_pay");
        assert!(
            matches!(q(no_time), Ok(RefundState::Succeeded { refunded_at, .. }) if refunded_at == now())
        );
        let mut pending = base.clone();
        pending.as_object_mut().unwrap().remove("refund_status");
        assert_eq!(q(pending).unwrap(), RefundState::Processing);
        assert!(matches!(
            q(json!({"code": "10000", "msg": "Success"})),
            Err(ChannelError::NotFound)
        ));
        let mut other = base.clone();
        other["out_request_no"] = json!("1");
        assert!(matches!(q(other), Err(ChannelError::UnexpectedResponse(_))));
        let mut bad_amount = base;
        bad_amount["refund_amount"] = json!("0.295");
        assert!(matches!(
            q(bad_amount),
            Err(ChannelError::UnexpectedResponse(_))
        ));
        assert!(matches!(
            alipay.interpret_refund_query(
                refund_no(),
                pay_no(),
                &error(METHOD_REFUND_QUERY, "40004", "ACQ.TRADE_NOT_EXIST"),
                now()
            ),
            Err(ChannelError::NotFound)
        ));
    }

    /// A notification as the sandbox ("Alipay") sends it: form-urlencoded, signed without
    /// `sign` and `sign_type`.
    fn notify_body(overrides: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut params: Vec<(String, String)> = [
            ("notify_time", "2026-03-01 10:05:01"),
            ("notify_type", "trade_status_sync"),
            ("notify_id", "2026030100222100501000000001"),
            ("app_id", DEV_APP_ID),
            ("auth_app_id", DEV_APP_ID),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("trade_no", "2026030122001400000000000001"),
            ("out_trade_no", "7301234567890123456"),
            ("buyer_id", "2088102534368455"),
            ("seller_id", DEV_SELLER_ID),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "0.29"),
            ("receipt_amount", "0.29"),
            ("subject", "Rust 入门 & more"),
            ("gmt_create", "2026-03-01 10:04:00"),
            ("gmt_payment", "2026-03-01 10:05:00"),
            (
                "fund_bill_list",
                r#"[{"amount":"0.29","fundChannel":"ALIPAYACCOUNT"}]"#,
            ),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (name, value) in overrides {
            params.retain(|(k, _)| k != name);
            if let Some(v) = value {
                params.push(((*name).to_owned(), (*v).to_owned()));
            }
        }
        let sign = verify::sign_notification(&alipay_private(), &params);
        params.push(("sign".into(), sign));
        params.push(("sign_type".into(), "RSA2".into()));
        serde_urlencoded::to_string(&params).unwrap().into_bytes()
    }

    fn parse_with(alipay: &Alipay, body: &[u8]) -> Result<Notification, NotifyError> {
        alipay.parse_notification(&NotificationRequest {
            headers: &[],
            body,
            now: now(),
        })
    }

    fn parse(body: &[u8]) -> Result<Notification, NotifyError> {
        parse_with(&alipay(), body)
    }

    #[test]
    fn payment_notification_yields_confirmed_payment_with_exact_amount() {
        assert_eq!(
            parse(&notify_body(&[])),
            Ok(Notification::PaymentSucceeded(ConfirmedPayment {
                pay_no: pay_no(),
                channel_trade_no: "2026030122001400000000000001".into(),
                amount: Fen::new(29).unwrap(),
                paid_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 5, 0).unwrap(),
            }))
        );
        match parse(&notify_body(&[
            ("total_amount", Some("100.99")),
            ("trade_status", Some("TRADE_FINISHED")),
        ])) {
            Ok(Notification::PaymentSucceeded(p)) => assert_eq!(p.amount, Fen::new(10099).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refund_notification_yields_refund_update() {
        let body = notify_body(&[
            ("out_biz_no", Some("7309876543210987654")),
            ("refund_fee", Some("0.29")),
            ("gmt_refund", Some("2026-03-01 10:06:00.320")),
            ("trade_status", Some("TRADE_CLOSED")),
            ("gmt_close", Some("2026-03-01 10:06:00")),
        ]);
        assert_eq!(
            parse(&body),
            Ok(Notification::RefundUpdated {
                refund_no: refund_no(),
                pay_no: pay_no(),
                state: RefundState::Succeeded {
                    channel_refund_id: "2026030122001400000000000001:7309876543210987654".into(),
                    refunded_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 6, 0).unwrap()
                        + chrono::Duration::milliseconds(320),
                },
            })
        );
    }

    #[test]
    fn notifications_with_bad_signature_or_foreign_app_are_refused() {
        let body = String::from_utf8(notify_body(&[])).unwrap();
        let tampered = body.replace("total_amount=0.29", "total_amount=100.00");
        assert_ne!(tampered, body);
        assert_eq!(parse(tampered.as_bytes()), Err(NotifyError::BadSignature));
        let unsigned: Vec<(String, String)> =
            serde_urlencoded::from_str::<Vec<(String, String)>>(&body)
                .unwrap()
                .into_iter()
                .filter(|(k, _)| k != "sign")
                .collect();
        assert_eq!(
            parse(serde_urlencoded::to_string(&unsigned).unwrap().as_bytes()),
            Err(NotifyError::BadSignature)
        );
        for foreign in [
            ("app_id", Some("2021000000000002")),
            ("app_id", None),
            ("seller_id", Some("2088000000000002")),
            // A seller left out is not ours either (issue 9: this one was paid).
            ("seller_id", None),
            ("seller_id", Some("")),
        ] {
            assert_eq!(
                parse(&notify_body(&[foreign])),
                Err(NotifyError::WrongMerchant),
                "{foreign:?}"
            );
        }
        // Signed with a key that is not Alipay's.
        let wrong_key = Alipay::new(AlipayConfig {
            alipay_public_key: keys::public_key_from_file(format!("{KEYS}/app_public_key.pem"))
                .unwrap(),
            ..config("http://127.0.0.1:8090/gateway.do")
        })
        .unwrap();
        assert_eq!(
            parse_with(&wrong_key, &notify_body(&[])),
            Err(NotifyError::BadSignature)
        );
    }

    #[test]
    fn malformed_and_unsupported_notifications() {
        for overrides in [
            vec![("total_amount", Some("1.234"))],
            vec![("total_amount", Some("0.1e1"))],
            vec![("total_amount", None)],
            vec![("out_trade_no", Some("PW-1"))],
            vec![("gmt_payment", Some("yesterday"))],
            vec![("trade_status", Some("PAID"))],
            vec![("trade_no", None)],
        ] {
            assert!(
                matches!(
                    parse(&notify_body(&overrides)),
                    Err(NotifyError::Malformed(_))
                ),
                "{overrides:?}"
            );
        }
        assert_eq!(
            parse(&notify_body(&[("trade_status", Some("TRADE_CLOSED"))])),
            Ok(Notification::TradeClosed {
                pay_no: "7301234567890123456".parse().unwrap()
            })
        );
        assert!(matches!(
            parse(&notify_body(&[("trade_status", Some("WAIT_BUYER_PAY"))])),
            Err(NotifyError::Unsupported(_))
        ));
        assert!(matches!(
            parse(b"%zz=1&sign=%"),
            Err(NotifyError::Malformed(_)) | Err(NotifyError::BadSignature)
        ));
    }

    #[test]
    fn a1_real_notification_verifies_through_the_channel() {
        // The production notification of the Node SDK tests, with its app and seller:
        // the signature verifies, then its order number is not one of our pay numbers.
        let real = Alipay::new(AlipayConfig {
            app_id: "2019073166072302".into(),
            seller_id: "2088531891668739".into(),
            alipay_public_key: keys::public_key_from_file(format!(
                "{VECTORS}/a1_alipay_public_key.pem"
            ))
            .unwrap(),
            ..config("http://127.0.0.1:8090/gateway.do")
        })
        .unwrap();
        let body = std::fs::read(format!("{VECTORS}/a1_notify_body.txt")).unwrap();
        assert!(
            matches!(parse_with(&real, &body), Err(NotifyError::Malformed(m)) if m.contains("out_trade_no"))
        );
        let fail = std::fs::read(format!("{VECTORS}/a1_fail_notify_body.txt")).unwrap();
        assert_eq!(parse_with(&real, &fail), Err(NotifyError::BadSignature));
    }

    #[test]
    fn acknowledge_replies() {
        let ok = alipay().acknowledge(&Ok(()));
        assert_eq!(
            (ok.status, ok.content_type, ok.body.as_slice()),
            (200, "text/plain", &b"success"[..])
        );
        let cases = [
            (NotifyError::BadSignature, 400, "failure"),
            (NotifyError::Malformed("x".into()), 400, "failure"),
            (NotifyError::WrongMerchant, 400, "failure"),
            (NotifyError::Internal("db".into()), 500, "failure"),
            (
                NotifyError::Unsupported("trade_status TRADE_CLOSED".into()),
                200,
                "success",
            ),
        ];
        for (error, status, body) in cases {
            let reply = alipay().acknowledge(&Err(error.clone()));
            assert_eq!(
                (reply.status, reply.body.as_slice()),
                (status, body.as_bytes()),
                "{error:?}"
            );
            assert_eq!(reply.content_type, "text/plain");
        }
    }

    #[test]
    fn page_pay_url_and_wap_form_are_signed() {
        let alipay = alipay();
        let app_public = keys::public_key_from_file(format!("{KEYS}/app_public_key.pem")).unwrap();
        let url = alipay
            .page_pay_url(&create(), Some("https://shop.example/return?a=1"), now())
            .unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "http://127.0.0.1:8090/gateway.do");
        let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(param(&params, "method"), Some("alipay.trade.page.pay"));
        assert_eq!(
            param(&params, "return_url"),
            Some("https://shop.example/return?a=1")
        );
        assert!(
            param(&params, "biz_content")
                .unwrap()
                .contains(r#""product_code":"FAST_INSTANT_TRADE_PAY""#)
        );
        assert!(rsa_sha256::verify(
            &app_public,
            sign_content(&params).as_bytes(),
            param(&params, "sign").unwrap()
        ));

        let form = alipay
            .wap_pay_form(&create(), None, Some("https://shop.example/quit"), now())
            .unwrap();
        assert!(form.starts_with(r#"<form id="alipaysubmit" name="alipaysubmit" action="http://127.0.0.1:8090/gateway.do?charset=utf-8" method="POST">"#));
        assert!(form.contains(r#"name="method" value="alipay.trade.wap.pay""#));
        assert!(form.contains("&quot;product_code&quot;:&quot;QUICK_WAP_WAY&quot;"));
        assert!(form.contains("&quot;quit_url&quot;:&quot;https://shop.example/quit&quot;"));
        assert!(!form.contains("return_url"));
        assert!(form.ends_with("<script>document.forms['alipaysubmit'].submit();</script>"));
    }

    #[test]
    fn config_is_checked_and_debug_hides_the_key() {
        let short_key = AlipayConfig {
            app_private_key: RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap(),
            ..config("http://127.0.0.1:8090/gateway.do")
        };
        let bad_app = AlipayConfig {
            app_id: "20/21".into(),
            ..config("http://127.0.0.1:8090/gateway.do")
        };
        let no_notify = AlipayConfig {
            notify_url: String::new(),
            ..config("http://127.0.0.1:8090/gateway.do")
        };
        for (what, cfg) in [
            ("short key", short_key),
            ("bad app id", bad_app),
            ("no notify url", no_notify),
            ("not a URL", config("127.0.0.1:8090/gateway.do")),
            (
                "query",
                config("http://127.0.0.1:8090/gateway.do?charset=utf-8"),
            ),
        ] {
            assert!(
                matches!(Alipay::new(cfg), Err(ChannelError::Config(_))),
                "{what}"
            );
        }
        let text = format!("{:?}", alipay());
        assert!(text.contains("[REDACTED]"));
        assert!(text.contains(DEV_APP_ID));
        assert!(!text.contains("BEGIN"));
        assert_eq!(alipay().channel(), PayChannel::Alipay);
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        let alipay = Alipay::new(config("http://127.0.0.1:1/gateway.do")).unwrap();
        for err in [
            alipay.query_payment(pay_no()).await.unwrap_err(),
            alipay.create_payment(&create()).await.unwrap_err(),
            alipay.close_payment(pay_no()).await.unwrap_err(),
            alipay.refund(&create_refund()).await.unwrap_err(),
            alipay
                .query_refund(refund_no(), pay_no())
                .await
                .unwrap_err(),
        ] {
            assert!(matches!(err, ChannelError::Unavailable(_)), "{err:?}");
        }
    }
}
