-- Issue 9, abuse limits.

-- The student's "I have paid" sync asks the channel about an attempt at most once every
-- `payment.sync_min_interval_secs`: it first moves this timestamp forward with a guarded
-- UPDATE, so of any number of gateway instances only one wins each interval.
ALTER TABLE payments ADD COLUMN last_synced_at TIMESTAMPTZ;

-- Notifications the channel layer refused (bad signature, stale, undecryptable, foreign
-- merchant, malformed…) are counted, not kept one row each: one row per channel, reason
-- and minute, its counter incremented. An unsigned flood costs one row a minute per reason.
-- Verified notifications our records refuse (amount mismatch, unknown attempt) still get a
-- `channel_notifications` row each: only the channel can send those.
CREATE TABLE refused_notifications (
    channel      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    bucket_start TIMESTAMPTZ NOT NULL,
    refused      BIGINT NOT NULL CHECK (refused > 0),
    -- The latest refusal's reason text and body size (never the body).
    last_detail  TEXT NOT NULL,
    last_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel, reason, bucket_start)
);
