-- One order per business record: UNIQUE (biz_type, biz_id) makes a concurrent duplicate
-- "create" lose at the database, not in a read-then-write race.
CREATE TABLE orders (
    id               BIGINT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    biz_type         TEXT NOT NULL CHECK (biz_type IN ('course')),
    biz_id           TEXT NOT NULL,
    description      TEXT NOT NULL,
    total_fen        BIGINT NOT NULL CHECK (total_fen > 0),
    status           TEXT NOT NULL CHECK (status IN ('unpaid', 'paid', 'closed')),
    pay_no           BIGINT,
    channel          TEXT CHECK (channel IN ('wechat', 'alipay')),
    channel_trade_no TEXT,
    paid_at          TIMESTAMPTZ,
    closed_at        TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (biz_type, biz_id),
    -- A paid order always records which attempt paid it and when.
    CHECK (status <> 'paid' OR (pay_no IS NOT NULL AND channel IS NOT NULL
                                AND channel_trade_no IS NOT NULL AND paid_at IS NOT NULL))
);

CREATE INDEX orders_user_id_idx ON orders (user_id);

CREATE TABLE order_items (
    id         BIGINT PRIMARY KEY,
    order_id   BIGINT NOT NULL REFERENCES orders (id),
    goods_type TEXT NOT NULL,
    goods_id   TEXT NOT NULL,
    goods_name TEXT NOT NULL,
    price_fen  BIGINT NOT NULL CHECK (price_fen >= 0),
    quantity   INT NOT NULL DEFAULT 1 CHECK (quantity > 0)
);

CREATE INDEX order_items_order_id_idx ON order_items (order_id);
