//! `GET|POST /gateway.do`: one endpoint, the method in a parameter. Answers are always
//! HTTP 200 with a signed envelope (errors included), except the injected 5xx.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use paywire_channels::alipay::verify::{ERROR_RESPONSE_KEY, response_key};
use paywire_domain::{Fen, PayChannel};
use serde_json::{Map, Value, json};

use super::AlipaySandbox;
use super::state::{
    AlipayRef, AlipayStatus, AlipayTrade, CancelOutcome, PrecreateParams, alipay_time,
};
use crate::SandboxError;

/// Query-string and form parameters together (clients split them differently); a form
/// value wins over a query value of the same name.
fn collect_params(http: &HttpRequest, body: &[u8]) -> Result<Vec<(String, String)>, SandboxError> {
    let bad = |e: serde_urlencoded::de::Error| {
        SandboxError::AlipayInvalid("isv.invalid-parameter", format!("参数无法解析: {e}"))
    };
    let mut params: Vec<(String, String)> =
        serde_urlencoded::from_str(http.query_string()).map_err(bad)?;
    if !body.is_empty() {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(bad)?;
        for (k, v) in form {
            params.retain(|(existing, _)| existing != &k);
            params.push((k, v));
        }
    }
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn invalid(why: impl Into<String>) -> SandboxError {
    SandboxError::AlipayInvalid("isv.invalid-parameter", why.into())
}

/// A parsed `biz_content`.
struct Biz(Map<String, Value>);

impl Biz {
    fn parse(params: &[(String, String)]) -> Result<Self, SandboxError> {
        let raw = param(params, "biz_content").ok_or_else(|| {
            SandboxError::AlipayMissing("isv.missing-biz-content", "biz_content".into())
        })?;
        match serde_json::from_str(raw) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            _ => Err(invalid("biz_content 不是有效的JSON对象")),
        }
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, SandboxError> {
        self.str(name)
            .ok_or_else(|| invalid(format!("缺少必选参数{name}")))
    }

    fn amount(&self, name: &str) -> Result<Fen, SandboxError> {
        // Clients send a string, some a number; either way two decimals at most.
        let text = match self.0.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(invalid(format!("缺少必选参数{name}"))),
        };
        Fen::from_yuan_str(&text)
            .ok()
            .filter(|f| !f.is_zero() && *f <= Fen::new(10_000_000_000).unwrap_or(*f))
            .ok_or_else(|| invalid(format!("{name} 须为0.01-100000000之间、最多两位小数的金额")))
    }

    fn trade(&self) -> Result<AlipayRef, SandboxError> {
        match (self.str("trade_no"), self.str("out_trade_no")) {
            (Some(no), _) => Ok(AlipayRef::TradeNo(no.to_owned())),
            (None, Some(otn)) => Ok(AlipayRef::OutTradeNo(otn.to_owned())),
            (None, None) => Err(invalid("out_trade_no 和 trade_no 不能同时为空")),
        }
    }
}

fn success(fields: Value) -> Value {
    let mut out = json!({"code": "10000", "msg": "Success"});
    if let (Value::Object(out), Value::Object(fields)) = (&mut out, fields) {
        out.extend(fields);
    }
    out
}

fn error_content(e: &SandboxError) -> Value {
    serde_json::to_value(e.alipay_fields()).unwrap_or_else(|_| json!({"code": "20000"}))
}

fn respond(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json;charset=utf-8")
        .body(body)
}

/// The gateway.
#[tracing::instrument(skip_all, fields(method, out_trade_no))]
pub async fn gateway(
    sandbox: web::Data<AlipaySandbox>,
    http: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let checked = collect_params(&http, &body)
        .and_then(|params| sandbox.check_request(&params).map(|m| (params, m)));
    let (params, method) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            tracing::warn!(error = %e, "alipay request refused");
            let raw = sandbox.envelope(ERROR_RESPONSE_KEY, &error_content(&e), false);
            return respond(StatusCode::OK, raw);
        }
    };
    let span = tracing::Span::current();
    span.record("method", method.as_str());
    if !matches!(
        method.as_str(),
        "alipay.trade.precreate"
            | "alipay.trade.query"
            | "alipay.trade.close"
            | "alipay.trade.cancel"
            | "alipay.trade.refund"
            | "alipay.trade.fastpay.refund.query"
            | "alipay.data.dataservice.bill.downloadurl.query"
    ) {
        let e = SandboxError::AlipayInvalid("isv.invalid-method", "不存在的方法名".into());
        let raw = sandbox.envelope(ERROR_RESPONSE_KEY, &error_content(&e), false);
        return respond(StatusCode::OK, raw);
    }
    let key = response_key(&method);
    let biz = Biz::parse(&params);
    let otn = biz.as_ref().ok().and_then(|b| match b.trade() {
        Ok(r) => sandbox
            .trades
            .out_trade_no(&r)
            .or_else(|| b.str("out_trade_no").map(str::to_owned)),
        Err(_) => None,
    });
    if let Some(otn) = &otn {
        span.record("out_trade_no", otn.as_str());
    }
    let plan = sandbox.faults.api_plan(PayChannel::Alipay, otn.as_deref());
    if plan.status_5xx {
        let e = SandboxError::AlipaySystem("injected 5xx".into());
        let raw = sandbox.envelope(ERROR_RESPONSE_KEY, &error_content(&e), false);
        return respond(StatusCode::INTERNAL_SERVER_ERROR, raw);
    }
    let result = biz.and_then(|biz| run(&sandbox, &http, &method, &params, &biz));
    let content = match result {
        Ok(content) => content,
        Err(e) => {
            tracing::info!(error = %e, "alipay business error");
            error_content(&e)
        }
    };
    let raw = sandbox.envelope(&key, &content, plan.bad_signature);
    if let Some(wait) = plan.timeout {
        tokio::time::sleep(wait).await;
    }
    respond(StatusCode::OK, raw)
}

