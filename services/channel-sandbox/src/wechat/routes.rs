//! The WeChat Pay v3 endpoints the gateway calls. Every handler takes a
//! [`MerchantRequest`], so nothing runs before the merchant's signature verifies.

use std::collections::HashMap;

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use paywire_domain::{Fen, PayChannel};
use serde::{Deserialize, Serialize};

use super::WechatSandbox;
use super::signing::MerchantRequest;
use super::state::{OutTradeNo, PrepayParams, RefundParams, TradeRef};
use crate::SandboxError;
use crate::faults::ApiPlan;

/// Put in a request's extensions when the `bad_signature` fault fired: the signing
/// middleware then spoils the response's signature.
#[derive(Debug, Clone, Copy)]
pub struct SpoilSignature;

/// Injected API faults, decided once the trade is known: a 5xx answers at once without
/// doing anything; a timeout is served by [`hold`] after the work is done.
fn api_faults(
    sandbox: &WechatSandbox,
    http: &HttpRequest,
    out_trade_no: Option<&str>,
) -> Result<ApiPlan, SandboxError> {
    let plan = sandbox.faults.api_plan(PayChannel::Wechat, out_trade_no);
    if plan.status_5xx {
        return Err(SandboxError::WechatSystem("injected 5xx".into()));
    }
    if plan.bad_signature {
        http.extensions_mut().insert(SpoilSignature);
    }
    Ok(plan)
}

/// Holds the answer longer than the client waits (the `timeout` fault).
async fn hold<T>(plan: &ApiPlan, result: T) -> T {
    if let Some(wait) = plan.timeout {
        tokio::time::sleep(wait).await;
    }
    result
}

#[derive(Debug, Deserialize)]
struct PrepayRequest {
    appid: Option<String>,
    mchid: Option<String>,
    description: Option<String>,
    out_trade_no: Option<String>,
    time_expire: Option<String>,
    attach: Option<String>,
    notify_url: Option<String>,
    amount: Option<AmountRequest>,
}

#[derive(Debug, Deserialize)]
struct AmountRequest {
    total: Option<i64>,
    currency: Option<String>,
}

#[derive(Debug, Serialize)]
struct PrepayResponse {
    code_url: String,
}

