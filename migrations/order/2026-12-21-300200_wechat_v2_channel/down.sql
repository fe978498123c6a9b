ALTER TABLE orders
    DROP CONSTRAINT orders_channel_check,
    ADD CONSTRAINT orders_channel_check CHECK (channel IN ('wechat', 'alipay'));
