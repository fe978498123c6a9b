ALTER TABLE refunds
    DROP CONSTRAINT refunds_channel_check,
    ADD CONSTRAINT refunds_channel_check CHECK (channel IN ('wechat', 'alipay'));
ALTER TABLE payments
    DROP CONSTRAINT payments_channel_check,
    ADD CONSTRAINT payments_channel_check CHECK (channel IN ('wechat', 'alipay'));
