//! The payer's phone: scan a code and pay or decline, plus the sandbox's inspection
//! API (`GET /sandbox/trades`) for tests and, later, a web page.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use paywire_domain::{Fen, PayChannel};
use serde::{Deserialize, Serialize};

use crate::SandboxError;
use crate::notify::{DeliveryRecord, Notifier};
use crate::wechat::WechatSandbox;
use crate::wechat::state::{Trade, new_openid};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox/wallet/pay", web::post().to(pay))
        .route("/sandbox/wallet/decline", web::post().to(decline))
        .route("/sandbox/trades", web::get().to(trades));
}

/// Which channel issued a scanned code.
pub fn channel_of(code: &str) -> Option<PayChannel> {
    code.starts_with("weixin://").then_some(PayChannel::Wechat)
}

#[derive(Debug, Deserialize)]
pub struct ScanRequest {
    /// The scanned QR content (`code_url`).
    pub code: String,
    /// The payer; a fresh one when absent.
    pub openid: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ScanResponse {
    pub channel: PayChannel,
    pub out_trade_no: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    pub trade_state: &'static str,
}

fn scan_response(trade: &Trade) -> ScanResponse {
    ScanResponse {
        channel: PayChannel::Wechat,
        out_trade_no: trade.out_trade_no.as_str().to_owned(),
        transaction_id: trade.payment.as_ref().map(|p| p.transaction_id.clone()),
        trade_state: trade.state.as_str(),
    }
}

/// Pays the trade behind `code`, then notifies the merchant in the background.
#[tracing::instrument(skip_all, fields(out_trade_no, transaction_id))]
pub async fn pay(
    wechat: web::Data<WechatSandbox>,
    req: web::Json<ScanRequest>,
) -> Result<HttpResponse, SandboxError> {
    let req = req.into_inner();
    match channel_of(&req.code) {
        Some(PayChannel::Wechat) => {}
        _ => return Err(SandboxError::UnknownCode),
    }
    let openid = req.openid.unwrap_or_else(new_openid);
    let trade = wechat.trades.pay(&req.code, &openid, Utc::now())?;
    let span = tracing::Span::current();
    span.record("out_trade_no", trade.out_trade_no.as_str());
    if let Some(p) = &trade.payment {
        span.record("transaction_id", p.transaction_id.as_str());
    }
    // The payment stands even if the notification cannot be built; the merchant can
    // still learn it by querying, as with the real channel.
    if let Err(e) = wechat.notify_paid(&trade) {
        tracing::error!(error = %e, "payment notification not sent");
    }
    tracing::info!("paid in the wallet");
    Ok(HttpResponse::Ok().json(scan_response(&trade)))
}

/// The payer declines: the trade stays NOTPAY; the decline is recorded.
#[tracing::instrument(skip_all, fields(out_trade_no))]
pub async fn decline(
    wechat: web::Data<WechatSandbox>,
    req: web::Json<ScanRequest>,
) -> Result<HttpResponse, SandboxError> {
    if channel_of(&req.code) != Some(PayChannel::Wechat) {
        return Err(SandboxError::UnknownCode);
    }
    let trade = wechat.trades.decline(&req.code, Utc::now())?;
    tracing::Span::current().record("out_trade_no", trade.out_trade_no.as_str());
    Ok(HttpResponse::Ok().json(scan_response(&trade)))
}

#[derive(Debug, Serialize)]
pub struct TradeView {
    pub channel: PayChannel,
    pub mchid: String,
    pub out_trade_no: String,
    pub description: String,
    pub amount_fen: Fen,
    pub attach: Option<String>,
    pub notify_url: String,
    pub code_url: String,
    pub trade_state: &'static str,
    pub created_at: DateTime<Utc>,
    pub pay_before: DateTime<Utc>,
    pub transaction_id: Option<String>,
    pub success_time: Option<DateTime<Utc>>,
    pub declines: Vec<DateTime<Utc>>,
    pub notifications: Vec<DeliveryRecord>,
}

fn view(trade: Trade, notifier: &Notifier) -> TradeView {
    TradeView {
        channel: PayChannel::Wechat,
        mchid: trade.mchid,
        out_trade_no: trade.out_trade_no.as_str().to_owned(),
        description: trade.params.description,
        amount_fen: trade.params.total,
        attach: trade.params.attach,
        notify_url: trade.params.notify_url,
        code_url: trade.code_url,
        trade_state: trade.state.as_str(),
        created_at: trade.created_at,
        pay_before: trade.pay_before,
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

/// `GET /sandbox/trades`: every trade, oldest first, with its notification history.
#[tracing::instrument(skip_all)]
pub async fn trades(
    wechat: web::Data<WechatSandbox>,
    notifier: web::Data<Notifier>,
) -> HttpResponse {
    let views: Vec<TradeView> = wechat
        .trades
        .all()
        .into_iter()
        .map(|t| view(t, &notifier))
        .collect();
    HttpResponse::Ok().json(views)
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
        assert_eq!(channel_of("https://qr.alipay.com/x"), None);
        assert_eq!(channel_of(""), None);
    }
}
