//! Snowflake ids (Twitter layout: 41-bit milliseconds, 10-bit worker, 12-bit sequence).
//!
//! Ids are `i64` in PostgreSQL (`BIGINT`) and strings in JSON: JavaScript numbers lose
//! precision above 2^53, and a snowflake is far beyond that.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ParseError;

/// Paywire's epoch: 2024-01-01T00:00:00Z. Gives 69 years of positive 41-bit timestamps.
pub const EPOCH_UNIX_MS: u64 = 1_704_067_200_000;
/// Largest worker id the 10-bit instance field holds.
pub const MAX_WORKER_ID: u16 = 1023;

/// Thread-safe snowflake generator; one per process, with a worker id unique per instance.
#[derive(Debug)]
pub struct IdGenerator {
    inner: snowflaked::sync::Generator,
}

impl IdGenerator {
    pub fn new(worker_id: u16) -> Result<Self, ParseError> {
        if worker_id > MAX_WORKER_ID {
            return Err(ParseError::new(
                "worker id",
                format!("{worker_id} exceeds {MAX_WORKER_ID}"),
            ));
        }
        let epoch = UNIX_EPOCH + Duration::from_millis(EPOCH_UNIX_MS);
        let inner = snowflaked::Builder::new()
            .instance(worker_id)
            .epoch(epoch)
            .build();
        Ok(Self { inner })
    }

    /// A fresh id of any typed-id kind.
    pub fn next<T: From<i64>>(&self) -> T {
        T::from(self.inner.generate::<i64>())
    }

    pub fn worker_id(&self) -> u16 {
        self.inner.instance()
    }
}

/// Decomposes an id into (unix-millis, worker, sequence); useful in logs and tests.
pub fn decompose(id: i64) -> (SystemTime, u16, u16) {
    let raw = id as u64;
    let ts = raw >> 22;
    let worker = ((raw >> 12) & 0x3ff) as u16;
    let seq = (raw & 0xfff) as u16;
    (
        UNIX_EPOCH + Duration::from_millis(EPOCH_UNIX_MS + ts),
        worker,
        seq,
    )
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(i64);

        impl $name {
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                let bytes = s.as_bytes();
                if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
                    return Err(ParseError::new($what, "expected a decimal id"));
                }
                s.parse::<i64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .map(Self)
                    .ok_or_else(|| ParseError::new($what, "out of range"))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// An order in the order service.
    OrderId, "order id");
typed_id!(
    /// One payment attempt; sent to the channel as `out_trade_no`.
    PayNo, "pay_no");
typed_id!(
    /// A student's choice of a course in the learning center.
    ChooseCourseId, "choose-course id");
typed_id!(
    /// A course in the catalogue.
    CourseId, "course id");
typed_id!(
    /// An event's id; the AMQP `message_id` and the consumers' dedupe key.
    EventId, "event id");
typed_id!(
    /// One refund; sent to the channel as `out_refund_no` / `out_request_no`.
    RefundNo, "refund no");

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_increasing_and_carry_the_worker() {
        let generator = IdGenerator::new(42).unwrap();
        let ids: Vec<OrderId> = (0..10_000).map(|_| generator.next()).collect();
        let set: HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let (at, worker, _) = decompose(ids[0].get());
        assert_eq!(worker, 42);
        let age = SystemTime::now().duration_since(at).unwrap();
        assert!(
            age < Duration::from_secs(5),
            "timestamp is now, not {age:?} ago"
        );
    }

    #[test]
    fn two_workers_never_collide() {
        let a = IdGenerator::new(1).unwrap();
        let b = IdGenerator::new(2).unwrap();
        let mut all = HashSet::new();
        for _ in 0..5_000 {
            assert!(all.insert(a.next::<i64>()));
            assert!(all.insert(b.next::<i64>()));
        }
    }

    #[test]
    fn worker_id_is_bounded() {
        assert!(IdGenerator::new(1023).is_ok());
        assert!(IdGenerator::new(1024).is_err());
    }

    #[test]
    fn ids_travel_as_strings() {
        let id = OrderId::from(1_234_567_890_123_456_789);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"1234567890123456789\"");
        assert_eq!(serde_json::from_str::<OrderId>(&json).unwrap(), id);
        // A bare number is refused: it may already have lost precision in a browser.
        assert!(serde_json::from_str::<OrderId>("1234").is_err());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "-1", "0", "12a", " 1", "99999999999999999999", "+5"] {
            assert!(bad.parse::<PayNo>().is_err(), "{bad:?} parsed");
        }
        assert_eq!("17".parse::<PayNo>().unwrap().get(), 17);
    }
}
