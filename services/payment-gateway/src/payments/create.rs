//! Creating a payment attempt: decide under an order lock, then talk to the channel.

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel_async::AsyncConnection;
use paywire_channels::{ChannelError, CreatePayment};
use paywire_contracts::payment_gateway as api;
use paywire_domain::{BizType, Fen, OrderId, PayChannel, PaymentStatus, UserId};
use paywire_platform::answer::Stored;

use crate::AppState;
use crate::error::GatewayError;
use crate::payments::store::{self, NewPayment, Payment};

/// WeChat Pay's `description` limit (127 characters); Alipay's `subject` allows more.
const MAX_DESCRIPTION_CHARS: usize = 127;
const MAX_BIZ_ID_CHARS: usize = 64;

/// A request to pay an order, checked once at the edge: positive amount, a description
/// the channels accept, a business id that fits the column and the event.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    order_id: OrderId,
    user_id: UserId,
    amount: Fen,
    channel: PayChannel,
    description: String,
    biz_type: BizType,
    biz_id: String,
}

impl TryFrom<api::CreatePayment> for PaymentRequest {
    type Error = GatewayError;

    fn try_from(body: api::CreatePayment) -> Result<Self, GatewayError> {
        let invalid = |m: &str| GatewayError::InvalidRequest(m.to_owned());
        if body.amount_fen.is_zero() {
            return Err(invalid("amount_fen must be positive"));
        }
        let description = body.description.trim();
        if description.is_empty() || description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(invalid("description must be 1-127 characters"));
        }
        if description.chars().any(char::is_control) {
            return Err(invalid("description must not contain control characters"));
        }
        let biz_ok = !body.biz_id.is_empty()
            && body.biz_id.chars().count() <= MAX_BIZ_ID_CHARS
            && !body.biz_id.chars().any(char::is_control);
        if !biz_ok {
            return Err(invalid("biz_id must be 1-64 characters"));
        }
        Ok(PaymentRequest {
            order_id: body.order_id,
            user_id: body.user_id,
            amount: body.amount_fen,
            channel: body.channel,
            description: description.to_owned(),
            biz_type: body.biz_type,
            biz_id: body.biz_id,
        })
    }
}

impl PaymentRequest {
    pub fn order_id(&self) -> OrderId {
        self.order_id
    }

    pub fn channel(&self) -> PayChannel {
        self.channel
    }
}

/// Whether the caller got an existing live attempt (`Existing`) or a new one.
pub type AttemptOutcome = Stored<Payment>;

/// What the locked decision step found.
enum Decision {
    Reuse(Payment),
    Fresh(Payment),
}

/// An unpaid attempt can be shown again when it is on the same channel for the same
/// amount, already has its QR code, and will not expire while the student scans it.
fn reusable(p: &Payment, req: &PaymentRequest, now: DateTime<Utc>, margin: Duration) -> bool {
    p.status == PaymentStatus::Unpaid
        && p.channel == req.channel
        && p.amount == req.amount
        && p.code_url.is_some()
        && p.expires_at > now + margin
}