fn param(why: impl Into<String>) -> SandboxError {
    SandboxError::ParamError(why.into())
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, SandboxError> {
    value.ok_or_else(|| param(format!("缺少参数 {name}")))
}

fn json_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, SandboxError> {
    serde_json::from_slice(body).map_err(|e| param(format!("请求体不是有效的JSON: {e}")))
}

fn json_ok<T: Serialize>(value: &T) -> Result<HttpResponse, SandboxError> {
    let body = serde_json::to_vec(value).map_err(|e| SandboxError::WechatSystem(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// Parses a prepay body into the trade's parameters, in WeChat's order of checks:
/// required fields, then the appid/mchid binding, then each field's rules.
fn parse_prepay(
    sandbox: &WechatSandbox,
    signer_mchid: &str,
    body: &[u8],
) -> Result<(OutTradeNo, PrepayParams), SandboxError> {
    let req: PrepayRequest = json_body(body)?;
    let appid = required(req.appid, "appid")?;
    let mchid = required(req.mchid, "mchid")?;
    let description = required(req.description, "description")?;
    let out_trade_no = required(req.out_trade_no, "out_trade_no")?;
    let notify_url = required(req.notify_url, "notify_url")?;
    let amount = required(req.amount, "amount")?;
    let total = required(amount.total, "amount.total")?;

    if appid != sandbox.appid || mchid != sandbox.mchid || mchid != signer_mchid {
        return Err(SandboxError::AppidMchidNotMatch);
    }
    let out_trade_no = OutTradeNo::parse(&out_trade_no)?;
    if description.is_empty() || description.chars().count() > 127 {
        return Err(param("description 长度须为1-127个字符"));
    }
    let total = Fen::new(total)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| param("amount.total 须为大于0的整数（分）"))?;
    if amount.currency.as_deref().is_some_and(|c| c != "CNY") {
        return Err(param("amount.currency 仅支持 CNY"));
    }
    // Real WeChat demands public HTTPS; the sandbox also accepts local HTTP.
    let scheme_ok = notify_url.starts_with("https://") || notify_url.starts_with("http://");
    if !scheme_ok || notify_url.contains('?') || notify_url.len() > 255 {
        return Err(param("notify_url 须为不带参数的http(s)地址"));
    }
    if req.attach.as_ref().is_some_and(|a| a.chars().count() > 128) {
        return Err(param("attach 长度不能超过128个字符"));
    }
    let time_expire = req
        .time_expire
        .map(|t| {
            DateTime::parse_from_rfc3339(&t).map_err(|_| param("time_expire 须为RFC 3339格式"))
        })
        .transpose()?;
    Ok((
        out_trade_no,
        PrepayParams {
            appid,
            description,
            notify_url,
            total,
            attach: req.attach,
            time_expire,
        },
    ))
}

/// `POST /v3/pay/transactions/native` → `{"code_url"}`.
#[tracing::instrument(skip_all, fields(mchid = %req.mchid, out_trade_no))]
pub async fn prepay_native(
    sandbox: web::Data<WechatSandbox>,
    http: HttpRequest,
    req: MerchantRequest,
) -> Result<HttpResponse, SandboxError> {
    let (out_trade_no, params) = parse_prepay(&sandbox, &req.mchid, &req.body)?;
    tracing::Span::current().record("out_trade_no", out_trade_no.as_str());
    let plan = api_faults(&sandbox, &http, Some(out_trade_no.as_str()))?;
    let result = sandbox
        .trades
        .prepay(&req.mchid, out_trade_no, params, Utc::now())
        .and_then(|code_url| {
            tracing::info!("native prepay accepted");
            json_ok(&PrepayResponse { code_url })
        });
    hold(&plan, result).await
}

/// The `mchid` of a query or close must be the signing merchant's.
fn same_merchant(given: Option<String>, signer_mchid: &str) -> Result<(), SandboxError> {
    match given {
        None => Err(param("缺少参数 mchid")),
        Some(m) if m == signer_mchid => Ok(()),
        Some(_) => Err(param("mchid 与请求签名的商户号不一致")),
    }
}

/// `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…` → Transaction.
#[tracing::instrument(skip_all, fields(mchid = %req.mchid, out_trade_no = %out_trade_no))]
pub async fn query_by_out_trade_no(
    sandbox: web::Data<WechatSandbox>,
    http: HttpRequest,
    out_trade_no: web::Path<String>,
    req: MerchantRequest,
) -> Result<HttpResponse, SandboxError> {
    let query = web::Query::<HashMap<String, String>>::from_query(http.query_string())
        .map_err(|e| param(format!("查询参数无效: {e}")))?;
    same_merchant(query.get("mchid").cloned(), &req.mchid)?;
    let plan = api_faults(&sandbox, &http, Some(out_trade_no.as_str()))?;
    let result = sandbox
        .trades
        .get(&req.mchid, &out_trade_no)
        .ok_or(SandboxError::OrderNotExist)
        .and_then(|trade| json_ok(&trade.as_seen().transaction()));
    hold(&plan, result).await
}

/// `GET /v3/pay/transactions/id/{transaction_id}?mchid=…` → Transaction: the same query
/// by WeChat Pay's own number, which exists once the trade is paid.
#[tracing::instrument(skip_all, fields(mchid = %req.mchid, transaction_id = %transaction_id))]
pub async fn query_by_transaction_id(
    sandbox: web::Data<WechatSandbox>,
    http: HttpRequest,
    transaction_id: web::Path<String>,
    req: MerchantRequest,
) -> Result<HttpResponse, SandboxError> {
    let query = web::Query::<HashMap<String, String>>::from_query(http.query_string())
        .map_err(|e| param(format!("查询参数无效: {e}")))?;
    same_merchant(query.get("mchid").cloned(), &req.mchid)?;
    // A hidden payment has no transaction id anyone could know.
    let trade = sandbox
        .trades
        .find(
            &req.mchid,
            &TradeRef::TransactionId(transaction_id.into_inner()),
        )
        .filter(|t| !t.hidden);
    let plan = api_faults(
        &sandbox,
        &http,
        trade.as_ref().map(|t| t.out_trade_no.as_str()),
    )?;
    let result = trade
        .ok_or(SandboxError::OrderNotExist)
        .and_then(|trade| json_ok(&trade.transaction()));
    hold(&plan, result).await
}

#[derive(Debug, Deserialize)]
struct CloseRequest {
    mchid: Option<String>,
}

/// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` `{"mchid"}` → 204.
#[tracing::instrument(skip_all, fields(mchid = %req.mchid, out_trade_no = %out_trade_no))]
pub async fn close(
    sandbox: web::Data<WechatSandbox>,
    http: HttpRequest,
    out_trade_no: web::Path<String>,
    req: MerchantRequest,
) -> Result<HttpResponse, SandboxError> {
    let body: CloseRequest = json_body(&req.body)?;
    same_merchant(body.mchid, &req.mchid)?;
    let plan = api_faults(&sandbox, &http, Some(out_trade_no.as_str()))?;
    let result = sandbox.trades.close(&req.mchid, &out_trade_no).map(|()| {
        tracing::info!("trade closed");
        HttpResponse::NoContent().finish()
    });
    hold(&plan, result).await
}

#[derive(Debug, Deserialize)]
struct RefundRequest {
    transaction_id: Option<String>,
    out_trade_no: Option<String>,
    out_refund_no: Option<String>,
    reason: Option<String>,
    notify_url: Option<String>,
    amount: Option<RefundAmountRequest>,
}

#[derive(Debug, Deserialize)]
struct RefundAmountRequest {
    refund: Option<i64>,
    total: Option<i64>,
    currency: Option<String>,
}

fn parse_refund(body: &[u8]) -> Result<(TradeRef, RefundParams), SandboxError> {
    let req: RefundRequest = json_body(body)?;
    let trade = match (req.transaction_id, req.out_trade_no) {
        (Some(id), _) => TradeRef::TransactionId(id),
        (None, Some(otn)) => TradeRef::OutTradeNo(otn),
        (None, None) => return Err(param("transaction_id 和 out_trade_no 必须二选一")),
    };
    let out_refund_no = required(req.out_refund_no, "out_refund_no")?;
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@');
    if out_refund_no.is_empty() || out_refund_no.len() > 64 || !out_refund_no.bytes().all(valid) {
        return Err(param("out_refund_no 须为1-64位数字、大小写字母、_-|*@"));
    }
    let amount = required(req.amount, "amount")?;
    let fen = |v: Option<i64>, name: &str| {
        Fen::new(required(v, name)?)
            .ok()
            .filter(|f| !f.is_zero())
            .ok_or_else(|| param(format!("{name} 须为大于0的整数（分）")))
    };
    let refund = fen(amount.refund, "amount.refund")?;
    let total = fen(amount.total, "amount.total")?;
    if amount.currency.as_deref().is_some_and(|c| c != "CNY") {
        return Err(param("amount.currency 仅支持 CNY"));
    }
    if req.reason.as_ref().is_some_and(|r| r.chars().count() > 80) {
        return Err(param("reason 长度不能超过80个字符"));
    }
    Ok((
        trade,
        RefundParams {
            out_refund_no,
            refund,
            total,
            reason: req.reason,
            notify_url: req.notify_url,
        },
    ))
}

/// `POST /v3/refund/domestic/refunds` → the refund, `PROCESSING`; it turns `SUCCESS`
/// shortly after and `REFUND.SUCCESS` goes to its `notify_url`.
#[tracing::instrument(skip_all, fields(mchid = %req.mchid, out_trade_no, out_refund_no))]
pub async fn refund(
    sandbox: web::Data<WechatSandbox>,
    http: HttpRequest,
    req: MerchantRequest,
) -> Result<HttpResponse, SandboxError> {
    let (trade_ref, params) = parse_refund(&req.body)?;
    let span = tracing::Span::current();
    span.record("out_refund_no", params.out_refund_no.as_str());
    let otn = sandbox
        .trades
        .find(&req.mchid, &trade_ref)
        .map(|t| t.out_trade_no.as_str().to_owned());
    if let Some(otn) = &otn {
        span.record("out_trade_no", otn.as_str());
    }
    let plan = api_faults(&sandbox, &http, otn.as_deref())?;
    let result = sandbox
        .trades
        .refund(&req.mchid, &trade_ref, params, Utc::now())
        .and_then(|(trade, refund, created)| {
            if created {
                tracing::info!("refund accepted");
                sandbox.finish_refund_later(refund.params.out_refund_no.clone());
            }
            json_ok(&refund.json(&trade))
        });
    hold(&plan, result).await
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}` → the refund; 404 `RESOURCE_NOT_EXISTS`.
#[tracing::instrument(skip_all, fields(mchid = %req.mchid, out_refund_no = %out_refund_no))]
pub async fn query_refund(
    sandbox: web::Data<WechatSandbox>,
    http: HttpRequest,
    out_refund_no: web::Path<String>,
    req: MerchantRequest,
) -> Result<HttpResponse, SandboxError> {
    let found = sandbox.trades.get_refund(&req.mchid, &out_refund_no);
    let otn = found
        .as_ref()
        .map(|(t, _)| t.out_trade_no.as_str().to_owned());
    let plan = api_faults(&sandbox, &http, otn.as_deref())?;
    let result = found
        .ok_or(SandboxError::WechatNotFound)
        .and_then(|(trade, refund)| json_ok(&refund.json(&trade)));
    hold(&plan, result).await
}

/// `GET /v3/bill/tradebill?bill_date=yyyy-MM-dd[&bill_type=ALL]` → `{hash_type: "SHA1",
/// hash_value, download_url}` (signed); a day without trades is 400 `NO_STATEMENT_EXIST`.
/// Only `bill_type=ALL` and uncompressed files are served.
#[tracing::instrument(skip_all, fields(mchid = %req.mchid))]
pub async fn trade_bill(
    sandbox: web::Data<WechatSandbox>,
    http: HttpRequest,
    req: MerchantRequest,
) -> Result<HttpResponse, SandboxError> {
    let query = web::Query::<HashMap<String, String>>::from_query(http.query_string())
        .map_err(|e| param(format!("查询参数无效: {e}")))?;
    let text = required(query.get("bill_date").cloned(), "bill_date")?;
    let now = Utc::now();
    let date = crate::statements::parse_date(&text)
        .ok_or_else(|| param("bill_date 格式须为yyyy-MM-dd"))?;
    if !crate::statements::servable(date, now) {
        return Err(param("bill_date 仅支持三个月内的账单下载申请"));
    }
    if query.get("bill_type").is_some_and(|t| t != "ALL") {
        return Err(param("沙箱仅提供 bill_type=ALL 的账单"));
    }
    if query.contains_key("tar_type") {
        return Err(param("沙箱仅提供不压缩的账单"));
    }
    let plan = api_faults(&sandbox, &http, None)?;
    let bill = super::bill::trade_bill(&sandbox.trades.all(), &req.mchid, date)
        .ok_or(SandboxError::NoStatement)?;
    let hash: String = {
        use sha1::Digest;
        sha1::Sha1::digest(&bill)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let token = sandbox.bills.put(bill);
    let download_url = {
        let info = http.connection_info();
        format!(
            "{}://{}/v3/billdownload/file?token={token}",
            info.scheme(),
            info.host()
        )
    };
    let result = json_ok(&serde_json::json!({
        "hash_type": "SHA1",
        "hash_value": hash,
        "download_url": download_url,
    }));
    hold(&plan, result).await
}

/// `GET /v3/billdownload/file?token=…`, signed by the merchant like any request: the
/// bill's bytes, unsigned (`corrupt_statement` changes one of them).
#[tracing::instrument(skip_all, fields(mchid = %req.mchid))]
pub async fn download_bill(
    sandbox: web::Data<WechatSandbox>,
    http: HttpRequest,
    req: MerchantRequest,
) -> Result<HttpResponse, SandboxError> {
    let query = web::Query::<HashMap<String, String>>::from_query(http.query_string())
        .map_err(|e| param(format!("查询参数无效: {e}")))?;
    let token = required(query.get("token").cloned(), "token")?;
    let bill = sandbox
        .bills
        .get(&token)
        .ok_or_else(|| param("token 无效或已过期，请重新申请账单"))?;
    let bill = if sandbox.faults.corrupt_statement(PayChannel::Wechat) {
        crate::statements::corrupt(bill)
    } else {
        bill
    };
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(bill))
}

/// Anything else under `/v3`, still answered (and signed) like WeChat Pay.
pub async fn not_found() -> Result<HttpResponse, SandboxError> {
    Err(SandboxError::WechatNotFound)
}
