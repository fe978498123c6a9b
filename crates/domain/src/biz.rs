//! What an order pays for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// The business record type an order belongs to (xuecheng dictionary 602).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BizType {
    /// 60201: a paid course; `biz_id` is a choose-course id in the learning center.
    Course,
}

impl BizType {
    pub const fn as_str(self) -> &'static str {
        match self {
            BizType::Course => "course",
        }
    }
}

impl fmt::Display for BizType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BizType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "course" => Ok(BizType::Course),
            other => Err(ParseError::new(
                "biz_type",
                format!("unknown biz type {other:?}"),
            )),
        }
    }
}
