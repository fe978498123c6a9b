-- Transactional outbox: rows are written in the same transaction as the state change and
-- published by the relay after commit. `id` is the event id and the AMQP message_id.
CREATE TABLE outbox (
    id           BIGINT PRIMARY KEY,
    exchange     TEXT NOT NULL,
    routing_key  TEXT NOT NULL DEFAULT '',
    event_type   TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    payload      JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Pushed forward after a failed publish (backoff); the relay only takes due rows.
    available_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ,
    attempts     INT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   TEXT
);

-- Only pending rows are ever scanned; published rows stay out of the index.
CREATE INDEX outbox_pending ON outbox (available_at, id) WHERE published_at IS NULL;
