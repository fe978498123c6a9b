//! Consuming refund results: the policy (in `paywire_domain::EnrolmentStatus`) applied to
//! the choice that the refunded payment enrolled. Each succeeded refund counts once (by
//! refund number); when they add up to the choice's price, the choice becomes `refunded`
//! and its course table row `revoked`, both through guarded updates.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use paywire_contracts::RefundResultV1;
use paywire_domain::{ChooseCourseId, Fen, RefundReason, RefundStatus};

use crate::error::LearningError;
use crate::store;

/// What [`apply_refund_result`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundApplied {
    /// The refunds now cover the price: choice refunded, access revoked (`revoked` is
    /// false when the course table row had been renewed by a later choice since).
    Revoked {
        choose_course_id: ChooseCourseId,
        revoked: bool,
    },
    /// Counted, but less than the price: access kept.
    Partial {
        choose_course_id: ChooseCourseId,
        refunded: Fen,
    },
    /// This refund was counted before (a duplicate delivery): nothing changed.
    AlreadyApplied,
    /// Not a requested refund of a payment that enrolled anyone here (stray money, an
    /// unknown attempt), or not succeeded: nothing to do.
    Ignored,
}

/// Applies one refund result on the caller's connection (inside the consumer's
/// transaction), so it is testable without a broker.
#[tracing::instrument(skip_all, fields(refund_no = %event.refund_no, pay_no = %event.pay_no, order_id = %event.order_id))]
pub async fn apply_refund_result(
    conn: &mut AsyncPgConnection,
    event: &RefundResultV1,
) -> Result<RefundApplied, LearningError> {
    // Only a business decision takes a course back: refunds of stray or unattributed money
    // are of money that never bought the course, even when they name its attempt.
    if event.reason.known() != Some(RefundReason::Requested) {
        tracing::debug!(reason = %event.reason, "refund of money that bought nothing here");
        return Ok(RefundApplied::Ignored);
    }
    if event.status.known() != Some(RefundStatus::Succeeded) {
        tracing::info!(status = %event.status, "refund not succeeded; access unchanged");
        return Ok(RefundApplied::Ignored);
    }
    let Some(refunded_at) = event.refunded_at else {
        return Err(LearningError::InvalidRefundResult(format!(
            "succeeded refund {} without refunded_at",
            event.refund_no
        )));
    };
    let Some(choice) = store::find_choice_by_pay_no(conn, event.pay_no).await? else {
        // Stray money (the attempt never enrolled anyone) or another business's payment.
        tracing::debug!(reason = %event.reason, "refund of a payment that enrolled nothing here");
        return Ok(RefundApplied::Ignored);
    };
    if !store::record_refund(
        conn,
        event.refund_no,
        &choice,
        event.pay_no,
        event.amount_fen,
        refunded_at,
    )
    .await?
    {
        tracing::info!(choose_course_id = %choice.id, "refund already applied");
        return Ok(RefundApplied::AlreadyApplied);
    }
    let refunded = store::refunded_total(conn, choice.id).await?;
    if refunded < choice.price {
        tracing::info!(
            choose_course_id = %choice.id,
            refunded_fen = refunded.get(),
            price_fen = choice.price.get(),
            "partial refund; access kept"
        );
        return Ok(RefundApplied::Partial {
            choose_course_id: choice.id,
            refunded,
        });
    }
    if !store::set_refunded(conn, choice.id).await? {
        // Only a chosen choice has a pay_no, and a refunded one has counted its refunds
        // already; a further refund (over the price) changes nothing more.
        tracing::warn!(choose_course_id = %choice.id, status = %choice.status, "refund beyond a refunded choice");
        return Ok(RefundApplied::AlreadyApplied);
    }
    let revoked = store::revoke_enrolment(conn, choice.id, Utc::now()).await?;
    tracing::info!(
        choose_course_id = %choice.id,
        course_id = %choice.course_id,
        revoked,
        "full refund; enrolment revoked"
    );
    Ok(RefundApplied::Revoked {
        choose_course_id: choice.id,
        revoked,
    })
}
