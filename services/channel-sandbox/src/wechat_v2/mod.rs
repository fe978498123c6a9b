//! WeChat Pay API v2 (XML) as the merchant sees it: `pay/unifiedorder` (NATIVE),
//! `pay/orderquery`, `pay/closeorder`, `pay/refundquery` on the public listener,
//! `secapi/pay/refund` only on the TLS listener that demands the merchant's client
//! certificate ([`tls`]); signed XML answers with v2's `return_code`/`result_code` and
//! documented `err_code`s; payment notifications (signed XML) and refund notifications
//! (`req_info`, AES-256-ECB) on WeChat's retry schedule; the fault injection of the
//! other channels.
//!
//! Trades live in the same [`TradeBook`] as v3's (one state machine), a separate book.

pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, FixedOffset, Utc};
use paywire_channels::random_alphanumeric;
use paywire_channels::wechat_v2::crypto::encrypt_req_info;
use paywire_channels::wechat_v2::sign::{SignType, sign_fields, verify};
use paywire_channels::wechat_v2::transformers::{format_pay_time, format_refund_time};
use paywire_channels::wechat_v2::xml::{self, XmlMap};
use paywire_channels::wechat_v2::{self as dev};
use paywire_domain::{Fen, PayChannel};
use paywire_platform::config::expose_for_layering;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::SandboxError;
use crate::faults::{ApiPlan, Faults};
use crate::notify::{Notifier, Outgoing, WECHAT_RETRY_SCHEDULE};
use crate::wechat::state::{
    OutTradeNo, PrepayParams, RefundParams, Trade, TradeBook, TradeRef, cst,
};

/// The v2 merchant the sandbox knows. Defaults: the test-only identity
/// (`paywire_channels::wechat_v2::DEV_*`, `deploy/test-keys/wechat_v2/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WechatV2Settings {
    pub appid: String,
    pub mch_id: String,
    /// The merchant's API key (signs both ways, keys `req_info`).
    #[serde(serialize_with = "expose_for_layering")]
    pub api_key: SecretString,
    /// The TLS listener of `secapi/` (on `http.host`; 0 picks a free port).
    pub tls_port: u16,
    pub server_cert_path: String,
    pub server_key_path: String,
    /// The CA whose client certificates `secapi/` accepts (the merchant's).
    pub client_ca_path: String,
    /// A refund answers accepted and turns SUCCESS this long after (0: at once).
    pub refund_delay_ms: u64,
}

impl Default for WechatV2Settings {
    fn default() -> Self {
        Self {
            appid: dev::DEV_APPID.into(),
            mch_id: dev::DEV_MCH_ID.into(),
            api_key: SecretString::from(dev::DEV_API_KEY),
            tls_port: 8443,
            server_cert_path: dev::DEV_SERVER_CERT_PATH.into(),
            server_key_path: dev::DEV_SERVER_KEY_PATH.into(),
            client_ca_path: dev::DEV_CA_PATH.into(),
            refund_delay_ms: 0,
        }
    }
}

impl WechatV2Settings {
    /// The test-only PKI in `test_keys_dir` (absolute `deploy/test-keys/wechat_v2`) and a free TLS
    /// port: how tests run the sandbox from any working directory, side by side.
    pub fn use_test_keys_in(&mut self, test_keys_dir: &str) {
        self.tls_port = 0;
        self.server_cert_path = format!("{test_keys_dir}/server_cert.pem");
        self.server_key_path = format!("{test_keys_dir}/server_key.pem");
        self.client_ca_path = format!("{test_keys_dir}/ca.pem");
    }
}

/// WeChat Pay v2's side of the sandbox.
pub struct WechatV2Sandbox {
    pub appid: String,
    pub mch_id: String,
    api_key: SecretString,
    pub trades: TradeBook,
    /// The `sign_type` each trade was created with: its notification is signed the same.
    sign_types: Mutex<HashMap<String, SignType>>,
    notifier: Arc<Notifier>,
    pub faults: Arc<Faults>,
    refund_delay: std::time::Duration,
}

