//! Refunds the order service asks for (`POST /internal/refunds`): checked and recorded
//! under the order's lock and the attempt's row lock, then driven by the same
//! [`worker`](super::worker) as the refunds of stray money.
//!
//! Partial refunds are allowed: the refunds of an attempt that are not `failed` add up to
//! at most what was paid. The attempt becomes `refunded` when the succeeded ones reach it.

use chrono::Utc;
use diesel_async::AsyncConnection;
use paywire_contracts::payment_gateway::RequestRefund;
use paywire_domain::{Fen, OrderId, PayNo, PaymentStatus};
use paywire_platform::answer::Stored;

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::store as payment_store;
use crate::refunds::model::{Refund, RefundReason, RefundStatus};
use crate::refunds::store::{self, NewRefund, RefundRequestKey};

/// WeChat Pay's `reason` limit (80 characters); Alipay's `refund_reason` allows more.
const MAX_REASON_CHARS: usize = 80;
const MAX_REQUEST_ID_CHARS: usize = 128;

/// A refund request checked at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub order_id: OrderId,
    pub pay_no: PayNo,
    pub amount: Fen,
    pub note: Option<String>,
    pub request_id: String,
}

impl RefundRequest {
    /// `header` is the `Idempotency-Key` header, if any; it and `request_id` must agree.
    pub fn parse(body: RequestRefund, header: Option<&str>) -> Result<Self, GatewayError> {
        let invalid = |m: &str| GatewayError::InvalidRequest(m.to_owned());
        if body.amount_fen.is_zero() {
            return Err(invalid("amount_fen must be positive"));
        }
        let request_id = match (header, body.request_id.as_deref()) {
            (Some(h), Some(b)) if h != b => {
                return Err(invalid("the Idempotency-Key header and request_id differ"));
            }
            (Some(key), _) | (None, Some(key)) => key.to_owned(),
            (None, None) => {
                return Err(invalid(
                    "an Idempotency-Key header or a request_id is required",
                ));
            }
        };
        if request_id.is_empty()
            || request_id.chars().count() > MAX_REQUEST_ID_CHARS
            || request_id.chars().any(char::is_control)
        {
            return Err(invalid(
                "the idempotency key must be 1-128 printable characters",
            ));
        }
        let note = body
            .reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if let Some(note) = &note
            && (note.chars().count() > MAX_REASON_CHARS || note.chars().any(char::is_control))
        {
            return Err(invalid("reason must be at most 80 printable characters"));
        }
        Ok(Self {
            order_id: body.order_id,
            pay_no: body.pay_no,
            amount: body.amount_fen,
            note,
            request_id,
        })
    }
}

/// What a refund request did: `Created`, a new pending refund the worker sends to the
/// channel; `Existing`, the same request (idempotency key) came before: its refund, as it
/// stands now.
pub type RefundRequested = Stored<Refund>;

/// Statuses whose amounts are spoken for: a failed refund gave nothing back.
const COMMITTED: &[RefundStatus] = &[
    RefundStatus::Pending,
    RefundStatus::Processing,
    RefundStatus::Succeeded,
];

