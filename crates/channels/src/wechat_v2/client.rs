//! `WechatPayV2`: WeChat Pay API v2 over HTTP (XML bodies, MD5 or HMAC-SHA256 with the
//! merchant's API key; `secapi/` over mutual TLS with the merchant's API certificate).
//!
//! Every answer is parsed by the strict reader ([`super::xml`]) and, unless it is an
//! unsigned `return_code=FAIL`, its `sign` is verified before any field is read;
//! `appid` and `mch_id` must be ours. Notifications likewise: nothing in them (`attach`
//! included) is read before the signature is verified.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use paywire_domain::{PayChannel, PayNo, RefundNo};
use secrecy::SecretString;

use super::crypto::decrypt_req_info;
use super::sign::{SignType, sign_fields, verify};
use super::transformers::{
    business_error, confirmed_payment, format_pay_time, parse_fee, payment_state, refund_state,
    transport_error,
};
use super::wire::{
    ERR_ORDERCLOSED, ERR_ORDERPAID, FAIL, OrderFacts, PATH_CLOSE_ORDER, PATH_ORDER_QUERY,
    PATH_REFUND, PATH_REFUND_QUERY, PATH_UNIFIED_ORDER, RefundAnswer, RefundInfo, SUCCESS,
    TRADE_TYPE_NATIVE, UnifiedOrderAnswer,
};
use super::xml::{self, XmlMap};
use crate::http;
use crate::{
    ChannelError, CloseOutcome, CreatePayment, CreateRefund, CreatedPayment, Notification,
    NotificationReply, NotificationRequest, NotifyError, PaymentChannel, PaymentState, RefundState,
    random_alphanumeric,
};

const USER_AGENT: &str = concat!(
    "paywire-channels/",
    env!("CARGO_PKG_VERSION"),
    " (wechat_v2)"
);
const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";
/// `body` is limited to 128 bytes, `attach` to 127.
const MAX_BODY_FIELD: usize = 128;
const MAX_ATTACH_FIELD: usize = 127;

/// What a merchant needs to talk to WeChat Pay API v2.
pub struct WechatPayV2Config {
    /// `https://api.mch.weixin.qq.com` (the sandbox: its plain listener).
    pub api_base: String,
    /// Where `secapi/` is served (the same host in production; the sandbox's TLS listener).
    pub secapi_base: String,
    pub appid: String,
    pub mch_id: String,
    /// The API key (API密钥, 32 characters): signs both ways and keys `req_info`.
    pub api_key: SecretString,
    pub sign_type: SignType,
    /// The merchant API certificate and its PKCS#8 key, PEM, for `secapi/`.
    pub client_identity_pem: SecretString,
    /// Extra roots trusted for the API's TLS certificate (the sandbox's test CA); the
    /// system roots are trusted anyway.
    pub extra_root_ca_pem: Option<Vec<u8>>,
    /// `spbill_create_ip`: the address of the machine calling the API.
    pub client_ip: String,
    pub notify_url: String,
    pub timeout: Duration,
}

impl fmt::Debug for WechatPayV2Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the API key nor the certificate's private key.
        f.debug_struct("WechatPayV2Config")
            .field("api_base", &self.api_base)
            .field("secapi_base", &self.secapi_base)
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("api_key", &"[REDACTED]")
            .field("sign_type", &self.sign_type)
            .field("client_identity_pem", &"[REDACTED]")
            .field("notify_url", &self.notify_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug)]
pub struct WechatPayV2 {
    config: WechatPayV2Config,
    http: reqwest::Client,
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl WechatPayV2 {
    /// Checks the configuration and builds the HTTP client (with the client certificate).
    pub fn new(config: WechatPayV2Config) -> Result<Self, ChannelError> {
        use secrecy::ExposeSecret;
        let config_err = |m: String| ChannelError::Config(m);
        http::base_url("api_base", &config.api_base)?;
        let secapi = http::base_url("secapi_base", &config.secapi_base)?;
        if secapi.scheme() != "https" {
            return Err(config_err(
                "secapi_base must be https (refunds need the client certificate)".into(),
            ));
        }
        for (name, value) in [("appid", &config.appid), ("mch_id", &config.mch_id)] {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(config_err(format!(
                    "{name} must be non-empty ASCII letters and digits"
                )));
            }
        }
        if config.api_key.expose_secret().len() != 32 {
            return Err(config_err("api_key must be 32 characters".into()));
        }
        if config.notify_url.is_empty() {
            return Err(config_err("notify_url is required".into()));
        }
        let identity =
            reqwest::Identity::from_pem(config.client_identity_pem.expose_secret().as_bytes())
                .map_err(|e| config_err(format!("client certificate: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(USER_AGENT)
            .identity(identity);
        if let Some(pem) = &config.extra_root_ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| config_err(format!("extra root CA: {e}")))?;
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder
            .build()
            .map_err(|e| config_err(format!("HTTP client: {e}")))?;
        Ok(Self { config, http })
    }

    pub fn config(&self) -> &WechatPayV2Config {
        &self.config
    }

    /// The signed request fields: ours plus `appid`, `mch_id`, `nonce_str`, `sign`.
    pub fn signed_request(&self, fields: &[(&str, &str)]) -> XmlMap {
        let mut map: XmlMap = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, *v))
            .collect();
        map.insert("appid", self.config.appid.as_str());
        map.insert("mch_id", self.config.mch_id.as_str());
        map.insert("nonce_str", random_alphanumeric(32));
        sign_fields(&mut map, &self.config.api_key, self.config.sign_type);
        map
    }

