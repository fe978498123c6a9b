//! One purchase is one trace (issue 11): the services export over OTLP to a receiver in
//! this process (`paywire_testkit::otlp`), and the spans of order, the payment gateway,
//! the channel, the gateway's outbox relay and both pay-result consumers share the trace
//! id of the `traceparent` the student's "pay" request carried, each with its parent
//! among them.
//!
//! The services of this process share one tracer (one `service.name`); the request spans'
//! `paywire.service` tells them apart, as `service.name` does between processes.

use std::collections::HashSet;

use paywire_e2e::Platform;
use paywire_platform::config::TelemetrySettings;
use paywire_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use serde_json::json;

const PAID_COURSE: &str = "1002";

/// The student's browser's trace: the "pay" request's parent.
const TRACE_ID: &str = "5e1f2a3b4c5d6e7f8091a2b3c4d5e6f7";
const CALLER_SPAN: &str = "1a2b3c4d5e6f7081";

/// Which expected span `span` is, if any.
fn role(span: &ReceivedSpan) -> Option<&'static str> {
    let attr = |k: &str| span.attribute(k);
    match (span.name.as_str(), attr("paywire.service"), attr("queue")) {
        (_, Some("order"), _) => Some("order request"),
        (_, Some("payment-gateway"), _) => Some("gateway request"),
        (_, Some("channel-sandbox"), _) => Some("channel request"),
        ("payment_paid", ..) => Some("gateway records the payment"),
        ("outbox_publish", ..) if attr("event_type") == Some("pay.result.v1") => {
            Some("relay publishes the pay result")
        }
        ("consume", _, Some("order.pay-result")) => Some("order's pay-result consumer"),
        ("consume", _, Some("learning-center.pay-result")) => {
            Some("learning-center's pay-result consumer")
        }
        _ => None,
    }
}

const EXPECTED: &[&str] = &[
    "order request",
    "gateway request",
    "channel request",
    "gateway records the payment",
    "relay publishes the pay result",
    "order's pay-result consumer",
    "learning-center's pay-result consumer",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_purchase_is_one_trace_from_pay_to_enrolled() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start()?;
    // The process's one subscriber (no other test of this binary installs one); logs off.
    paywire_platform::telemetry::init(
        "paywire-e2e",
        &TelemetrySettings {
            filter: "off".into(),
            json: true,
            otlp_endpoint: receiver.endpoint.clone(),
        },
    );
    let p = Platform::start().await?;
    let s = p.student("tracy");
    let order = s.order_course(PAID_COURSE).await?;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let (status, pay) = s
        .send(
            p.client()
                .post(format!("{}/api/orders/{order_id}/pay", p.order_url))
                .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
                .json(&json!({ "channel": "wechat" })),
        )
        .await?;
    anyhow::ensure!(status == 200, "{pay}");
    // The wallet's payment and the channel's callback come without a trace context.
    let paid = p.wallet_pay(pay["code_url"].as_str().unwrap()).await?;
    anyhow::ensure!(paid.status() == 200);
    s.wait_for_order_status(&order_id, "paid").await?;
    s.wait_for_learn_status(PAID_COURSE, "can_learn").await?;

    let trace: Vec<ReceivedSpan> = paywire_testkit::wait_for(|| async {
        tokio::task::spawn_blocking(paywire_platform::telemetry::flush)
            .await
            .ok()?;
        let trace: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .collect();
        let seen: HashSet<_> = trace.iter().filter_map(role).collect();
        EXPECTED.iter().all(|r| seen.contains(r)).then_some(trace)
    })
    .await;
    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());

    let ids: HashSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    for span in trace.iter().filter(|s| role(s).is_some()) {
        assert_eq!(span.service, "paywire-e2e", "{span:?}");
        let parent = span.parent_span_id.as_str();
        if role(span) == Some("order request") && parent == CALLER_SPAN {
            continue;
        }
        assert!(
            ids.contains(parent),
            "{:?} ({}): its parent {parent} is not in the trace",
            role(span),
            span.name
        );
    }
    let order_request = trace
        .iter()
        .find(|s| role(s) == Some("order request") && s.parent_span_id == CALLER_SPAN)
        .expect("the pay request continues the caller's span");
    assert_eq!(
        order_request.attribute("http.route"),
        Some("/api/orders/{order_id}/pay"),
        "{order_request:?}"
    );
    // The callback itself is a trace of its own (the channel sends no context); the
    // recording span continues the purchase and is linked to it.
    let recorded = trace
        .iter()
        .find(|s| s.name == "payment_paid")
        .expect("recorded");
    assert_eq!(recorded.attribute("order_id"), Some(order_id.as_str()));
    let callback = receiver
        .spans()
        .into_iter()
        .find(|s| s.attribute("http.route") == Some("/api/callback/{channel}"))
        .expect("the callback's request span");
    assert_ne!(callback.trace_id, TRACE_ID, "{callback:?}");
    assert!(
        !trace
            .iter()
            .any(|s| s.attribute("http.route") == Some("/api/orders")),
        "the order's creation, an earlier request, is not in the pay request's trace"
    );
    Ok(())
}