/// Records a requested refund after checking that the attempt belongs to the order, is
/// paid, and has enough left to refund. The same idempotency key again answers the
/// first refund (if it asked for the same thing).
#[tracing::instrument(skip_all, fields(order_id = %req.order_id, pay_no = %req.pay_no, refund_no = tracing::field::Empty))]
pub async fn request_refund(
    state: &AppState,
    req: &RefundRequest,
) -> Result<RefundRequested, GatewayError> {
    let mut conn = state.pool.get().await?;
    let now = Utc::now();
    let refund_no = state.ids.next();
    let outcome = conn
        .transaction::<_, GatewayError, _>(async |conn| {
            // Same lock order as recording a payment: order, then attempt row.
            payment_store::lock_order(conn, req.order_id).await?;
            if let Some(existing) = store::find_by_request_id(conn, &req.request_id).await? {
                return same_request(existing, req).map(Stored::Existing);
            }
            let payment = payment_store::find_for_update(conn, req.pay_no)
                .await?
                .ok_or(GatewayError::PaymentNotFound(req.pay_no))?;
            if payment.order_id != req.order_id {
                return Err(GatewayError::RefundNotAllowed(format!(
                    "payment {} does not belong to order {}",
                    req.pay_no, req.order_id
                )));
            }
            if payment.status != PaymentStatus::Paid {
                return Err(GatewayError::RefundNotAllowed(format!(
                    "payment {} is {}, not paid",
                    req.pay_no, payment.status
                )));
            }
            let committed = store::total_for_payment(conn, req.pay_no, COMMITTED).await?;
            let left = payment.amount.checked_sub(committed).unwrap_or(Fen::ZERO);
            if req.amount > left {
                return Err(GatewayError::RefundNotAllowed(format!(
                    "refund of {} fen exceeds the {} fen left to refund of payment {}",
                    req.amount.get(),
                    left.get(),
                    req.pay_no
                )));
            }
            let new = NewRefund {
                refund_no,
                pay_no: req.pay_no,
                order_id: req.order_id,
                channel: payment.channel,
                amount: req.amount,
                reason: RefundReason::Requested,
                request: Some(RefundRequestKey {
                    request_id: req.request_id.clone(),
                    note: req.note.clone(),
                }),
            };
            if !store::insert(conn, &new, now).await? {
                // The same key for another order committed meanwhile (another lock).
                let existing = store::find_by_request_id(conn, &req.request_id)
                    .await?
                    .ok_or_else(|| GatewayError::CorruptRow("idempotency key vanished".into()))?;
                return same_request(existing, req).map(Stored::Existing);
            }
            let refund = store::find(conn, refund_no)
                .await?
                .ok_or_else(|| GatewayError::CorruptRow(format!("refund {refund_no} vanished")))?;
            Ok(Stored::Created(refund))
        })
        .await?;
    let refund = outcome.get();
    tracing::Span::current().record("refund_no", tracing::field::display(refund.refund_no));
    match &outcome {
        Stored::Created(_) => tracing::info!(
            amount_fen = refund.amount.get(),
            "refund requested; recorded for the refund worker"
        ),
        Stored::Existing(_) => {
            tracing::info!(status = %refund.status, "refund request repeated; answered as before")
        }
    }
    Ok(outcome)
}

/// A repeated key must ask for the same refund; anything else is a client bug.
fn same_request(existing: Refund, req: &RefundRequest) -> Result<Refund, GatewayError> {
    if existing.order_id == req.order_id
        && existing.pay_no == req.pay_no
        && existing.amount == req.amount
    {
        Ok(existing)
    } else {
        Err(GatewayError::IdempotencyConflict(format!(
            "idempotency key {:?} was used for refund {} of payment {} ({} fen)",
            req.request_id,
            existing.refund_no,
            existing.pay_no,
            existing.amount.get()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> RequestRefund {
        RequestRefund {
            order_id: OrderId::from(1),
            pay_no: PayNo::from(2),
            amount_fen: Fen::new(100).unwrap(),
            reason: Some("  课程退款 ".into()),
            request_id: None,
        }
    }

    #[test]
    fn the_key_comes_from_the_header_or_the_body_and_both_must_agree() {
        let r = RefundRequest::parse(body(), Some("k1")).unwrap();
        assert_eq!(r.request_id, "k1");
        assert_eq!(r.note.as_deref(), Some("课程退款"));
        let mut b = body();
        b.request_id = Some("k2".into());
        assert_eq!(RefundRequest::parse(b, None).unwrap().request_id, "k2");
        let mut b = body();
        b.request_id = Some("k2".into());
        assert!(RefundRequest::parse(b, Some("k2")).is_ok());
        let mut b = body();
        b.request_id = Some("k2".into());
        assert!(matches!(
            RefundRequest::parse(b, Some("k3")),
            Err(GatewayError::InvalidRequest(_))
        ));
        assert!(matches!(
            RefundRequest::parse(body(), None),
            Err(GatewayError::InvalidRequest(_))
        ));
        assert!(RefundRequest::parse(body(), Some("")).is_err());
        assert!(RefundRequest::parse(body(), Some(&"k".repeat(129))).is_err());
    }

    #[test]
    fn zero_amounts_and_unusable_reasons_are_refused() {
        let mut b = body();
        b.amount_fen = Fen::ZERO;
        assert!(RefundRequest::parse(b, Some("k")).is_err());
        let mut b = body();
        b.reason = Some("x".repeat(81));
        assert!(RefundRequest::parse(b, Some("k")).is_err());
        let mut b = body();
        b.reason = Some("a\nb".into());
        assert!(RefundRequest::parse(b, Some("k")).is_err());
        let mut b = body();
        b.reason = Some("   ".into());
        assert_eq!(RefundRequest::parse(b, Some("k")).unwrap().note, None);
    }
}
