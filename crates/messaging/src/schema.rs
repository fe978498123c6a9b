//! Hand-written diesel schema matching `migrations/messaging`.

diesel::table! {
    outbox (id) {
        id -> Int8,
        exchange -> Text,
        routing_key -> Text,
        event_type -> Text,
        aggregate_id -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        available_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    processed_messages (consumer, message_id) {
        consumer -> Text,
        message_id -> Text,
        processed_at -> Timestamptz,
    }
}
