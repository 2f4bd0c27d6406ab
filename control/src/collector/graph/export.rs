//! The graph on the control plane's `/metrics`: Istio's series summed over every proxy (same
//! names and labels, so Kiali-style PromQL works against one target instead of every sidecar),
//! the graph's edges over the last minute, and the graph's own bookkeeping.
//!
//! Mesh-wide series accumulate the deltas the ingest computed, so they only go up: a proxy that
//! restarts resets its own counters, never these.

use super::LiveGraph;
use super::ingest::Total;
use super::istio::IstioMetric;
use super::lock;
use super::model::{EdgeKey, Source, Stats};
use super::quantile::quantile;
use super::window::{self, Plan};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::borrow::Cow;
use std::sync::Arc;

/// The window of the edge series.
pub const EDGE_WINDOW_MS: i64 = 60_000;
/// Series encoded per hold of the graph's lock.
const SCRAPE_CHUNK: usize = 1024;
/// The latency quantiles exported per edge (one gauge each: a gauge may not carry `quantile`).
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// Registered by [`LiveGraph::register_metrics`].
#[derive(Debug)]
pub struct GraphCollector {
    graph: Arc<LiveGraph>,
}

impl std::fmt::Debug for LiveGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveGraph").finish_non_exhaustive()
    }
}

impl GraphCollector {
    pub fn new(graph: Arc<LiveGraph>) -> GraphCollector {
        GraphCollector { graph }
    }
}

/// A Prometheus label name for an attribute key (invalid characters become `_`).
fn label_name(key: &str) -> Cow<'_, str> {
    let valid =
        |i: usize, c: char| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
    if !key.is_empty() && key.chars().enumerate().all(|(i, c)| valid(i, c)) {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(
            key.chars()
                .enumerate()
                .map(|(i, c)| if valid(i, c) { c } else { '_' })
                .collect(),
        )
    }
}

