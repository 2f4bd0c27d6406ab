//! The collector's own health on `/metrics`: what arrived, what was accepted, rejected (invalid)
//! or dropped (overloaded), what was stored and pruned, and how forwarding went. Items are spans,
//! metric data points and log records.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicI64;

/// A telemetry signal, as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SignalLabel {
    pub signal: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub signal: &'static str,
    /// `grpc` or `http`.
    pub protocol: &'static str,
    /// `ok`, `partial`, `invalid` or `overloaded`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TableLabel {
    pub table: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ForwardLabel {
    /// `sent`, `failed` (the endpoint refused or was unreachable) or `dropped` (queue full).
    pub result: &'static str,
}

/// Counters shared by the receivers, the writer and the forwarder.
#[derive(Debug, Default)]
pub struct CollectorMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub received: Family<SignalLabel, Counter>,
    pub accepted: Family<SignalLabel, Counter>,
    pub rejected: Family<SignalLabel, Counter>,
    pub dropped: Family<SignalLabel, Counter>,
    pub stored: Family<TableLabel, Counter>,
    pub write_failed: Family<TableLabel, Counter>,
    pub pruned: Family<TableLabel, Counter>,
    pub rows: Family<TableLabel, Gauge>,
    pub queued: Gauge<i64, AtomicI64>,
    pub forwarded: Family<ForwardLabel, Counter>,
}

impl CollectorMetrics {
    /// Registers every series under `trellis_collector_*`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("trellis_collector");
        sub.register(
            "otlp_requests",
            "OTLP export requests by signal, protocol and outcome",
            self.requests.clone(),
        );
        sub.register(
            "received_items",
            "Spans, metric data points and log records received",
            self.received.clone(),
        );
        sub.register(
            "accepted_items",
            "Items accepted (stored or folded into the graph)",
            self.accepted.clone(),
        );
        sub.register(
            "rejected_items",
            "Items refused as invalid (OTLP partial success)",
            self.rejected.clone(),
        );
        sub.register(
            "dropped_items",
            "Items refused because the collector was overloaded (the client may retry)",
            self.dropped.clone(),
        );
        sub.register(
            "stored_rows",
            "Rows written to telemetry storage",
            self.stored.clone(),
        );
        sub.register(
            "write_failed_rows",
            "Rows lost because a storage write failed",
            self.write_failed.clone(),
        );
        sub.register(
            "pruned_rows",
            "Rows deleted by retention",
            self.pruned.clone(),
        );
        sub.register(
            "table_rows",
            "Rows currently in telemetry storage",
            self.rows.clone(),
        );
        sub.register(
            "queued_items",
            "Items waiting for the storage writer",
            self.queued.clone(),
        );
        sub.register(
            "forwarded_spans",
            "Spans forwarded over OTLP to --otlp-forward, by result",
            self.forwarded.clone(),
        );
    }

    pub fn signal(family: &Family<SignalLabel, Counter>, signal: Signal, n: usize) {
        family
            .get_or_create(&SignalLabel {
                signal: signal.as_str(),
            })
            .inc_by(n as u64);
    }

    pub fn table(family: &Family<TableLabel, Counter>, table: &'static str, n: u64) {
        family.get_or_create(&TableLabel { table }).inc_by(n);
    }

    pub fn request(&self, signal: Signal, protocol: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                signal: signal.as_str(),
                protocol,
                outcome,
            })
            .inc();
    }

    pub fn forward(&self, result: &'static str, spans: usize) {
        self.forwarded
            .get_or_create(&ForwardLabel { result })
            .inc_by(spans as u64);
    }
}
