//! The payment channels Paywire speaks to.

crate::text_enum! {
    PayChannel, "channel" {
        /// WeChat Pay API v3, Native (QR code) payments.
        Wechat = "wechat",
        /// Alipay OpenAPI (RSA2), face-to-face precreate (QR code).
        Alipay = "alipay",
        /// WeChat Pay API v2 (XML, MD5/HMAC-SHA256), Native (QR code) payments.
        WechatV2 = "wechat_v2",
    }
}
