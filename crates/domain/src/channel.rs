//! The payment channels Paywire speaks to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayChannel {
    /// WeChat Pay API v3, Native (QR code) payments.
    Wechat,
    /// Alipay OpenAPI (RSA2), face-to-face precreate (QR code).
    Alipay,
}

impl PayChannel {
    pub const ALL: &'static [PayChannel] = &[PayChannel::Wechat, PayChannel::Alipay];

    pub const fn as_str(self) -> &'static str {
        match self {
            PayChannel::Wechat => "wechat",
            PayChannel::Alipay => "alipay",
        }
    }
}

impl fmt::Display for PayChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PayChannel {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "wechat" => Ok(PayChannel::Wechat),
            "alipay" => Ok(PayChannel::Alipay),
            other => Err(ParseError::new(
                "channel",
                format!("unknown channel {other:?}"),
            )),
        }
    }
}