/// Returns a live attempt of the same channel, or creates a new one at the channel.
///
/// The decision runs in one transaction under `pg_advisory_xact_lock(order_id)`, so
/// concurrent clicks for one order see each other's attempts. The channel call happens
/// after the commit: a DB transaction is never held across the network.
pub async fn create_or_reuse(
    state: &AppState,
    req: PaymentRequest,
) -> Result<AttemptOutcome, GatewayError> {
    let channel = state
        .channels
        .get(req.channel)
        .ok_or(GatewayError::ChannelNotEnabled(req.channel))?
        .clone();
    let now = Utc::now();
    let margin = Duration::seconds(i64::from(state.payment.reuse_margin_secs));
    // Whole seconds: channels take RFC 3339 without fractions, and the stored value must
    // equal what the channel was told.
    let expires_at = (now + Duration::seconds(i64::from(state.payment.attempt_ttl_secs)))
        .duration_trunc(Duration::seconds(1))
        .unwrap_or(now);

    let decision = {
        let mut conn = state.pool.get().await?;
        let req = &req;
        conn.transaction::<_, GatewayError, _>(async |conn| {
            store::lock_order(conn, req.order_id).await?;
            // Stray money (refunded by us) does not settle the order; anything else paid does.
            if store::settling_attempt(conn, req.order_id).await?.is_some() {
                return Err(GatewayError::OrderAlreadyPaid(req.order_id));
            }
            if store::order_is_closed(conn, req.order_id).await? {
                return Err(GatewayError::OrderClosed(req.order_id));
            }
            let attempts = store::attempts_for_order(conn, req.order_id).await?;
            if let Some(live) = attempts.into_iter().find(|p| reusable(p, req, now, margin)) {
                return Ok(Decision::Reuse(live));
            }
            let new = NewPayment {
                pay_no: state.ids.next(),
                order_id: req.order_id,
                user_id: req.user_id.clone(),
                biz_type: req.biz_type,
                biz_id: req.biz_id.clone(),
                channel: req.channel,
                amount: req.amount,
                description: req.description.clone(),
                expires_at,
                // The first check comes after `first_check_secs`, and never later than the
                // final check after expiry.
                first_check_at: (now
                    + Duration::seconds(i64::from(state.sweeper.first_check_secs)))
                .min(expires_at + Duration::seconds(i64::from(state.sweeper.after_expiry_secs))),
            };
            Ok(Decision::Fresh(store::insert(conn, &new, now).await?))
        })
        .await?
    };

    let mut payment = match decision {
        Decision::Reuse(p) => {
            tracing::info!(pay_no = %p.pay_no, "reusing live payment attempt");
            return Ok(Stored::Existing(p));
        }
        Decision::Fresh(p) => {
            crate::metrics::attempt_created(p.channel);
            p
        }
    };
    tracing::Span::current().record("pay_no", tracing::field::display(payment.pay_no));

    let created = channel
        .create_payment(&CreatePayment {
            pay_no: payment.pay_no,
            amount: payment.amount,
            description: payment.description.clone(),
            expires_at: payment.expires_at,
            attach: Some(format!("order:{}", payment.order_id)),
        })
        .await
        .map_err(|e| {
            // The attempt stays unpaid without a code_url; the compensation job queries
            // and closes such attempts.
            tracing::warn!(pay_no = %payment.pay_no, error = %e, "channel refused to create the payment");
            channel_error(e)
        })?;

    let mut conn = state.pool.get().await?;
    if !store::set_code_url(&mut conn, payment.pay_no, &created.code_url, Utc::now()).await? {
        return Err(GatewayError::PaymentChanged(payment.pay_no));
    }
    payment.code_url = Some(created.code_url);
    tracing::info!(pay_no = %payment.pay_no, "payment attempt created");
    Ok(Stored::Created(payment))
}

