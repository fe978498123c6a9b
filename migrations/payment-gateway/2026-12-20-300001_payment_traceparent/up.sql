-- The trace context (W3C `traceparent`) of the request that created the attempt. The
-- channel's callback arrives without it (a new trace); recording the payment continues
-- this one, so the pay result's outbox row, the relay and the consumers stay in the
-- purchase's trace. NULL for attempts created outside a traced request.
ALTER TABLE payments ADD COLUMN traceparent TEXT;
