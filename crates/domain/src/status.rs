//! Statuses and the transitions allowed between them.
//!
//! Each status is stored as its snake_case name in a `TEXT` column with a `CHECK`
//! constraint. Services move a row only with a guarded update
//! (`UPDATE … SET status = next WHERE id = $1 AND status = ANY(next.sources())`), so the
//! database, not a read-then-write race, decides who wins.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// A transition that the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub kind: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

macro_rules! status_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
        transitions { $( $from:ident => $to:ident ),* $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Whether the state machine allows `self → next`.
            #[allow(unreachable_patterns)]
            pub const fn can_become(self, next: $name) -> bool {
                match (self, next) {
                    $( ($name::$from, $name::$to) => true, )*
                    _ => false,
                }
            }

            /// The statuses from which `self` may be reached: the guard of a guarded update.
            pub fn sources(self) -> Vec<$name> {
                Self::ALL.iter().copied().filter(|s| s.can_become(self)).collect()
            }

            /// Same as [`Self::sources`], as the strings stored in the database.
            pub fn source_names(self) -> Vec<&'static str> {
                self.sources().into_iter().map(Self::as_str).collect()
            }

            /// Checks `self → next` and returns `next`.
            pub fn transition(self, next: $name) -> Result<$name, InvalidTransition> {
                if self.can_become(next) {
                    Ok(next)
                } else {
                    Err(InvalidTransition { kind: $what, from: self.as_str(), to: next.as_str() })
                }
            }

            pub fn is_terminal(self) -> bool {
                !Self::ALL.iter().any(|n| self.can_become(*n))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(ParseError::new($what, format!("unknown value {other:?}"))),
                }
            }
        }
    };
}

status_enum! {
    /// An order's lifecycle (xuecheng dictionary 600: 600001 / 600002 / 600003).
    OrderStatus, "order status" {
        Unpaid = "unpaid",
        Paid = "paid",
        Closed = "closed",
        /// Paid, then refunded in full at the business's request (not stray money).
        Refunded = "refunded",
    }
    transitions {
        Unpaid => Paid,
        Unpaid => Closed,
        Paid => Refunded,
    }
}

status_enum! {
    /// One payment attempt at a channel (dictionary 601).
    PaymentStatus, "payment status" {
        /// Created at the channel; the student may still pay.
        Unpaid = "unpaid",
        /// The channel confirmed the money.
        Paid = "paid",
        /// Closed at the channel; it can no longer be paid.
        Closed = "closed",
        /// Paid, then (at least partly) refunded.
        Refunded = "refunded",
    }
    transitions {
        Unpaid => Paid,
        Unpaid => Closed,
        Paid => Refunded,
    }
}

status_enum! {
    /// A student's choice of a course (dictionary 701).
    ChooseCourseStatus, "choose-course status" {
        /// 701001: enrolled (free course, or paid course after payment).
        Chosen = "chosen",
        /// 701002: a paid course waiting for its payment.
        AwaitingPayment = "awaiting_payment",
    }
    transitions {
        AwaitingPayment => Chosen,
    }
}

status_enum! {
    /// Whether a student may learn a course right now (dictionary 702). Derived, never stored.
    LearnStatus, "learn status" {
        CanLearn = "can_learn",
        NotChosenOrUnpaid = "not_chosen_or_unpaid",
        Expired = "expired",
    }
    transitions {}
}

status_enum! {
    /// Whether a course costs money (dictionary 700).
    CourseCharge, "course charge" {
        Free = "free",
        Paid = "paid",
    }
    transitions {}
}

impl LearnStatus {
    /// No enrolment → not chosen or unpaid; enrolment ended → expired; otherwise can learn.
    pub fn derive(
        valid_until: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        match valid_until {
            None => LearnStatus::NotChosenOrUnpaid,
            Some(end) if now >= end => LearnStatus::Expired,
            Some(_) => LearnStatus::CanLearn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    #[test]
    fn order_moves_only_forward_from_unpaid() {
        use OrderStatus::*;
        assert_eq!(Unpaid.transition(Paid), Ok(Paid));
        assert_eq!(Unpaid.transition(Closed), Ok(Closed));
        for (from, to) in [
            (Paid, Unpaid),
            (Paid, Closed),
            (Closed, Paid),
            (Closed, Unpaid),
            (Paid, Paid),
        ] {
            let err = from.transition(to).unwrap_err();
            assert_eq!((err.from, err.to), (from.as_str(), to.as_str()));
        }
        assert!(Closed.is_terminal() && !Unpaid.is_terminal());
        assert_eq!(Paid.sources(), vec![Unpaid]);
        assert_eq!(Closed.source_names(), vec!["unpaid"]);
    }

    #[test]
    fn only_a_paid_order_can_be_refunded_and_that_is_final() {
        use OrderStatus::*;
        assert_eq!(Paid.transition(Refunded), Ok(Refunded));
        for from in [Unpaid, Closed, Refunded] {
            assert!(from.transition(Refunded).is_err(), "{from}");
        }
        for to in [Unpaid, Paid, Closed] {
            assert!(!Refunded.can_become(to), "{to}");
        }
        assert!(Refunded.is_terminal() && !Paid.is_terminal());
        assert_eq!(Refunded.source_names(), vec!["paid"]);
        assert_eq!("refunded".parse::<OrderStatus>(), Ok(Refunded));
    }

    #[test]
    fn payment_attempt_transitions() {
        use PaymentStatus::*;
        assert!(Unpaid.can_become(Paid));
        assert!(Unpaid.can_become(Closed));
        assert!(Paid.can_become(Refunded));
        assert!(!Closed.can_become(Paid));
        assert!(!Paid.can_become(Unpaid));
        assert!(!Refunded.can_become(Paid));
        assert_eq!(Refunded.sources(), vec![Paid]);
    }

    #[test]
    fn choose_course_only_goes_to_chosen() {
        use ChooseCourseStatus::*;
        assert!(AwaitingPayment.can_become(Chosen));
        assert!(!Chosen.can_become(AwaitingPayment));
        assert!(Chosen.is_terminal());
    }

    #[test]
    fn statuses_round_trip_through_text_and_json() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>().unwrap(), *s);
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&ChooseCourseStatus::AwaitingPayment).unwrap(),
            "\"awaiting_payment\""
        );
        assert!("PAID".parse::<OrderStatus>().is_err());
    }

    #[test]
    fn learn_status_follows_validity() {
        let now = Utc::now();
        assert_eq!(
            LearnStatus::derive(None, now),
            LearnStatus::NotChosenOrUnpaid
        );
        assert_eq!(
            LearnStatus::derive(Some(now + Duration::days(1)), now),
            LearnStatus::CanLearn
        );
        assert_eq!(LearnStatus::derive(Some(now), now), LearnStatus::Expired);
        assert_eq!(
            LearnStatus::derive(Some(now - Duration::days(1)), now),
            LearnStatus::Expired
        );
    }
}