paywire_platform::debug_fields!(WechatV2Sandbox { appid, mch_id });

/// Where a request came in: `secapi/` exists only behind the client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Plain,
    MutualTls,
}

/// A v2 business error: `result_code=FAIL` with `err_code` (signed). Transport-level
/// refusals (`return_code=FAIL`, unsigned) are answered by [`fail`] directly.
#[derive(Debug)]
enum V2Error {
    Result(&'static str, String),
}

fn result(code: &'static str, des: impl Into<String>) -> V2Error {
    V2Error::Result(code, des.into())
}

impl From<SandboxError> for V2Error {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::OrderNotExist => result("ORDERNOTEXIST", "此交易订单号不存在"),
            SandboxError::OrderPaid => result("ORDERPAID", "该订单已支付"),
            SandboxError::OrderClosed => result("ORDERCLOSED", "该订单已关闭"),
            SandboxError::OutTradeNoUsed => result("OUT_TRADE_NO_USED", "商户订单号重复"),
            SandboxError::RefundExceeds => result("NOTENOUGH", "申请退款金额超过订单可退金额"),
            SandboxError::OutRefundNoUsed => result("PARAM_ERROR", "商户退款单号已被使用"),
            SandboxError::RefundNotAllowed(why) => result("TRADE_STATE_ERROR", why),
            SandboxError::ParamError(m) => result("PARAM_ERROR", m),
            SandboxError::AppidMchidNotMatch => {
                result("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
            }
            other => result("SYSTEMERROR", other.to_string()),
        }
    }
}

