//! `WechatPay`: the WeChat Pay v3 Native channel over HTTP.
//!
//! Every request is signed over the exact bytes sent; every response (204 included) is
//! verified with the keyring before anything in it is believed.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use paywire_domain::{PayChannel, PayNo, RefundNo};
use rsa::RsaPrivateKey;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::bill::{self, NO_STATEMENT_EXIST, TradeBillResponse};
use super::crypto::{self, APIV3_KEY_LEN, HEADER_REQUEST_ID};
use super::keyring::WechatPayKeyring;
use super::transformers::{self, api_error, format_time, payment_state};
use super::wire::{
    ALGORITHM_AEAD_AES_256_GCM, CURRENCY_CNY, CloseRequest, EVENT_REFUND_ABNORMAL,
    EVENT_REFUND_CLOSED, EVENT_REFUND_SUCCESS, EVENT_TRANSACTION_SUCCESS, NativePrepayRequest,
    NativePrepayResponse, NotificationEnvelope, ORIGINAL_TYPE_REFUND, ORIGINAL_TYPE_TRANSACTION,
    PrepayAmount, Refund, RefundNotice, RefundRequest, RefundRequestAmount, RefundStatus,
    TradeState, Transaction,
};
use crate::http;
use crate::{
    ChannelError, CloseOutcome, CreatePayment, CreateRefund, CreatedPayment, Notification,
    NotificationReply, NotificationRequest, NotifyError, PaymentChannel, PaymentState, RefundState,
    Statement,
};

const USER_AGENT: &str = concat!(
    "paywire-channels/",
    env!("CARGO_PKG_VERSION"),
    " (wechatpay-v3)"
);

/// What a merchant needs to talk to WeChat Pay.
pub struct WechatPayConfig {
    /// Scheme, host and optional path prefix, e.g. `http://127.0.0.1:8090`.
    pub api_base: String,
    pub mchid: String,
    pub appid: String,
    /// Serial of the merchant API certificate (`serial_no` in `Authorization`).
    pub merchant_serial_no: String,
    pub merchant_private_key: RsaPrivateKey,
    /// 32 ASCII bytes, used as-is as the AES-256-GCM key.
    pub apiv3_key: SecretString,
    /// WeChat Pay's verification keys (public-key id and/or platform certificates).
    pub keyring: WechatPayKeyring,
    pub notify_url: String,
    /// Where refund results go; `None` = `notify_url` (one callback route can tell
    /// payments and refunds apart by `event_type`).
    pub refund_notify_url: Option<String>,
    pub timeout: Duration,
}

impl fmt::Debug for WechatPayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key or the APIv3 key.
        f.debug_struct("WechatPayConfig")
            .field("api_base", &self.api_base)
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("merchant_serial_no", &self.merchant_serial_no)
            .field("merchant_private_key", &"[REDACTED]")
            .field("apiv3_key", &"[REDACTED]")
            .field("keyring", &self.keyring)
            .field("notify_url", &self.notify_url)
            .field("refund_notify_url", &self.refund_notify_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A signed request, ready to send: `body` is the exact string that was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub method: String,
    /// The canonical URL that was signed (base path prefix included).
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A response as received: status, lower-cased headers and raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The JSON body (`what`) of a 200, or the mapped API error.
    fn ok_json<T: DeserializeOwned>(&self, what: &str) -> Result<T, ChannelError> {
        if self.status != 200 {
            return Err(api_error(self.status, &self.body));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ChannelError::UnexpectedResponse(format!("{what}: {e}")))
    }
}

#[derive(Debug)]
pub struct WechatPay {
    config: WechatPayConfig,
    /// `scheme://host[:port]` of `api_base`.
    origin: String,
    /// Path prefix of `api_base` without trailing `/` (usually empty).
    base_path: String,
    request_serial: String,
    http: reqwest::Client,
}