    /// Reads an answer: HTTP status, strict XML, `return_code`, signature, merchant,
    /// then `result_code` (see the module docs). `Ok` is a verified business success.
    pub fn verify_answer(&self, status: u16, body: &[u8]) -> Result<XmlMap, ChannelError> {
        if status >= 500 || status == 429 {
            return Err(ChannelError::Unavailable(format!("HTTP {status}")));
        }
        let answer = match xml::parse(body) {
            Ok(answer) => answer,
            // A garbled answer proves nothing; asking again is safe.
            Err(e) if status == 200 => {
                return Err(ChannelError::BadResponseSignature(format!(
                    "unreadable answer: {e}"
                )));
            }
            Err(_) => return Err(ChannelError::UnexpectedResponse(format!("HTTP {status}"))),
        };
        if status != 200 {
            return Err(ChannelError::UnexpectedResponse(format!("HTTP {status}")));
        }
        match answer.get("return_code") {
            Some(SUCCESS) => {}
            Some(FAIL) => return Err(transport_error(&answer)),
            _ => {
                return Err(ChannelError::UnexpectedResponse(
                    "answer without return_code".into(),
                ));
            }
        }
        if !verify(&answer, &self.config.api_key, self.config.sign_type) {
            return Err(ChannelError::BadResponseSignature(
                "sign does not verify with the API key".into(),
            ));
        }
        if answer.get("appid").is_some_and(|a| a != self.config.appid)
            || answer
                .get("mch_id")
                .is_some_and(|m| m != self.config.mch_id)
        {
            return Err(ChannelError::UnexpectedResponse(
                "answer for another appid or mch_id".into(),
            ));
        }
        match answer.get("result_code") {
            Some(SUCCESS) => Ok(answer),
            Some(FAIL) => Err(business_error(&answer)),
            other => Err(ChannelError::UnexpectedResponse(format!(
                "result_code {other:?}"
            ))),
        }
    }

