//! Asking the channel instead of waiting for its callback: the "I have paid" sync, the
//! order timeout's close, and the compensation sweeper all go through here, and a
//! payment found this way is recorded by [`record_confirmed`](super::record) exactly as
//! if its callback had come.
//!
//! A channel that cannot be reached (or whose answer cannot be verified) is an error:
//! nothing is changed and the caller retries later — never a guess.

use std::sync::Arc;

use chrono::Utc;
use diesel_async::AsyncConnection;
use paywire_channels::{ChannelError, CloseOutcome, PaymentChannel, PaymentState};
use paywire_contracts::payment_gateway::{self as api, CloseResult, SyncResult};
use paywire_domain::{OrderId, PaymentStatus};

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::create::channel_error;
use crate::payments::record::{Recorded, record_confirmed_now};
use crate::payments::store::{self, NotificationOutcome, Payment};

/// What the channel said about one unpaid attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Paid at the channel; recorded (applied, duplicate or stray).
    Paid(Recorded),
    /// Not paid (or unknown to the channel: it was never created there).
    NotPaid,
    /// Closed at the channel.
    Closed,
}

fn channel_for(
    state: &AppState,
    payment: &Payment,
) -> Result<Arc<dyn PaymentChannel>, GatewayError> {
    state
        .channels
        .get(payment.channel)
        .cloned()
        .ok_or(GatewayError::ChannelNotEnabled(payment.channel))
}

/// Queries the channel about one attempt; a paid attempt is recorded.
#[tracing::instrument(skip_all, fields(pay_no = %payment.pay_no, order_id = %payment.order_id, channel = %payment.channel))]
pub async fn query_attempt(state: &AppState, payment: &Payment) -> Result<Found, GatewayError> {
    let channel = channel_for(state, payment)?;
    match channel.query_payment(payment.pay_no).await {
        Ok(PaymentState::Paid(confirmed) | PaymentState::Refunded(confirmed)) => {
            let recorded = record_confirmed_now(state, payment.channel, &confirmed).await?;
            if let NotificationOutcome::Rejected(reason) = recorded.outcome {
                // The channel vouches for a payment that does not match our record: an
                // operator must look; the attempt is neither paid nor closable.
                tracing::error!(
                    reason,
                    "channel reports a payment that does not match the attempt"
                );
                return Err(GatewayError::ChannelRejected {
                    code: "payment_mismatch".into(),
                    message: format!("channel reports a payment we refuse: {reason}"),
                });
            }
            tracing::info!(outcome = recorded.outcome.as_text(), "paid at the channel");
            Ok(Found::Paid(recorded))
        }
        Ok(PaymentState::NotPaid) | Err(ChannelError::NotFound) => Ok(Found::NotPaid),
        Ok(PaymentState::Closed) => Ok(Found::Closed),
        Err(e) => {
            tracing::warn!(error = %e, "channel query failed");
            Err(channel_error(e))
        }
    }
}

/// Closes one attempt: at the channel first (after a query, so a payment is recorded
/// rather than closed over), then locally `unpaid → closed`. Returns `Found::Paid` when the
/// channel had taken the money after all.
#[tracing::instrument(skip_all, fields(pay_no = %payment.pay_no, order_id = %payment.order_id, channel = %payment.channel))]
pub async fn close_attempt(state: &AppState, payment: &Payment) -> Result<Found, GatewayError> {
    match query_attempt(state, payment).await? {
        Found::Paid(recorded) => return Ok(Found::Paid(recorded)),
        Found::Closed => {}
        Found::NotPaid => {
            let channel = channel_for(state, payment)?;
            match channel.close_payment(payment.pay_no).await {
                // Unknown to the channel: there is nothing to pay there.
                Ok(CloseOutcome::Closed) | Err(ChannelError::NotFound) => {}
                Ok(CloseOutcome::AlreadyPaid) => {
                    // Paid between our query and the close: record it.
                    return match query_attempt(state, payment).await? {
                        paid @ Found::Paid(_) => Ok(paid),
                        _ => Err(GatewayError::ChannelUnavailable(
                            "channel refused the close as paid but reports no payment".into(),
                        )),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "channel close failed");
                    return Err(channel_error(e));
                }
            }
        }
    }
    let mut conn = state.pool.get().await?;
    let now = Utc::now();
    let closed = conn
        .transaction::<_, GatewayError, _>(async |conn| {
            store::lock_order(conn, payment.order_id).await?;
            store::transition(conn, payment.pay_no, PaymentStatus::Closed, now).await
        })
        .await?;
    if closed {
        crate::metrics::attempt_closed(payment.channel);
        tracing::info!("attempt closed at the channel and locally");
    }
    Ok(Found::Closed)
}

