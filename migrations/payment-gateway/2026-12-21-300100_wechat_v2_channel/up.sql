-- WeChat Pay API v2 as a third channel (issue 14): attempts and refunds may name it.
ALTER TABLE payments
    DROP CONSTRAINT payments_channel_check,
    ADD CONSTRAINT payments_channel_check CHECK (channel IN ('wechat', 'alipay', 'wechat_v2'));
ALTER TABLE refunds
    DROP CONSTRAINT refunds_channel_check,
    ADD CONSTRAINT refunds_channel_check CHECK (channel IN ('wechat', 'alipay', 'wechat_v2'));
