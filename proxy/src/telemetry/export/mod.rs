//! OTLP export of spans, access logs and metrics: batched, asynchronous and bounded.
// TODO(issue 4, tracing helper): the exporter.

use super::TelemetrySettings;
use super::metrics::Metrics;
use super::record::RecordSink;
use std::sync::Arc;

/// Starts the exporters the settings ask for; returns the sinks that feed them.
pub fn start(
    _settings: &TelemetrySettings,
    _metrics: Arc<Metrics>,
) -> Result<Vec<Arc<dyn RecordSink>>, String> {
    Ok(Vec::new())
}
