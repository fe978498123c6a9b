-- WeChat Pay API v2 as a third channel (issue 14): an order may be paid through it.
ALTER TABLE orders
    DROP CONSTRAINT orders_channel_check,
    ADD CONSTRAINT orders_channel_check CHECK (channel IN ('wechat', 'alipay', 'wechat_v2'));
