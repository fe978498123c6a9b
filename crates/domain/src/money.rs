//! Money as an integer number of fen (1 yuan = 100 fen). Never a float.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// A non-negative amount of CNY in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Fen(i64);

/// Upper bound accepted anywhere: Alipay's 100,000,000.00 yuan limit.
pub const MAX_FEN: i64 = 10_000_000_000;

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub fn new(fen: i64) -> Result<Self, ParseError> {
        if !(0..=MAX_FEN).contains(&fen) {
            return Err(ParseError::new("amount", format!("{fen} fen out of range")));
        }
        Ok(Self(fen))
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a decimal-yuan string exactly (`"100.99"` → 10099 fen).
    ///
    /// Accepts up to two decimals, as Alipay sends them; rejects signs, exponents,
    /// whitespace and anything that would need rounding.
    pub fn from_yuan_str(s: &str) -> Result<Self, ParseError> {
        let bad = |why: &str| ParseError::new("yuan amount", format!("{s:?}: {why}"));
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected digits before the decimal point"));
        }
        if s.contains('.') && frac.is_empty() {
            return Err(bad("expected digits after the decimal point"));
        }
        if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("at most two decimal digits"));
        }
        if int.len() > 1 && int.starts_with('0') {
            return Err(bad("leading zero"));
        }
        if int.len() > 9 {
            return Err(bad("too large"));
        }
        let yuan: i64 = int.parse().map_err(|_| bad("too large"))?;
        let mut cents: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            cents += i64::from(b - b'0') * if i == 0 { 10 } else { 1 };
        }
        Fen::new(yuan * 100 + cents).map_err(|_| bad("out of range"))
    }

    /// Formats as decimal yuan with exactly two decimals (`10099` → `"100.99"`).
    pub fn to_yuan_string(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }

    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).and_then(|v| Fen::new(v).ok())
    }

    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).and_then(|v| Fen::new(v).ok())
    }
}

impl TryFrom<i64> for Fen {
    type Error = ParseError;
    fn try_from(v: i64) -> Result<Self, ParseError> {
        Fen::new(v)
    }
}

impl From<Fen> for i64 {
    fn from(v: Fen) -> i64 {
        v.0
    }
}

impl FromStr for Fen {
    type Err = ParseError;
    /// Parses decimal yuan; see [`Fen::from_yuan_str`].
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Fen::from_yuan_str(s)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "¥{}", self.to_yuan_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_strings_convert_exactly() {
        let cases = [
            ("100.99", 10099),
            ("0.01", 1),
            ("0.1", 10),
            ("0.10", 10),
            ("1", 100),
            ("1.5", 150),
            ("0.29", 29), // 0.29 * 100 = 28.999999999999996 in f64
            ("1.15", 115),
            ("19.99", 1999),
            ("100000000.00", MAX_FEN),
            ("0", 0),
        ];
        for (s, fen) in cases {
            assert_eq!(Fen::from_yuan_str(s).unwrap().get(), fen, "{s}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for fen in [0, 1, 9, 10, 99, 100, 101, 10099, 123_456_789, MAX_FEN] {
            let s = Fen::new(fen).unwrap().to_yuan_string();
            assert_eq!(Fen::from_yuan_str(&s).unwrap().get(), fen, "{s}");
        }
        assert_eq!(Fen::new(10099).unwrap().to_yuan_string(), "100.99");
        assert_eq!(Fen::new(5).unwrap().to_yuan_string(), "0.05");
    }

    #[test]
    fn sloppy_amounts_are_refused() {
        for bad in [
            "",
            ".5",
            "1.",
            "1.234",
            "-1",
            "+1",
            "1e3",
            " 1",
            "1 ",
            "01.00",
            "1,00",
            "NaN",
            "100000000.01",
            "9999999999",
        ] {
            assert!(Fen::from_yuan_str(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn negative_or_huge_fen_is_refused() {
        assert!(Fen::new(-1).is_err());
        assert!(Fen::new(MAX_FEN + 1).is_err());
        assert!(serde_json::from_str::<Fen>("-5").is_err());
        assert_eq!(serde_json::from_str::<Fen>("5").unwrap().get(), 5);
    }

    #[test]
    fn arithmetic_stays_in_range() {
        let a = Fen::new(100).unwrap();
        assert_eq!(a.checked_sub(Fen::new(30).unwrap()).unwrap().get(), 70);
        assert!(a.checked_sub(Fen::new(101).unwrap()).is_none());
        assert!(Fen::new(MAX_FEN).unwrap().checked_add(a).is_none());
    }
}
