//! A graph view: the edges of a window turned into the nodes and edges of one graph type, built
//! as a petgraph `DiGraph`, with rates, error %, quantiles, shares and health.
//!
//! Graph types follow Kiali. `workload`: workload nodes; `app`: one node per app (canonical
//! service); `versionedApp`: one per app version; `service`: service nodes only. In the first
//! three, service nodes are injected between a source and the workloads behind the service
//! (Kiali's `injectServiceNodes=true`, its default): a request from A through service S to
//! workload B is A -> S -> B, so a service's edges to its versions show the traffic split.
//! In the service graph a workload's outbound traffic leaves from the service(s) in front of it
//! (as Kiali reduces a workload graph to services); a workload no service fronts (an ingress, a
//! job) stays a workload node. Traffic from outside the mesh leaves the `unknown` node. Edges from
//! traces join service nodes.
//!
//! With a namespace filter, an edge is kept when any end (source, service or destination) is in
//! one of the namespaces; nodes outside them are marked `isOutside`, as Kiali does.

use super::health::{self, Health};
use super::model::{Code, EdgeKey, Protocol, Service, Source, Stats, Workload};
use super::quantile::quantile;
use super::window::Span;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Kiali's graph types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GraphType {
    Workload,
    App,
    VersionedApp,
    Service,
}

impl std::str::FromStr for GraphType {
    type Err = String;
    fn from_str(s: &str) -> Result<GraphType, String> {
        match s {
            "workload" => Ok(GraphType::Workload),
            "app" => Ok(GraphType::App),
            "versionedApp" => Ok(GraphType::VersionedApp),
            "service" => Ok(GraphType::Service),
            _ => Err(format!(
                "`graphType` must be one of workload, app, versionedApp, service; got {s:?}"
            )),
        }
    }
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewOptions {
    pub graph_type: GraphType,
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    pub inject_service_nodes: bool,
}

/// A node of a view.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum NodeKey {
    Unknown,
    Workload(Workload),
    App {
        namespace: String,
        app: String,
        version: Option<String>,
    },
    Service(Service),
}

impl NodeKey {
    fn id(&self) -> String {
        match self {
            NodeKey::Unknown => "unknown".to_string(),
            NodeKey::Workload(w) => format!("workload:{}/{}", w.namespace, w.name),
            NodeKey::App {
                namespace,
                app,
                version: None,
            } => format!("app:{namespace}/{app}"),
            NodeKey::App {
                namespace,
                app,
                version: Some(v),
            } => format!("app:{namespace}/{app}/{v}"),
            NodeKey::Service(s) => format!("service:{}/{}", s.namespace, s.name),
        }
    }

    fn namespace(&self) -> Option<&str> {
        match self {
            NodeKey::Unknown => None,
            NodeKey::Workload(w) => Some(&w.namespace),
            NodeKey::App { namespace, .. } => Some(namespace),
            NodeKey::Service(s) => Some(&s.namespace),
        }
    }
}

/// Traffic through a node in one direction, per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    /// HTTP and gRPC requests.
    pub requests_per_second: f64,
    pub errors_per_second: f64,
    /// TCP bytes, both ways.
    pub tcp_bytes_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeJson {
    pub id: String,
    /// `workload`, `app`, `service` or `unknown`.
    pub node_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub health: Health,
    /// Outside the requested namespaces (shown because an edge crosses into them).
    pub is_outside: bool,
    /// Known only from spans.
    pub from_traces: bool,
    pub traffic_in: Traffic,
    pub traffic_out: Traffic,
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeJson {
    pub id: String,
    pub source: String,
    pub target: String,
    /// `http`, `grpc` or `tcp`.
    pub protocol: Protocol,
    pub from_traces: bool,
    /// Requests (HTTP/gRPC) or connections opened (TCP) per second.
    pub requests_per_second: f64,
    /// HTTP 5xx or gRPC non-OK per second.
    pub errors_per_second: f64,
    pub error_percent: f64,
    /// Requests per second by response code (HTTP status, gRPC status; "-" when not known).
    pub responses: BTreeMap<String, f64>,
    /// `None` without latency data (TCP).
    pub latency_ms: Option<Quantiles>,
    /// Bytes from source to destination per second.
    pub request_bytes_per_second: f64,
    /// Bytes from destination to source per second.
    pub response_bytes_per_second: f64,
    /// Share of the traffic (requests; bytes for TCP) that was mutual TLS.
    pub mtls_percent: f64,
    /// Share of the source node's outbound traffic of this protocol that took this edge.
    pub traffic_share_percent: f64,
    pub health: Health,
}

/// Where a window was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WindowSource {
    Memory,
    History,
}

/// The window actually answered: start and end in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowJson {
    pub start: i64,
    pub end: i64,
    pub seconds: f64,
    pub source: WindowSource,
}

