//! The live service graph (petgraph): nodes for workloads, apps, versioned apps, services and
//! unknown sources; edges with rolling rates, errors, latency quantiles, bytes and mTLS share.
// TODO(issue 4, graph helper): the graph.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::sync::Arc;

pub struct LiveGraph {}

impl LiveGraph {
    pub fn new() -> LiveGraph {
        LiveGraph {}
    }

    /// Folds in metrics pushed by proxies (Istio's standard metrics, cumulative).
    pub fn observe_metrics(&self, _request: &ExportMetricsServiceRequest) {}

    /// Folds in spans: edges between services not in the mesh (graph from traces).
    pub fn observe_spans(&self, _request: &ExportTraceServiceRequest) {}

    /// Adds the mesh-wide aggregates and graph edge series to the control plane's `/metrics`.
    pub fn register_metrics(
        self: &Arc<Self>,
        _registry: &mut prometheus_client::registry::Registry,
    ) {
    }
}

impl Default for LiveGraph {
    fn default() -> Self {
        Self::new()
    }
}