/// Queries the channel for every unpaid attempt of the order and records what is paid.
/// An unreachable channel is an error unless another attempt was found paid anyway.
///
/// Behind a button a student (or a script) can press as often as they like, so each
/// attempt is asked about at most once per `payment.sync_min_interval_secs`
/// ([`store::claim_sync`], guarded in the database so it holds across instances); an
/// attempt asked about recently is answered from the database (`paywire_sync_skipped_total`).
pub async fn sync_order(state: &AppState, order: OrderId) -> Result<SyncResult, GatewayError> {
    let (attempts, claimed) = {
        let mut conn = state.pool.get().await?;
        if let Some(paid) = store::settling_attempt(&mut conn, order).await? {
            return Ok(SyncResult {
                order_id: order,
                paid: true,
                pay_no: Some(paid.pay_no),
            });
        }
        let attempts = store::attempts_for_order(&mut conn, order).await?;
        let mut claimed = Vec::new();
        for attempt in attempts
            .iter()
            .filter(|p| p.status == PaymentStatus::Unpaid)
        {
            if store::claim_sync(
                &mut conn,
                attempt.pay_no,
                state.payment.sync_min_interval_secs,
            )
            .await?
            {
                claimed.push(attempt.pay_no);
            } else {
                crate::metrics::sync_skipped(attempt.channel);
            }
        }
        (attempts, claimed)
    };
    let mut failure = None;
    for attempt in attempts.iter().filter(|p| claimed.contains(&p.pay_no)) {
        if let Err(e) = query_attempt(state, attempt).await {
            failure.get_or_insert(e);
        }
    }
    let mut conn = state.pool.get().await?;
    match store::settling_attempt(&mut conn, order).await? {
        Some(paid) => Ok(SyncResult {
            order_id: order,
            paid: true,
            pay_no: Some(paid.pay_no),
        }),
        None => match failure {
            Some(e) => Err(e),
            None => Ok(SyncResult {
                order_id: order,
                paid: false,
                pay_no: None,
            }),
        },
    }
}

/// How often the close re-reads the order when new attempts keep appearing.
const CLOSE_ROUNDS: usize = 3;

/// The order timeout: every unpaid attempt is queried and then closed at the channel and
/// locally; a payment found on the way wins (`paid`). Once no unpaid attempt is left the
/// order is closed for good (`closed_orders`, under the order lock that attempt creation
/// also takes), so no new attempt can start and later money is refunded.
pub async fn close_order(state: &AppState, order: OrderId) -> Result<CloseResult, GatewayError> {
    let paid = |p: Payment| CloseResult {
        order_id: order,
        outcome: api::CloseOutcome::Paid,
        pay_no: Some(p.pay_no),
    };
    let closed = CloseResult {
        order_id: order,
        outcome: api::CloseOutcome::Closed,
        pay_no: None,
    };
    for _ in 0..CLOSE_ROUNDS {
        let unpaid: Vec<Payment> = {
            let mut conn = state.pool.get().await?;
            if let Some(p) = store::settling_attempt(&mut conn, order).await? {
                return Ok(paid(p));
            }
            if store::order_is_closed(&mut conn, order).await? {
                return Ok(closed);
            }
            store::attempts_for_order(&mut conn, order)
                .await?
                .into_iter()
                .filter(|p| p.status == PaymentStatus::Unpaid)
                .collect()
        };
        for attempt in &unpaid {
            close_attempt(state, attempt).await?;
        }
        // Decide under the order lock: nothing settled it and nothing unpaid is left.
        let mut conn = state.pool.get().await?;
        let now = Utc::now();
        let decided = conn
            .transaction::<_, GatewayError, _>(async |conn| {
                store::lock_order(conn, order).await?;
                if let Some(p) = store::settling_attempt(conn, order).await? {
                    return Ok(Some(paid(p)));
                }
                let attempts = store::attempts_for_order(conn, order).await?;
                if attempts.iter().any(|p| p.status == PaymentStatus::Unpaid) {
                    return Ok(None);
                }
                store::close_order(conn, order, now).await?;
                Ok(Some(closed.clone()))
            })
            .await?;
        if let Some(view) = decided {
            tracing::info!(outcome = ?view.outcome, "order timeout handled");
            return Ok(view);
        }
    }
    Err(GatewayError::OrderBusy(order))
}
