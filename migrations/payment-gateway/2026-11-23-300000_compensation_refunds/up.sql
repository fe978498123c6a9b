-- Compensation for missing callbacks: when the sweeper next asks the channel about an
-- unpaid attempt, and how often it already asked (drives the backoff).
ALTER TABLE payments
    ADD COLUMN next_check_at  TIMESTAMPTZ,
    ADD COLUMN check_attempts INT NOT NULL DEFAULT 0 CHECK (check_attempts >= 0);

-- Attempts created before this migration are checked right away.
UPDATE payments SET next_check_at = now() WHERE status = 'unpaid';

-- Only unpaid attempts are ever due; the partial index keeps the sweeper's claim cheap.
CREATE INDEX payments_due_check_idx ON payments (next_check_at) WHERE status = 'unpaid';

-- Orders closed for good by the order timeout: no new attempt, and any money that still
-- arrives for them is stray and goes back.
CREATE TABLE closed_orders (
    order_id  BIGINT PRIMARY KEY,
    closed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Money that must go back to the payer: a payment confirmed for an attempt that was
-- closed, or for an order another attempt had already paid.
CREATE TABLE refunds (
    refund_no         BIGINT PRIMARY KEY,
    pay_no            BIGINT NOT NULL REFERENCES payments (pay_no),
    order_id          BIGINT NOT NULL,
    channel           TEXT NOT NULL CHECK (channel IN ('wechat', 'alipay')),
    amount_fen        BIGINT NOT NULL CHECK (amount_fen > 0),
    reason            TEXT NOT NULL CHECK (reason IN ('order_closed', 'duplicate_payment')),
    status            TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'succeeded', 'failed')),
    channel_refund_id TEXT,
    attempts          INT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error        TEXT,
    refunded_at       TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (status <> 'succeeded' OR (channel_refund_id IS NOT NULL AND refunded_at IS NOT NULL))
);

-- A stray payment is refunded once, whatever path (callback, sync, sweeper) found it.
CREATE UNIQUE INDEX refunds_pay_no_key ON refunds (pay_no);
CREATE INDEX refunds_due_idx ON refunds (next_attempt_at) WHERE status IN ('pending', 'processing');