fn run(
    sandbox: &AlipaySandbox,
    http: &HttpRequest,
    method: &str,
    params: &[(String, String)],
    biz: &Biz,
) -> Result<Value, SandboxError> {
    let now = Utc::now();
    match method {
        "alipay.trade.precreate" => {
            let otn = biz.required("out_trade_no")?;
            let otn_ok =
                otn.len() <= 64 && otn.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !otn_ok {
                return Err(invalid("out_trade_no 须为64个字符以内的字母、数字、下划线"));
            }
            let subject = biz.required("subject")?;
            if subject.chars().count() > 256 {
                return Err(invalid("subject 长度不能超过256个字符"));
            }
            let params = PrecreateParams {
                subject: subject.to_owned(),
                total: biz.amount("total_amount")?,
                notify_url: param(params, "notify_url").map(str::to_owned),
                body: biz.str("body").map(str::to_owned),
            };
            let trade = sandbox.trades.precreate(otn, params, now)?;
            tracing::info!("precreate accepted");
            Ok(success(json!({
                "out_trade_no": trade.out_trade_no,
                "qr_code": trade.qr_code,
            })))
        }
        "alipay.trade.query" => {
            let trade = sandbox.trades.query(&biz.trade()?)?;
            Ok(success(query_fields(&trade.as_seen())))
        }
        "alipay.data.dataservice.bill.downloadurl.query" => bill_download_url(sandbox, http, biz),
        "alipay.trade.close" => {
            let trade = sandbox.trades.close(&biz.trade()?, now)?;
            tracing::info!("trade closed");
            Ok(success(json!({
                "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no,
            })))
        }
        "alipay.trade.refund" => {
            let r = biz.trade()?;
            let amount = biz.amount("refund_amount")?;
            let default_no = sandbox.trades.out_trade_no(&r).unwrap_or_default();
            let out_request_no = biz.str("out_request_no").unwrap_or(&default_no).to_owned();
            let reason = biz.str("refund_reason").map(str::to_owned);
            let outcome = sandbox
                .trades
                .refund(&r, &out_request_no, amount, reason, now)?;
            if outcome.fund_change {
                tracing::info!(out_request_no, "refund done");
                sandbox.notify_refunded(&outcome.trade, &outcome.refund);
            }
            let trade = &outcome.trade;
            Ok(success(json!({
                "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no,
                "buyer_logon_id": trade.buyer.as_ref().map(|b| b.logon_id.as_str()),
                "buyer_user_id": trade.buyer.as_ref().map(|b| b.user_id.as_str()),
                "fund_change": if outcome.fund_change { "Y" } else { "N" },
                "refund_fee": trade.refunded().to_yuan_string(),
                "send_back_fee": outcome.refund.amount.to_yuan_string(),
                "gmt_refund_pay": alipay_time(outcome.refund.at),
            })))
        }
        "alipay.trade.cancel" => {
            let fields = match sandbox.trades.cancel(&biz.trade()?, now)? {
                CancelOutcome::NotCreated(trade) => {
                    json!({"out_trade_no": trade.out_trade_no, "retry_flag": "N"})
                }
                CancelOutcome::Closed(trade) => {
                    tracing::info!("trade cancelled: closed");
                    json!({
                        "trade_no": trade.trade_no,
                        "out_trade_no": trade.out_trade_no,
                        "retry_flag": "N",
                        "action": "close",
                    })
                }
                CancelOutcome::Refunded(outcome) => {
                    if outcome.fund_change {
                        tracing::info!("trade cancelled: refunded");
                        sandbox.notify_refunded(&outcome.trade, &outcome.refund);
                    }
                    json!({
                        "trade_no": outcome.trade.trade_no,
                        "out_trade_no": outcome.trade.out_trade_no,
                        "retry_flag": "N",
                        "action": "refund",
                        "gmt_refund_pay": alipay_time(outcome.refund.at),
                    })
                }
            };
            Ok(success(fields))
        }
        "alipay.trade.fastpay.refund.query" => {
            let r = biz.trade()?;
            let default_no = sandbox.trades.out_trade_no(&r).unwrap_or_default();
            let out_request_no = biz.str("out_request_no").unwrap_or(&default_no).to_owned();
            let (trade, refund) = sandbox.trades.refund_query(&r, &out_request_no)?;
            let mut fields = json!({
                "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no,
                "out_request_no": out_request_no,
            });
            // No refund: no refund fields, as Alipay answers (the refund did not happen).
            if let (Some(refund), Value::Object(map)) = (refund, &mut fields) {
                map.extend([
                    (
                        "total_amount".to_owned(),
                        json!(trade.params.total.to_yuan_string()),
                    ),
                    (
                        "refund_amount".to_owned(),
                        json!(refund.amount.to_yuan_string()),
                    ),
                    ("refund_status".to_owned(), json!("REFUND_SUCCESS")),
                    ("gmt_refund_pay".to_owned(), json!(alipay_time(refund.at))),
                ]);
                // Absent, not null, when the refund gave none (as Alipay answers).
                if let Some(reason) = &refund.reason {
                    map.insert("refund_reason".to_owned(), json!(reason));
                }
            }
            Ok(success(fields))
        }
        _ => Err(SandboxError::AlipayInvalid(
            "isv.invalid-method",
            "不存在的方法名".into(),
        )),
    }
}

