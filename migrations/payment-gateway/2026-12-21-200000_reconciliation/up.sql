-- Issue 13, daily reconciliation against the channels' statements.

-- One row per (channel, day): who runs it, and how it ended. Several gateway instances
-- run the daily job; the one whose guarded upsert claims the row does the day (a claim
-- older than the lease is taken over: its instance died), the others skip it.
CREATE TABLE reconciliation_runs (
    channel        TEXT NOT NULL,
    bill_date      DATE NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    claimed_at     TIMESTAMPTZ NOT NULL,
    finished_at    TIMESTAMPTZ,
    -- What the last finished run saw in the statement.
    payments       INT,
    refunds        INT,
    last_error     TEXT,
    PRIMARY KEY (channel, bill_date)
);

-- One row per discrepancy between a statement and our records, with what was done
-- about it. A discrepancy is found once: running a day again finds the rows already
-- there (the unique key), and one resolved by the first run (a payment recorded) is no
-- longer a discrepancy on the second.
CREATE TABLE reconciliation (
    id               BIGSERIAL PRIMARY KEY,
    channel          TEXT NOT NULL,
    bill_date        DATE NOT NULL,
    kind             TEXT NOT NULL,
    -- The trade (`out_trade_no`) or refund (`out_refund_no`) the line is about.
    reference        TEXT NOT NULL,
    pay_no           BIGINT,
    refund_no        BIGINT,
    channel_trade_no TEXT,
    ours_fen         BIGINT,
    channel_fen      BIGINT,
    detail           TEXT NOT NULL,
    resolution       TEXT NOT NULL,
    found_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (channel, bill_date, kind, reference)
);
CREATE INDEX reconciliation_open ON reconciliation (resolution) WHERE resolution = 'open';

-- Paid attempts of one channel and day: what we say was paid.
CREATE INDEX payments_paid_at ON payments (channel, paid_at) WHERE paid_at IS NOT NULL;
