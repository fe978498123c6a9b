-- Refunds the order service asks for (`requested`), beside the automatic refunds of stray
-- money. A paid attempt may be refunded in parts, as long as the parts add up to at most
-- what was paid; a stray payment is still refunded once.
ALTER TABLE refunds DROP CONSTRAINT refunds_reason_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_reason_check
    CHECK (reason IN ('order_closed', 'duplicate_payment', 'requested'));

-- The caller's idempotency key: the same request again answers the same refund.
ALTER TABLE refunds
    ADD COLUMN request_id TEXT UNIQUE CHECK (request_id <> ''),
    -- What the payer sees at the channel for a requested refund.
    ADD COLUMN note TEXT,
    ADD CONSTRAINT refunds_request_id_only_requested
        CHECK ((reason = 'requested') = (request_id IS NOT NULL));

-- "One refund per stray payment" survives for the automatic reasons only: a generated
-- column that is NULL for requested refunds (NULLs never conflict), with a constraint the
-- stray insert names in ON CONFLICT.
DROP INDEX refunds_pay_no_key;
ALTER TABLE refunds
    ADD COLUMN stray_pay_no BIGINT GENERATED ALWAYS AS
        (CASE WHEN reason <> 'requested' THEN pay_no END) STORED,
    ADD CONSTRAINT refunds_stray_pay_no_key UNIQUE (stray_pay_no);
CREATE INDEX refunds_pay_no_idx ON refunds (pay_no);