    /// Signs, sends (to `secapi_base` for `secapi/`) and verifies one call.
    async fn call(&self, path: &str, fields: &[(&str, &str)]) -> Result<XmlMap, ChannelError> {
        let base = if path.starts_with("/secapi/") {
            &self.config.secapi_base
        } else {
            &self.config.api_base
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let request = self
            .http
            .post(url)
            .header("Content-Type", XML_CONTENT_TYPE)
            .body(self.signed_request(fields).to_xml());
        let http::Received { status, body, .. } = http::send(request).await?;
        tracing::debug!(status, path, "wechat v2 answer");
        self.verify_answer(status, &body)
    }

    /// The fields of `pay/unifiedorder` for `req` (NATIVE: `product_id` is our trade).
    pub fn unified_order_fields(&self, req: &CreatePayment) -> Vec<(&'static str, String)> {
        vec![
            (
                "body",
                truncate_bytes(&req.description, MAX_BODY_FIELD).to_owned(),
            ),
            (
                "attach",
                truncate_bytes(req.attach.as_deref().unwrap_or(""), MAX_ATTACH_FIELD).to_owned(),
            ),
            ("out_trade_no", req.pay_no.to_string()),
            ("total_fee", req.amount.get().to_string()),
            ("fee_type", "CNY".to_owned()),
            ("spbill_create_ip", self.config.client_ip.clone()),
            ("time_expire", format_pay_time(req.expires_at)),
            ("notify_url", self.config.notify_url.clone()),
            ("trade_type", TRADE_TYPE_NATIVE.to_owned()),
            ("product_id", req.pay_no.to_string()),
        ]
    }

    pub fn interpret_unified_order(&self, answer: &XmlMap) -> Result<CreatedPayment, ChannelError> {
        let body: UnifiedOrderAnswer = answer
            .to_typed()
            .map_err(ChannelError::UnexpectedResponse)?;
        if body
            .trade_type
            .as_deref()
            .is_some_and(|t| t != TRADE_TYPE_NATIVE)
        {
            return Err(ChannelError::UnexpectedResponse(
                "not a NATIVE trade".into(),
            ));
        }
        match body.code_url.filter(|c| !c.is_empty()) {
            Some(code_url) => Ok(CreatedPayment { code_url }),
            None => Err(ChannelError::UnexpectedResponse("no code_url".into())),
        }
    }

    pub fn interpret_order_query(
        &self,
        pay_no: PayNo,
        answer: &XmlMap,
    ) -> Result<PaymentState, ChannelError> {
        let facts: OrderFacts = answer
            .to_typed()
            .map_err(ChannelError::UnexpectedResponse)?;
        payment_state(pay_no, &facts)
    }

    /// `None`: a refusal that says nothing certain; the trade's state decides.
    pub fn interpret_close(
        result: Result<XmlMap, ChannelError>,
    ) -> Result<Option<CloseOutcome>, ChannelError> {
        match result {
            Ok(_) | Err(ChannelError::NotFound) => Ok(Some(CloseOutcome::Closed)),
            Err(ChannelError::Rejected { code, .. }) if code == ERR_ORDERCLOSED => {
                Ok(Some(CloseOutcome::Closed))
            }
            Err(ChannelError::Rejected { code, .. }) if code == ERR_ORDERPAID => {
                Ok(Some(CloseOutcome::AlreadyPaid))
            }
            Err(ChannelError::Rejected { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The fields of `secapi/pay/refund` (our `refund_no` is `out_refund_no`, the
    /// idempotency key: the same number never refunds twice).
    pub fn refund_fields(&self, req: &CreateRefund) -> Vec<(&'static str, String)> {
        vec![
            ("transaction_id", req.channel_trade_no.clone()),
            ("out_trade_no", req.pay_no.to_string()),
            ("out_refund_no", req.refund_no.to_string()),
            ("total_fee", req.total_amount.get().to_string()),
            ("refund_fee", req.refund_amount.get().to_string()),
            ("refund_fee_type", "CNY".to_owned()),
            ("refund_desc", truncate_bytes(&req.reason, 80).to_owned()),
            ("notify_url", self.config.notify_url.clone()),
        ]
    }

    /// An accepted refund is not final in v2: the notification or the query says more.
    pub fn interpret_refund(
        &self,
        req: &CreateRefund,
        answer: &XmlMap,
    ) -> Result<RefundState, ChannelError> {
        let body: RefundAnswer = answer
            .to_typed()
            .map_err(ChannelError::UnexpectedResponse)?;
        if body.out_refund_no.as_deref() != Some(req.refund_no.to_string().as_str())
            || body
                .out_trade_no
                .as_deref()
                .is_some_and(|t| t != req.pay_no.to_string())
        {
            return Err(ChannelError::UnexpectedResponse(
                "refund answered for another refund or trade".into(),
            ));
        }
        if let Some(fee) = body.refund_fee.as_deref() {
            let fee = parse_fee(fee).map_err(ChannelError::UnexpectedResponse)?;
            if fee != req.refund_amount {
                return Err(ChannelError::UnexpectedResponse(
                    "refund_fee differs from the amount asked".into(),
                ));
            }
        }
        if body.refund_id.as_deref().is_none_or(str::is_empty) {
            return Err(ChannelError::UnexpectedResponse("no refund_id".into()));
        }
        Ok(RefundState::Processing)
    }

    /// `pay/refundquery` by `out_refund_no`: the one refund is at index 0.
    pub fn interpret_refund_query(
        &self,
        refund_no: RefundNo,
        pay_no: PayNo,
        answer: &XmlMap,
    ) -> Result<RefundState, ChannelError> {
        let bad = |m: String| ChannelError::UnexpectedResponse(format!("refundquery: {m}"));
        if answer.get("out_trade_no") != Some(pay_no.to_string().as_str())
            || answer.get("out_refund_no_0") != Some(refund_no.to_string().as_str())
        {
            return Err(bad("answered for another refund or trade".into()));
        }
        let status = answer
            .non_empty("refund_status_0")
            .ok_or_else(|| bad("no refund_status_0".into()))?;
        refund_state(
            status,
            answer.non_empty("refund_id_0"),
            answer.non_empty("refund_success_time_0"),
        )
        .map_err(bad)
    }

    /// Verifies and parses a notification: a payment (signed) or a refund (`req_info`).
    pub fn notification(&self, req: &NotificationRequest<'_>) -> Result<Notification, NotifyError> {
        let outer = xml::parse(req.body).map_err(|e| NotifyError::Malformed(e.to_string()))?;
        if outer.get("return_code") != Some(SUCCESS) {
            return Err(NotifyError::Malformed("return_code is not SUCCESS".into()));
        }
        if let Some(req_info) = outer.non_empty("req_info") {
            // Refund notifications carry no sign: the key is what proves them.
            if outer.get("appid") != Some(self.config.appid.as_str())
                || outer.get("mch_id") != Some(self.config.mch_id.as_str())
            {
                return Err(NotifyError::WrongMerchant);
            }
            return self.refund_notification(req_info);
        }
        if !verify(&outer, &self.config.api_key, self.config.sign_type) {
            return Err(NotifyError::BadSignature);
        }
        // Verified from here on.
        if outer.get("appid") != Some(self.config.appid.as_str())
            || outer.get("mch_id") != Some(self.config.mch_id.as_str())
        {
            return Err(NotifyError::WrongMerchant);
        }
        if outer.get("result_code") != Some(SUCCESS) {
            return Err(NotifyError::Unsupported(format!(
                "result_code {}",
                outer.get("result_code").unwrap_or("missing")
            )));
        }
        let pay_no: PayNo = outer
            .non_empty("out_trade_no")
            .ok_or_else(|| NotifyError::Malformed("missing out_trade_no".into()))?
            .parse()
            .map_err(|_| NotifyError::Malformed("out_trade_no is not a pay_no".into()))?;
        let facts: OrderFacts = outer.to_typed().map_err(NotifyError::Malformed)?;
        confirmed_payment(pay_no, &facts)
            .map(Notification::PaymentSucceeded)
            .map_err(NotifyError::Malformed)
    }

    fn refund_notification(&self, req_info: &str) -> Result<Notification, NotifyError> {
        let plain =
            decrypt_req_info(&self.config.api_key, req_info).map_err(|_| NotifyError::Decrypt)?;
        // Garbage from a wrong key or spliced blocks does not parse: it is not ours.
        let inner = xml::parse_with_root(&plain, "root").map_err(|_| NotifyError::Decrypt)?;
        let info: RefundInfo = inner.to_typed().map_err(NotifyError::Malformed)?;
        let required = |v: &Option<String>, name: &str| {
            v.clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| NotifyError::Malformed(format!("req_info without {name}")))
        };
        let refund_no: RefundNo = required(&info.out_refund_no, "out_refund_no")?
            .parse()
            .map_err(|_| NotifyError::Malformed("out_refund_no is not a refund_no".into()))?;
        let pay_no: PayNo = required(&info.out_trade_no, "out_trade_no")?
            .parse()
            .map_err(|_| NotifyError::Malformed("out_trade_no is not a pay_no".into()))?;
        for (fee, name) in [
            (&info.total_fee, "total_fee"),
            (&info.refund_fee, "refund_fee"),
        ] {
            parse_fee(&required(fee, name)?).map_err(NotifyError::Malformed)?;
        }
        let status = required(&info.refund_status, "refund_status")?;
        let state = refund_state(
            &status,
            info.refund_id.as_deref(),
            info.success_time.as_deref(),
        )
        .map_err(NotifyError::Malformed)?;
        if state == RefundState::Processing {
            return Err(NotifyError::Unsupported("refund_status PROCESSING".into()));
        }
        Ok(Notification::RefundUpdated {
            refund_no,
            pay_no,
            state,
        })
    }
}

/// The exact v2 replies: `SUCCESS` only for a notification whose effect is committed,
/// `FAIL` (and a non-2xx status) otherwise, so WeChat Pay delivers it again.
pub fn acknowledge(result: &Result<(), NotifyError>) -> NotificationReply {
    let (status, code, msg) = match result {
        Ok(()) => (200, SUCCESS, "OK"),
        Err(NotifyError::BadSignature) => (401, FAIL, "bad signature"),
        Err(NotifyError::Malformed(_)) => (400, FAIL, "malformed notification"),
        Err(NotifyError::WrongMerchant) => (400, FAIL, "wrong merchant"),
        Err(NotifyError::Decrypt) => (400, FAIL, "req_info could not be decrypted"),
        Err(NotifyError::StaleTimestamp | NotifyError::UnknownSerial) => (400, FAIL, "refused"),
        Err(NotifyError::Unsupported(_)) => (500, FAIL, "unsupported notification"),
        Err(NotifyError::Internal(_)) => (500, FAIL, "temporarily unable to process"),
    };
    NotificationReply {
        status,
        content_type: "text/xml",
        body: format!(
            "<xml><return_code><![CDATA[{code}]]></return_code><return_msg><![CDATA[{msg}]]></return_msg></xml>"
        )
        .into_bytes(),
    }
}

#[async_trait]
impl PaymentChannel for WechatPayV2 {
    fn channel(&self) -> PayChannel {
        PayChannel::WechatV2
    }

    #[tracing::instrument(skip_all, fields(channel = "wechat_v2", pay_no = %req.pay_no))]
    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ChannelError> {
        let fields = self.unified_order_fields(req);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = self.call(PATH_UNIFIED_ORDER, &fields).await?;
        self.interpret_unified_order(&answer)
    }

    #[tracing::instrument(skip_all, fields(channel = "wechat_v2", pay_no = %pay_no))]
    async fn query_payment(&self, pay_no: PayNo) -> Result<PaymentState, ChannelError> {
        let otn = pay_no.to_string();
        let answer = self
            .call(PATH_ORDER_QUERY, &[("out_trade_no", &otn)])
            .await?;
        self.interpret_order_query(pay_no, &answer)
    }

    /// Closes; `ORDERPAID` means paid, `ORDERCLOSED` closed; any other refusal is decided
    /// by the trade's state.
    #[tracing::instrument(skip_all, fields(channel = "wechat_v2", pay_no = %pay_no))]
    async fn close_payment(&self, pay_no: PayNo) -> Result<CloseOutcome, ChannelError> {
        let otn = pay_no.to_string();
        let result = self.call(PATH_CLOSE_ORDER, &[("out_trade_no", &otn)]).await;
        let refusal = match &result {
            Err(ChannelError::Rejected { code, message }) => Some((code.clone(), message.clone())),
            _ => None,
        };
        if let Some(outcome) = Self::interpret_close(result)? {
            return Ok(outcome);
        }
        match self.query_payment(pay_no).await? {
            PaymentState::Paid(_) | PaymentState::Refunded(_) => Ok(CloseOutcome::AlreadyPaid),
            PaymentState::Closed => Ok(CloseOutcome::Closed),
            PaymentState::NotPaid => {
                let (code, message) = refusal.unwrap_or_default();
                Err(ChannelError::Rejected { code, message })
            }
        }
    }

    #[tracing::instrument(skip_all, fields(channel = "wechat_v2", refund_no = %req.refund_no, pay_no = %req.pay_no))]
    async fn refund(&self, req: &CreateRefund) -> Result<RefundState, ChannelError> {
        let fields = self.refund_fields(req);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = self.call(PATH_REFUND, &fields).await?;
        self.interpret_refund(req, &answer)?;
        // Usually still processing; the query may already know it final.
        match self.query_refund(req.refund_no, req.pay_no).await {
            Ok(state) => Ok(state),
            Err(ChannelError::NotFound) => Ok(RefundState::Processing),
            Err(e) if e.is_retryable() => Ok(RefundState::Processing),
            Err(e) => Err(e),
        }
    }

    #[tracing::instrument(skip_all, fields(channel = "wechat_v2", refund_no = %refund_no, pay_no = %pay_no))]
    async fn query_refund(
        &self,
        refund_no: RefundNo,
        pay_no: PayNo,
    ) -> Result<RefundState, ChannelError> {
        let orn = refund_no.to_string();
        let answer = self
            .call(PATH_REFUND_QUERY, &[("out_refund_no", &orn)])
            .await?;
        self.interpret_refund_query(refund_no, pay_no, &answer)
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
    use crate::test_support::{now, pay_no, refund_no};
    use crate::wechat_v2::crypto::encrypt_req_info;
    use crate::wechat_v2::{DEV_API_KEY, DEV_APPID, DEV_MCH_ID};
    use chrono::TimeZone;
    use paywire_domain::Fen;

    const KEYS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/test-keys/wechat_v2"
    );

    fn config(sign_type: SignType) -> WechatPayV2Config {
        WechatPayV2Config {
            api_base: "http://127.0.0.1:8090".into(),
            secapi_base: "https://127.0.0.1:8443".into(),
            appid: DEV_APPID.into(),
            mch_id: DEV_MCH_ID.into(),
            api_key: SecretString::from(DEV_API_KEY),
            sign_type,
            client_identity_pem: SecretString::from(
                std::fs::read_to_string(format!("{KEYS}/client_identity.pem")).unwrap(),
            ),
            extra_root_ca_pem: Some(std::fs::read(format!("{KEYS}/ca.pem")).unwrap()),
            client_ip: "127.0.0.1".into(),
            notify_url: "https://gateway.example/api/callback/wechat_v2".into(),
            timeout: Duration::from_secs(5),
        }
    }

    fn channel() -> WechatPayV2 {
        WechatPayV2::new(config(SignType::Md5)).unwrap()
    }

    fn key() -> SecretString {
        SecretString::from(DEV_API_KEY)
    }

    /// An answer as WeChat Pay writes it: our ids, `SUCCESS`/`SUCCESS`, signed.
    fn answer(sign_type: SignType, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut map: XmlMap = [
            ("return_code", "SUCCESS"),
            ("return_msg", "OK"),
            ("appid", DEV_APPID),
            ("mch_id", DEV_MCH_ID),
            ("nonce_str", "IITRi8Iabbblz1Jc"),
            ("result_code", "SUCCESS"),
        ]
        .into_iter()
        .collect();
        for (k, v) in fields {
            map.insert(*k, *v);
        }
        sign_fields(&mut map, &key(), sign_type);
        map.to_xml().into_bytes()
    }

    fn create() -> CreatePayment {
        CreatePayment {
            pay_no: pay_no(),
            amount: Fen::new(10099).unwrap(),
            description: "Rust 入门".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 30, 0).unwrap(),
            attach: Some("order 42".into()),
        }
    }

    fn create_refund() -> CreateRefund {
        CreateRefund {
            refund_no: refund_no(),
            pay_no: pay_no(),
            channel_trade_no: "4200000001202603011234567890".into(),
            refund_amount: Fen::new(29).unwrap(),
            total_amount: Fen::new(10099).unwrap(),
            reason: "stray money".into(),
        }
    }

    use chrono::Utc;

    #[test]
    fn requests_are_signed_with_our_ids_and_the_native_fields() {
        for sign_type in [SignType::Md5, SignType::HmacSha256] {
            let channel = WechatPayV2::new(config(sign_type)).unwrap();
            let fields = channel.unified_order_fields(&create());
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let xml = channel.signed_request(&fields).to_xml();
            let parsed = xml::parse(xml.as_bytes()).unwrap();
            assert!(verify(&parsed, &key(), sign_type));
            for (k, v) in [
                ("appid", DEV_APPID),
                ("mch_id", DEV_MCH_ID),
                ("out_trade_no", "7301234567890123456"),
                ("product_id", "7301234567890123456"),
                ("total_fee", "10099"),
                ("trade_type", "NATIVE"),
                ("time_expire", "20260301103000"),
                ("body", "Rust 入门"),
                ("attach", "order 42"),
                ("spbill_create_ip", "127.0.0.1"),
            ] {
                assert_eq!(parsed.get(k), Some(v), "{k}");
            }
            assert_eq!(parsed.get("nonce_str").map(str::len), Some(32));
            assert_eq!(
                parsed.get("sign_type"),
                (sign_type == SignType::HmacSha256).then_some("HMAC-SHA256")
            );
        }
        // An empty attach is not sent; body is cut to 128 bytes on a character boundary.
        let long = CreatePayment {
            description: "课".repeat(60),
            attach: None,
            ..create()
        };
        let fields = channel().unified_order_fields(&long);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let map = channel().signed_request(&fields);
        assert_eq!(map.get("attach"), None);
        assert_eq!(map.get("body").unwrap().len(), 126);
    }

    #[test]
    fn answers_are_believed_only_when_signed_by_the_key() {
        let channel = channel();
        let good = answer(
            SignType::Md5,
            &[
                ("code_url", "weixin://wxpay/bizpayurl?pr=NwY5Mz9"),
                ("trade_type", "NATIVE"),
                ("prepay_id", "wx201410272009395522657a690389285100"),
            ],
        );
        let verified = channel.verify_answer(200, &good).unwrap();
        assert_eq!(
            channel.interpret_unified_order(&verified).unwrap().code_url,
            "weixin://wxpay/bizpayurl?pr=NwY5Mz9"
        );
        // Tampered: a changed value no longer verifies.
        let tampered = String::from_utf8(good.clone())
            .unwrap()
            .replace("NwY5Mz9", "EvilQR1");
        assert!(matches!(
            channel.verify_answer(200, tampered.as_bytes()),
            Err(ChannelError::BadResponseSignature(_))
        ));
        // Signed with HMAC while we expect MD5, or with another key.
        let hmac = answer(SignType::HmacSha256, &[("code_url", "weixin://x")]);
        assert!(matches!(
            channel.verify_answer(200, &hmac),
            Err(ChannelError::BadResponseSignature(_))
        ));
        let mut foreign: XmlMap = xml::parse(&good).unwrap();
        sign_fields(
            &mut foreign,
            &SecretString::from("x".repeat(32)),
            SignType::Md5,
        );
        assert!(matches!(
            channel.verify_answer(200, foreign.to_xml().as_bytes()),
            Err(ChannelError::BadResponseSignature(_))
        ));
        // Signed by the key but for another merchant.
        let other_mch = answer(SignType::Md5, &[("mch_id", "1900000001")]);
        assert!(matches!(
            channel.verify_answer(200, &other_mch),
            Err(ChannelError::UnexpectedResponse(_))
        ));
        // A duplicated element is refused before any signature is computed.
        let dup = String::from_utf8(good)
            .unwrap()
            .replace("<xml>", "<xml><code_url>weixin://evil</code_url>");
        assert!(channel.verify_answer(200, dup.as_bytes()).is_err());
        // Unsigned FAIL: a refusal, never "not found".
        let fail = b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[ORDERNOTEXIST]]></return_msg></xml>";
        assert!(matches!(
            channel.verify_answer(200, fail),
            Err(ChannelError::Rejected { code, .. }) if code == "FAIL"
        ));
        assert!(matches!(
            channel.verify_answer(503, b""),
            Err(ChannelError::Unavailable(_))
        ));
        assert!(matches!(
            channel.verify_answer(200, b"<html>"),
            Err(ChannelError::BadResponseSignature(_))
        ));
        assert!(matches!(
            channel.verify_answer(404, b"not found"),
            Err(ChannelError::UnexpectedResponse(_))
        ));
    }

    #[test]
    fn result_codes_map_per_call() {
        let channel = channel();
        let fail = |code: &str| {
            channel.verify_answer(
                200,
                &answer(
                    SignType::Md5,
                    &[
                        ("result_code", "FAIL"),
                        ("err_code", code),
                        ("err_code_des", "d"),
                    ],
                ),
            )
        };
        assert!(matches!(fail("ORDERNOTEXIST"), Err(ChannelError::NotFound)));
        assert!(matches!(
            fail("SYSTEMERROR"),
            Err(ChannelError::Unavailable(_))
        ));
        assert_eq!(
            WechatPayV2::interpret_close(fail("ORDERPAID")).unwrap(),
            Some(CloseOutcome::AlreadyPaid)
        );
        assert_eq!(
            WechatPayV2::interpret_close(fail("ORDERCLOSED")).unwrap(),
            Some(CloseOutcome::Closed)
        );
        assert_eq!(
            WechatPayV2::interpret_close(fail("ORDERNOTEXIST")).unwrap(),
            Some(CloseOutcome::Closed)
        );
        assert_eq!(
            WechatPayV2::interpret_close(fail("PARAM_ERROR")).unwrap(),
            None
        );
        assert!(WechatPayV2::interpret_close(fail("SYSTEMERROR")).is_err());
        assert!(matches!(
            fail("OUT_TRADE_NO_USED"),
            Err(ChannelError::Rejected { code, .. }) if code == "OUT_TRADE_NO_USED"
        ));
    }

    #[test]
    fn order_query_and_refund_answers() {
        let channel = channel();
        let paid = channel
            .verify_answer(
                200,
                &answer(
                    SignType::Md5,
                    &[
                        ("trade_state", "SUCCESS"),
                        ("out_trade_no", "7301234567890123456"),
                        ("transaction_id", "4200000001202603011234567890"),
                        ("total_fee", "10099"),
                        ("time_end", "20260301100500"),
                    ],
                ),
            )
            .unwrap();
        assert!(matches!(
            channel.interpret_order_query(pay_no(), &paid),
            Ok(PaymentState::Paid(p)) if p.amount.get() == 10099
        ));
        let refund = channel
            .verify_answer(
                200,
                &answer(
                    SignType::Md5,
                    &[
                        ("out_trade_no", "7301234567890123456"),
                        ("out_refund_no", "7309876543210987654"),
                        ("refund_id", "50000000382019052709732678859"),
                        ("refund_fee", "29"),
                    ],
                ),
            )
            .unwrap();
        assert_eq!(
            channel.interpret_refund(&create_refund(), &refund).unwrap(),
            RefundState::Processing
        );
        let mut other = create_refund();
        other.refund_amount = Fen::new(30).unwrap();
        assert!(channel.interpret_refund(&other, &refund).is_err());
        let query = channel
            .verify_answer(
                200,
                &answer(
                    SignType::Md5,
                    &[
                        ("out_trade_no", "7301234567890123456"),
                        ("refund_count", "1"),
                        ("out_refund_no_0", "7309876543210987654"),
                        ("refund_id_0", "50000000382019052709732678859"),
                        ("refund_status_0", "SUCCESS"),
                        ("refund_success_time_0", "2026-03-01 10:06:00"),
                    ],
                ),
            )
            .unwrap();
        assert_eq!(
            channel
                .interpret_refund_query(refund_no(), pay_no(), &query)
                .unwrap(),
            RefundState::Succeeded {
                channel_refund_id: "50000000382019052709732678859".into(),
                refunded_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 6, 0).unwrap(),
            }
        );
        assert!(
            channel
                .interpret_refund_query("7309876543210987655".parse().unwrap(), pay_no(), &query)
                .is_err()
        );
    }

    fn payment_notification(overrides: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut map: XmlMap = [
            ("return_code", "SUCCESS"),
            ("appid", DEV_APPID),
            ("mch_id", DEV_MCH_ID),
            ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
            ("result_code", "SUCCESS"),
            ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
            ("is_subscribe", "N"),
            ("trade_type", "NATIVE"),
            ("bank_type", "CMC"),
            ("total_fee", "29"),
            ("cash_fee", "29"),
            ("fee_type", "CNY"),
            ("transaction_id", "4200000001202603011234567890"),
            ("out_trade_no", "7301234567890123456"),
            ("attach", "order 42"),
            ("time_end", "20260301100500"),
        ]
        .into_iter()
        .collect();
        for (k, v) in overrides {
            match v {
                Some(v) => map.insert(*k, *v),
                None => {
                    map.remove(k);
                }
            }
        }
        sign_fields(&mut map, &key(), SignType::Md5);
        map.to_xml().into_bytes()
    }

    fn parse(body: &[u8]) -> Result<Notification, NotifyError> {
        channel().notification(&NotificationRequest {
            headers: &[],
            body,
            now: now(),
        })
    }

    #[test]
    fn payment_notification_yields_the_confirmed_payment() {
        assert_eq!(
            parse(&payment_notification(&[])),
            Ok(Notification::PaymentSucceeded(crate::ConfirmedPayment {
                pay_no: pay_no(),
                channel_trade_no: "4200000001202603011234567890".into(),
                amount: Fen::new(29).unwrap(),
                paid_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 5, 0).unwrap(),
            }))
        );
    }

    #[test]
    fn notifications_that_fail_verification_are_refused() {
        let body = String::from_utf8(payment_notification(&[])).unwrap();
        // Seed 004's bug: a forged attach (or amount) is caught by the signature.
        for (from, to) in [
            ("order 42", "order 43"),
            ("<total_fee><![CDATA[29]]>", "<total_fee><![CDATA[1]]>"),
        ] {
            let tampered = body.replace(from, to);
            assert_ne!(tampered, body);
            assert_eq!(parse(tampered.as_bytes()), Err(NotifyError::BadSignature));
        }
        let unsigned = body.replace("<sign>", "<sig>").replace("</sign>", "</sig>");
        assert_eq!(parse(unsigned.as_bytes()), Err(NotifyError::BadSignature));
        for foreign in [
            ("appid", Some("wx0000000000000000")),
            ("mch_id", Some("1900000001")),
            ("mch_id", None),
        ] {
            assert_eq!(
                parse(&payment_notification(&[foreign])),
                Err(NotifyError::WrongMerchant),
                "{foreign:?}"
            );
        }
        assert!(matches!(
            parse(&payment_notification(&[("result_code", Some("FAIL"))])),
            Err(NotifyError::Unsupported(_))
        ));
        for malformed in [
            vec![("total_fee", Some("0.29"))],
            vec![("fee_type", Some("USD"))],
            vec![("out_trade_no", Some("PW-1"))],
            vec![("time_end", None)],
            vec![("transaction_id", None)],
        ] {
            assert!(
                matches!(
                    parse(&payment_notification(&malformed)),
                    Err(NotifyError::Malformed(_))
                ),
                "{malformed:?}"
            );
        }
        let doctype = format!("<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{body}");
        assert!(matches!(
            parse(doctype.as_bytes()),
            Err(NotifyError::Malformed(_))
        ));
    }

    fn refund_notification(appid: &str, inner: &str, api_key: &str) -> Vec<u8> {
        let req_info = encrypt_req_info(&SecretString::from(api_key), inner.as_bytes());
        let map: XmlMap = [
            ("return_code", "SUCCESS"),
            ("appid", appid),
            ("mch_id", DEV_MCH_ID),
            ("nonce_str", "TeqClE3i0mvn3DrK"),
            ("req_info", req_info.as_str()),
        ]
        .into_iter()
        .collect();
        map.to_xml().into_bytes()
    }

    const REFUND_INFO: &str = "<root><out_refund_no><![CDATA[7309876543210987654]]></out_refund_no><out_trade_no><![CDATA[7301234567890123456]]></out_trade_no><refund_account><![CDATA[REFUND_SOURCE_RECHARGE_FUNDS]]></refund_account><refund_fee><![CDATA[29]]></refund_fee><refund_id><![CDATA[50000000382019052709732678859]]></refund_id><refund_recv_accout><![CDATA[支付用户零钱]]></refund_recv_accout><refund_request_source><![CDATA[API]]></refund_request_source><refund_status><![CDATA[SUCCESS]]></refund_status><settlement_refund_fee><![CDATA[29]]></settlement_refund_fee><settlement_total_fee><![CDATA[10099]]></settlement_total_fee><success_time><![CDATA[2026-03-01 10:06:00]]></success_time><total_fee><![CDATA[10099]]></total_fee><transaction_id><![CDATA[4200000001202603011234567890]]></transaction_id></root>";

    #[test]
    fn refund_notification_is_decrypted_with_the_md5_of_the_api_key() {
        assert_eq!(
            parse(&refund_notification(DEV_APPID, REFUND_INFO, DEV_API_KEY)),
            Ok(Notification::RefundUpdated {
                refund_no: refund_no(),
                pay_no: pay_no(),
                state: RefundState::Succeeded {
                    channel_refund_id: "50000000382019052709732678859".into(),
                    refunded_at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 6, 0).unwrap(),
                },
            })
        );
        assert_eq!(
            parse(&refund_notification(
                DEV_APPID,
                REFUND_INFO,
                &"k".repeat(32)
            )),
            Err(NotifyError::Decrypt)
        );
        assert_eq!(
            parse(&refund_notification(
                "wx0000000000000000",
                REFUND_INFO,
                DEV_API_KEY
            )),
            Err(NotifyError::WrongMerchant)
        );
        let closed = REFUND_INFO.replace("[SUCCESS]", "[REFUNDCLOSE]");
        assert!(matches!(
            parse(&refund_notification(DEV_APPID, &closed, DEV_API_KEY)),
            Ok(Notification::RefundUpdated {
                state: RefundState::Failed { .. },
                ..
            })
        ));
        let no_id = REFUND_INFO.replace(
            "<out_refund_no><![CDATA[7309876543210987654]]></out_refund_no>",
            "",
        );
        assert!(matches!(
            parse(&refund_notification(DEV_APPID, &no_id, DEV_API_KEY)),
            Err(NotifyError::Malformed(_))
        ));
    }

