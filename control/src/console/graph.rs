//! The collector's graph view ([`GraphJson`]) in the console's types ([`GraphData`]), with
//! Kiali's node badges read from the current configuration.

use crate::collector::graph::health::Health;
use crate::collector::graph::model::Protocol;
use crate::collector::graph::view::{EdgeJson, NodeJson, Traffic, WindowSource};
use crate::collector::graph::{GraphJson, GraphQuery, GraphType, ViewOptions};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use trellis_api::{ConfigSet, Kind};
use trellis_console::BackendError;
use trellis_console::graph::model as console;

/// The console's query as the collector's; a window the graph API would refuse is refused with
/// the same words (the console shows them next to the form).
pub fn collector_query(
    query: &console::GraphQuery,
    now_ms: i64,
) -> Result<GraphQuery, BackendError> {
    use crate::collector::graph::api::MAX_DURATION_MS;
    let duration_ms = i64::try_from(query.duration_secs)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .filter(|ms| *ms <= MAX_DURATION_MS)
        .ok_or_else(|| BackendError::BadRequest("the window must be at most 7 days".into()))?;
    if duration_ms < 1000 {
        return Err(BackendError::BadRequest(
            "the window must be at least 1s".into(),
        ));
    }
    if let Some(t) = query.query_time_ms
        && t > now_ms + 60_000
    {
        return Err(BackendError::BadRequest(format!(
            "the window's end ({}) is in the future",
            crate::store::rfc3339_millis(t)
        )));
    }
    Ok(GraphQuery {
        view: ViewOptions {
            graph_type: match query.graph_type {
                console::GraphType::Workload => GraphType::Workload,
                console::GraphType::App => GraphType::App,
                console::GraphType::VersionedApp => GraphType::VersionedApp,
                console::GraphType::Service => GraphType::Service,
            },
            namespaces: query.namespaces.clone(),
            inject_service_nodes: query.inject_service_nodes,
        },
        duration_ms,
        query_time_ms: query.query_time_ms,
    })
}

/// Hosts (fully qualified) that Kiali would badge, from VirtualServices and DestinationRules.
#[derive(Debug, Default, Clone)]
pub struct BadgeIndex {
    /// Host patterns of every VirtualService (may be `*.` wildcards).
    virtual_service: Vec<String>,
    /// Host patterns of VirtualServices with a `fault` on some HTTP route.
    fault: Vec<String>,
    /// Hosts of DestinationRules with a connection pool or outlier detection anywhere.
    circuit_breaker: Vec<String>,
}

impl BadgeIndex {
    pub fn of(config: &ConfigSet) -> BadgeIndex {
        let mut index = BadgeIndex::default();
        for r in config.iter() {
            let spec = &r.raw["spec"];
            let hosts = || -> Vec<String> {
                let mut hosts: Vec<&Value> = Vec::new();
                match r.kind() {
                    Kind::VirtualService => {
                        hosts.extend(spec["hosts"].as_array().into_iter().flatten())
                    }
                    _ => hosts.push(&spec["host"]),
                }
                hosts
                    .into_iter()
                    .filter_map(Value::as_str)
                    .map(|h| trellis_api::host::resolve(h, r.namespace()))
                    .collect()
            };
            match r.kind() {
                Kind::VirtualService => {
                    let hosts = hosts();
                    if has_fault(spec) {
                        index.fault.extend(hosts.iter().cloned());
                    }
                    index.virtual_service.extend(hosts);
                }
                Kind::DestinationRule if has_circuit_breaker(spec) => {
                    index.circuit_breaker.extend(hosts());
                }
                _ => {}
            }
        }
        index
    }

    /// The badges of a service (or app) `name` in `namespace`.
    fn badges(&self, name: &str, namespace: &str) -> console::Badges {
        let host = trellis_api::host::resolve(name, namespace);
        let any = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| trellis_api::host::match_specificity(p, &host).is_some())
        };
        console::Badges {
            virtual_service: any(&self.virtual_service),
            fault_injection: any(&self.fault),
            circuit_breaker: any(&self.circuit_breaker),
            ..console::Badges::default()
        }
    }
}

fn has_fault(spec: &Value) -> bool {
    spec["http"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|route| route.get("fault").is_some_and(|f| !f.is_null()))
}

