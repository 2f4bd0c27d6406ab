//! Istio's standard metrics, served at `/stats/prometheus` and pushed over OTLP.
// TODO(issue 4, metrics helper): the metrics.

use super::TelemetrySettings;
use super::record::{RecordSink, RequestRecord};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub struct Metrics {}

impl Metrics {
    pub fn new(_settings: &TelemetrySettings) -> Metrics {
        Metrics {}
    }

    /// A counter of telemetry items dropped for `signal` (`trellis_telemetry_dropped_total`).
    pub fn dropped_counter(&self, _signal: &'static str) -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(0))
    }

    /// The metrics in Prometheus text format.
    pub fn encode_prometheus(&self) -> String {
        String::new()
    }

    /// The metrics as OTLP data points (cumulative), for the exporter.
    pub fn to_otlp(&self) -> Vec<opentelemetry_proto::tonic::metrics::v1::Metric> {
        Vec::new()
    }
}

impl RecordSink for Metrics {
    fn record(&self, _record: &RequestRecord) {}
}