/// `alipay.data.dataservice.bill.downloadurl.query`: `bill_type` `trade`, a day's
/// `bill_date` (`yyyy-MM-dd`; monthly bills are not served) → `bill_download_url`; a day
/// without trades is `isp.bill_not_exist`.
fn bill_download_url(
    sandbox: &AlipaySandbox,
    http: &HttpRequest,
    biz: &Biz,
) -> Result<Value, SandboxError> {
    if biz.required("bill_type")? != "trade" {
        return Err(invalid("沙箱仅提供 bill_type=trade 的账单"));
    }
    let now = Utc::now();
    let date = crate::statements::parse_date(biz.required("bill_date")?)
        .filter(|d| crate::statements::servable(*d, now))
        .ok_or_else(|| invalid("bill_date 须为三个月内的 yyyy-MM-dd"))?;
    let zip = super::bill::trade_bill(&sandbox.trades.all(), &sandbox.seller_id, date, now).ok_or(
        SandboxError::AlipayBusiness("isp.bill_not_exist", "账单不存在"),
    )?;
    let token = sandbox.bills.put(zip);
    let info = http.connection_info();
    let day = date.format("%Y%m%d");
    let url = format!(
        "{}://{}/downloadBillFile.resource?bizType=trade&userId={pid}0156&fileType=csv.zip\
&bizDates={day}&downloadFileName={}&token={token}",
        info.scheme(),
        info.host(),
        super::bill::file_name(&sandbox.seller_id, date),
        pid = sandbox.seller_id,
    );
    Ok(success(json!({ "bill_download_url": url })))
}

/// `GET /downloadBillFile.resource?…&token=…`: the bill zip (a pre-signed link, no
/// credentials; `corrupt_statement` changes one byte).
pub async fn download_bill(
    sandbox: web::Data<AlipaySandbox>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    let Some(zip) = query.get("token").and_then(|t| sandbox.bills.get(t)) else {
        return HttpResponse::NotFound()
            .content_type("text/plain;charset=utf-8")
            .body("下载超时，请重新下载");
    };
    let zip = if sandbox.faults.corrupt_statement(PayChannel::Alipay) {
        crate::statements::corrupt(zip)
    } else {
        zip
    };
    HttpResponse::Ok().content_type("application/zip").body(zip)
}

/// `alipay.trade.query` fields; amounts received only once paid.
fn query_fields(trade: &AlipayTrade) -> Value {
    let total = trade.params.total.to_yuan_string();
    let mut fields = json!({
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "trade_status": trade.status.map(AlipayStatus::as_str),
        "total_amount": total,
        "buyer_logon_id": trade.buyer.as_ref().map(|b| b.logon_id.as_str()),
        "buyer_user_id": trade.buyer.as_ref().map(|b| b.user_id.as_str()),
    });
    if let (Some(paid), Value::Object(map)) = (trade.paid_at, &mut fields) {
        map.extend([
            ("receipt_amount".to_owned(), json!(total)),
            ("buyer_pay_amount".to_owned(), json!(total)),
            ("invoice_amount".to_owned(), json!(total)),
            ("point_amount".to_owned(), json!("0.00")),
            ("send_pay_date".to_owned(), json!(alipay_time(paid))),
            (
                "fund_bill_list".to_owned(),
                json!([{"fund_channel": "ALIPAYACCOUNT", "amount": total}]),
            ),
        ]);
    }
    fields
}
