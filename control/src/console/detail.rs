//! Service and workload detail (their traffic edges on both sides) and traffic time series, from
//! graph views: the series is one view per step, so it reads memory or stored minutes alike.

use super::summary::{health_inputs, traffic_of};
use crate::collector::graph::GraphJson;
use crate::collector::graph::view::EdgeJson;
use std::time::Duration;
use trellis_console::BackendError;
use trellis_console::model::{
    Direction, PeerKind, SeriesPoint, SeriesQuery, TrafficEdge, TrafficTarget,
};

/// The most points one series may have (a week at one-minute steps is ten thousand).
pub const MAX_POINTS: u64 = 720;

/// The node id of a target in the workload graph.
pub fn node_id(target: &TrafficTarget) -> String {
    match target {
        TrafficTarget::Service { namespace, name } => format!("service:{namespace}/{name}"),
        TrafficTarget::Workload { namespace, name } => format!("workload:{namespace}/{name}"),
    }
}

/// Rows of a traffic table: edges into (`Inbound`) or out of node `id`, the peer being the other
/// end, busiest first.
pub fn edges(view: &GraphJson, id: &str, direction: Direction) -> Vec<TrafficEdge> {
    let mut rows: Vec<(f64, TrafficEdge)> = view
        .edges
        .iter()
        .filter(|e| match direction {
            Direction::Inbound => e.target == id,
            Direction::Outbound => e.source == id,
        })
        .map(|e| {
            let peer = match direction {
                Direction::Inbound => &e.source,
                Direction::Outbound => &e.target,
            };
            (e.requests_per_second, row(view, peer, e))
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.into_iter().map(|(_, r)| r).collect()
}

fn row(view: &GraphJson, peer: &str, e: &EdgeJson) -> TrafficEdge {
    let node = view.nodes.iter().find(|n| n.id == peer);
    let (kind, name) = match node {
        Some(n) if n.node_type == "service" => (PeerKind::Service, n.service.clone()),
        Some(n) if n.node_type == "workload" => (PeerKind::Workload, n.workload.clone()),
        Some(n) if n.node_type == "app" => (PeerKind::Workload, n.app.clone()),
        _ => (PeerKind::Unknown, None),
    };
    TrafficEdge {
        peer_kind: kind,
        peer_namespace: node.and_then(|n| n.namespace.clone()).unwrap_or_default(),
        peer_name: name.unwrap_or_else(|| "unknown".to_string()),
        protocol: e.protocol.as_str().to_string(),
        traffic: health_inputs([e]),
        p50_ms: e.latency_ms.map(|q| q.p50),
        p95_ms: e.latency_ms.map(|q| q.p95),
        p99_ms: e.latency_ms.map(|q| q.p99),
        mtls_percent: e.mtls_percent,
    }
}

/// The step ends of a series: `(end of window, step, count)`, refused when the step is zero,
/// longer than the window, or makes too many points.
pub fn steps(query: &SeriesQuery, now_us: i64) -> Result<Vec<i64>, BackendError> {
    let bad = |m: String| Err(BackendError::BadRequest(m));
    let (window, step) = (query.window, query.step);
    if step < Duration::from_secs(1) {
        return bad("the step must be at least 1s".into());
    }
    if step > window {
        return bad(format!(
            "the step ({}s) is longer than the window ({}s)",
            step.as_secs(),
            window.as_secs()
        ));
    }
    let count = window.as_micros() / step.as_micros();
    if count > u128::from(MAX_POINTS) {
        return bad(format!(
            "{count} points are too many; choose a longer step (at most {MAX_POINTS} points)"
        ));
    }
    let end = query.end_us.unwrap_or(now_us);
    let step_us = step.as_micros() as i64;
    let count = count as i64;
    Ok((0..count)
        .map(|i| end - (count - 1 - i) * step_us)
        .collect())
}

/// One point from the view of one step; `None` when the target had no traffic edge then.
pub fn point(view: &GraphJson, id: &str, direction: Direction, t_us: i64) -> Option<SeriesPoint> {
    let any = view.edges.iter().any(|e| match direction {
        Direction::Inbound => e.target == id,
        Direction::Outbound => e.source == id,
    });
    if !any {
        return None;
    }
    let t = traffic_of(view, id);
    let (traffic, latency) = match direction {
        Direction::Inbound => (t.inbound, (t.p50_ms, t.p95_ms, t.p99_ms)),
        Direction::Outbound => {
            let out: Vec<&EdgeJson> = view.edges.iter().filter(|e| e.source == id).collect();
            (t.outbound, weighted_latency(&out))
        }
    };
    Some(SeriesPoint {
        t_us,
        request_rate: traffic.request_rate,
        error_percent: traffic.error_percent(),
        p50_ms: latency.0,
        p95_ms: latency.1,
        p99_ms: latency.2,
    })
}

type Latencies = (Option<f64>, Option<f64>, Option<f64>);

/// Request-weighted mean quantiles of some edges (as [`traffic_of`] does for inbound ones).
fn weighted_latency(edges: &[&EdgeJson]) -> Latencies {
    let timed: Vec<_> = edges
        .iter()
        .filter_map(|e| e.latency_ms.map(|q| (e.requests_per_second, q)))
        .filter(|(r, _)| *r > 0.0)
        .collect();
    let total: f64 = timed.iter().map(|(r, _)| r).sum();
    if total <= 0.0 {
        return (None, None, None);
    }
    let mean = |f: fn(&crate::collector::graph::view::Quantiles) -> f64| {
        Some(timed.iter().map(|(r, q)| r * f(q)).sum::<f64>() / total)
    };
    (mean(|q| q.p50), mean(|q| q.p95), mean(|q| q.p99))
}
