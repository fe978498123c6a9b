UPDATE orders SET status = 'paid' WHERE status = 'refunded';
ALTER TABLE orders DROP CONSTRAINT orders_refunded_check, DROP COLUMN refunded_at;
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('unpaid', 'paid', 'closed'));
