//! The payment gateway's internal API: create (or reuse) a payment attempt for an order,
//! actively query the channel for an order's attempts (`sync`), close an expired order's
//! attempts (`close`), and ask for a refund of the attempt that paid an order.

use paywire_contracts::payment_gateway::IDEMPOTENCY_KEY_HEADER;
pub use paywire_contracts::payment_gateway::{
    CloseOutcome, CloseResult, CreatePayment, PaymentAttempt, RefundView, RequestRefund, SyncResult,
};
use paywire_domain::OrderId;
use paywire_platform::answer::Stored;
use reqwest::StatusCode;

use super::{Upstream, bad_response, error_body, send, unexpected};
use crate::error::OrderError;

const SERVICE: &str = "payment-gateway";

/// Whether the gateway recorded a new refund (`Created`) or answered an earlier request's.
pub type RefundAnswer = Stored<RefundView>;

#[derive(Debug, Clone)]
pub struct PaymentGatewayClient(Upstream);

impl PaymentGatewayClient {
    pub fn new(upstream: Upstream) -> Self {
        Self(upstream)
    }

    #[tracing::instrument(skip_all, fields(order_id = %req.order_id, channel = %req.channel))]
    pub async fn create_payment(&self, req: &CreatePayment) -> Result<PaymentAttempt, OrderError> {
        let url = format!("{}/internal/payments", self.0.base_url);
        let resp = send(SERVICE, || self.0.http.post(&url).json(req)).await?;
        let status = resp.status();
        if status.is_success() {
            let attempt: PaymentAttempt =
                resp.json().await.map_err(|e| bad_response(SERVICE, e))?;
            if attempt.order_id != req.order_id || attempt.channel != req.channel {
                return Err(OrderError::BadUpstreamResponse {
                    service: SERVICE,
                    reason: format!(
                        "asked for order {} on {}, got order {} on {}",
                        req.order_id, req.channel, attempt.order_id, attempt.channel
                    ),
                });
            }
            return Ok(attempt);
        }
        match status {
            StatusCode::CONFLICT | StatusCode::BAD_REQUEST => {
                let body = error_body(resp).await;
                match body.as_ref().map(|b| b.error.as_str()) {
                    Some("order_already_paid") => Err(OrderError::OrderAlreadyPaid(req.order_id)),
                    // The order expired at the gateway before the timeout closed it here.
                    Some("order_closed") => Err(OrderError::OrderClosed(req.order_id)),
                    Some("channel_not_enabled") => Err(OrderError::ChannelNotEnabled(req.channel)),
                    _ => {
                        let (code, message) = body
                            .map(|b| (b.error, b.message))
                            .unwrap_or_else(|| ("unknown".into(), String::new()));
                        Err(OrderError::UpstreamRejected {
                            service: SERVICE,
                            status: status.as_u16(),
                            code,
                            message,
                        })
                    }
                }
            }
            _ => Err(unexpected(SERVICE, resp).await),
        }
    }

    /// Asks the gateway to query the channel for every unpaid attempt of the order.
    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub async fn sync_payments(&self, order_id: OrderId) -> Result<SyncResult, OrderError> {
        let result: SyncResult = self.order_payments(order_id, "sync").await?;
        if result.order_id != order_id || (result.paid && result.pay_no.is_none()) {
            return Err(OrderError::BadUpstreamResponse {
                service: SERVICE,
                reason: format!("sync of order {order_id} answered {result:?}"),
            });
        }
        Ok(result)
    }

    /// Asks the gateway to refund `amount_fen` of the attempt `pay_no`. `idempotency_key`
    /// makes a retry answer the same refund instead of refunding twice.
    #[tracing::instrument(skip_all, fields(order_id = %req.order_id, pay_no = %req.pay_no))]
    pub async fn request_refund(
        &self,
        req: &RequestRefund,
        idempotency_key: &str,
    ) -> Result<RefundAnswer, OrderError> {
        let url = format!("{}/internal/refunds", self.0.base_url);
        let resp = send(SERVICE, || {
            self.0
                .http
                .post(&url)
                .header(IDEMPOTENCY_KEY_HEADER, idempotency_key)
                .json(req)
        })
        .await?;
        let status = resp.status();
        if status.is_success() {
            let refund: RefundView = resp.json().await.map_err(|e| bad_response(SERVICE, e))?;
            if refund.order_id != req.order_id
                || refund.pay_no != req.pay_no
                || refund.amount_fen != req.amount_fen
            {
                return Err(OrderError::BadUpstreamResponse {
                    service: SERVICE,
                    reason: format!("asked to refund {req:?}, got {refund:?}"),
                });
            }
            return Ok(Stored::new(status == StatusCode::CREATED, refund));
        }
        if status == StatusCode::CONFLICT {
            let body = error_body(resp).await;
            if let Some(body) = body.as_ref().filter(|b| b.error == "refund_not_allowed") {
                return Err(OrderError::RefundNotAllowed(body.message.clone()));
            }
            let (code, message) = body
                .map(|b| (b.error, b.message))
                .unwrap_or_else(|| ("unknown".into(), String::new()));
            return Err(OrderError::UpstreamRejected {
                service: SERVICE,
                status: status.as_u16(),
                code,
                message,
            });
        }
        Err(unexpected(SERVICE, resp).await)
    }

    /// Asks the gateway to settle an expired order's attempts: paid, or closed at the
    /// channel. A gateway or channel that cannot be reached is `UpstreamUnavailable`.
    #[tracing::instrument(skip_all, fields(order_id = %order_id))]
    pub async fn close_payments(&self, order_id: OrderId) -> Result<CloseOutcome, OrderError> {
        let answer: CloseResult = self.order_payments(order_id, "close").await?;
        Ok(answer.outcome)
    }

    /// `POST /internal/orders/{order_id}/payments/{action}` (no body) and its 2xx answer.
    async fn order_payments<T: serde::de::DeserializeOwned>(
        &self,
        order_id: OrderId,
        action: &str,
    ) -> Result<T, OrderError> {
        let url = format!(
            "{}/internal/orders/{order_id}/payments/{action}",
            self.0.base_url
        );
        let resp = send(SERVICE, || self.0.http.post(&url)).await?;
        if !resp.status().is_success() {
            return Err(unexpected(SERVICE, resp).await);
        }
        resp.json().await.map_err(|e| bad_response(SERVICE, e))
    }
}