    #[test]
    fn acknowledgements_are_the_exact_v2_replies() {
        let ok = acknowledge(&Ok(()));
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.body,
            b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
        );
        for e in [
            NotifyError::BadSignature,
            NotifyError::WrongMerchant,
            NotifyError::Decrypt,
            NotifyError::Malformed("x".into()),
            NotifyError::Unsupported("x".into()),
            NotifyError::Internal("db".into()),
        ] {
            let reply = acknowledge(&Err(e.clone()));
            assert!(reply.status >= 400, "{e:?}");
            let parsed = xml::parse(&reply.body).unwrap();
            assert_eq!(parsed.get("return_code"), Some("FAIL"), "{e:?}");
        }
    }

    #[test]
    fn config_is_checked_and_debug_hides_the_secrets() {
        type Spoil = fn(&mut WechatPayV2Config);
        let cases: [(&str, Spoil); 5] = [
            ("plain secapi", |c| {
                c.secapi_base = "http://127.0.0.1:8443".into()
            }),
            ("short key", |c| c.api_key = SecretString::from("short")),
            ("bad mch", |c| c.mch_id = "19/0".into()),
            ("no notify", |c| c.notify_url = String::new()),
            ("no identity", |c| {
                c.client_identity_pem = SecretString::from("")
            }),
        ];
        for (what, spoil) in cases {
            let mut c = config(SignType::Md5);
            spoil(&mut c);
            assert!(
                matches!(WechatPayV2::new(c), Err(ChannelError::Config(_))),
                "{what}"
            );
        }
        let text = format!("{:?}", channel());
        assert!(!text.contains(DEV_API_KEY));
        assert!(!text.contains("PRIVATE KEY"));
        assert_eq!(channel().channel(), PayChannel::WechatV2);
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        let channel = WechatPayV2::new(WechatPayV2Config {
            api_base: "http://127.0.0.1:1".into(),
            secapi_base: "https://127.0.0.1:1".into(),
            ..config(SignType::Md5)
        })
        .unwrap();
        for err in [
            channel.query_payment(pay_no()).await.unwrap_err(),
            channel.create_payment(&create()).await.unwrap_err(),
            channel.close_payment(pay_no()).await.unwrap_err(),
            channel.refund(&create_refund()).await.unwrap_err(),
            channel
                .query_refund(refund_no(), pay_no())
                .await
                .unwrap_err(),
        ] {
            assert!(matches!(err, ChannelError::Unavailable(_)), "{err:?}");
        }
    }
}
