//! Helpers shared by the unit tests of both channels.

use chrono::{DateTime, TimeZone, Utc};
use paywire_domain::{PayNo, RefundNo};

/// `pairs` (form parameters or headers) with the value of `name` replaced by `value`.
pub(crate) fn with_value(
    pairs: &[(String, String)],
    name: &str,
    value: &str,
) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = if k == name { value } else { v.as_str() };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// The moment the channel tests run at: 2026-03-01 10:00 in Beijing.
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap()
}

/// The payment the channel tests talk about.
pub(crate) fn pay_no() -> PayNo {
    "7301234567890123456".parse().unwrap()
}

/// The refund the channel tests talk about.
pub(crate) fn refund_no() -> RefundNo {
    "7309876543210987654".parse().unwrap()
}
