//! Writing to the outbox inside the caller's transaction.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager};
use paywire_contracts::EventEnvelope;
use paywire_domain::EventId;
use serde::Serialize;

use crate::MessagingError;
use crate::schema::outbox;

/// PostgreSQL channel the relay listens on; `enqueue` notifies it.
pub const NOTIFY_CHANNEL: &str = "paywire_outbox";

/// One message to publish. `id` becomes the AMQP `message_id`, the consumers' dedupe key.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: EventId,
    pub exchange: String,
    pub routing_key: String,
    pub event_type: String,
    pub aggregate_id: String,
    pub payload: serde_json::Value,
}

impl OutboxMessage {
    /// The outbox row for an event: id and type come from the envelope, the body is the
    /// whole envelope as JSON.
    pub fn event<T: Serialize>(
        envelope: &EventEnvelope<T>,
        exchange: impl Into<String>,
        routing_key: impl Into<String>,
        aggregate_id: impl Into<String>,
    ) -> Result<Self, MessagingError> {
        Ok(Self {
            id: envelope.event_id,
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            event_type: envelope.event_type.clone(),
            aggregate_id: aggregate_id.into(),
            payload: serde_json::to_value(envelope)?,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = outbox)]
struct NewOutboxRow<'a> {
    id: i64,
    exchange: &'a str,
    routing_key: &'a str,
    event_type: &'a str,
    aggregate_id: &'a str,
    payload: &'a serde_json::Value,
    traceparent: Option<String>,
}

/// Inserts the message and wakes the relay. Must run inside the caller's transaction (so
/// the message exists exactly when the state change does); outside one it fails without
/// writing anything. The notification is delivered by PostgreSQL only on commit. The
/// current span's trace context is stored with the row (`traceparent`), for the relay's
/// publish span and the message's header.
pub async fn enqueue(conn: &mut AsyncPgConnection, msg: &OutboxMessage) -> QueryResult<()> {
    let depth =
        <AsyncPgConnection as AsyncConnection>::TransactionManager::transaction_manager_status_mut(
            conn,
        )
        .transaction_depth()?;
    if depth.is_none() {
        return Err(diesel::result::Error::QueryBuilderError(
            "outbox::enqueue must be called inside the transaction that changes the state".into(),
        ));
    }
    diesel::insert_into(outbox::table)
        .values(NewOutboxRow {
            id: msg.id.get(),
            exchange: &msg.exchange,
            routing_key: &msg.routing_key,
            event_type: &msg.event_type,
            aggregate_id: &msg.aggregate_id,
            payload: &msg.payload,
            traceparent: paywire_platform::telemetry::current_traceparent(),
        })
        .execute(conn)
        .await?;
    diesel::sql_query("SELECT pg_notify($1, '')")
        .bind::<diesel::sql_types::Text, _>(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_contracts::PayResultV1;

    #[test]
    fn event_rows_carry_the_envelope_id_type_and_body() {
        let env = EventEnvelope {
            event_id: EventId::from(42),
            event_type: PayResultV1::EVENT_TYPE.to_owned(),
            occurred_at: "2026-01-02T03:04:05Z".parse().unwrap(),
            data: serde_json::json!({"k": 1}),
        };
        let msg = OutboxMessage::event(&env, "ex", "", "order-7").unwrap();
        assert_eq!(msg.id, EventId::from(42));
        assert_eq!(msg.event_type, "pay.result.v1");
        assert_eq!(msg.exchange, "ex");
        assert_eq!(msg.routing_key, "");
        assert_eq!(msg.aggregate_id, "order-7");
        assert_eq!(
            msg.payload,
            serde_json::json!({
                "event_id": "42", "event_type": "pay.result.v1",
                "occurred_at": "2026-01-02T03:04:05Z", "data": {"k": 1}
            })
        );
    }
}
