//! Statuses and the transitions allowed between them.
//!
//! Each status is stored as its snake_case name in a `TEXT` column with a `CHECK`
//! constraint. Services move a row only with a guarded update
//! (`UPDATE … SET status = next WHERE id = $1 AND status = ANY(next.sources())`), so the
//! database, not a read-then-write race, decides who wins. The few updates that must
//! leave the ordinary table (stray money, a refund sent again, a QR code stored on an
//! attempt that is still payable) take a named side edge declared beside it.
//!
//! Services declare their own machines with the exported [`status_enum!`](crate::status_enum).

/// A transition that the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub kind: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

/// A named edge outside a machine's ordinary table: a guarded update that only one
/// operation may make (e.g. money arriving for a closed attempt, which that operation
/// always pairs with a refund). [`status_enum!`] declares them beside the table, so every
/// guarded update still takes its guard from a declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideEdge<S: 'static> {
    pub name: &'static str,
    /// The statuses the row may be in.
    pub from: &'static [S],
    /// The status it ends in (may equal a source: the update changes other columns only
    /// while the row stays in that status).
    pub to: S,
}

/// What [`status_enum!`] and [`text_enum!`] generate: a closed set of values stored and
/// sent as their snake_case names.
pub trait TextEnum: Copy + Eq + 'static {
    fn as_str(self) -> &'static str;
}

impl<S: TextEnum> SideEdge<S> {
    /// Whether a row in `from` may take this edge.
    pub fn allows(&self, from: S) -> bool {
        self.from.contains(&from)
    }

    /// The guard of the update, as the strings stored in the database.
    pub fn source_names(&self) -> Vec<&'static str> {
        self.from.iter().map(|s| s.as_str()).collect()
    }
}

/// A closed set of values stored as text and serialised as snake_case names:
/// `ALL`, `as_str`, `Display`, `FromStr` (an unknown name is a [`ParseError`]), serde and
/// an OpenAPI schema (a string enum). The crate using it must depend on `serde` and `utoipa`.
///
/// [`ParseError`]: crate::ParseError
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize,
        )]
        pub enum $name {
            $( $(#[$vdoc])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        // By hand: utoipa's derive does not see the `rename` of a macro literal and would
        // document the variant names instead of the names on the wire.
        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::RefOr::T(::utoipa::openapi::schema::Schema::Object(
                    ::utoipa::openapi::schema::ObjectBuilder::new()
                        .schema_type(::utoipa::openapi::schema::Type::String)
                        .enum_values(Some([$($text),+]))
                        .build(),
                ))
            }
        }

        impl ::utoipa::ToSchema for $name {}

        impl $crate::status::TextEnum for $name {
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ParseError;
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::ParseError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::ParseError::new($what, format!("unknown value {other:?}"))),
                }
            }
        }
    };
}

