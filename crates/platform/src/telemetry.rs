//! Telemetry, written once for every service: one `tracing` subscriber per process (text
//! for developers, JSON lines for containers), OpenTelemetry spans made from the `tracing`
//! spans, and W3C trace context (`traceparent`) carried from service to service.
//!
//! * **Export** is off by default. With `telemetry.otlp_endpoint` set
//!   (`PAYWIRE__TELEMETRY__OTLP_ENDPOINT=http://collector:4318`) spans are sent in batches
//!   to `<endpoint>/v1/traces` over OTLP/HTTP as protobuf, with `service.name` = the
//!   service. With it empty nothing is sent, but incoming trace context is still continued
//!   and passed on, so a trace survives a service that does not export.
//! * **Propagation**: an incoming request's `traceparent` is continued by its request span
//!   ([`RequestSpan`], through tracing-actix-web); [`propagate`] adds the current span's
//!   context to an outgoing request; [`current_traceparent`] is what the outbox stores with
//!   a row, and [`continue_trace`] what the relay and consumers continue from a stored value
//!   or an AMQP header. A malformed or all-zero `traceparent` is ignored: the span starts a
//!   trace of its own.
//! * **Logs**: every JSON line written inside a span carries that span's `trace_id`.
//!
//! Spans of level INFO and above become OpenTelemetry spans whatever `telemetry.filter`
//! says: the filter only chooses log lines.

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing::dispatcher::WeakDispatch;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::TelemetrySettings;

/// The W3C trace context header, on HTTP requests and AMQP messages alike.
pub const TRACEPARENT: &str = "traceparent";

/// The process's tracer provider, kept to flush and shut down the exporter.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber and the W3C propagator. A second call (tests spawning
/// several services in one process) is a no-op rather than an error. An OTLP endpoint that
/// cannot be used (not a URL) is logged and export stays off; the service still starts.
pub fn init(service: &'static str, settings: &TelemetrySettings) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (provider, export_error) = tracer_provider(service, &settings.otlp_endpoint);
    let result = subscriber(settings, &provider, std::io::stdout).try_init();
    if result.is_ok() {
        let _ = PROVIDER.set(provider);
        let exporting = export_error.is_none() && !settings.otlp_endpoint.is_empty();
        tracing::info!(
            service,
            otlp_endpoint = exporting.then_some(settings.otlp_endpoint.as_str()),
            "telemetry initialised"
        );
        if let Some(error) = export_error {
            tracing::error!(%error, otlp_endpoint = %settings.otlp_endpoint, "trace export off: the OTLP exporter could not be built");
        }
    }
}

/// Sends the spans that ended so far (tests, and before a process exits).
pub fn flush() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.force_flush()
    {
        tracing::warn!(%error, "flushing spans failed");
    }
}

/// Flushes and stops the exporter; spans ending afterwards are dropped.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// The provider: batched OTLP/HTTP export when `endpoint` is set, none otherwise (spans
/// still get ids, so context is continued and logged). Returns why export is off when the
/// endpoint was set but unusable.
fn tracer_provider(service: &'static str, endpoint: &str) -> (SdkTracerProvider, Option<String>) {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(service)
            .build(),
    );
    if endpoint.is_empty() {
        return (builder.build(), None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build();
    match exporter {
        Ok(exporter) => (builder.with_batch_exporter(exporter).build(), None),
        Err(e) => (builder.build(), Some(e.to_string())),
    }
}

/// The subscriber: OpenTelemetry spans (INFO and above), the trace id of each span for
/// the log lines, and the log lines themselves (chosen by `settings.filter`, or
/// `RUST_LOG`) written to `writer`. The layers are stacked on the registry one by one:
/// composed first (`Layer::and_then`), a log filter stricter than INFO would disable the
/// spans for every layer.
fn subscriber<W>(
    settings: &TelemetrySettings,
    provider: &SdkTracerProvider,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + use<W>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if settings.json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .map_event_format(WithTraceId)
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    } else {
        fmt::layer()
            .with_target(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("paywire"))
                .with_filter(LevelFilter::INFO),
        )
        .with(TraceIds::default().with_filter(LevelFilter::INFO))
        .with(logs)
}