/// The graph API's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphJson {
    pub graph_type: GraphType,
    pub namespaces: Vec<String>,
    pub window: WindowJson,
    pub nodes: Vec<NodeJson>,
    pub edges: Vec<EdgeJson>,
}

/// The services in front of each workload (from every edge seen), for the service graph.
pub type Fronting = HashMap<Workload, Vec<Service>>;

fn workload_node(w: &Workload, graph_type: GraphType) -> NodeKey {
    let app_known = w.app != "unknown";
    match graph_type {
        GraphType::App if app_known => NodeKey::App {
            namespace: w.namespace.clone(),
            app: w.app.clone(),
            version: None,
        },
        GraphType::VersionedApp if app_known => NodeKey::App {
            namespace: w.namespace.clone(),
            app: w.app.clone(),
            version: Some(w.version.clone()),
        },
        _ => NodeKey::Workload(w.clone()),
    }
}

/// The hops an edge draws in a view.
fn hops(key: &EdgeKey, options: &ViewOptions, fronting: &Fronting) -> Vec<(NodeKey, NodeKey)> {
    let graph_type = options.graph_type;
    let service = key.service.clone().map(NodeKey::Service);
    let destination = key
        .destination
        .as_ref()
        .map(|w| workload_node(w, graph_type));
    if graph_type == GraphType::Service {
        let sources = match &key.source {
            Source::Unknown => vec![NodeKey::Unknown],
            Source::Service(s) => vec![NodeKey::Service(s.clone())],
            Source::Workload(w) => match fronting.get(w) {
                Some(services) if !services.is_empty() => {
                    services.iter().cloned().map(NodeKey::Service).collect()
                }
                _ => vec![NodeKey::Workload(w.clone())],
            },
        };
        let Some(target) = service.or(destination) else {
            return Vec::new();
        };
        return sources.into_iter().map(|s| (s, target.clone())).collect();
    }
    let source = match &key.source {
        Source::Unknown => NodeKey::Unknown,
        Source::Workload(w) => workload_node(w, graph_type),
        Source::Service(s) => NodeKey::Service(s.clone()),
    };
    match (service, destination) {
        (Some(s), Some(d)) if options.inject_service_nodes => vec![(source, s.clone()), (s, d)],
        (_, Some(d)) => vec![(source, d)],
        (Some(s), None) => vec![(source, s)],
        (None, None) => Vec::new(),
    }
}

/// Per-second rates of `stats` over `seconds`.
fn per_second(stats: &Stats, protocol: Protocol, seconds: f64) -> Traffic {
    match protocol {
        Protocol::Tcp => Traffic {
            tcp_bytes_per_second: stats.volume(protocol) / seconds,
            ..Traffic::default()
        },
        _ => Traffic {
            requests_per_second: stats.requests / seconds,
            errors_per_second: stats.errors / seconds,
            tcp_bytes_per_second: 0.0,
        },
    }
}

