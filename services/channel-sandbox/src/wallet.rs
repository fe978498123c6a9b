//! The payer's phone: scan a code and pay or decline, the inspection API
//! (`GET /sandbox/trades`) and the wallet page (`GET /sandbox/wallet`).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use paywire_domain::{Fen, PayChannel};
use serde::{Deserialize, Serialize};

use crate::SandboxError;
use crate::alipay::AlipaySandbox;
use crate::alipay::state::{AlipayStatus, AlipayTrade};
use crate::faults::{FaultEvent, Faults};
use crate::notify::{DeliveryRecord, Notifier};
use crate::wechat::WechatSandbox;
use crate::wechat::state::{Trade, TradeState, new_openid};
use crate::wechat_v2::WechatV2Sandbox;

/// The page: plain HTML + JS, no external resources, embedded in the binary.
const WALLET_PAGE: &str = include_str!("wallet.html");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox/wallet", web::get().to(page))
        .route("/sandbox/wallet/scan", web::post().to(scan))
        .route("/sandbox/wallet/pay", web::post().to(pay))
        .route("/sandbox/wallet/decline", web::post().to(decline))
        .route("/sandbox/trades", web::get().to(trades));
}

/// Which channel issued a scanned code. WeChat Pay v3 and v2 write the same
/// `weixin://wxpay/bizpayurl?pr=…` codes; [`wechat_book`] tells them apart by the trade.
pub fn channel_of(code: &str) -> Option<PayChannel> {
    if code.starts_with("weixin://") {
        Some(PayChannel::Wechat)
    } else if code.starts_with("https://qr.alipay.com/") {
        Some(PayChannel::Alipay)
    } else {
        None
    }
}

#[derive(Debug, Deserialize)]
pub struct ScanRequest {
    /// The scanned QR content (`code_url` / `qr_code`).
    pub code: String,
    /// The WeChat payer; a fresh one when absent.
    pub openid: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ScanResponse {
    pub channel: PayChannel,
    pub out_trade_no: String,
    /// WeChat `transaction_id` / Alipay `trade_no`, once there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    pub trade_state: &'static str,
}

/// The WeChat API version whose book holds the trade of a `weixin://` code.
fn wechat_book(wechat_v2: &WechatV2Sandbox, code: &str) -> PayChannel {
    if wechat_v2.trades.by_code_url(code).is_ok() {
        PayChannel::WechatV2
    } else {
        PayChannel::Wechat
    }
}

fn wechat_scanned(trade: &Trade) -> ScanResponse {
    wechat_scanned_as(PayChannel::Wechat, trade)
}

fn wechat_scanned_as(channel: PayChannel, trade: &Trade) -> ScanResponse {
    ScanResponse {
        channel,
        out_trade_no: trade.out_trade_no.as_str().to_owned(),
        transaction_id: trade.payment.as_ref().map(|p| p.transaction_id.clone()),
        trade_state: trade.state.as_str(),
    }
}

fn alipay_scanned(trade: &AlipayTrade) -> ScanResponse {
    ScanResponse {
        channel: PayChannel::Alipay,
        out_trade_no: trade.out_trade_no.clone(),
        transaction_id: trade.trade_no.clone(),
        trade_state: alipay_state(trade),
    }
}

/// Alipay's `trade_status`; `PRECREATED` (sandbox only) before the scan.
fn alipay_state(trade: &AlipayTrade) -> &'static str {
    trade.status.map_or("PRECREATED", AlipayStatus::as_str)
}

/// `POST /sandbox/wallet/scan`: the payer scans; for Alipay this creates the trade
/// (WAIT_BUYER_PAY), for WeChat it only shows it.
#[tracing::instrument(skip_all, fields(channel, out_trade_no))]
pub async fn scan(
    wechat: web::Data<WechatSandbox>,
    wechat_v2: web::Data<WechatV2Sandbox>,
    alipay: web::Data<AlipaySandbox>,
    req: web::Json<ScanRequest>,
) -> Result<HttpResponse, SandboxError> {
    let answer = match channel_of(&req.code) {
        Some(PayChannel::Wechat | PayChannel::WechatV2) => {
            match wechat_book(&wechat_v2, &req.code) {
                PayChannel::WechatV2 => wechat_scanned_as(
                    PayChannel::WechatV2,
                    &wechat_v2.trades.by_code_url(&req.code)?,
                ),
                _ => wechat_scanned(&wechat.trades.by_code_url(&req.code)?),
            }
        }
        Some(PayChannel::Alipay) => alipay_scanned(&alipay.trades.scan(&req.code, Utc::now())?),
        None => return Err(SandboxError::UnknownCode),
    };
    let span = tracing::Span::current();
    span.record("channel", answer.channel.as_str());
    span.record("out_trade_no", answer.out_trade_no.as_str());
    Ok(HttpResponse::Ok().json(answer))
}

