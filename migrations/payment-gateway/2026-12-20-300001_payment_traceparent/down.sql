ALTER TABLE payments DROP COLUMN traceparent;
