-- Consumer inbox: one row per (consumer, message) written in the same transaction as the
-- handler's effects, so a redelivered or republished message is applied at most once.
CREATE TABLE processed_messages (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