/// Pays the trade behind `code`, then notifies the merchant in the background.
#[tracing::instrument(skip_all, fields(channel, out_trade_no, transaction_id))]
pub async fn pay(
    wechat: web::Data<WechatSandbox>,
    wechat_v2: web::Data<WechatV2Sandbox>,
    alipay: web::Data<AlipaySandbox>,
    req: web::Json<ScanRequest>,
) -> Result<HttpResponse, SandboxError> {
    let req = req.into_inner();
    let now = Utc::now();
    let version = channel_of(&req.code).map(|c| match c {
        PayChannel::Wechat | PayChannel::WechatV2 => wechat_book(&wechat_v2, &req.code),
        other => other,
    });
    let answer = match version {
        Some(PayChannel::WechatV2) => {
            let openid = req.openid.unwrap_or_else(new_openid);
            let trade = wechat_v2.trades.pay(&req.code, &openid, now)?;
            wechat_v2.notify_paid(&trade);
            wechat_scanned_as(PayChannel::WechatV2, &trade)
        }
        Some(PayChannel::Wechat) => {
            let openid = req.openid.unwrap_or_else(new_openid);
            let trade = wechat.trades.pay(&req.code, &openid, now)?;
            // The payment stands even if the notification cannot be built; the merchant
            // can still learn it by querying, as with the real channel.
            if let Err(e) = wechat.notify_paid(&trade) {
                tracing::error!(error = %e, "payment notification not sent");
            }
            wechat_scanned(&trade)
        }
        Some(PayChannel::Alipay) => {
            let trade = alipay.trades.pay(&req.code, now)?;
            alipay.notify_paid(&trade);
            alipay_scanned(&trade)
        }
        None => return Err(SandboxError::UnknownCode),
    };
    let span = tracing::Span::current();
    span.record("channel", answer.channel.as_str());
    span.record("out_trade_no", answer.out_trade_no.as_str());
    if let Some(id) = &answer.transaction_id {
        span.record("transaction_id", id.as_str());
    }
    tracing::info!("paid in the wallet");
    Ok(HttpResponse::Ok().json(answer))
}

/// The payer declines: the trade stays unpaid (NOTPAY / WAIT_BUYER_PAY); recorded.
#[tracing::instrument(skip_all, fields(channel, out_trade_no))]
pub async fn decline(
    wechat: web::Data<WechatSandbox>,
    wechat_v2: web::Data<WechatV2Sandbox>,
    alipay: web::Data<AlipaySandbox>,
    req: web::Json<ScanRequest>,
) -> Result<HttpResponse, SandboxError> {
    let now = Utc::now();
    let version = channel_of(&req.code).map(|c| match c {
        PayChannel::Wechat | PayChannel::WechatV2 => wechat_book(&wechat_v2, &req.code),
        other => other,
    });
    let answer = match version {
        Some(PayChannel::WechatV2) => wechat_scanned_as(
            PayChannel::WechatV2,
            &wechat_v2.trades.decline(&req.code, now)?,
        ),
        Some(PayChannel::Wechat) => wechat_scanned(&wechat.trades.decline(&req.code, now)?),
        Some(PayChannel::Alipay) => alipay_scanned(&alipay.trades.decline(&req.code, now)?),
        None => return Err(SandboxError::UnknownCode),
    };
    let span = tracing::Span::current();
    span.record("channel", answer.channel.as_str());
    span.record("out_trade_no", answer.out_trade_no.as_str());
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Debug, Serialize)]
pub struct RefundView {
    pub out_refund_no: String,
    pub amount_fen: Fen,
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub success_time: Option<DateTime<Utc>>,
}

/// One trade of either channel, as tests and the page see it.
#[derive(Debug, Serialize)]
pub struct TradeView {
    pub channel: PayChannel,
    /// WeChat `mchid` / Alipay `app_id`.
    pub mchid: String,
    pub out_trade_no: String,
    pub description: String,
    pub amount_fen: Fen,
    pub attach: Option<String>,
    pub notify_url: Option<String>,
    /// What the payer scans: `code_url` / `qr_code`.
    pub code_url: String,
    pub trade_state: &'static str,
    /// The payer can still pay it.
    pub pending: bool,
    pub created_at: DateTime<Utc>,
    /// WeChat's deadline; Alipay trades here do not expire.
    pub pay_before: Option<DateTime<Utc>>,
    /// WeChat `transaction_id` / Alipay `trade_no`.
    pub transaction_id: Option<String>,
    pub success_time: Option<DateTime<Utc>>,
    pub declines: Vec<DateTime<Utc>>,
    pub refunds: Vec<RefundView>,
    pub notifications: Vec<DeliveryRecord>,
    /// Faults injected for this trade.
    pub faults: Vec<FaultEvent>,
}

