-- One row per payment attempt: every "pay" click that cannot reuse a live attempt gets a
-- fresh pay_no (sent to the channel as out_trade_no), so a closed or expired attempt is
-- never resurrected at the channel.
CREATE TABLE payments (
    pay_no           BIGINT PRIMARY KEY,
    order_id         BIGINT NOT NULL,
    user_id          TEXT NOT NULL,
    biz_type         TEXT NOT NULL,
    biz_id           TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('wechat', 'alipay')),
    amount_fen       BIGINT NOT NULL CHECK (amount_fen > 0),
    description      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('unpaid', 'paid', 'closed', 'refunded')),
    code_url         TEXT,
    expires_at       TIMESTAMPTZ NOT NULL,
    channel_trade_no TEXT,
    paid_at          TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A paid attempt always records who confirmed it and when.
    CHECK (status NOT IN ('paid', 'refunded') OR (channel_trade_no IS NOT NULL AND paid_at IS NOT NULL))
);

CREATE INDEX payments_order_id_idx ON payments (order_id);
-- One channel transaction confirms at most one attempt.
CREATE UNIQUE INDEX payments_channel_trade_no_key ON payments (channel, channel_trade_no);

-- Audit trail of every channel callback and what the gateway did with it. Holds no secrets
-- and no raw bodies: a failed verification is recorded by its reason and body length only.
CREATE TABLE channel_notifications (
    id          BIGSERIAL PRIMARY KEY,
    channel     TEXT NOT NULL,
    pay_no      BIGINT,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX channel_notifications_pay_no_idx ON channel_notifications (pay_no);
