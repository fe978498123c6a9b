//! `tracing` set-up: one subscriber per process, text for developers, JSON for containers.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::TelemetrySettings;

/// Installs the global subscriber. A second call (tests spawning several services in one
/// process) is a no-op rather than an error.
pub fn init(service: &'static str, settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if settings.json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()
    } else {
        registry.with(fmt::layer().with_target(false)).try_init()
    };
    if result.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}