impl WechatPay {
    /// Checks the configuration and builds the HTTP client.
    pub fn new(config: WechatPayConfig) -> Result<Self, ChannelError> {
        let config_err = |m: String| ChannelError::Config(m);
        let url = http::base_url("api_base", &config.api_base)?;
        let origin = url.origin().ascii_serialization();
        let base_path = url.path().trim_end_matches('/').to_owned();
        // mchid and out_trade_no go into URLs unescaped; keep them plain.
        if config.mchid.is_empty() || !config.mchid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(config_err(
                "mchid must be non-empty ASCII alphanumerics".into(),
            ));
        }
        if config.appid.is_empty() || config.merchant_serial_no.is_empty() {
            return Err(config_err(
                "appid and merchant_serial_no are required".into(),
            ));
        }
        if config.apiv3_key.expose_secret().len() != APIV3_KEY_LEN {
            return Err(config_err(format!(
                "the APIv3 key must be {APIV3_KEY_LEN} bytes"
            )));
        }
        http::check_key_size(&config.merchant_private_key, "merchant")?;
        let request_serial = config
            .keyring
            .request_serial()
            .ok_or_else(|| config_err("the WeChat Pay keyring is empty".into()))?
            .to_owned();
        let http = http::client(config.timeout, USER_AGENT)?;
        Ok(Self {
            config,
            origin,
            base_path,
            request_serial,
            http,
        })
    }

    pub fn config(&self) -> &WechatPayConfig {
        &self.config
    }

    /// Signs a request now, with a fresh nonce.
    pub fn build_request(&self, method: &str, path_and_query: &str, body: &str) -> SignedRequest {
        self.build_request_at(
            method,
            path_and_query,
            body,
            Utc::now().timestamp(),
            &crypto::nonce(),
        )
    }

    /// Signs a request with a given timestamp and nonce (deterministic, for tests).
    /// `path_and_query` is relative to `api_base`, e.g. `/v3/pay/transactions/native`.
    pub fn build_request_at(
        &self,
        method: &str,
        path_and_query: &str,
        body: &str,
        timestamp: i64,
        nonce: &str,
    ) -> SignedRequest {
        let canonical = format!("{}{path_and_query}", self.base_path);
        let message = crypto::request_message(method, &canonical, timestamp, nonce, body);
        let signature = crypto::sign(&self.config.merchant_private_key, message.as_bytes());
        let authorization = crypto::authorization(
            &self.config.mchid,
            &self.config.merchant_serial_no,
            timestamp,
            nonce,
            &signature,
        );
        let headers = vec![
            ("Authorization".to_owned(), authorization),
            ("Accept".to_owned(), "application/json".to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("User-Agent".to_owned(), USER_AGENT.to_owned()),
            ("Wechatpay-Serial".to_owned(), self.request_serial.clone()),
        ];
        SignedRequest {
            method: method.to_owned(),
            path_and_query: canonical,
            headers,
            body: body.to_owned(),
        }
    }

    /// Checks a response's WeChat Pay signature (any status, empty body included). An
    /// unsigned 5xx is most likely a proxy or outage, hence `Unavailable`.
    pub fn verify_response(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), ChannelError> {
        match self.config.keyring.verify_signed(headers, body, now) {
            Ok(()) => Ok(()),
            Err(e) if status >= 500 => Err(ChannelError::Unavailable(format!(
                "HTTP {status}, unverified: {e}"
            ))),
            Err(e) => Err(ChannelError::BadResponseSignature(format!(
                "HTTP {status}: {e}"
            ))),
        }
    }

    /// Sends a signed request and returns the verified response.
    async fn execute(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: &str,
    ) -> Result<RawResponse, ChannelError> {
        let signed = self.build_request(method.as_str(), path_and_query, body);
        let url = format!("{}{}", self.origin, signed.path_and_query);
        let mut request = self.http.request(method, &url);
        for (name, value) in &signed.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if !signed.body.is_empty() {
            request = request.body(signed.body);
        }
        let http::Received {
            status,
            headers,
            body,
        } = http::send(request).await?;
        let request_id = crypto::header(&headers, HEADER_REQUEST_ID).unwrap_or("");
        tracing::debug!(status, request_id, "wechat pay response");
        self.verify_response(status, &headers, &body, Utc::now())?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// Downloads a bill from `download_url`: signed like any request (the URL's path and
    /// query), answered unsigned (WeChat does not sign files; the SHA1 of the signed
    /// `tradebill` answer vouches for them). Only from the API's own origin, so the
    /// merchant's signature never goes elsewhere.
    async fn download_bill(&self, download_url: &str) -> Result<Vec<u8>, ChannelError> {
        let url = reqwest::Url::parse(download_url.trim())
            .map_err(|e| ChannelError::UnexpectedResponse(format!("download_url: {e}")))?;
        if url.origin().ascii_serialization() != self.origin {
            return Err(ChannelError::UnexpectedResponse(
                "download_url is not on the API's origin".into(),
            ));
        }
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let relative = path_and_query
            .strip_prefix(self.base_path.as_str())
            .unwrap_or(&path_and_query);
        let signed = self.build_request("GET", relative, "");
        let mut request = self
            .http
            .get(format!("{}{}", self.origin, signed.path_and_query));
        for (name, value) in &signed.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let received = http::send(request).await?;
        if received.status != 200 {
            return Err(api_error(received.status, &received.body));
        }
        Ok(received.body)
    }

    fn prepay_body(&self, req: &CreatePayment) -> Result<String, ChannelError> {
        let body = NativePrepayRequest {
            appid: self.config.appid.clone(),
            mchid: self.config.mchid.clone(),
            description: req.description.clone(),
            out_trade_no: req.pay_no.to_string(),
            time_expire: Some(format_time(req.expires_at)),
            attach: req.attach.clone(),
            notify_url: self.config.notify_url.clone(),
            amount: PrepayAmount {
                total: req.amount.get(),
                currency: Some(CURRENCY_CNY.to_owned()),
            },
        };
        serde_json::to_string(&body).map_err(|e| ChannelError::Config(format!("prepay body: {e}")))
    }

    fn query_path(&self, pay_no: PayNo) -> String {
        format!(
            "/v3/pay/transactions/out-trade-no/{pay_no}?mchid={}",
            self.config.mchid
        )
    }

    /// Interprets a verified query response for `pay_no`.
    pub fn interpret_query(
        &self,
        pay_no: PayNo,
        response: &RawResponse,
    ) -> Result<PaymentState, ChannelError> {
        let tx: Transaction = response.ok_json("transaction")?;
        if tx.mchid != self.config.mchid
            || tx.appid != self.config.appid
            || tx.out_trade_no != pay_no.to_string()
        {
            return Err(ChannelError::UnexpectedResponse(
                "transaction is for another merchant, app or trade".into(),
            ));
        }
        payment_state(&tx)
    }

    fn refund_body(&self, req: &CreateRefund) -> Result<String, ChannelError> {
        let notify_url = self
            .config
            .refund_notify_url
            .clone()
            .unwrap_or_else(|| self.config.notify_url.clone());
        let body = RefundRequest {
            transaction_id: None,
            out_trade_no: Some(req.pay_no.to_string()),
            out_refund_no: req.refund_no.to_string(),
            reason: Some(req.reason.clone()).filter(|r| !r.is_empty()),
            notify_url: Some(notify_url),
            amount: RefundRequestAmount {
                refund: req.refund_amount.get(),
                total: req.total_amount.get(),
                currency: CURRENCY_CNY.to_owned(),
            },
        };
        serde_json::to_string(&body).map_err(|e| ChannelError::Config(format!("refund body: {e}")))
    }

    /// Interprets a verified refund or refund-query response for `refund_no` of `pay_no`.
    pub fn interpret_refund(
        &self,
        refund_no: RefundNo,
        pay_no: PayNo,
        response: &RawResponse,
    ) -> Result<RefundState, ChannelError> {
        let refund: Refund = response.ok_json("refund")?;
        let pay_no_text = pay_no.to_string();
        if refund.out_refund_no != refund_no.to_string()
            || refund
                .out_trade_no
                .as_deref()
                .is_some_and(|t| t != pay_no_text)
        {
            return Err(ChannelError::UnexpectedResponse(
                "refund is for another refund number or trade".into(),
            ));
        }
        transformers::refund_state(
            refund.status,
            &refund.refund_id,
            refund.success_time.as_deref(),
        )
        .map_err(ChannelError::UnexpectedResponse)
    }

    fn notification(&self, req: &NotificationRequest<'_>) -> Result<Notification, NotifyError> {
        self.config
            .keyring
            .verify_signed(req.headers, req.body, req.now)?;
        let envelope: NotificationEnvelope = serde_json::from_slice(req.body)
            .map_err(|e| NotifyError::Malformed(format!("envelope: {e}")))?;
        match envelope.event_type.as_str() {
            EVENT_TRANSACTION_SUCCESS => self.payment_notification(&envelope),
            EVENT_REFUND_SUCCESS | EVENT_REFUND_ABNORMAL | EVENT_REFUND_CLOSED => {
                self.refund_notification(&envelope)
            }
            _ => Err(NotifyError::Unsupported(envelope.event_type)),
        }
    }

    /// Decrypts and parses the resource after checking it is of the expected kind.
    fn decrypt<T: DeserializeOwned>(
        &self,
        envelope: &NotificationEnvelope,
        original_type: &str,
    ) -> Result<T, NotifyError> {
        let resource = &envelope.resource;
        if resource.algorithm != ALGORITHM_AEAD_AES_256_GCM {
            return Err(NotifyError::Malformed(format!(
                "resource algorithm {}",
                resource.algorithm
            )));
        }
        if resource.original_type != original_type {
            return Err(NotifyError::Malformed(format!(
                "{} with resource original_type {}",
                envelope.event_type, resource.original_type
            )));
        }
        let plaintext = crypto::decrypt_resource(
            self.config.apiv3_key.expose_secret().as_bytes(),
            &resource.nonce,
            &resource.associated_data,
            &resource.ciphertext,
        )
        .map_err(|_| NotifyError::Decrypt)?;
        serde_json::from_slice(&plaintext)
            .map_err(|e| NotifyError::Malformed(format!("{original_type}: {e}")))
    }

    fn payment_notification(
        &self,
        envelope: &NotificationEnvelope,
    ) -> Result<Notification, NotifyError> {
        let tx: Transaction = self.decrypt(envelope, ORIGINAL_TYPE_TRANSACTION)?;
        if tx.mchid != self.config.mchid || tx.appid != self.config.appid {
            return Err(NotifyError::WrongMerchant);
        }
        if tx.trade_state != TradeState::Success {
            return Err(NotifyError::Malformed(format!(
                "TRANSACTION.SUCCESS with trade_state {}",
                tx.trade_state.as_str()
            )));
        }
        let payment = transformers::confirmed_payment(&tx)
            .map_err(|e| NotifyError::Malformed(e.to_string()))?;
        Ok(Notification::PaymentSucceeded(payment))
    }

    fn refund_notification(
        &self,
        envelope: &NotificationEnvelope,
    ) -> Result<Notification, NotifyError> {
        let notice: RefundNotice = self.decrypt(envelope, ORIGINAL_TYPE_REFUND)?;
        if notice.mchid != self.config.mchid {
            return Err(NotifyError::WrongMerchant);
        }
        let expected = match envelope.event_type.as_str() {
            EVENT_REFUND_SUCCESS => RefundStatus::Success,
            EVENT_REFUND_CLOSED => RefundStatus::Closed,
            _ => RefundStatus::Abnormal,
        };
        if notice.refund_status != expected {
            return Err(NotifyError::Malformed(format!(
                "{} with refund_status {}",
                envelope.event_type,
                notice.refund_status.as_str()
            )));
        }
        let refund_no: RefundNo = notice
            .out_refund_no
            .parse()
            .map_err(|_| NotifyError::Malformed("out_refund_no is not a refund_no".into()))?;
        let pay_no: PayNo = notice
            .out_trade_no
            .parse()
            .map_err(|_| NotifyError::Malformed("out_trade_no is not a pay_no".into()))?;
        let state = transformers::refund_state(
            notice.refund_status,
            &notice.refund_id,
            notice.success_time.as_deref(),
        )
        .map_err(NotifyError::Malformed)?;
        Ok(Notification::RefundUpdated {
            refund_no,
            pay_no,
            state,
        })
    }
}

#[async_trait]
impl PaymentChannel for WechatPay {
    fn channel(&self) -> PayChannel {
        PayChannel::Wechat
    }

    #[tracing::instrument(skip_all, fields(channel = "wechat", pay_no = %req.pay_no))]
    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ChannelError> {
        let body = self.prepay_body(req)?;
        let response = self
            .execute(reqwest::Method::POST, "/v3/pay/transactions/native", &body)
            .await?;
        let created: NativePrepayResponse = response.ok_json("prepay")?;
        if created.code_url.is_empty() {
            return Err(ChannelError::UnexpectedResponse("empty code_url".into()));
        }
        Ok(CreatedPayment {
            code_url: created.code_url,
        })
    }

    #[tracing::instrument(skip_all, fields(channel = "wechat", pay_no = %pay_no))]
    async fn query_payment(&self, pay_no: PayNo) -> Result<PaymentState, ChannelError> {
        let response = self
            .execute(reqwest::Method::GET, &self.query_path(pay_no), "")
            .await?;
        self.interpret_query(pay_no, &response)
    }

    /// Queries first (a paid trade must not be reported closed), closes an unpaid trade,
    /// and on an unexpected close refusal queries again to catch a payment that raced us.
    #[tracing::instrument(skip_all, fields(channel = "wechat", pay_no = %pay_no))]
    async fn close_payment(&self, pay_no: PayNo) -> Result<CloseOutcome, ChannelError> {
        match self.query_payment(pay_no).await? {
            PaymentState::Paid(_) | PaymentState::Refunded(_) => {
                return Ok(CloseOutcome::AlreadyPaid);
            }
            PaymentState::Closed => return Ok(CloseOutcome::Closed),
            PaymentState::NotPaid => {}
        }
        let body = serde_json::to_string(&CloseRequest {
            mchid: self.config.mchid.clone(),
        })
        .map_err(|e| ChannelError::Config(format!("close body: {e}")))?;
        let path = format!("/v3/pay/transactions/out-trade-no/{pay_no}/close");
        let response = self.execute(reqwest::Method::POST, &path, &body).await?;
        match close_result(response.status, &response.body) {
            Err(ChannelError::Rejected { code, message }) => {
                // APIv3 documents no code for "already paid"; whatever the refusal,
                // the trade's state decides.
                match self.query_payment(pay_no).await? {
                    PaymentState::Paid(_) | PaymentState::Refunded(_) => {
                        Ok(CloseOutcome::AlreadyPaid)
                    }
                    PaymentState::Closed => Ok(CloseOutcome::Closed),
                    PaymentState::NotPaid => Err(ChannelError::Rejected { code, message }),
                }
            }
            other => other,
        }
    }

    #[tracing::instrument(skip_all, fields(channel = "wechat", refund_no = %req.refund_no, pay_no = %req.pay_no))]
    async fn refund(&self, req: &CreateRefund) -> Result<RefundState, ChannelError> {
        let body = self.refund_body(req)?;
        let response = self
            .execute(reqwest::Method::POST, "/v3/refund/domestic/refunds", &body)
            .await?;
        self.interpret_refund(req.refund_no, req.pay_no, &response)
    }

    #[tracing::instrument(skip_all, fields(channel = "wechat", refund_no = %refund_no, pay_no = %pay_no))]
    async fn query_refund(
        &self,
        refund_no: RefundNo,
        pay_no: PayNo,
    ) -> Result<RefundState, ChannelError> {
        let path = format!("/v3/refund/domestic/refunds/{refund_no}");
        let response = self.execute(reqwest::Method::GET, &path, "").await?;
        self.interpret_refund(refund_no, pay_no, &response)
    }

    /// `GET /v3/bill/tradebill` (`bill_type=ALL`), then the file at its `download_url`,
    /// checked against the announced SHA1 before it is read.
    #[tracing::instrument(skip_all, fields(channel = "wechat", %date))]
    async fn statement(&self, date: NaiveDate) -> Result<Statement, ChannelError> {
        let path = format!(
            "/v3/bill/tradebill?bill_date={}&bill_type=ALL",
            date.format("%Y-%m-%d")
        );
        let response = self.execute(reqwest::Method::GET, &path, "").await?;
        if response.status != 200 {
            return match api_error(response.status, &response.body) {
                ChannelError::Rejected { code, .. } if code == NO_STATEMENT_EXIST => {
                    Ok(Statement::empty(date))
                }
                e => Err(e),
            };
        }
        let answer: TradeBillResponse = response.ok_json("tradebill")?;
        let file = self.download_bill(&answer.download_url).await?;
        bill::verify_hash(&file, &answer.hash_type, &answer.hash_value)?;
        bill::parse(date, &file)
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

/// Interprets a verified close response: 204 (or any 2xx) and `ORDER_CLOSED` mean closed.
pub fn close_result(status: u16, body: &[u8]) -> Result<CloseOutcome, ChannelError> {
    if (200..300).contains(&status) {
        return Ok(CloseOutcome::Closed);
    }
    match api_error(status, body) {
        ChannelError::Rejected { code, .. } if code == "ORDER_CLOSED" => Ok(CloseOutcome::Closed),
        e => Err(e),
    }
}

/// WeChat Pay decides by status: 2xx acknowledges, anything else makes it retry.
pub fn acknowledge(result: &Result<(), NotifyError>) -> NotificationReply {
    let (status, reason) = match result {
        Ok(()) => {
            return NotificationReply {
                status: 204,
                content_type: "application/json",
                body: Vec::new(),
            };
        }
        Err(NotifyError::BadSignature) => (401, "bad signature"),
        Err(NotifyError::StaleTimestamp) => (401, "stale timestamp"),
        Err(NotifyError::UnknownSerial) => (401, "unknown serial"),
        Err(NotifyError::Malformed(_)) => (400, "malformed notification"),
        Err(NotifyError::Decrypt) => (500, "decryption failed"),
        Err(NotifyError::WrongMerchant) => (500, "wrong merchant"),
        Err(NotifyError::Unsupported(_)) => (500, "unsupported event"),
        Err(NotifyError::Internal(_)) => (500, "temporarily unable to process"),
    };
    let body = serde_json::json!({ "code": "FAIL", "message": reason });
    NotificationReply {
        status,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfirmedPayment;
    use crate::keys;
    use crate::test_support::{now, pay_no, refund_no, with_value};
    use crate::wechat::{
        DEV_APIV3_KEY, DEV_APPID, DEV_MCHID, DEV_MERCHANT_SERIAL_NO, DEV_WECHATPAY_PUBLIC_KEY_ID,
    };
    use chrono::TimeZone;
    use paywire_domain::Fen;
    use rsa::RsaPublicKey;
    use serde_json::json;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/test-keys/wechat");

    fn merchant_key() -> RsaPrivateKey {
        keys::private_key_from_file(format!("{KEYS}/merchant_private_key.pem")).unwrap()
    }

    /// The sandbox's ("WeChat Pay's") signing key.
    fn wechatpay_key() -> RsaPrivateKey {
        keys::private_key_from_file(format!("{KEYS}/wechatpay_private_key.pem")).unwrap()
    }

    fn config(api_base: &str) -> WechatPayConfig {
        WechatPayConfig {
            api_base: api_base.into(),
            mchid: DEV_MCHID.into(),
            appid: DEV_APPID.into(),
            merchant_serial_no: DEV_MERCHANT_SERIAL_NO.into(),
            merchant_private_key: merchant_key(),
            apiv3_key: SecretString::from(DEV_APIV3_KEY),
            keyring: WechatPayKeyring::new().with_key(
                DEV_WECHATPAY_PUBLIC_KEY_ID,
                keys::public_key_from_file(format!("{KEYS}/wechatpay_public_key.pem")).unwrap(),
            ),
            notify_url: "https://gateway.example/api/callback/wechat".into(),
            refund_notify_url: None,
            timeout: Duration::from_secs(5),
        }
    }

    fn wechat() -> WechatPay {
        WechatPay::new(config("http://127.0.0.1:8090")).unwrap()
    }

    /// Signs like the sandbox does.
    fn signed(body: &[u8], at: DateTime<Utc>) -> Vec<(String, String)> {
        crypto::signed_response_headers(
            &wechatpay_key(),
            DEV_WECHATPAY_PUBLIC_KEY_ID,
            at.timestamp(),
            &crypto::nonce(),
            body,
        )
    }

    #[test]
    fn build_request_is_deterministic_and_verifiable() {
        let wechat = wechat();
        let body = r#"{"mchid":"1900009191"}"#;
        let req = wechat.build_request_at(
            "POST",
            "/v3/pay/transactions/out-trade-no/1/close",
            body,
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
        );
        assert_eq!(
            req,
            wechat.build_request_at(
                "POST",
                "/v3/pay/transactions/out-trade-no/1/close",
                body,
                1554208460,
                "593BEC0C930BF1AFEB40B4A08C8FB242",
            )
        );
        assert_eq!(req.body, body);
        assert_eq!(
            req.path_and_query,
            "/v3/pay/transactions/out-trade-no/1/close"
        );
        let h = |n: &str| crypto::header(&req.headers, n).unwrap().to_owned();
        assert_eq!(h("accept"), "application/json");
        assert_eq!(h("content-type"), "application/json");
        assert!(h("user-agent").starts_with("paywire-channels/"));
        assert_eq!(h("wechatpay-serial"), DEV_WECHATPAY_PUBLIC_KEY_ID);
        let auth = crypto::parse_authorization(&h("authorization")).unwrap();
        assert_eq!(auth.mchid, DEV_MCHID);
        assert_eq!(auth.serial_no, DEV_MERCHANT_SERIAL_NO);
        assert_eq!(auth.timestamp, "1554208460");
        assert_eq!(auth.nonce_str, "593BEC0C930BF1AFEB40B4A08C8FB242");
        let message = crypto::request_message(
            "POST",
            "/v3/pay/transactions/out-trade-no/1/close",
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            body,
        );
        let merchant_public = RsaPublicKey::from(&merchant_key());
        assert!(crypto::verify(
            &merchant_public,
            message.as_bytes(),
            &auth.signature
        ));
        // The signature covers the body: another body does not verify.
        let other = crypto::request_message(
            "POST",
            "/v3/pay/transactions/out-trade-no/1/close",
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            r#"{"mchid": "1900009191"}"#,
        );
        assert!(!crypto::verify(
            &merchant_public,
            other.as_bytes(),
            &auth.signature
        ));
    }

    #[test]
    fn get_request_signs_query_and_empty_body_and_base_prefix() {
        let wechat = WechatPay::new(config("http://127.0.0.1:8090/wechat/")).unwrap();
        let path = wechat.query_path(pay_no());
        assert_eq!(
            path,
            "/v3/pay/transactions/out-trade-no/7301234567890123456?mchid=1900009191"
        );
        let req = wechat.build_request_at("GET", &path, "", 7, "N");
        assert_eq!(req.path_and_query, format!("/wechat{path}"));
        let auth =
            crypto::parse_authorization(crypto::header(&req.headers, "authorization").unwrap())
                .unwrap();
        let message = format!("GET\n/wechat{path}\n7\nN\n\n");
        assert!(crypto::verify(
            &RsaPublicKey::from(&merchant_key()),
            message.as_bytes(),
            &auth.signature
        ));
    }

    #[test]
    fn prepay_body_is_exact() {
        let req = CreatePayment {
            pay_no: pay_no(),
            amount: Fen::new(1990).unwrap(),
            description: "Rust 入门".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 30, 0).unwrap(),
            attach: None,
        };
        assert_eq!(
            wechat().prepay_body(&req).unwrap(),
            r#"{"appid":"wxd678efh567hg6787","mchid":"1900009191","description":"Rust 入门","out_trade_no":"7301234567890123456","time_expire":"2026-03-01T10:30:00+08:00","notify_url":"https://gateway.example/api/callback/wechat","amount":{"total":1990,"currency":"CNY"}}"#
        );
        let with_attach = CreatePayment {
            attach: Some("order=1".into()),
            ..req
        };
        assert!(
            wechat()
                .prepay_body(&with_attach)
                .unwrap()
                .contains(r#""attach":"order=1""#)
        );
    }

    #[test]
    fn verify_response_accepts_signed_and_refuses_unsigned_or_tampered() {
        let wechat = wechat();
        let body = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=abc"}"#;
        let headers = signed(body, now());
        assert!(wechat.verify_response(200, &headers, body, now()).is_ok());
        // 204 No Content: signature over "TS\nNONCE\n\n".
        let empty = signed(b"", now());
        assert!(wechat.verify_response(204, &empty, b"", now()).is_ok());
        let tampered = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=evil"}"#;
        assert!(matches!(
            wechat.verify_response(200, &headers, tampered, now()),
            Err(ChannelError::BadResponseSignature(_))
        ));
        assert!(matches!(
            wechat.verify_response(204, &[], b"", now()),
            Err(ChannelError::BadResponseSignature(_))
        ));
        assert!(matches!(
            wechat.verify_response(400, &[], br#"{"code":"PARAM_ERROR","message":"x"}"#, now()),
            Err(ChannelError::BadResponseSignature(_))
        ));
        // An unsigned 502 comes from a proxy, not from WeChat Pay: retry later.
        assert!(matches!(
            wechat.verify_response(502, &[], b"Bad Gateway", now()),
            Err(ChannelError::Unavailable(_))
        ));
        // Signed by a key that is not WeChat Pay's (the merchant's own key).
        let forged = crypto::signed_response_headers(
            &merchant_key(),
            DEV_WECHATPAY_PUBLIC_KEY_ID,
            now().timestamp(),
            "N",
            body,
        );
        assert!(matches!(
            wechat.verify_response(200, &forged, body, now()),
            Err(ChannelError::BadResponseSignature(_))
        ));
        // Signed too long ago.
        let old = signed(body, now() - chrono::Duration::seconds(301));
        assert!(matches!(
            wechat.verify_response(200, &old, body, now()),
            Err(ChannelError::BadResponseSignature(_))
        ));
    }

    fn response(status: u16, body: serde_json::Value) -> RawResponse {
        let body = body.to_string().into_bytes();
        RawResponse {
            status,
            headers: signed(&body, now()),
            body,
        }
    }

    fn paid_transaction() -> serde_json::Value {
        json!({
            "appid": DEV_APPID, "mchid": DEV_MCHID, "out_trade_no": "7301234567890123456",
            "transaction_id": "4200001234202603010000000001", "trade_type": "NATIVE",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
            "success_time": "2026-03-01T10:05:00+08:00", "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": 1990, "payer_total": 1990, "currency": "CNY", "payer_currency": "CNY"}
        })
    }

    /// `p` is the payment of [`paid_transaction`].
    fn assert_is_paid_transaction(p: &ConfirmedPayment) {
        assert_eq!(p.pay_no, pay_no());
        assert_eq!(p.amount, Fen::new(1990).unwrap());
        assert_eq!(p.channel_trade_no, "4200001234202603010000000001");
        assert_eq!(
            p.paid_at,
            Utc.with_ymd_and_hms(2026, 3, 1, 2, 5, 0).unwrap()
        );
    }

    #[test]
    fn interpret_query_maps_paid_notfound_and_foreign_answers() {
        let wechat = wechat();
        match wechat.interpret_query(pay_no(), &response(200, paid_transaction())) {
            Ok(PaymentState::Paid(p)) => assert_is_paid_transaction(&p),
            other => panic!("{other:?}"),
        }
        let notpay = json!({"appid": DEV_APPID, "mchid": DEV_MCHID,
            "out_trade_no": "7301234567890123456", "trade_state": "NOTPAY"});
        assert_eq!(
            wechat
                .interpret_query(pay_no(), &response(200, notpay))
                .unwrap(),
            PaymentState::NotPaid
        );
        let missing = json!({"code": "ORDER_NOT_EXIST", "message": "订单不存在"});
        assert!(matches!(
            wechat.interpret_query(pay_no(), &response(404, missing)),
            Err(ChannelError::NotFound)
        ));
        for (field, value) in [
            ("mchid", "1230000109"),
            ("appid", "wxother"),
            ("out_trade_no", "42"),
        ] {
            let mut tx = paid_transaction();
            tx[field] = json!(value);
            assert!(
                matches!(
                    wechat.interpret_query(pay_no(), &response(200, tx)),
                    Err(ChannelError::UnexpectedResponse(_))
                ),
                "{field}"
            );
        }
        assert!(matches!(
            wechat.interpret_query(pay_no(), &response(200, json!({"hello": 1}))),
            Err(ChannelError::UnexpectedResponse(_))
        ));
    }

    #[test]
    fn close_results() {
        let err = |code: &str| format!(r#"{{"code":"{code}","message":"m"}}"#).into_bytes();
        assert!(matches!(close_result(204, b""), Ok(CloseOutcome::Closed)));
        assert!(matches!(
            close_result(400, &err("ORDER_CLOSED")),
            Ok(CloseOutcome::Closed)
        ));
        assert!(matches!(
            close_result(400, &err("PARAM_ERROR")),
            Err(ChannelError::Rejected { code, .. }) if code == "PARAM_ERROR"
        ));
        assert!(matches!(
            close_result(404, &err("ORDER_NOT_EXIST")),
            Err(ChannelError::NotFound)
        ));
        assert!(matches!(
            close_result(500, &err("SYSTEM_ERROR")),
            Err(ChannelError::Unavailable(_))
        ));
    }

    #[test]
    fn config_is_checked() {
        let short_key = WechatPayConfig {
            apiv3_key: SecretString::from("sixteen-byte-key"),
            ..config("http://127.0.0.1:8090")
        };
        let no_keys = WechatPayConfig {
            keyring: WechatPayKeyring::new(),
            ..config("http://127.0.0.1:8090")
        };
        let bad_mchid = WechatPayConfig {
            mchid: "19/../x".into(),
            ..config("http://127.0.0.1:8090")
        };
        for (what, cfg) in [
            ("short apiv3 key", short_key),
            ("empty keyring", no_keys),
            ("bad mchid", bad_mchid),
            ("not a URL", config("127.0.0.1:8090")),
            ("ftp", config("ftp://127.0.0.1/")),
            ("query", config("http://127.0.0.1:8090/?x=1")),
        ] {
            assert!(
                matches!(WechatPay::new(cfg), Err(ChannelError::Config(_))),
                "{what}"
            );
        }
    }

    #[test]
    fn config_debug_hides_secrets() {
        let text = format!("{:?}", wechat());
        assert!(!text.contains(DEV_APIV3_KEY));
        assert!(text.contains("[REDACTED]"));
        assert!(text.contains(DEV_MCHID));
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        // Port 1 on loopback: nothing listens, the connect fails at once.
        let wechat = WechatPay::new(config("http://127.0.0.1:1")).unwrap();
        let err = wechat.query_payment(pay_no()).await.unwrap_err();
        assert!(matches!(err, ChannelError::Unavailable(_)), "{err:?}");
        assert!(err.is_retryable());
        let err = wechat.refund(&create_refund()).await.unwrap_err();
        assert!(matches!(err, ChannelError::Unavailable(_)), "{err:?}");
        let err = wechat
            .query_refund(refund_no(), pay_no())
            .await
            .unwrap_err();
        assert!(matches!(err, ChannelError::Unavailable(_)), "{err:?}");
    }

    struct Notify {
        mchid: &'static str,
        appid: &'static str,
        event_type: &'static str,
        trade_state: &'static str,
        apiv3_key: &'static [u8],
        algorithm: &'static str,
        currency: Option<&'static str>,
    }

    impl Default for Notify {
        fn default() -> Self {
            Self {
                mchid: DEV_MCHID,
                appid: DEV_APPID,
                event_type: "TRANSACTION.SUCCESS",
                trade_state: "SUCCESS",
                apiv3_key: DEV_APIV3_KEY.as_bytes(),
                algorithm: "AEAD_AES_256_GCM",
                currency: Some("CNY"),
            }
        }
    }

    /// `(nonce, ciphertext)` of `resource` encrypted under `apiv3_key`, as a callback
    /// carries it.
    fn encrypted(
        apiv3_key: &[u8],
        associated_data: &str,
        resource: &serde_json::Value,
    ) -> (String, String) {
        let nonce = crypto::resource_nonce();
        let ciphertext = crypto::encrypt_resource(
            apiv3_key,
            &nonce,
            associated_data,
            resource.to_string().as_bytes(),
        )
        .unwrap();
        (nonce, ciphertext)
    }

    /// A callback body as WeChat Pay (the sandbox) would send it.
    fn notify_body(n: &Notify) -> Vec<u8> {
        let mut tx = paid_transaction();
        tx["mchid"] = json!(n.mchid);
        tx["appid"] = json!(n.appid);
        tx["trade_state"] = json!(n.trade_state);
        tx["amount"]["currency"] = json!(n.currency);
        let (nonce, ciphertext) = encrypted(n.apiv3_key, "transaction", &tx);
        json!({
            "id": "EV-2018022511223320873", "create_time": "2026-03-01T10:05:01+08:00",
            "resource_type": "encrypt-resource", "event_type": n.event_type, "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": n.algorithm,
                "ciphertext": ciphertext, "associated_data": "transaction", "nonce": nonce}
        })
        .to_string()
        .into_bytes()
    }

    fn parse(
        headers: &[(String, String)],
        body: &[u8],
        at: DateTime<Utc>,
    ) -> Result<Notification, NotifyError> {
        wechat().parse_notification(&NotificationRequest {
            headers,
            body,
            now: at,
        })
    }

    fn parse_notify(n: &Notify) -> Result<Notification, NotifyError> {
        let body = notify_body(n);
        parse(&signed(&body, now()), &body, now())
    }

    #[test]
    fn notification_success_yields_confirmed_payment() {
        match parse_notify(&Notify::default()) {
            Ok(Notification::PaymentSucceeded(p)) => assert_is_paid_transaction(&p),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn notification_for_another_merchant_or_app_is_refused() {
        let other_mch = Notify {
            mchid: "1230000109",
            ..Notify::default()
        };
        assert_eq!(parse_notify(&other_mch), Err(NotifyError::WrongMerchant));
        let other_app = Notify {
            appid: "wx0000000000000000",
            ..Notify::default()
        };
        assert_eq!(parse_notify(&other_app), Err(NotifyError::WrongMerchant));
    }

    #[test]
    fn notification_in_another_or_no_currency_is_refused() {
        for currency in [Some("USD"), Some("cny"), Some(""), None] {
            let n = Notify {
                currency,
                ..Notify::default()
            };
            assert!(
                matches!(parse_notify(&n), Err(NotifyError::Malformed(m)) if m.contains("currency")),
                "{currency:?}"
            );
        }
    }

    #[test]
    fn notification_encrypted_with_another_apiv3_key_fails_decryption() {
        let n = Notify {
            apiv3_key: b"another-apiv3-key-of-32-bytes-xx",
            ..Notify::default()
        };
        assert_eq!(parse_notify(&n), Err(NotifyError::Decrypt));
    }

    #[test]
    fn other_events_are_unsupported() {
        let n = Notify {
            event_type: "TRANSACTION.FAIL",
            ..Notify::default()
        };
        assert_eq!(
            parse_notify(&n),
            Err(NotifyError::Unsupported("TRANSACTION.FAIL".into()))
        );
    }

    fn create_refund() -> CreateRefund {
        CreateRefund {
            refund_no: refund_no(),
            pay_no: pay_no(),
            channel_trade_no: "4200001234202603010000000001".into(),
            refund_amount: Fen::new(1990).unwrap(),
            total_amount: Fen::new(1990).unwrap(),
            reason: "重复支付".into(),
        }
    }

    #[test]
    fn refund_body_is_exact_and_defaults_to_the_payment_notify_url() {
        assert_eq!(
            wechat().refund_body(&create_refund()).unwrap(),
            r#"{"out_trade_no":"7301234567890123456","out_refund_no":"7309876543210987654","reason":"重复支付","notify_url":"https://gateway.example/api/callback/wechat","amount":{"refund":1990,"total":1990,"currency":"CNY"}}"#
        );
        let own_url = WechatPay::new(WechatPayConfig {
            refund_notify_url: Some("https://gateway.example/api/callback/wechat-refund".into()),
            ..config("http://127.0.0.1:8090")
        })
        .unwrap();
        let partial = CreateRefund {
            refund_amount: Fen::new(1).unwrap(),
            reason: String::new(),
            ..create_refund()
        };
        assert_eq!(
            own_url.refund_body(&partial).unwrap(),
            r#"{"out_trade_no":"7301234567890123456","out_refund_no":"7309876543210987654","notify_url":"https://gateway.example/api/callback/wechat-refund","amount":{"refund":1,"total":1990,"currency":"CNY"}}"#
        );
    }

    fn refund_json(status: &str) -> serde_json::Value {
        json!({
            "refund_id": "50300000012026030100000000001", "out_refund_no": "7309876543210987654",
            "transaction_id": "4200001234202603010000000001", "out_trade_no": "7301234567890123456",
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
            "success_time": "2026-03-01T10:06:00+08:00", "create_time": "2026-03-01T10:05:30+08:00",
            "status": status, "funds_account": "AVAILABLE",
            "amount": {"total": 1990, "refund": 1990, "payer_total": 1990, "payer_refund": 1990, "currency": "CNY"}
        })
    }

    #[test]
    fn interpret_refund_maps_every_status() {
        let wechat = wechat();
        let state = |body| wechat.interpret_refund(refund_no(), pay_no(), &response(200, body));
        assert_eq!(
            state(refund_json("SUCCESS")).unwrap(),
            RefundState::Succeeded {
                channel_refund_id: "50300000012026030100000000001".into(),
                refunded_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 6, 0).unwrap(),
            }
        );
        let mut processing = refund_json("PROCESSING");
        processing.as_object_mut().unwrap().remove("success_time");
        assert_eq!(state(processing).unwrap(), RefundState::Processing);
        for status in ["CLOSED", "ABNORMAL"] {
            assert!(
                matches!(state(refund_json(status)), Ok(RefundState::Failed { reason }) if reason.starts_with(status)),
                "{status}"
            );
        }
        let mut no_time = refund_json("SUCCESS");
        no_time.as_object_mut().unwrap().remove("success_time");
        assert!(matches!(
            state(no_time),
            Err(ChannelError::UnexpectedResponse(_))
        ));
    }

    #[test]
    fn interpret_refund_refuses_foreign_answers_and_maps_errors() {
        let wechat = wechat();
        let interpret =
            |status, body| wechat.interpret_refund(refund_no(), pay_no(), &response(status, body));
        for (field, value) in [("out_refund_no", "1"), ("out_trade_no", "2")] {
            let mut body = refund_json("SUCCESS");
            body[field] = json!(value);
            assert!(
                matches!(
                    interpret(200, body),
                    Err(ChannelError::UnexpectedResponse(_))
                ),
                "{field}"
            );
        }
        assert!(matches!(
            interpret(200, json!({"status": "SUCCESS"})),
            Err(ChannelError::UnexpectedResponse(_))
        ));
        assert!(matches!(
            interpret(
                404,
                json!({"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})
            ),
            Err(ChannelError::NotFound)
        ));
        assert!(matches!(
            interpret(
                429,
                json!({"code": "FREQUENCY_LIMITED", "message": "频率超限"})
            ),
            Err(ChannelError::Unavailable(_))
        ));
        assert!(matches!(
            interpret(403, json!({"code": "NOT_ENOUGH", "message": "余额不足"})),
            Err(ChannelError::Rejected { code, .. }) if code == "NOT_ENOUGH"
        ));
    }

    /// A refund callback body as WeChat Pay (the sandbox) would send it.
    fn refund_notify_body(
        event_type: &str,
        refund_status: &str,
        mchid: &str,
        original_type: &str,
    ) -> Vec<u8> {
        let notice = json!({
            "mchid": mchid, "transaction_id": "4200001234202603010000000001",
            "out_trade_no": "7301234567890123456", "refund_id": "50300000012026030100000000001",
            "out_refund_no": "7309876543210987654", "refund_status": refund_status,
            "success_time": "2026-03-01T10:06:00+08:00", "user_received_account": "支付用户零钱",
            "amount": {"total": 1990, "refund": 1990, "payer_total": 1990, "payer_refund": 1990}
        });
        let (nonce, ciphertext) = encrypted(DEV_APIV3_KEY.as_bytes(), "refund", &notice);
        json!({
            "id": "EV-2026030110060000000001", "create_time": "2026-03-01T10:06:01+08:00",
            "resource_type": "encrypt-resource", "event_type": event_type, "summary": "退款成功",
            "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext, "associated_data": "refund", "nonce": nonce}
        })
        .to_string()
        .into_bytes()
    }

    fn parse_refund_notify(
        event_type: &str,
        refund_status: &str,
        mchid: &str,
        original_type: &str,
    ) -> Result<Notification, NotifyError> {
        let body = refund_notify_body(event_type, refund_status, mchid, original_type);
        parse(&signed(&body, now()), &body, now())
    }

    #[test]
    fn refund_notifications_yield_refund_updates() {
        assert_eq!(
            parse_refund_notify("REFUND.SUCCESS", "SUCCESS", DEV_MCHID, "refund"),
            Ok(Notification::RefundUpdated {
                refund_no: refund_no(),
                pay_no: pay_no(),
                state: RefundState::Succeeded {
                    channel_refund_id: "50300000012026030100000000001".into(),
                    refunded_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 6, 0).unwrap(),
                },
            })
        );
        for (event, status) in [("REFUND.CLOSED", "CLOSED"), ("REFUND.ABNORMAL", "ABNORMAL")] {
            match parse_refund_notify(event, status, DEV_MCHID, "refund") {
                Ok(Notification::RefundUpdated {
                    refund_no: r,
                    pay_no: p,
                    state: RefundState::Failed { .. },
                }) => assert_eq!((r, p), (refund_no(), pay_no())),
                other => panic!("{event}: {other:?}"),
            }
        }
    }

    #[test]
    fn inconsistent_or_foreign_refund_notifications_are_refused() {
        assert!(matches!(
            parse_refund_notify("REFUND.SUCCESS", "CLOSED", DEV_MCHID, "refund"),
            Err(NotifyError::Malformed(_))
        ));
        assert!(matches!(
            parse_refund_notify("REFUND.SUCCESS", "SUCCESS", DEV_MCHID, "transaction"),
            Err(NotifyError::Malformed(_))
        ));
        assert_eq!(
            parse_refund_notify("REFUND.SUCCESS", "SUCCESS", "1230000109", "refund"),
            Err(NotifyError::WrongMerchant)
        );
        // A payment event whose resource claims to be a refund is refused too.
        let mut body: serde_json::Value =
            serde_json::from_slice(&notify_body(&Notify::default())).unwrap();
        body["resource"]["original_type"] = json!("refund");
        let body = body.to_string().into_bytes();
        assert!(matches!(
            parse(&signed(&body, now()), &body, now()),
            Err(NotifyError::Malformed(_))
        ));
    }

    #[test]
    fn inconsistent_or_malformed_notifications_are_malformed() {
        let notpay = Notify {
            trade_state: "NOTPAY",
            ..Notify::default()
        };
        assert!(matches!(
            parse_notify(&notpay),
            Err(NotifyError::Malformed(_))
        ));
        let sm4 = Notify {
            algorithm: "AEAD_SM4_GCM",
            ..Notify::default()
        };
        assert!(matches!(parse_notify(&sm4), Err(NotifyError::Malformed(_))));
        let garbage = b"not json";
        assert!(matches!(
            parse(&signed(garbage, now()), garbage, now()),
            Err(NotifyError::Malformed(_))
        ));
    }

    #[test]
    fn notification_signature_time_and_serial_are_enforced() {
        let body = notify_body(&Notify::default());
        let headers = signed(&body, now());
        let late = now() + chrono::Duration::seconds(301);
        let early = now() - chrono::Duration::seconds(301);
        assert_eq!(
            parse(&headers, &body, late),
            Err(NotifyError::StaleTimestamp)
        );
        assert_eq!(
            parse(&headers, &body, early),
            Err(NotifyError::StaleTimestamp)
        );
        let mut tampered = body.clone();
        let i = tampered.iter().position(|b| *b == b'2').unwrap();
        tampered[i] = b'3';
        assert_eq!(
            parse(&headers, &tampered, now()),
            Err(NotifyError::BadSignature)
        );
        let unknown = with_value(&headers, "wechatpay-serial", "PUB_KEY_ID_UNKNOWN");
        assert_eq!(
            parse(&unknown, &body, now()),
            Err(NotifyError::UnknownSerial)
        );
    }

    #[test]
    fn acknowledge_replies() {
        let ok = wechat().acknowledge(&Ok(()));
        assert_eq!((ok.status, ok.body.as_slice()), (204, &b""[..]));
        let cases = [
            (NotifyError::BadSignature, 401),
            (NotifyError::StaleTimestamp, 401),
            (NotifyError::UnknownSerial, 401),
            (NotifyError::Malformed("x".into()), 400),
            (NotifyError::Decrypt, 500),
            (NotifyError::WrongMerchant, 500),
            (NotifyError::Unsupported("TRANSACTION.FAIL".into()), 500),
            (NotifyError::Internal("database down".into()), 500),
        ];
        for (error, status) in cases {
            let reply = wechat().acknowledge(&Err(error.clone()));
            assert_eq!(reply.status, status, "{error:?}");
            assert_eq!(reply.content_type, "application/json");
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["code"], "FAIL");
            assert!(!body["message"].as_str().unwrap().is_empty());
        }
    }

    #[test]
    fn channel_is_wechat() {
        assert_eq!(wechat().channel(), PayChannel::Wechat);
    }
}
