DROP TABLE refunds;
DROP TABLE closed_orders;
DROP INDEX payments_due_check_idx;
ALTER TABLE payments DROP COLUMN check_attempts, DROP COLUMN next_check_at;