/// The labels of an edge series.
fn edge_labels(key: &EdgeKey) -> Vec<(&'static str, String)> {
    let unknown = || "unknown".to_string();
    let (src_ns, src_workload, src_app) = match &key.source {
        Source::Unknown => (unknown(), unknown(), unknown()),
        Source::Workload(w) => (w.namespace.clone(), w.name.clone(), w.app.clone()),
        Source::Service(s) => (s.namespace.clone(), unknown(), s.name.clone()),
    };
    let (svc_ns, svc) = key.service.as_ref().map_or_else(
        || (unknown(), unknown()),
        |s| (s.namespace.clone(), s.name.clone()),
    );
    let (dst_ns, dst_workload, dst_app) = key.destination.as_ref().map_or_else(
        || (unknown(), unknown(), unknown()),
        |w| (w.namespace.clone(), w.name.clone(), w.app.clone()),
    );
    vec![
        ("source_workload_namespace", src_ns),
        ("source_workload", src_workload),
        ("source_app", src_app),
        ("destination_service_namespace", svc_ns),
        ("destination_service_name", svc),
        ("destination_workload_namespace", dst_ns),
        ("destination_workload", dst_workload),
        ("destination_app", dst_app),
        ("protocol", key.protocol.as_str().to_string()),
        ("from_traces", key.from_traces.to_string()),
    ]
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Vec<(&'static str, String)>, f64)],
) -> Result<(), std::fmt::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        metric.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

impl GraphCollector {
    /// Series never move (the table only grows), so they are encoded a chunk at a time with the
    /// lock held per chunk: a large scrape never holds up ingest for long.
    fn encode_mesh_series(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let by_metric: Vec<(IstioMetric, Vec<usize>)> = {
            let state = lock(&self.graph.state);
            IstioMetric::ALL
                .into_iter()
                .map(|m| {
                    let ids = (0..state.ingest.series.len())
                        .filter(|i| state.ingest.series[*i].metric == m)
                        .collect();
                    (m, ids)
                })
                .collect()
        };
        for (metric, ids) in by_metric {
            if ids.is_empty() {
                continue;
            }
            let kind = if metric.is_histogram() {
                MetricType::Histogram
            } else {
                MetricType::Counter
            };
            let mut family =
                encoder.encode_descriptor(metric.base_name(), metric.help(), None, kind)?;
            for chunk in ids.chunks(SCRAPE_CHUNK) {
                let state = lock(&self.graph.state);
                for id in chunk {
                    let s = &state.ingest.series[*id];
                    let labels: Vec<(Cow<str>, &str)> = s
                        .labels
                        .iter()
                        .filter(|(k, _)| !(metric.is_histogram() && &**k == "le"))
                        .map(|(k, v)| (label_name(k), &**v))
                        .collect();
                    let mut m = family.encode_family(&labels)?;
                    match &s.total {
                        Total::Counter(v) => m.encode_counter::<NoLabelSet, _, f64>(v, None)?,
                        Total::Histogram {
                            bounds,
                            counts,
                            sum,
                            count,
                        } => {
                            let buckets: Vec<(f64, u64)> = bounds
                                .iter()
                                .copied()
                                .chain([f64::INFINITY])
                                .zip(counts.iter().copied())
                                .collect();
                            m.encode_histogram::<NoLabelSet>(*sum, *count, &buckets, None)?
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn encode_edges(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.graph.clock.now_ms();
        let plan = window::plan(now, None, EDGE_WINDOW_MS);
        let edges: Vec<(Arc<EdgeKey>, Stats)> = match plan {
            Plan::History(_) => Vec::new(),
            _ => lock(&self.graph.state).windows.sum(plan, now),
        };
        let seconds = plan.span().seconds();
        let mut requests = Vec::new();
        let mut errors = Vec::new();
        let mut mtls = Vec::new();
        let mut request_bytes = Vec::new();
        let mut response_bytes = Vec::new();
        let mut latency: [Vec<_>; 3] = Default::default();
        for (key, stats) in &edges {
            let labels = edge_labels(key);
            requests.push((labels.clone(), stats.requests / seconds));
            errors.push((labels.clone(), stats.errors / seconds));
            let volume = stats.volume(key.protocol);
            if volume > 0.0 {
                mtls.push((labels.clone(), (stats.mtls / volume).min(1.0)));
            }
            request_bytes.push((labels.clone(), stats.request_bytes / seconds));
            response_bytes.push((labels.clone(), stats.response_bytes / seconds));
            if let Some(l) = &stats.latency {
                for (rows, q) in latency.iter_mut().zip(QUANTILES) {
                    if let Some(ms) = quantile(q, l) {
                        rows.push((labels.clone(), ms / 1000.0));
                    }
                }
            }
        }
        let w = "over the last minute";
        gauge_family(
            encoder,
            "trellis_graph_edge_requests_per_second",
            &format!("Requests (TCP: connections opened) per second on a graph edge, {w}."),
            &requests,
        )?;
        gauge_family(
            encoder,
            "trellis_graph_edge_errors_per_second",
            &format!("HTTP 5xx and gRPC non-OK responses per second on a graph edge, {w}."),
            &errors,
        )?;
        gauge_family(
            encoder,
            "trellis_graph_edge_mtls_ratio",
            &format!("Share of a graph edge's traffic that was mutual TLS (0 to 1), {w}."),
            &mtls,
        )?;
        gauge_family(
            encoder,
            "trellis_graph_edge_request_bytes_per_second",
            &format!("Bytes per second from source to destination on a graph edge, {w}."),
            &request_bytes,
        )?;
        gauge_family(
            encoder,
            "trellis_graph_edge_response_bytes_per_second",
            &format!("Bytes per second from destination to source on a graph edge, {w}."),
            &response_bytes,
        )?;
        for (rows, p) in latency.iter().zip(["p50", "p95", "p99"]) {
            gauge_family(
                encoder,
                &format!("trellis_graph_edge_latency_{p}_seconds"),
                &format!(
                    "Latency {p} of a graph edge in seconds (interpolated in Envoy's buckets), {w}."
                ),
                rows,
            )?;
        }
        Ok(())
    }

    fn encode_bookkeeping(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (dropped, series, edges, cells) = {
            let state = lock(&self.graph.state);
            (
                state.ingest.dropped,
                state.ingest.series_count(),
                state.windows.edges.len(),
                state.windows.cells(),
            )
        };
        let (spans, bad_spans) = {
            let spans = lock(&self.graph.spans);
            (spans.held(), spans.malformed)
        };
        let mut family = encoder.encode_descriptor(
            "trellis_graph_dropped",
            "Telemetry the graph dropped, by reason (limits reached, malformed or out-of-order points).",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("series_limit", dropped.series_limit),
            ("edge_limit", dropped.edge_limit),
            ("malformed", dropped.malformed),
            ("out_of_order", dropped.out_of_order),
            ("malformed_span", bad_spans),
        ] {
            family
                .encode_family(&[("reason", reason)])?
                .encode_counter::<NoLabelSet, _, f64>(&n, None)?;
        }
        for (name, help, value) in [
            (
                "trellis_graph_series",
                "Istio series summed by the graph.",
                series,
            ),
            ("trellis_graph_edges", "Distinct graph edges seen.", edges),
            (
                "trellis_graph_slot_cells",
                "Edge cells held in the graph's time slots.",
                cells,
            ),
            (
                "trellis_graph_spans_held",
                "Spans held to join parents and children.",
                spans,
            ),
        ] {
            let gauge = prometheus_client::metrics::gauge::ConstGauge::new(value as i64);
            let m = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(m)?;
        }
        Ok(())
    }
}

impl Collector for GraphCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_mesh_series(&mut encoder)?;
        self.encode_edges(&mut encoder)?;
        self.encode_bookkeeping(&mut encoder)
    }
}