fn add(total: &mut Traffic, t: &Traffic) {
    total.requests_per_second += t.requests_per_second;
    total.errors_per_second += t.errors_per_second;
    total.tcp_bytes_per_second += t.tcp_bytes_per_second;
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

/// One edge of the petgraph view.
struct Hop {
    protocol: Protocol,
    from_traces: bool,
    stats: Stats,
}

/// Builds the view of `edges` (per-edge sums over `span`).
pub fn build(
    edges: &[(Arc<EdgeKey>, Stats)],
    fronting: &Fronting,
    options: &ViewOptions,
    span: Span,
    source: WindowSource,
) -> GraphJson {
    let in_filter = |ns: &str| options.namespaces.iter().any(|n| n == ns);
    // Merge hops first: many edges share a hop (every source of a service shares the service's
    // edges to its workloads).
    let mut merged: HashMap<(NodeKey, NodeKey, Protocol, bool), Stats> = HashMap::new();
    for (key, stats) in edges {
        if !options.namespaces.is_empty() && !key.namespaces().any(in_filter) {
            continue;
        }
        for (from, to) in hops(key, options, fronting) {
            merged
                .entry((from, to, key.protocol, key.from_traces))
                .or_default()
                .merge(stats);
        }
    }

    let mut graph: DiGraph<NodeKey, Hop> = DiGraph::new();
    let mut index: HashMap<NodeKey, NodeIndex> = HashMap::new();
    let mut node = |graph: &mut DiGraph<NodeKey, Hop>, key: NodeKey| {
        *index
            .entry(key.clone())
            .or_insert_with(|| graph.add_node(key))
    };
    let mut sorted: Vec<_> = merged.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for ((from, to, protocol, from_traces), stats) in sorted {
        let a = node(&mut graph, from);
        let b = node(&mut graph, to);
        graph.add_edge(
            a,
            b,
            Hop {
                protocol,
                from_traces,
                stats,
            },
        );
    }

    let seconds = span.seconds();
    let nodes = graph
        .node_indices()
        .map(|n| node_json(&graph, n, options, seconds))
        .collect();
    let edges = graph
        .edge_references()
        .map(|e| {
            let hop = e.weight();
            let outbound: f64 = graph
                .edges_directed(e.source(), Direction::Outgoing)
                .filter(|o| o.weight().protocol == hop.protocol)
                .map(|o| o.weight().stats.volume(hop.protocol))
                .sum();
            edge_json(
                &graph[e.source()],
                &graph[e.target()],
                hop,
                outbound,
                seconds,
            )
        })
        .collect();
    GraphJson {
        graph_type: options.graph_type,
        namespaces: options.namespaces.clone(),
        window: WindowJson {
            start: span.start,
            end: span.end,
            seconds,
            source,
        },
        nodes,
        edges,
    }
}

fn node_json(
    graph: &DiGraph<NodeKey, Hop>,
    n: NodeIndex,
    options: &ViewOptions,
    seconds: f64,
) -> NodeJson {
    let key = &graph[n];
    let mut traffic_in = Traffic::default();
    let mut traffic_out = Traffic::default();
    let mut inbound: BTreeMap<Protocol, Stats> = BTreeMap::new();
    let mut outbound: BTreeMap<Protocol, Stats> = BTreeMap::new();
    let mut only_traces = true;
    for (direction, traffic, by_protocol) in [
        (Direction::Incoming, &mut traffic_in, &mut inbound),
        (Direction::Outgoing, &mut traffic_out, &mut outbound),
    ] {
        for e in graph.edges_directed(n, direction) {
            let hop = e.weight();
            only_traces &= hop.from_traces;
            add(traffic, &per_second(&hop.stats, hop.protocol, seconds));
            by_protocol
                .entry(hop.protocol)
                .or_default()
                .merge(&hop.stats);
        }
    }
    let health = health::of_traffic(inbound.iter().map(|(p, s)| (*p, s)))
        .max(health::of_traffic(outbound.iter().map(|(p, s)| (*p, s))));
    let is_outside = !options.namespaces.is_empty()
        && key
            .namespace()
            .is_some_and(|ns| !options.namespaces.iter().any(|n| n == ns));
    let (node_type, workload, app, version, service) = match key {
        NodeKey::Unknown => ("unknown", None, None, None, None),
        NodeKey::Workload(w) => (
            "workload",
            Some(w.name.clone()),
            Some(w.app.clone()),
            Some(w.version.clone()),
            None,
        ),
        NodeKey::App { app, version, .. } => {
            ("app", None, Some(app.clone()), version.clone(), None)
        }
        NodeKey::Service(s) => ("service", None, None, None, Some(s.name.clone())),
    };
    NodeJson {
        id: key.id(),
        node_type: node_type.to_string(),
        namespace: key.namespace().map(str::to_string),
        workload,
        app,
        version,
        service,
        health,
        is_outside,
        from_traces: only_traces,
        traffic_in,
        traffic_out,
    }
}

fn edge_json(from: &NodeKey, to: &NodeKey, hop: &Hop, outbound: f64, seconds: f64) -> EdgeJson {
    let stats = &hop.stats;
    let protocol = hop.protocol;
    let latency = stats.latency.as_deref().and_then(|l| {
        Some(Quantiles {
            p50: quantile(0.5, l)?,
            p95: quantile(0.95, l)?,
            p99: quantile(0.99, l)?,
        })
    });
    let responses = stats
        .codes
        .iter()
        .filter(|(c, _)| protocol != Protocol::Tcp || *c != Code::NONE)
        .map(|(c, n)| (c.label(), n / seconds))
        .collect();
    let (from_id, to_id) = (from.id(), to.id());
    EdgeJson {
        id: format!(
            "{from_id}->{to_id}:{}{}",
            protocol.as_str(),
            if hop.from_traces { ":traces" } else { "" }
        ),
        source: from_id,
        target: to_id,
        protocol,
        from_traces: hop.from_traces,
        requests_per_second: stats.requests / seconds,
        errors_per_second: stats.errors / seconds,
        error_percent: percent(stats.errors, stats.requests),
        responses,
        latency_ms: latency,
        request_bytes_per_second: stats.request_bytes / seconds,
        response_bytes_per_second: stats.response_bytes / seconds,
        // The destination reports mutual TLS and the source the traffic; a report in flight can
        // put one a little ahead of the other.
        mtls_percent: percent(stats.mtls, stats.volume(protocol)).min(100.0),
        traffic_share_percent: percent(stats.volume(protocol), outbound),
        health: health::of_traffic([(protocol, stats)]),
    }
}
