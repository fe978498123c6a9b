DROP INDEX refunds_pay_no_idx;
ALTER TABLE refunds DROP CONSTRAINT refunds_stray_pay_no_key, DROP COLUMN stray_pay_no;
ALTER TABLE refunds DROP CONSTRAINT refunds_request_id_only_requested,
    DROP COLUMN note, DROP COLUMN request_id;
DELETE FROM refunds WHERE reason = 'requested';
ALTER TABLE refunds DROP CONSTRAINT refunds_reason_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_reason_check
    CHECK (reason IN ('order_closed', 'duplicate_payment'));
CREATE UNIQUE INDEX refunds_pay_no_key ON refunds (pay_no);