impl WechatV2Sandbox {
    pub fn from_settings(
        settings: &WechatV2Settings,
        notifier: Arc<Notifier>,
        faults: Arc<Faults>,
    ) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        anyhow::ensure!(
            settings.api_key.expose_secret().len() == 32,
            "wechat_v2.api_key must be 32 characters"
        );
        Ok(Self {
            appid: settings.appid.clone(),
            mch_id: settings.mch_id.clone(),
            api_key: settings.api_key.clone(),
            trades: TradeBook::default(),
            sign_types: Mutex::default(),
            notifier,
            faults,
            refund_delay: std::time::Duration::from_millis(settings.refund_delay_ms),
        })
    }

    /// Handles one API call: strict XML, the merchant's signature, the call, a signed
    /// answer (in the request's `sign_type`), with faults applied.
    pub async fn handle(
        self: &Arc<Self>,
        path: &str,
        listener: Listener,
        body: &[u8],
    ) -> HttpResponse {
        let request = match xml::parse(body) {
            Ok(r) => r,
            Err(_) => return fail("XML格式错误"),
        };
        let Some(sign_type) = SignType::parse(request.get("sign_type")) else {
            return fail("签名类型错误");
        };
        if !verify(&request, &self.api_key, sign_type) {
            return fail("签名错误");
        }
        if request.get("mch_id") != Some(self.mch_id.as_str()) {
            return fail("mch_id参数格式错误");
        }
        let plan = self
            .faults
            .api_plan(PayChannel::WechatV2, request.non_empty("out_trade_no"));
        if plan.status_5xx {
            return HttpResponse::ServiceUnavailable().body("injected 5xx");
        }
        let outcome = if request.get("appid") != Some(self.appid.as_str()) {
            Err(result("APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配"))
        } else {
            match (path, listener) {
                ("/pay/unifiedorder", _) => self.unified_order(&request, sign_type),
                ("/pay/orderquery", _) => self.order_query(&request),
                ("/pay/closeorder", _) => self.close_order(&request),
                ("/pay/refundquery", _) => self.refund_query(&request),
                ("/secapi/pay/refund", Listener::MutualTls) => self.refund(&request),
                ("/secapi/pay/refund", Listener::Plain) => {
                    return fail("请使用商户证书访问secapi接口");
                }
                _ => return HttpResponse::NotFound().finish(),
            }
        };
        let answer = self.answer(outcome, sign_type, &plan);
        if let Some(wait) = plan.timeout {
            tokio::time::sleep(wait).await;
        }
        answer
    }

    fn answer(
        &self,
        outcome: Result<XmlMap, V2Error>,
        sign_type: SignType,
        plan: &ApiPlan,
    ) -> HttpResponse {
        let mut map = match outcome {
            Ok(fields) => {
                let mut map = fields;
                map.insert("result_code", "SUCCESS");
                map
            }
            Err(V2Error::Result(code, des)) => {
                let mut map = XmlMap::new();
                map.insert("result_code", "FAIL");
                map.insert("err_code", code);
                map.insert("err_code_des", des);
                map
            }
        };
        map.insert("return_code", "SUCCESS");
        map.insert("return_msg", "OK");
        map.insert("appid", self.appid.as_str());
        map.insert("mch_id", self.mch_id.as_str());
        map.insert("nonce_str", random_alphanumeric(16));
        sign_fields(&mut map, &self.api_key, sign_type);
        if plan.bad_signature {
            let spoiled = map.get("nonce_str").unwrap_or("").to_owned() + "x";
            map.insert("nonce_str", spoiled);
        }
        xml_reply(200, map.to_xml())
    }

    fn unified_order(&self, req: &XmlMap, sign_type: SignType) -> Result<XmlMap, V2Error> {
        let required = |name: &'static str| {
            req.non_empty(name)
                .ok_or_else(|| result("PARAM_ERROR", format!("缺少参数 {name}")))
        };
        let body = required("body")?;
        let out_trade_no = OutTradeNo::parse(required("out_trade_no")?)?;
        let total = required("total_fee")?
            .parse::<i64>()
            .ok()
            .and_then(|t| Fen::new(t).ok())
            .filter(|t| !t.is_zero())
            .ok_or_else(|| result("PARAM_ERROR", "total_fee 须为大于0的整数（分）"))?;
        required("spbill_create_ip")?;
        let notify_url = required("notify_url")?;
        if required("trade_type")? != "NATIVE" {
            return Err(result("PARAM_ERROR", "沙箱仅支持 trade_type=NATIVE"));
        }
        required("product_id")?;
        if req.non_empty("fee_type").is_some_and(|f| f != "CNY") {
            return Err(result("PARAM_ERROR", "fee_type 仅支持 CNY"));
        }
        if body.len() > 128 || req.get("attach").is_some_and(|a| a.len() > 127) {
            return Err(result("PARAM_ERROR", "body 或 attach 过长"));
        }
        let time_expire = req
            .non_empty("time_expire")
            .map(|t| {
                chrono::NaiveDateTime::parse_from_str(t, "%Y%m%d%H%M%S")
                    .ok()
                    .and_then(|n| n.and_local_timezone(cst()).single())
                    .ok_or_else(|| result("PARAM_ERROR", "time_expire 格式错误"))
            })
            .transpose()?
            .map(|t: DateTime<FixedOffset>| t);
        let params = PrepayParams {
            appid: self.appid.clone(),
            description: body.to_owned(),
            notify_url: notify_url.to_owned(),
            total,
            attach: req.non_empty("attach").map(str::to_owned),
            time_expire,
        };
        let otn = out_trade_no.as_str().to_owned();
        let code_url = self
            .trades
            .prepay(&self.mch_id, out_trade_no, params, Utc::now())?;
        self.sign_types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(otn, sign_type);
        Ok([
            ("trade_type", "NATIVE".to_owned()),
            ("prepay_id", format!("wx{}", random_alphanumeric(30))),
            ("code_url", code_url),
        ]
        .into_iter()
        .collect())
    }

    fn trade(&self, req: &XmlMap) -> Result<Trade, V2Error> {
        let trade = match (
            req.non_empty("out_trade_no"),
            req.non_empty("transaction_id"),
        ) {
            (Some(otn), _) => self.trades.get(&self.mch_id, otn),
            (None, Some(id)) => self
                .trades
                .find(&self.mch_id, &TradeRef::TransactionId(id.to_owned())),
            (None, None) => {
                return Err(result("PARAM_ERROR", "缺少参数 out_trade_no"));
            }
        };
        trade.ok_or_else(|| SandboxError::OrderNotExist.into())
    }

    fn order_query(&self, req: &XmlMap) -> Result<XmlMap, V2Error> {
        Ok(order_fields(&self.trade(req)?))
    }

    fn close_order(&self, req: &XmlMap) -> Result<XmlMap, V2Error> {
        let trade = self.trade(req)?;
        self.trades
            .close(&self.mch_id, trade.out_trade_no.as_str())?;
        Ok(XmlMap::new())
    }

    fn refund(self: &Arc<Self>, req: &XmlMap) -> Result<XmlMap, V2Error> {
        let required = |name: &'static str| {
            req.non_empty(name)
                .ok_or_else(|| result("PARAM_ERROR", format!("缺少参数 {name}")))
        };
        let fee = |name: &'static str| -> Result<Fen, V2Error> {
            required(name)?
                .parse::<i64>()
                .ok()
                .and_then(|t| Fen::new(t).ok())
                .ok_or_else(|| result("PARAM_ERROR", format!("{name} 须为整数（分）")))
        };
        let trade_ref = match (
            req.non_empty("transaction_id"),
            req.non_empty("out_trade_no"),
        ) {
            (Some(id), _) => TradeRef::TransactionId(id.to_owned()),
            (None, Some(otn)) => TradeRef::OutTradeNo(otn.to_owned()),
            (None, None) => return Err(result("PARAM_ERROR", "缺少参数 transaction_id")),
        };
        let params = RefundParams {
            out_refund_no: required("out_refund_no")?.to_owned(),
            refund: fee("refund_fee")?,
            total: fee("total_fee")?,
            reason: req.non_empty("refund_desc").map(str::to_owned),
            notify_url: req.non_empty("notify_url").map(str::to_owned),
        };
        let (trade, refund, new) = self
            .trades
            .refund(&self.mch_id, &trade_ref, params, Utc::now())
            .map_err(|e| match e {
                SandboxError::ParamError(_) => result("PARAM_ERROR", "total_fee 与订单金额不一致"),
                e => e.into(),
            })?;
        if new {
            self.finish_refund_later(refund.params.out_refund_no.clone());
        }
        Ok([
            (
                "transaction_id",
                trade.payment.map(|p| p.transaction_id).unwrap_or_default(),
            ),
            ("out_trade_no", trade.out_trade_no.as_str().to_owned()),
            ("out_refund_no", refund.params.out_refund_no.clone()),
            ("refund_id", refund.refund_id.clone()),
            ("refund_fee", refund.params.refund.get().to_string()),
            ("total_fee", refund.params.total.get().to_string()),
            ("cash_fee", refund.params.total.get().to_string()),
        ]
        .into_iter()
        .collect())
    }

    fn refund_query(&self, req: &XmlMap) -> Result<XmlMap, V2Error> {
        let out_refund_no = req
            .non_empty("out_refund_no")
            .ok_or_else(|| result("PARAM_ERROR", "缺少参数 out_refund_no"))?;
        let (trade, refund) = self
            .trades
            .get_refund(&self.mch_id, out_refund_no)
            .ok_or_else(|| result("REFUNDNOTEXIST", "退款订单查询失败"))?;
        let mut fields: XmlMap = [
            (
                "transaction_id",
                trade
                    .payment
                    .as_ref()
                    .map(|p| p.transaction_id.clone())
                    .unwrap_or_default(),
            ),
            ("out_trade_no", trade.out_trade_no.as_str().to_owned()),
            ("total_fee", trade.params.total.get().to_string()),
            ("cash_fee", trade.params.total.get().to_string()),
            ("refund_count", "1".to_owned()),
            ("out_refund_no_0", refund.params.out_refund_no.clone()),
            ("refund_id_0", refund.refund_id.clone()),
            ("refund_fee_0", refund.params.refund.get().to_string()),
            ("refund_channel_0", "ORIGINAL".to_owned()),
            ("refund_recv_accout_0", "支付用户零钱".to_owned()),
        ]
        .into_iter()
        .collect();
        match refund.success_time {
            Some(at) => {
                fields.insert("refund_status_0", "SUCCESS");
                fields.insert("refund_success_time_0", format_refund_time(at));
            }
            None => fields.insert("refund_status_0", "PROCESSING"),
        }
        Ok(fields)
    }

    /// The payment notification of a paid trade, delivered to its `notify_url`; `None`
    /// when the `pay_without_notify` fault keeps it back.
    pub fn notify_paid(&self, trade: &Trade) -> Option<String> {
        let otn = trade.out_trade_no.as_str();
        if self.faults.pay_without_notify(PayChannel::WechatV2, otn) {
            return None;
        }
        let mut fields = order_fields(trade);
        fields.remove("trade_state");
        fields.remove("trade_state_desc");
        fields.insert("return_code", "SUCCESS");
        fields.insert("result_code", "SUCCESS");
        fields.insert("appid", self.appid.as_str());
        fields.insert("mch_id", self.mch_id.as_str());
        fields.insert("nonce_str", random_alphanumeric(32));
        let sign_type = self
            .sign_types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(otn)
            .copied()
            .unwrap_or(SignType::Md5);
        sign_fields(&mut fields, &self.api_key, sign_type);
        Some(self.send(
            trade,
            &trade.params.notify_url,
            "TRANSACTION.SUCCESS",
            fields,
        ))
    }

    /// The refund notification (`req_info` encrypted with the MD5 of the API key).
    fn notify_refunded(
        &self,
        trade: &Trade,
        refund: &crate::wechat::state::Refund,
    ) -> Option<String> {
        let url = refund.params.notify_url.as_deref()?;
        let inner: XmlMap = [
            (
                "transaction_id",
                trade
                    .payment
                    .as_ref()
                    .map(|p| p.transaction_id.clone())
                    .unwrap_or_default(),
            ),
            ("out_trade_no", trade.out_trade_no.as_str().to_owned()),
            ("refund_id", refund.refund_id.clone()),
            ("out_refund_no", refund.params.out_refund_no.clone()),
            ("total_fee", refund.params.total.get().to_string()),
            (
                "settlement_total_fee",
                refund.params.total.get().to_string(),
            ),
            ("refund_fee", refund.params.refund.get().to_string()),
            (
                "settlement_refund_fee",
                refund.params.refund.get().to_string(),
            ),
            ("refund_status", "SUCCESS".to_owned()),
            (
                "success_time",
                refund
                    .success_time
                    .map(format_refund_time)
                    .unwrap_or_default(),
            ),
            ("refund_recv_accout", "支付用户零钱".to_owned()),
            ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS".to_owned()),
            ("refund_request_source", "API".to_owned()),
        ]
        .into_iter()
        .collect();
        let inner = inner.to_xml().replacen("<xml>", "<root>", 1);
        let inner = inner.strip_suffix("</xml>").unwrap_or(&inner).to_owned() + "</root>";
        let fields: XmlMap = [
            ("return_code", "SUCCESS".to_owned()),
            ("appid", self.appid.clone()),
            ("mch_id", self.mch_id.clone()),
            ("nonce_str", random_alphanumeric(32)),
            (
                "req_info",
                encrypt_req_info(&self.api_key, inner.as_bytes()),
            ),
        ]
        .into_iter()
        .collect();
        Some(self.send(trade, url, "REFUND.SUCCESS", fields))
    }

    fn finish_refund_later(self: &Arc<Self>, out_refund_no: String) {
        let sandbox = self.clone();
        self.notifier.spawn(async move {
            tokio::time::sleep(sandbox.refund_delay).await;
            let Some((trade, refund)) =
                sandbox
                    .trades
                    .complete_refund(&sandbox.mch_id, &out_refund_no, Utc::now())
            else {
                return;
            };
            tracing::info!(out_refund_no, "v2 refund succeeded");
            sandbox.notify_refunded(&trade, &refund);
        });
    }

    fn send(&self, trade: &Trade, url: &str, event_type: &str, mut fields: XmlMap) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let otn = trade.out_trade_no.as_str();
        let plan = self.faults.notify_plan(PayChannel::WechatV2, otn, &id);
        if plan.bad_signature {
            // Well formed, but what it says is not what was signed (or encrypted).
            let spoiled = fields.get("nonce_str").unwrap_or("").to_owned() + "x";
            fields.insert("nonce_str", spoiled);
            if let Some(info) = fields.get("req_info").map(|r| format!("AAAA{r}")) {
                fields.insert("req_info", info);
            }
        }
        let outgoing = Outgoing {
            id,
            channel: PayChannel::WechatV2,
            event_type: event_type.to_owned(),
            url: url.to_owned(),
            content_type: "text/xml",
            body: fields.to_xml().into_bytes(),
            // v2 signs the body itself; no headers.
            sign: Arc::new(|_: &[u8]| Vec::new()),
            acknowledged: v2_acknowledged,
            schedule: &WECHAT_RETRY_SCHEDULE,
            plan,
        };
        let id = self.notifier.dispatch(outgoing);
        self.trades.add_notification(&trade.mchid, otn, id.clone());
        id
    }
}