/// A status and its state machine: a [`text_enum!`] plus the ordinary transitions
/// (`can_become`, `transition`, `sources`: the guard of a guarded update into a status)
/// and, optionally, named side edges ([`SideEdge`] constants) that only one operation takes.
/// The crate using it must depend on `serde` and `utoipa`.
#[macro_export]
macro_rules! status_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
        transitions { $( $from:ident => $to:ident ),* $(,)? }
        $( side_edges {
            $( $(#[$edoc:meta])* $edge:ident: [$($efrom:ident),+ $(,)?] => $eto:ident ),* $(,)?
        } )?
    ) => {
        $crate::text_enum! {
            $(#[$doc])*
            $name, $what {
                $( $(#[$vdoc])* $variant = $text ),+
            }
        }

        impl $name {
            $($(
                $(#[$edoc])*
                pub const $edge: $crate::status::SideEdge<$name> = $crate::status::SideEdge {
                    name: stringify!($edge),
                    from: &[$($name::$efrom),+],
                    to: $name::$eto,
                };
            )*)?

            /// Every side edge of this machine.
            pub const SIDE_EDGES: &'static [$crate::status::SideEdge<$name>] =
                &[$($($name::$edge),*)?];

            /// Whether the ordinary table allows `self → next` (side edges excluded).
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
            pub fn transition(self, next: $name) -> Result<$name, $crate::InvalidTransition> {
                if self.can_become(next) {
                    Ok(next)
                } else {
                    Err($crate::InvalidTransition { kind: $what, from: self.as_str(), to: next.as_str() })
                }
            }

            /// No ordinary transition leaves `self` (side edges excluded).
            pub fn is_terminal(self) -> bool {
                !Self::ALL.iter().any(|n| self.can_become(*n))
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
    side_edges {
        /// Money the channel took for an attempt that must not settle its order: `unpaid`
        /// (another attempt already paid the order) or `closed` (the channel accepted a
        /// payment after we closed it). Only the stray-payment path takes it, and always
        /// records a refund in the same transaction; `closed → paid` is therefore not an
        /// ordinary transition.
        STRAY_PAID: [Unpaid, Closed] => Paid,
        /// The channel's QR code is stored on an attempt only while it can still be paid.
        SHOW_CODE: [Unpaid] => Unpaid,
    }
}

status_enum! {
    /// Where a refund stands (requested, or of stray money).
    RefundStatus, "refund status" {
        /// Recorded; not yet accepted by the channel.
        Pending = "pending",
        /// Accepted by the channel, not final yet.
        Processing = "processing",
        /// The money is on its way back: final.
        Succeeded = "succeeded",
        /// The channel gave up: final, needs a human.
        Failed = "failed",
    }
    transitions {
        Pending => Processing,
        Pending => Succeeded,
        Pending => Failed,
        Processing => Succeeded,
        Processing => Failed,
    }
    side_edges {
        /// The channel does not know an accepted refund after all: it is sent again (same
        /// `refund_no`, the channel's idempotency key). Not ordinary: refunds otherwise
        /// only move forward.
        RESEND: [Processing] => Pending,
    }
}

text_enum! {
    /// Why money goes back.
    RefundReason, "refund reason" {
        /// Paid on an attempt (or order) that was already closed.
        OrderClosed = "order_closed",
        /// The order was already paid through another attempt.
        DuplicatePayment = "duplicate_payment",
        /// Asked for by the order service (a business decision).
        Requested = "requested",
    }
}

impl RefundReason {
    /// What the payer sees at the channel.
    pub const fn payer_text(self) -> &'static str {
        match self {
            RefundReason::OrderClosed => "订单已关闭，自动退款",
            RefundReason::DuplicatePayment => "订单重复支付，自动退款",
            RefundReason::Requested => "退款",
        }
    }
}

status_enum! {
    /// A student's choice of a course (dictionary 701).
    ChooseCourseStatus, "choose-course status" {
        /// 701001: enrolled (free course, or paid course after payment).
        Chosen = "chosen",
        /// 701002: a paid course waiting for its payment.
        AwaitingPayment = "awaiting_payment",
        /// The payment that enrolled it was refunded in full: access revoked (see
        /// [`EnrolmentStatus`] for the refund policy). Final: buying the course again is a
        /// new choice.
        Refunded = "refunded",
    }
    transitions {
        AwaitingPayment => Chosen,
        Chosen => Refunded,
    }
}

status_enum! {
    /// A row of a student's course table (one per student and course).
    ///
    /// **Refund policy** (the one place it is written down; the README points here): a
    /// paid course's access ends when the succeeded refunds of the payment that enrolled
    /// the student add up to the price that choice was bought for (one full refund, or
    /// partial ones reaching it): the choice becomes `refunded`, the row `revoked`, and the
    /// learn status says `refunded`. Anything less (a partial refund, a refund that failed,
    /// a refund of stray money from another attempt) keeps access unchanged until the
    /// enrolment's validity ends. A revoked student may choose and pay for the course
    /// again; that payment renews the same row (`revoked → active`).
    EnrolmentStatus, "enrolment status" {
        Active = "active",
        Revoked = "revoked",
    }
    transitions {
        Active => Revoked,
        Revoked => Active,
    }
}

status_enum! {
    /// Whether a student may learn a course right now (dictionary 702). Derived, never stored.
    LearnStatus, "learn status" {
        CanLearn = "can_learn",
        NotChosenOrUnpaid = "not_chosen_or_unpaid",
        Expired = "expired",
        /// The enrolment was revoked by a full refund ([`EnrolmentStatus::Revoked`]).
        Refunded = "refunded",
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
    /// No enrolment → not chosen or unpaid; revoked by a refund → refunded; enrolment
    /// ended → expired; otherwise can learn.
    pub fn derive(
        enrolment: Option<(chrono::DateTime<chrono::Utc>, EnrolmentStatus)>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        match enrolment {
            None => LearnStatus::NotChosenOrUnpaid,
            Some((_, EnrolmentStatus::Revoked)) => LearnStatus::Refunded,
            Some((end, EnrolmentStatus::Active)) if now >= end => LearnStatus::Expired,
            Some((_, EnrolmentStatus::Active)) => LearnStatus::CanLearn,
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
    fn choose_course_goes_to_chosen_and_only_a_chosen_one_is_refunded() {
        use ChooseCourseStatus::*;
        assert!(AwaitingPayment.can_become(Chosen));
        assert!(!Chosen.can_become(AwaitingPayment));
        assert_eq!(Refunded.sources(), vec![Chosen]);
        assert!(Refunded.is_terminal() && !Chosen.is_terminal());
        assert!(!AwaitingPayment.can_become(Refunded));
    }

    #[test]
    fn an_enrolment_is_revoked_and_bought_again() {
        use EnrolmentStatus::*;
        assert_eq!(Revoked.source_names(), vec!["active"]);
        assert_eq!(Active.source_names(), vec!["revoked"]);
        assert!(Active.transition(Active).is_err());
    }

    #[test]
    fn stray_money_and_qr_codes_take_declared_side_edges_only() {
        use PaymentStatus::*;
        let stray = PaymentStatus::STRAY_PAID;
        assert_eq!(stray.to, Paid);
        assert!(stray.allows(Unpaid) && stray.allows(Closed));
        assert!(!stray.allows(Paid) && !stray.allows(Refunded));
        assert_eq!(stray.source_names(), vec!["unpaid", "closed"]);
        // The ordinary table still refuses it: a plain `mark_paid` never settles a closed
        // attempt.
        assert!(!Closed.can_become(Paid));
        assert_eq!(Paid.source_names(), vec!["unpaid"]);

        let show = PaymentStatus::SHOW_CODE;
        assert_eq!((show.from, show.to), (&[Unpaid][..], Unpaid));
        assert_eq!(show.source_names(), vec!["unpaid"]);
        assert_eq!(
            PaymentStatus::SIDE_EDGES
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>(),
            ["STRAY_PAID", "SHOW_CODE"]
        );
        assert!(OrderStatus::SIDE_EDGES.is_empty());
    }

    #[test]
    fn refunds_move_forward_except_along_the_resend_edge() {
        use RefundStatus::*;
        assert_eq!(Processing.sources(), vec![Pending]);
        assert_eq!(Succeeded.sources(), vec![Pending, Processing]);
        assert_eq!(Failed.source_names(), vec!["pending", "processing"]);
        assert!(Pending.sources().is_empty());
        for from in [Succeeded, Failed] {
            assert!(from.is_terminal(), "{from}");
            for to in RefundStatus::ALL {
                assert!(from.transition(*to).is_err(), "{from} -> {to}");
            }
        }
        assert!(!Processing.can_become(Pending));
        let resend = RefundStatus::RESEND;
        assert_eq!((resend.from, resend.to), (&[Processing][..], Pending));
        assert!(!resend.allows(Pending) && !resend.allows(Succeeded) && !resend.allows(Failed));
    }

    #[test]
    fn text_enums_store_and_serialise_their_names_and_refuse_others() {
        fn check<T>(all: &[T])
        where
            T: TextEnum + std::fmt::Debug + std::str::FromStr + serde::Serialize,
            T::Err: std::fmt::Debug,
        {
            for v in all {
                let text = v.as_str();
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(text));
                assert!(text.parse::<T>().is_ok_and(|p| p == *v), "{text}");
            }
        }
        check(crate::PayChannel::ALL);
        check(crate::BizType::ALL);
        check(RefundReason::ALL);
        check(RefundStatus::ALL);
        check(PaymentStatus::ALL);
        let err = "paypal".parse::<crate::PayChannel>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid channel: unknown value "paypal""#
        );
        assert!("Course".parse::<crate::BizType>().is_err());
        assert_eq!(
            "duplicate_payment".parse::<RefundReason>(),
            Ok(RefundReason::DuplicatePayment)
        );
        assert!(
            serde_json::from_str::<RefundStatus>(r#""done""#).is_err(),
            "unknown names do not deserialise"
        );
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
        let active = |end| Some((end, EnrolmentStatus::Active));
        assert_eq!(
            LearnStatus::derive(None, now),
            LearnStatus::NotChosenOrUnpaid
        );
        assert_eq!(
            LearnStatus::derive(active(now + Duration::days(1)), now),
            LearnStatus::CanLearn
        );
        assert_eq!(LearnStatus::derive(active(now), now), LearnStatus::Expired);
        assert_eq!(
            LearnStatus::derive(active(now - Duration::days(1)), now),
            LearnStatus::Expired
        );
        // Revoked wins over validity either way.
        for end in [now + Duration::days(1), now - Duration::days(1)] {
            assert_eq!(
                LearnStatus::derive(Some((end, EnrolmentStatus::Revoked)), now),
                LearnStatus::Refunded
            );
        }
    }
}