fn wechat_view(
    channel: PayChannel,
    trade: Trade,
    notifier: &Notifier,
    faults: &Faults,
) -> TradeView {
    let now = Utc::now();
    TradeView {
        channel,
        pending: trade.state == TradeState::NotPay && now <= trade.pay_before,
        faults: faults.events_for(channel, trade.out_trade_no.as_str()),
        refunds: trade
            .refunds
            .iter()
            .map(|r| RefundView {
                out_refund_no: r.params.out_refund_no.clone(),
                amount_fen: r.params.refund,
                status: match r.status {
                    crate::wechat::state::RefundStatus::Processing => "PROCESSING",
                    crate::wechat::state::RefundStatus::Success => "SUCCESS",
                },
                created_at: r.created_at,
                success_time: r.success_time,
            })
            .collect(),
        mchid: trade.mchid,
        out_trade_no: trade.out_trade_no.as_str().to_owned(),
        description: trade.params.description,
        amount_fen: trade.params.total,
        attach: trade.params.attach,
        notify_url: Some(trade.params.notify_url),
        code_url: trade.code_url,
        trade_state: trade.state.as_str(),
        created_at: trade.created_at,
        pay_before: Some(trade.pay_before),
        transaction_id: trade.payment.as_ref().map(|p| p.transaction_id.clone()),
        success_time: trade.payment.as_ref().map(|p| p.success_time),
        declines: trade.declines,
        notifications: trade
            .notifications
            .iter()
            .filter_map(|id| notifier.record(id))
            .collect(),
    }
}

fn alipay_view(
    app_id: &str,
    trade: AlipayTrade,
    notifier: &Notifier,
    faults: &Faults,
) -> TradeView {
    TradeView {
        channel: PayChannel::Alipay,
        mchid: app_id.to_owned(),
        pending: matches!(trade.status, None | Some(AlipayStatus::WaitBuyerPay)),
        trade_state: alipay_state(&trade),
        faults: faults.events_for(PayChannel::Alipay, &trade.out_trade_no),
        refunds: trade
            .refunds
            .iter()
            .map(|r| RefundView {
                out_refund_no: r.out_request_no.clone(),
                amount_fen: r.amount,
                status: "REFUND_SUCCESS",
                created_at: r.at,
                success_time: Some(r.at),
            })
            .collect(),
        notifications: trade
            .notifications
            .iter()
            .filter_map(|id| notifier.record(id))
            .collect(),
        out_trade_no: trade.out_trade_no,
        description: trade.params.subject,
        amount_fen: trade.params.total,
        attach: trade.params.body,
        notify_url: trade.params.notify_url,
        code_url: trade.qr_code,
        created_at: trade.created_at,
        pay_before: None,
        transaction_id: trade.trade_no,
        success_time: trade.paid_at,
        declines: trade.declines,
    }
}

/// `GET /sandbox/trades`: every trade of every channel, oldest first, with its
/// notification history and injected faults.
#[tracing::instrument(skip_all)]
pub async fn trades(
    wechat: web::Data<WechatSandbox>,
    wechat_v2: web::Data<WechatV2Sandbox>,
    alipay: web::Data<AlipaySandbox>,
    notifier: web::Data<Notifier>,
    faults: web::Data<Faults>,
) -> HttpResponse {
    let mut views: Vec<TradeView> = wechat
        .trades
        .all()
        .into_iter()
        .map(|t| wechat_view(PayChannel::Wechat, t, &notifier, &faults))
        .chain(
            wechat_v2
                .trades
                .all()
                .into_iter()
                .map(|t| wechat_view(PayChannel::WechatV2, t, &notifier, &faults)),
        )
        .chain(
            alipay
                .trades
                .all()
                .into_iter()
                .map(|t| alipay_view(&alipay.app_id, t, &notifier, &faults)),
        )
        .collect();
    views.sort_by(|a, b| (a.created_at, &a.out_trade_no).cmp(&(b.created_at, &b.out_trade_no)));
    HttpResponse::Ok().json(views)
}

/// `GET /sandbox/wallet`: the page.
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(WALLET_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_routed_by_their_scheme() {
        assert_eq!(
            channel_of("weixin://wxpay/bizpayurl?pr=abc"),
            Some(PayChannel::Wechat)
        );
        assert_eq!(
            channel_of("https://qr.alipay.com/bax03431ljhokirwl38f00a7"),
            Some(PayChannel::Alipay)
        );
        assert_eq!(channel_of("https://example.com/x"), None);
        assert_eq!(channel_of(""), None);
    }

    #[test]
    fn the_page_has_the_test_ids_and_no_external_resources() {
        for id in [
            "trade-row",
            "pay-button",
            "decline-button",
            "code-input",
            "code-submit",
            "notification-row",
        ] {
            assert!(WALLET_PAGE.contains(&format!("\"{id}\"")), "{id}");
        }
        for external in ["http://", "https://cdn", "src=\"//", "<link"] {
            assert!(!WALLET_PAGE.contains(external), "{external}");
        }
    }
}