/// Retryable failures (network, 5xx, rate limits, unverifiable replies) are "unavailable";
/// the rest are the channel's definite refusal, passed on with its code.
pub(crate) fn channel_error(e: ChannelError) -> GatewayError {
    if e.is_retryable() {
        return GatewayError::ChannelUnavailable(e.to_string());
    }
    match e {
        ChannelError::Rejected { code, message } => GatewayError::ChannelRejected { code, message },
        // A configuration or parsing failure: its text (a library's) is logged, not answered.
        other => {
            tracing::error!(error = %other, "channel call failed");
            GatewayError::ChannelRejected {
                code: "channel_error".into(),
                message: "the channel's answer could not be used".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paywire_platform::api_error::ApiError;

    fn body(amount: i64, description: &str, biz_id: &str) -> api::CreatePayment {
        api::CreatePayment {
            order_id: OrderId::from(1),
            user_id: UserId::parse("s1").unwrap(),
            amount_fen: Fen::new(amount).unwrap(),
            channel: PayChannel::Wechat,
            description: description.into(),
            biz_type: BizType::Course,
            biz_id: biz_id.into(),
        }
    }

    #[test]
    fn requests_are_checked_at_the_edge() {
        assert!(PaymentRequest::try_from(body(1, "Rust course", "9")).is_ok());
        assert!(PaymentRequest::try_from(body(0, "Rust course", "9")).is_err());
        assert!(PaymentRequest::try_from(body(1, "  ", "9")).is_err());
        assert!(PaymentRequest::try_from(body(1, &"课".repeat(128), "9")).is_err());
        assert!(PaymentRequest::try_from(body(1, &"课".repeat(127), "9")).is_ok());
        assert!(PaymentRequest::try_from(body(1, "a\nb", "9")).is_err());
        assert!(PaymentRequest::try_from(body(1, "x", "")).is_err());
        assert!(PaymentRequest::try_from(body(1, "x", &"1".repeat(65))).is_err());
    }

    fn attempt(status: PaymentStatus, amount: i64, code: bool, ttl_secs: i64) -> Payment {
        let now = Utc::now();
        Payment {
            pay_no: 5.into(),
            order_id: OrderId::from(1),
            user_id: UserId::parse("s1").unwrap(),
            biz_type: BizType::Course,
            biz_id: "9".into(),
            channel: PayChannel::Wechat,
            amount: Fen::new(amount).unwrap(),
            description: "x".into(),
            status,
            code_url: code.then(|| "weixin://x".to_owned()),
            expires_at: now + Duration::seconds(ttl_secs),
            channel_trade_no: None,
            paid_at: None,
            created_at: now,
        }
    }

    #[test]
    fn channel_errors_map_to_unavailable_or_rejected() {
        let unavailable = channel_error(ChannelError::Unavailable(
            "request failed: error sending request for url (http://10.0.0.1/v3/pay)".into(),
        ));
        assert_eq!(unavailable.reply().code, "channel_unavailable");
        // Issue 9: neither the URL nor the library's text reaches the caller.
        let body = actix_web::body::MessageBody::try_into_bytes(
            actix_web::ResponseError::error_response(&unavailable).into_body(),
        )
        .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains("http") && !body.contains("error sending"),
            "{body}"
        );
        let config = channel_error(ChannelError::Config("pkcs8: bad tag".into()));
        assert!(!config.to_string().contains("pkcs8"), "{config}");
        let unverified = channel_error(ChannelError::BadResponseSignature("x".into()));
        assert_eq!(unverified.reply().code, "channel_unavailable");
        match channel_error(ChannelError::Rejected {
            code: "PARAM_ERROR".into(),
            message: "bad".into(),
        }) {
            GatewayError::ChannelRejected { code, .. } => assert_eq!(code, "PARAM_ERROR"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            channel_error(ChannelError::Config("key".into()))
                .reply()
                .code,
            "channel_rejected"
        );
    }

    #[test]
    fn only_live_matching_attempts_are_reused() {
        let req = PaymentRequest::try_from(body(100, "x", "9")).unwrap();
        let now = Utc::now();
        let margin = Duration::seconds(60);
        let live = |p: &Payment| reusable(p, &req, now, margin);
        assert!(live(&attempt(PaymentStatus::Unpaid, 100, true, 600)));
        // Another amount, no QR code yet, too close to expiry, closed.
        assert!(!live(&attempt(PaymentStatus::Unpaid, 101, true, 600)));
        assert!(!live(&attempt(PaymentStatus::Unpaid, 100, false, 600)));
        assert!(!live(&attempt(PaymentStatus::Unpaid, 100, true, 30)));
        assert!(!live(&attempt(PaymentStatus::Closed, 100, true, 600)));
        let mut other = attempt(PaymentStatus::Unpaid, 100, true, 600);
        other.channel = PayChannel::Alipay;
        assert!(!live(&other));
    }
}
