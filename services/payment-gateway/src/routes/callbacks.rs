//! `POST /api/callback/{channel}`: one route for every channel in the registry.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use paywire_channels::wechat::wire::{ApiError as WechatReply, NotificationEnvelope};
use paywire_contracts::ErrorBody;
use paywire_contracts::openapi::answers::RateLimited;
use paywire_domain::PayChannel;

use crate::AppState;
use crate::callbacks::handle_notification;
use crate::error::GatewayError;

/// A channel's payment or refund notification
///
/// The raw body is verified before anything changes. WeChat Pay v3 (JSON): the
/// `Wechatpay-Signature` (RSA-SHA256 over `timestamp\nnonce\nbody\n`) with the WeChat Pay
/// public key named by `Wechatpay-Serial`, a 5-minute timestamp window, then
/// AEAD_AES_256_GCM decryption of `resource` with the APIv3 key, merchant ids, amount and
/// currency (CNY only). Alipay (form): the RSA2 `sign` over the sorted parameters with
/// Alipay's public key, then `app_id` and `seller_id`, both required and equal to the
/// configured ones (a notification without `seller_id` is refused with `failure`); yuan
/// amounts are converted to fen exactly. An Alipay `TRADE_CLOSED` is recorded as
/// `trade_closed` and acknowledged; it moves nothing. WeChat Pay API v2 (`wechat_v2`,
/// XML): read by a strict parser (no DTD, no duplicate or nested elements, 64 KiB at
/// most), then the `sign` (MD5 or HMAC-SHA256 with the API key) before any field,
/// `appid`, `mch_id`, `result_code` `SUCCESS`, and `total_fee` against the attempt; a
/// refund notification carries no sign: its `req_info` is decrypted (AES-256-ECB keyed
/// by the lower-case hex MD5 of the API key) and must parse.
///
/// A verified payment marks the attempt paid and writes `pay.result.v1` to the outbox in
/// one transaction, unless the attempt was closed or the order was already paid by
/// another attempt: then the attempt is recorded paid and a refund is started (no pay
/// result). A verified refund notification moves the refund to its final state
/// (`refund.result.v1` in the outbox). Replies follow the channel's protocol: WeChat Pay
/// takes any 2xx as acknowledged, Alipay the body `success`, WeChat Pay v2 exactly
/// `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`
/// (sent only once the effect is committed; `FAIL` otherwise); anything else makes the
/// channel retry. A notification that fails verification is counted (one
/// `refused_notifications` row per reason and minute), never stored.
///
/// Limited per client address (`rate_limit.callback`, default 1200 a minute): over it,
/// `429 rate_limited` with `Retry-After`, and the channel delivers again later.
#[utoipa::path(
    post,
    path = "/api/callback/{channel}",
    operation_id = "channelNotification",
    tag = "channel",
    security(()),
    params(
        ("channel" = PayChannel, Path),
        ("Wechatpay-Timestamp" = Option<String>, Header),
        ("Wechatpay-Nonce" = Option<String>, Header),
        ("Wechatpay-Signature" = Option<String>, Header),
        ("Wechatpay-Serial" = Option<String>, Header),
    ),
    request_body(content(
        (NotificationEnvelope = "application/json"),
        (std::collections::BTreeMap<String, String> = "application/x-www-form-urlencoded"),
        (String = "text/xml"),
    )),
    responses(
        (status = 204, description = "WeChat Pay: acknowledged (processed now, or already before)"),
        (
            status = 200,
            description = "Alipay: `success` acknowledges (also for notifications we do not act on); WeChat Pay v2: the `SUCCESS` XML acknowledges",
            content(
                (String = "text/plain"),
                (String = "text/xml"),
            )
        ),
        (status = 404, description = "`unknown_channel`: no such channel, or not enabled", body = ErrorBody),
        RateLimited,
        (
            status = "4XX",
            description = "rejected (verification failed): WeChat Pay gets `{code: FAIL}`, Alipay `failure`, WeChat Pay v2 `<return_code>FAIL`; the channel retries",
            body = WechatReply
        ),
        (
            status = "5XX",
            description = "not processed (e.g. database down): WeChat Pay gets `{code: FAIL}`, Alipay `failure`, WeChat Pay v2 `<return_code>FAIL`; the channel retries",
            body = WechatReply
        ),
    )
)]
pub async fn notification(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, GatewayError> {
    let name = path.into_inner();
    let channel = name
        .parse::<PayChannel>()
        .ok()
        .and_then(|c| state.channels.get(c))
        .ok_or_else(|| GatewayError::UnknownChannel(name.clone()))?
        .clone();
    // actix stores header names lower-cased; values that are not visible ASCII cannot be
    // part of a valid signature and are dropped.
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let reply = handle_notification(&state, &channel, &headers, &body).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
    }
    if reply.body.is_empty() {
        return Ok(response.finish());
    }
    Ok(response.content_type(reply.content_type).body(reply.body))
}