/// A traffic policy with `connectionPool` or `outlierDetection`, at the top, per port or per subset.
fn has_circuit_breaker(spec: &Value) -> bool {
    fn policy(p: &Value) -> bool {
        let direct = ["connectionPool", "outlierDetection"]
            .iter()
            .any(|k| p.get(k).is_some_and(|v| !v.is_null()));
        direct
            || p["portLevelSettings"]
                .as_array()
                .into_iter()
                .flatten()
                .any(policy)
    }
    policy(&spec["trafficPolicy"])
        || spec["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| policy(&s["trafficPolicy"]))
}

pub fn health(h: Health) -> console::Health {
    match h {
        Health::NoTraffic => console::Health::NoTraffic,
        Health::Healthy => console::Health::Healthy,
        Health::Degraded => console::Health::Degraded,
        Health::Failure => console::Health::Failure,
    }
}

fn rates(t: &Traffic) -> console::Rates {
    console::Rates {
        requests_per_second: t.requests_per_second,
        errors_per_second: t.errors_per_second,
        tcp_bytes_per_second: t.tcp_bytes_per_second,
    }
}

fn node_kind(node_type: &str) -> console::NodeKind {
    match node_type {
        "workload" => console::NodeKind::Workload,
        "app" => console::NodeKind::App,
        "service" => console::NodeKind::Service,
        _ => console::NodeKind::Unknown,
    }
}

fn node(
    n: &NodeJson,
    badges: &BadgeIndex,
    targets: &HashSet<&str>,
    sources: &HashSet<&str>,
) -> console::Node {
    let kind = node_kind(&n.node_type);
    let named = match kind {
        console::NodeKind::Service => n.service.as_deref(),
        console::NodeKind::App => n.app.as_deref(),
        _ => None,
    };
    let mut node_badges = match (named, &n.namespace) {
        (Some(name), Some(ns)) => badges.badges(name, ns),
        _ => console::Badges::default(),
    };
    node_badges.is_outside = n.is_outside;
    node_badges.is_root = sources.contains(n.id.as_str()) && !targets.contains(n.id.as_str());
    console::Node {
        id: n.id.clone(),
        kind,
        namespace: n.namespace.clone(),
        app: n.app.clone(),
        version: n.version.clone(),
        workload: n.workload.clone(),
        service: n.service.clone(),
        health: health(n.health),
        traffic_in: rates(&n.traffic_in),
        traffic_out: rates(&n.traffic_out),
        badges: node_badges,
    }
}

fn edge(e: &EdgeJson) -> console::Edge {
    console::Edge {
        id: e.id.clone(),
        source: e.source.clone(),
        target: e.target.clone(),
        protocol: match e.protocol {
            Protocol::Http => console::Protocol::Http,
            Protocol::Grpc => console::Protocol::Grpc,
            Protocol::Tcp => console::Protocol::Tcp,
        },
        requests_per_second: e.requests_per_second,
        error_percent: e.error_percent,
        traffic_share_percent: e.traffic_share_percent,
        latency_ms: e.latency_ms.map(|q| console::Latency {
            p50: q.p50,
            p95: q.p95,
            p99: q.p99,
        }),
        bytes_per_second: e.request_bytes_per_second + e.response_bytes_per_second,
        mtls_percent: e.mtls_percent,
        health: health(e.health),
    }
}

/// The whole view, field by field.
pub fn to_console(view: &GraphJson, badges: &BadgeIndex) -> console::GraphData {
    let targets: HashSet<&str> = view.edges.iter().map(|e| e.target.as_str()).collect();
    let sources: HashSet<&str> = view.edges.iter().map(|e| e.source.as_str()).collect();
    console::GraphData {
        window: console::Window {
            start_ms: view.window.start,
            end_ms: view.window.end,
            from_history: view.window.source == WindowSource::History,
        },
        nodes: view
            .nodes
            .iter()
            .map(|n| node(n, badges, &targets, &sources))
            .collect(),
        edges: view.edges.iter().map(edge).collect(),
    }
}

/// Namespaces a view mentions (nodes inside the query's namespaces).
pub fn namespaces(view: &GraphJson) -> BTreeSet<String> {
    view.nodes
        .iter()
        .filter(|n| !n.is_outside)
        .filter_map(|n| n.namespace.clone())
        .collect()
}
