//! [`Metered`]: any [`PaymentChannel`] with its calls counted and timed, so every channel
//! is measured the same way without a line in its client:
//!
//! * `paywire_channel_requests_total{channel,operation,result}` and
//!   `paywire_channel_request_duration_seconds{channel,operation,result}`; `result` is
//!   [`result_label`]: `ok`, `business_error`, `not_found`, `unavailable` (connection
//!   failure, 5xx, the channel's "system busy"), `timeout` (no answer in time: outcome
//!   unknown), `bad_signature`, `unexpected`, `config`;
//! * `paywire_channel_notifications_verified_total{channel,result}`: incoming
//!   notifications by verification result (`ok` or the refusal reason); what the gateway
//!   then made of a verified one is counted where it decides.

use std::time::Instant;

use async_trait::async_trait;
use chrono::NaiveDate;
use paywire_domain::{PayChannel, PayNo, RefundNo};

use crate::{
    ChannelError, CloseOutcome, CreatePayment, CreateRefund, CreatedPayment, Notification,
    NotificationReply, NotificationRequest, NotifyError, PaymentChannel, PaymentState, RefundState,
    Statement,
};

/// A channel whose calls are counted and timed.
#[derive(Debug)]
pub struct Metered<C>(pub C);

/// The bounded `result` label of a channel call.
pub fn result_label<T>(result: &Result<T, ChannelError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ChannelError::Rejected { .. }) => "business_error",
        Err(ChannelError::NotFound) => "not_found",
        Err(ChannelError::Unavailable(_)) => "unavailable",
        Err(ChannelError::TimedOut(_)) => "timeout",
        Err(ChannelError::BadResponseSignature(_)) => "bad_signature",
        Err(ChannelError::UnexpectedResponse(_)) => "unexpected",
        Err(ChannelError::Config(_)) => "config",
        Err(ChannelError::BadStatement(_)) => "bad_statement",
    }
}

/// The bounded label of a notification's verification.
pub fn notify_label(result: &Result<Notification, NotifyError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(NotifyError::BadSignature) => "bad_signature",
        Err(NotifyError::StaleTimestamp) => "stale_timestamp",
        Err(NotifyError::UnknownSerial) => "unknown_serial",
        Err(NotifyError::Malformed(_)) => "malformed",
        Err(NotifyError::Decrypt) => "decrypt",
        Err(NotifyError::WrongMerchant) => "wrong_merchant",
        Err(NotifyError::Unsupported(_)) => "unsupported",
        Err(NotifyError::Internal(_)) => "internal",
    }
}

impl<C: PaymentChannel> Metered<C> {
    async fn measure<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, ChannelError>>,
    ) -> Result<T, ChannelError> {
        let started = Instant::now();
        let result = call.await;
        let labels = [
            ("channel", self.0.channel().as_str()),
            ("operation", operation),
            ("result", result_label(&result)),
        ];
        metrics::counter!("paywire_channel_requests_total", &labels).increment(1);
        metrics::histogram!("paywire_channel_request_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

#[async_trait]
impl<C: PaymentChannel> PaymentChannel for Metered<C> {
    fn channel(&self) -> PayChannel {
        self.0.channel()
    }

    async fn create_payment(&self, req: &CreatePayment) -> Result<CreatedPayment, ChannelError> {
        self.measure("create", self.0.create_payment(req)).await
    }

    async fn query_payment(&self, pay_no: PayNo) -> Result<PaymentState, ChannelError> {
        self.measure("query", self.0.query_payment(pay_no)).await
    }

    async fn close_payment(&self, pay_no: PayNo) -> Result<CloseOutcome, ChannelError> {
        self.measure("close", self.0.close_payment(pay_no)).await
    }

    async fn refund(&self, req: &CreateRefund) -> Result<RefundState, ChannelError> {
        self.measure("refund", self.0.refund(req)).await
    }

    async fn query_refund(
        &self,
        refund_no: RefundNo,
        pay_no: PayNo,
    ) -> Result<RefundState, ChannelError> {
        self.measure("query_refund", self.0.query_refund(refund_no, pay_no))
            .await
    }

    async fn statement(&self, date: NaiveDate) -> Result<Statement, ChannelError> {
        self.measure("statement", self.0.statement(date)).await
    }

    fn parse_notification(
        &self,
        req: &NotificationRequest<'_>,
    ) -> Result<Notification, NotifyError> {
        let result = self.0.parse_notification(req);
        metrics::counter!(
            "paywire_channel_notifications_verified_total",
            "channel" => self.0.channel().as_str(),
            "result" => notify_label(&result),
        )
        .increment(1);
        result
    }

    fn acknowledge(&self, result: &Result<(), NotifyError>) -> NotificationReply {
        self.0.acknowledge(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_own_bounded_label() {
        let labels = [
            result_label::<()>(&Ok(())),
            result_label::<()>(&Err(ChannelError::Rejected {
                code: "ORDER_CLOSED".into(),
                message: "closed".into(),
            })),
            result_label::<()>(&Err(ChannelError::NotFound)),
            result_label::<()>(&Err(ChannelError::Unavailable("HTTP 503".into()))),
            result_label::<()>(&Err(ChannelError::TimedOut("5 s".into()))),
            result_label::<()>(&Err(ChannelError::BadResponseSignature("x".into()))),
            result_label::<()>(&Err(ChannelError::UnexpectedResponse("x".into()))),
            result_label::<()>(&Err(ChannelError::Config("x".into()))),
            result_label::<()>(&Err(ChannelError::BadStatement("x".into()))),
        ];
        let distinct: std::collections::HashSet<_> = labels.iter().collect();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
        assert_eq!(labels[1], "business_error");
        assert_eq!(
            notify_label(&Err(NotifyError::Malformed(
                "a detail that must not be a label".into()
            ))),
            "malformed"
        );
    }
}
