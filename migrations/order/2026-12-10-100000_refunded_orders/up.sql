-- A paid order refunded in full at the business's request (the gateway's
-- `refund.result.v1`, reason `requested`, status `succeeded`). It keeps its payment facts
-- and stays the record's open order: re-buying after a refund is a separate decision.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('unpaid', 'paid', 'closed', 'refunded'));
ALTER TABLE orders
    ADD COLUMN refunded_at TIMESTAMPTZ,
    ADD CONSTRAINT orders_refunded_check
        CHECK (status <> 'refunded' OR (pay_no IS NOT NULL AND channel IS NOT NULL
                                         AND channel_trade_no IS NOT NULL AND paid_at IS NOT NULL
                                         AND refunded_at IS NOT NULL));