/// v2: acknowledged only by `return_code` `SUCCESS` in the merchant's XML answer.
pub fn v2_acknowledged(status: u16, body: &[u8]) -> bool {
    status == 200 && xml::parse(body).is_ok_and(|m| m.get("return_code") == Some("SUCCESS"))
}

/// The trade's fields as `orderquery` answers them (payment facts once paid).
fn order_fields(trade: &Trade) -> XmlMap {
    let mut fields: XmlMap = [
        ("out_trade_no", trade.out_trade_no.as_str().to_owned()),
        ("trade_state", trade.state.as_str().to_owned()),
        ("trade_state_desc", trade.state.desc().to_owned()),
        ("attach", trade.params.attach.clone().unwrap_or_default()),
        ("total_fee", trade.params.total.get().to_string()),
        ("fee_type", "CNY".to_owned()),
        ("trade_type", "NATIVE".to_owned()),
    ]
    .into_iter()
    .collect();
    if let Some(p) = &trade.payment {
        for (k, v) in [
            ("transaction_id", p.transaction_id.clone()),
            ("time_end", format_pay_time(p.success_time)),
            ("openid", p.openid.clone()),
            ("is_subscribe", "N".to_owned()),
            ("bank_type", "OTHERS".to_owned()),
            ("cash_fee", trade.params.total.get().to_string()),
        ] {
            fields.insert(k, v);
        }
    }
    fields
}

fn xml_reply(status: u16, body: String) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

/// An unsigned `return_code=FAIL`, as WeChat Pay answers what it could not even read.
fn fail(msg: &str) -> HttpResponse {
    let map: XmlMap = [("return_code", "FAIL"), ("return_msg", msg)]
        .into_iter()
        .collect();
    xml_reply(200, map.to_xml())
}

/// The v2 API on the plain listener (`secapi/` answers FAIL there).
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes(Listener::Plain)(cfg);
}

/// Every v2 path, answered by [`WechatV2Sandbox::handle`] knowing which listener the
/// request came in on (the plain one here, the mutual-TLS one in [`tls::serve`]).
pub fn routes(listener: Listener) -> impl Fn(&mut web::ServiceConfig) {
    move |cfg| {
        for path in [
            "/pay/unifiedorder",
            "/pay/orderquery",
            "/pay/closeorder",
            "/pay/refundquery",
            "/secapi/pay/refund",
        ] {
            cfg.route(
                path,
                web::post().to(
                    move |sandbox: web::Data<WechatV2Sandbox>, body: web::Bytes| async move {
                        sandbox.into_inner().handle(path, listener, &body).await
                    },
                ),
            );
        }
    }
}
