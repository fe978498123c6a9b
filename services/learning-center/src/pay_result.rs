//! Consuming the pay-result exchange: a paid course choice becomes `chosen` exactly once
//! and the student is enrolled, but only by a result that matches the choice (user and
//! amount); refund results go to [`crate::refund_result`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use paywire_contracts::{PayResultV1, RefundResultV1};
use paywire_domain::{BizType, ChooseCourseId, ChooseCourseStatus};
use paywire_messaging::consumer::{HandleError, IncomingMessage, MessageHandler};
use serde::Deserialize;

use crate::error::LearningError;
use crate::refund_result::apply_refund_result;
use crate::store::{self, Renew};

/// Inbox key of this consumer in `processed_messages`.
pub const CONSUMER_NAME: &str = "learning-center";

/// What [`apply_pay_result`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The choice moved `awaiting_payment → chosen` and the student is enrolled.
    Enrolled {
        choose_course_id: ChooseCourseId,
        valid_until: DateTime<Utc>,
    },
    /// The choice was already chosen: this payment was applied before. Nothing changed.
    AlreadyApplied,
}

/// Applies one pay result for a course on the caller's connection (inside the consumer's
/// transaction), so it is testable without a broker.
#[tracing::instrument(skip_all, fields(biz_id = %event.biz_id, order_id = %event.order_id, pay_no = %event.pay_no))]
pub async fn apply_pay_result(
    conn: &mut AsyncPgConnection,
    event: &PayResultV1,
) -> Result<Applied, LearningError> {
    match event.biz_type {
        BizType::Course => {}
    }
    let id: ChooseCourseId = event
        .biz_id
        .parse()
        .map_err(|e: paywire_domain::ParseError| LearningError::InvalidBizId(e.to_string()))?;
    let choice = store::find_choice(conn, id)
        .await?
        .ok_or(LearningError::ChooseCourseNotFound(id))?;

    let mut mismatches = Vec::new();
    if event.user_id != choice.user_id {
        mismatches.push(format!("user {} != {}", event.user_id, choice.user_id));
    }
    if event.amount_fen != choice.price {
        mismatches.push(format!(
            "amount_fen {} != price_fen {}",
            event.amount_fen.get(),
            choice.price.get()
        ));
    }
    if !mismatches.is_empty() {
        let reason = mismatches.join("; ");
        tracing::error!(choose_course_id = %id, reason = %reason, "pay result contradicts its choice; not applied");
        return Err(LearningError::PayResultMismatch {
            choose_course_id: id,
            reason,
        });
    }

    // A record already chosen means this payment was applied: enrol only on the transition.
    if !store::set_chosen(conn, id, event.pay_no).await? {
        tracing::info!(choose_course_id = %id, "pay result already applied");
        return Ok(Applied::AlreadyApplied);
    }
    let choice = store::ChooseCourse {
        status: ChooseCourseStatus::Chosen,
        pay_no: Some(event.pay_no),
        ..choice
    };
    let enrolment = store::upsert_enrolment(conn, &choice, Utc::now(), Renew::Always)
        .await?
        .ok_or_else(|| LearningError::CorruptRow(format!("enrolment for {id} not written")))?;
    tracing::info!(
        choose_course_id = %id,
        course_id = %choice.course_id,
        valid_until = %enrolment.valid_until,
        "student enrolled after payment"
    );
    Ok(Applied::Enrolled {
        choose_course_id: id,
        valid_until: enrolment.valid_until,
    })
}

/// A delivery as this service understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A pay result for a course.
    Course(PayResultV1),
    /// A pay result for another kind of business record: not ours, acknowledged unchanged.
    OtherBiz(String),
    /// A refund result (of any business record: only one of a payment that enrolled a
    /// student here changes anything).
    Refund(RefundResultV1),
    /// Another event type on the exchange: not for this service, acknowledged unchanged.
    OtherEvent(String),
}

#[derive(Deserialize)]
struct BizTypeOnly {
    biz_type: String,
}

