//! Traffic summaries of namespaces, services and workloads, added up from the edges of a graph
//! view: what the Overview cards and the service/workload lists show.

use crate::collector::graph::GraphJson;
use crate::collector::graph::model::Protocol;
use crate::collector::graph::view::EdgeJson;
use std::collections::HashMap;
use trellis_api::{ConfigSet, Kind};
use trellis_console::model::{MtlsStatus, TrafficHealthInputs, TrafficSummary};

/// Kiali's health inputs of a set of edges: requests per second (HTTP + gRPC) and the share of
/// HTTP 5xx, HTTP 4xx and gRPC 1–16 among the requests of their protocol.
pub fn health_inputs<'a>(edges: impl IntoIterator<Item = &'a EdgeJson>) -> TrafficHealthInputs {
    let (mut http, mut e5, mut e4, mut grpc, mut grpc_err) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for e in edges {
        match e.protocol {
            Protocol::Tcp => {}
            Protocol::Http => {
                http += e.requests_per_second;
                for (code, rate) in &e.responses {
                    match code.parse::<u16>() {
                        Ok(500..=599) => e5 += rate,
                        Ok(400..=499) => e4 += rate,
                        _ => {}
                    }
                }
            }
            Protocol::Grpc => {
                grpc += e.requests_per_second;
                for (code, rate) in &e.responses {
                    if let Ok(1..=16) = code.parse::<u16>() {
                        grpc_err += rate;
                    }
                }
            }
        }
    }
    TrafficHealthInputs {
        request_rate: http + grpc,
        http_5xx_percent: percent(e5, http),
        http_4xx_percent: percent(e4, http),
        grpc_error_percent: percent(grpc_err, grpc),
    }
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

/// Inbound and outbound traffic of node `id` in `view`. Latency is of inbound requests: the
/// request-weighted mean of each edge's quantile (exact with one inbound edge, an estimate with
/// several, since the view keeps quantiles rather than buckets).
pub fn traffic_of(view: &GraphJson, id: &str) -> TrafficSummary {
    let inbound: Vec<&EdgeJson> = view.edges.iter().filter(|e| e.target == id).collect();
    let outbound = view.edges.iter().filter(|e| e.source == id);
    let timed: Vec<_> = inbound
        .iter()
        .filter_map(|e| e.latency_ms.map(|q| (e.requests_per_second, q)))
        .filter(|(rate, _)| *rate > 0.0)
        .collect();
    let total: f64 = timed.iter().map(|(rate, _)| rate).sum();
    let mean = |pick: fn(&crate::collector::graph::view::Quantiles) -> f64| {
        (total > 0.0).then(|| timed.iter().map(|(r, q)| r * pick(q)).sum::<f64>() / total)
    };
    TrafficSummary {
        inbound: health_inputs(inbound.iter().copied()),
        outbound: health_inputs(outbound),
        p50_ms: mean(|q| q.p50),
        p95_ms: mean(|q| q.p95),
        p99_ms: mean(|q| q.p99),
    }
}

/// Inbound traffic to each namespace: every edge whose destination node is in it.
pub fn namespace_traffic(view: &GraphJson) -> HashMap<String, TrafficHealthInputs> {
    let namespace_of: HashMap<&str, &str> = view
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.as_str(), n.namespace.as_deref()?)))
        .collect();
    let mut by_ns: HashMap<&str, Vec<&EdgeJson>> = HashMap::new();
    for e in &view.edges {
        if let Some(ns) = namespace_of.get(e.target.as_str()) {
            by_ns.entry(ns).or_default().push(e);
        }
    }
    by_ns
        .into_iter()
        .map(|(ns, edges)| (ns.to_string(), health_inputs(edges)))
        .collect()
}

/// A namespace's mutual TLS: its namespace-wide PeerAuthentication when it sets STRICT or
/// DISABLE (a mesh-wide one in `root_namespace` otherwise); without one, what the inbound edges
/// of the window carried: all mTLS is enabled, some is partial, none (or no traffic) disabled.
pub fn mtls_status(
    namespace: &str,
    config: &ConfigSet,
    view: &GraphJson,
    root_namespace: &str,
) -> MtlsStatus {
    let policy = |ns: &str| {
        config
            .iter()
            .filter(|r| r.kind() == Kind::PeerAuthentication && r.namespace() == ns)
            .filter(|r| r.raw["spec"]["selector"].is_null())
            .find_map(|r| r.raw["spec"]["mtls"]["mode"].as_str().map(str::to_string))
    };
    match policy(namespace)
        .or_else(|| policy(root_namespace))
        .as_deref()
    {
        Some("STRICT") => return MtlsStatus::Enabled,
        Some("DISABLE") => return MtlsStatus::Disabled,
        _ => {}
    }
    let inside: std::collections::HashSet<&str> = view
        .nodes
        .iter()
        .filter(|n| n.namespace.as_deref() == Some(namespace))
        .map(|n| n.id.as_str())
        .collect();
    let shares: Vec<f64> = view
        .edges
        .iter()
        .filter(|e| inside.contains(e.target.as_str()))
        .filter(|e| e.requests_per_second > 0.0 || edge_bytes(e) > 0.0)
        .map(|e| e.mtls_percent)
        .collect();
    if !shares.is_empty() && shares.iter().all(|s| *s >= 99.95) {
        MtlsStatus::Enabled
    } else if shares.iter().any(|s| *s > 0.0) {
        MtlsStatus::Partial
    } else {
        MtlsStatus::Disabled
    }
}

fn edge_bytes(e: &EdgeJson) -> f64 {
    e.request_bytes_per_second + e.response_bytes_per_second
}

/// `app`/`version` labels.
pub fn label(labels: &[(String, String)], key: &str) -> Option<String> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// The Istio root namespace, where a PeerAuthentication applies mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";