/// A subscriber that traces like a service's ([`init`]) but exports and logs nothing: for
/// tests that check propagation under a scoped subscriber (`tracing::subscriber::set_default`).
pub fn local_subscriber() -> impl tracing::Subscriber + Send + Sync {
    let settings = TelemetrySettings {
        filter: "off".into(),
        ..TelemetrySettings::default()
    };
    let (provider, _) = tracer_provider("local", "");
    subscriber(&settings, &provider, std::io::sink)
}

/// The current span's context as a `traceparent` value; `None` outside a traced span.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// `span`'s context as a `traceparent` value; `None` when the span is not traced.
pub fn traceparent_of(span: &Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The remote context a `traceparent` value names; `None` for a malformed value or an
/// invalid (all-zero) trace or span id.
pub fn parse_traceparent(value: &str) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the context in `traceparent` (a stored outbox value, an AMQP
/// header). Must be called before the span is first entered. Returns whether it did: a
/// missing or malformed value leaves the span where it was (a trace of its own).
pub fn continue_trace(span: &Span, traceparent: Option<&str>) -> bool {
    let Some(cx) = traceparent.and_then(parse_traceparent) else {
        if let Some(bad) = traceparent {
            tracing::debug!(traceparent = bad, "malformed traceparent ignored");
        }
        return false;
    };
    span.set_parent(cx).is_ok()
}

/// Links `span` to the current span (the request that made the work `span` does happen,
/// when `span` continues another trace).
pub fn link_current(span: &Span) {
    span.add_link(Span::current().context().span().span_context().clone());
}

/// Adds the current span's trace context to an outgoing request (order's clients, the
/// cashier's proxy, the channel calls): the callee's request span becomes its child.
pub fn propagate(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut carrier);
    carrier.into_iter().fold(request, |request, (name, value)| {
        request.header(name, value)
    })
}

/// The service answering a request, for its request span (`paywire.service`): in one
/// process (the end-to-end tests) the services share one tracer, and this tells them apart.
#[derive(Debug, Clone, Copy)]
pub struct ServiceName(pub &'static str);

/// tracing-actix-web's request span, continuing the caller's `traceparent`, with the
/// service's name.
#[derive(Debug)]
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let service = request.app_data::<ServiceName>().map_or("", |s| s.0);
        tracing_actix_web::root_span!(request, paywire.service = service)
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// A span's trace id, computed when it is first entered, for the log lines inside it.
struct TraceId(String);

/// Stores each entered span's trace id in its extensions ([`TraceId`]).
#[derive(Default)]
struct TraceIds {
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for TraceIds
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if span.extensions().get::<TraceId>().is_some() {
            return;
        }
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        // Locks the span's extensions itself: none held here.
        let Some(cx) = tracing_opentelemetry::get_otel_context(id, &dispatch) else {
            return;
        };
        let span_context = cx.span().span_context().clone();
        let mut extensions = span.extensions_mut();
        if span_context.is_valid() && extensions.get_mut::<TraceId>().is_none() {
            extensions.insert(TraceId(span_context.trace_id().to_string()));
        }
    }
}

/// The JSON line of an event with `"trace_id"` first, when the event is inside a traced span.
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let trace_id = ctx.event_scope().and_then(|mut scope| {
            scope.find_map(|span| span.extensions().get::<TraceId>().map(|t| t.0.clone()))
        });
        let Some(trace_id) = trace_id else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// A subscriber like the services' (JSON lines into `lines`), without export.
    fn json_subscriber(lines: Arc<Mutex<Vec<u8>>>) -> impl tracing::Subscriber + Send + Sync {
        let settings = TelemetrySettings {
            filter: "info".into(),
            json: true,
            otlp_endpoint: String::new(),
        };
        let (provider, error) = tracer_provider("test", "");
        assert!(error.is_none());
        let writer = move || Capture(lines.clone());
        subscriber(&settings, &provider, writer)
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn trace_id(traceparent: &str) -> &str {
        traceparent.split('-').nth(1).unwrap()
    }

    #[test]
    fn a_continued_span_passes_the_callers_trace_on_with_its_own_span_id() {
        tracing::subscriber::with_default(json_subscriber(Arc::default()), || {
            let span = tracing::info_span!("consume");
            assert!(continue_trace(&span, Some(CALLER)));
            let inner = span.in_scope(|| {
                let child = tracing::info_span!("child");
                child.in_scope(current_traceparent)
            });
            let ours = traceparent_of(&span).expect("a traced span");
            assert_eq!(trace_id(&ours), CALLER_TRACE);
            assert_ne!(ours, CALLER, "the span has an id of its own");
            let inner = inner.expect("a traced child");
            assert_eq!(trace_id(&inner), CALLER_TRACE);
            assert_ne!(inner, ours);
            // The value written (outbox, header) reads back as the same context.
            let cx = parse_traceparent(&ours).expect("valid");
            assert_eq!(
                cx.span().span_context().trace_id().to_string(),
                CALLER_TRACE
            );
            assert!(cx.span().span_context().is_remote());
        });
    }

    #[test]
    fn a_malformed_traceparent_is_ignored_and_the_span_starts_its_own_trace() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} accepted");
            tracing::subscriber::with_default(json_subscriber(Arc::default()), || {
                let span = tracing::info_span!("consume");
                assert!(!continue_trace(&span, Some(bad)), "{bad:?} continued");
                let own = traceparent_of(&span).expect("still traced");
                assert_ne!(trace_id(&own), CALLER_TRACE, "{bad:?}");
            });
        }
        tracing::subscriber::with_default(json_subscriber(Arc::default()), || {
            let span = tracing::info_span!("consume");
            assert!(!continue_trace(&span, None));
            assert!(traceparent_of(&span).is_some());
        });
    }

    #[test]
    fn outside_a_traced_span_there_is_nothing_to_pass_on() {
        // No subscriber: no span is traced.
        assert_eq!(current_traceparent(), None);
        tracing::subscriber::with_default(json_subscriber(Arc::default()), || {
            assert_eq!(current_traceparent(), None);
            let request = propagate(reqwest::Client::new().get("http://127.0.0.1:1/"))
                .build()
                .unwrap();
            assert!(request.headers().get(TRACEPARENT).is_none());
        });
    }

    #[test]
    fn outgoing_requests_carry_the_current_context() {
        tracing::subscriber::with_default(json_subscriber(Arc::default()), || {
            let span = tracing::info_span!("request");
            continue_trace(&span, Some(CALLER));
            let request = span.in_scope(|| {
                propagate(reqwest::Client::new().get("http://127.0.0.1:1/"))
                    .build()
                    .unwrap()
            });
            let sent = request.headers()[TRACEPARENT].to_str().unwrap();
            assert_eq!(Some(sent.to_owned()), traceparent_of(&span));
            assert_eq!(trace_id(sent), CALLER_TRACE);
        });
    }

    #[test]
    fn spans_are_traced_whatever_the_log_filter() {
        // The services' subscriber with logs off, as the tests use it.
        tracing::subscriber::with_default(local_subscriber(), || {
            let span = tracing::info_span!("request");
            assert!(continue_trace(&span, Some(CALLER)));
            assert_eq!(trace_id(&traceparent_of(&span).unwrap()), CALLER_TRACE);
        });
    }

    #[test]
    fn json_lines_inside_a_span_carry_its_trace_id() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(json_subscriber(lines.clone()), || {
            tracing::info!("outside");
            let span = tracing::info_span!("request", order_id = 7);
            continue_trace(&span, Some(CALLER));
            span.in_scope(|| {
                tracing::info!("inside");
                // A DEBUG span is no OpenTelemetry span: its lines take the trace of the
                // span around it.
                tracing::debug_span!("detail").in_scope(|| tracing::warn!("deeper"));
            });
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["message"], "outside");
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        for line in &lines[1..] {
            assert_eq!(line["trace_id"], CALLER_TRACE, "{line}");
        }
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["span"]["order_id"], 7);
    }
}