/// Decodes a delivery. Other event types on the shared exchange are skipped; a message
/// without a type, or a pay result of a shape this build does not know, is refused. The
/// business type is looked at before the full payload, so pay results for record types
/// added later (which this build cannot parse) are skipped instead of parked.
pub fn decode(msg: &IncomingMessage) -> Result<Decoded, HandleError> {
    if msg.event_type.is_empty() {
        return Err(HandleError::Permanent("message without a type".into()));
    }
    if msg.event_type == RefundResultV1::EVENT_TYPE {
        return msg
            .decode_envelope::<RefundResultV1>(RefundResultV1::EVENT_TYPE)
            .map(|e| Decoded::Refund(e.data));
    }
    if msg.event_type != PayResultV1::EVENT_TYPE {
        return Ok(Decoded::OtherEvent(msg.event_type.clone()));
    }
    let envelope = msg.decode_envelope::<serde_json::Value>(PayResultV1::EVENT_TYPE)?;
    let biz = BizTypeOnly::deserialize(&envelope.data)
        .map_err(|e| HandleError::Permanent(format!("malformed pay result: {e}")))?;
    if biz.biz_type != BizType::Course.as_str() {
        return Ok(Decoded::OtherBiz(biz.biz_type));
    }
    let event = PayResultV1::deserialize(envelope.data)
        .map_err(|e| HandleError::Permanent(format!("malformed pay result: {e}")))?;
    Ok(Decoded::Course(event))
}

/// Decodes pay and refund results and applies them with [`apply_pay_result`] and
/// [`apply_refund_result`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PayResultHandler;

#[async_trait]
impl MessageHandler for PayResultHandler {
    #[tracing::instrument(skip_all, fields(message_id = %msg.message_id, choose_course_id = tracing::field::Empty))]
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        msg: &IncomingMessage,
    ) -> Result<(), HandleError> {
        let event = match decode(msg).inspect_err(|e| tracing::error!(error = %e, "rejected"))? {
            Decoded::Course(event) => event,
            Decoded::OtherBiz(biz_type) => {
                tracing::debug!(%biz_type, "pay result for another business type ignored");
                return Ok(());
            }
            Decoded::OtherEvent(event_type) => {
                tracing::debug!(%event_type, "event type not handled here; acknowledged");
                return Ok(());
            }
            Decoded::Refund(event) => {
                return apply_refund_result(conn, &event)
                    .await
                    .map(drop)
                    .map_err(HandleError::of);
            }
        };
        tracing::Span::current().record("choose_course_id", event.biz_id.as_str());
        apply_pay_result(conn, &event)
            .await
            .map(drop)
            .map_err(HandleError::of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_domain::EventId;
    use paywire_testkit::events::pay_result as event;

    fn message(event_type: &str, body: Vec<u8>) -> IncomingMessage {
        IncomingMessage::first("1", event_type, body)
    }

    fn envelope_json() -> serde_json::Value {
        let env = event().into_envelope(EventId::from(1), chrono::Utc::now());
        serde_json::to_value(&env).unwrap()
    }

    fn decode_json(v: &serde_json::Value) -> Result<Decoded, HandleError> {
        decode(&message("pay.result.v1", serde_json::to_vec(v).unwrap()))
    }

    #[test]
    fn decodes_course_pay_results() {
        assert_eq!(
            decode_json(&envelope_json()).unwrap(),
            Decoded::Course(event())
        );
    }

    #[test]
    fn other_business_types_are_skipped_not_parked() {
        let mut env = envelope_json();
        env["data"]["biz_type"] = "materials".into();
        // Even if the rest of the payload is a shape this build does not know.
        env["data"]["biz_id"] = serde_json::json!({"nested": true});
        assert_eq!(
            decode_json(&env).unwrap(),
            Decoded::OtherBiz("materials".into())
        );
    }

    #[test]
    fn other_event_types_are_skipped_not_parked() {
        for kind in ["refund.result.v2", "pay.result.v2"] {
            // Whatever their body: this build knows nothing about their shape.
            for body in [serde_json::to_vec(&envelope_json()).unwrap(), b"{".to_vec()] {
                assert_eq!(
                    decode(&message(kind, body)).unwrap(),
                    Decoded::OtherEvent(kind.into())
                );
            }
        }
    }

    #[test]
    fn untyped_messages_and_garbage_are_permanent() {
        let body = serde_json::to_vec(&envelope_json()).unwrap();
        assert!(matches!(
            decode(&message("", body)),
            Err(HandleError::Permanent(_))
        ));
        assert!(matches!(
            decode(&message("pay.result.v1", b"{not json".to_vec())),
            Err(HandleError::Permanent(_))
        ));
        let mut env = envelope_json();
        env["event_type"] = "refund.result.v1".into();
        assert!(matches!(decode_json(&env), Err(HandleError::Permanent(_))));
        let mut env = envelope_json();
        env["data"]["amount_fen"] = (-5).into();
        assert!(matches!(decode_json(&env), Err(HandleError::Permanent(_))));
        let mut env = envelope_json();
        env["data"]
            .as_object_mut()
            .unwrap()
            .remove("biz_type")
            .unwrap();
        assert!(matches!(decode_json(&env), Err(HandleError::Permanent(_))));
    }
}
