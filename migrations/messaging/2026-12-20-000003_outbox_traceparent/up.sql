-- The trace context (W3C `traceparent`) of the transaction that wrote the row: the relay
-- continues it in its publish span and sends it on as the message's `traceparent` header.
-- NULL for rows written outside a traced span (and for rows written before this column).
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
