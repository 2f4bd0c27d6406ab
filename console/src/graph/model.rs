//! What the graph page asks for ([`GraphQuery`]) and what the backend answers ([`GraphData`]).
//!
//! Shaped after Kiali's graph JSON and the control plane's `GET /api/v1/graph` view
//! (`control/src/collector/graph/view.rs`), so the control plane converts its view field by field.
//! Rates are per second over the window; percentages are 0–100.

use serde::{Deserialize, Serialize};

/// Kiali's graph types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GraphType {
    #[default]
    Workload,
    App,
    VersionedApp,
    Service,
}

impl GraphType {
    pub const ALL: [GraphType; 4] = [
        GraphType::Workload,
        GraphType::App,
        GraphType::VersionedApp,
        GraphType::Service,
    ];

    /// The query-parameter value, as Kiali spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphType::Workload => "workload",
            GraphType::App => "app",
            GraphType::VersionedApp => "versionedApp",
            GraphType::Service => "service",
        }
    }

    /// What a person reads in the select.
    pub fn title(self) -> &'static str {
        match self {
            GraphType::Workload => "Workload graph",
            GraphType::App => "App graph",
            GraphType::VersionedApp => "Versioned app graph",
            GraphType::Service => "Service graph",
        }
    }

    pub fn parse(text: &str) -> Option<GraphType> {
        GraphType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// What each edge is labelled with (Kiali's "Edge Labels" menu).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EdgeLabel {
    #[default]
    None,
    /// Requests per second (TCP: bytes per second).
    RequestRate,
    /// Share of the source's outbound traffic, %.
    TrafficShare,
    ErrorPercent,
    P50,
    P95,
    P99,
    /// Bytes per second, both ways.
    Throughput,
}

impl EdgeLabel {
    pub const ALL: [EdgeLabel; 8] = [
        EdgeLabel::None,
        EdgeLabel::RequestRate,
        EdgeLabel::TrafficShare,
        EdgeLabel::ErrorPercent,
        EdgeLabel::P50,
        EdgeLabel::P95,
        EdgeLabel::P99,
        EdgeLabel::Throughput,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EdgeLabel::None => "none",
            EdgeLabel::RequestRate => "rate",
            EdgeLabel::TrafficShare => "share",
            EdgeLabel::ErrorPercent => "errors",
            EdgeLabel::P50 => "p50",
            EdgeLabel::P95 => "p95",
            EdgeLabel::P99 => "p99",
            EdgeLabel::Throughput => "bytes",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            EdgeLabel::None => "No labels",
            EdgeLabel::RequestRate => "Request rate",
            EdgeLabel::TrafficShare => "Traffic share %",
            EdgeLabel::ErrorPercent => "Error %",
            EdgeLabel::P50 => "Latency p50",
            EdgeLabel::P95 => "Latency p95",
            EdgeLabel::P99 => "Latency p99",
            EdgeLabel::Throughput => "Bytes per second",
        }
    }

    pub fn parse(text: &str) -> Option<EdgeLabel> {
        EdgeLabel::ALL.into_iter().find(|l| l.as_str() == text)
    }
}

/// What the side panel shows details of (`focus=node:<id>` or `focus=edge:<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Focus {
    Node(String),
    Edge(String),
}

impl Focus {
    /// The `focus=` parameter value.
    pub fn param(&self) -> String {
        match self {
            Focus::Node(id) => format!("node:{id}"),
            Focus::Edge(id) => format!("edge:{id}"),
        }
    }
}

/// The graph page's request. The backend reads the first five fields; `edge_label`, `find`,
/// `hide` and `focus` are applied by the console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphQuery {
    pub graph_type: GraphType,
    /// Sorted, deduplicated; empty means every namespace.
    pub namespaces: Vec<String>,
    /// The window's length in seconds.
    pub duration_secs: u64,
    /// When the window ends, unix milliseconds: a replay of a past window. `None`: now.
    pub query_time_ms: Option<i64>,
    /// Kiali's `injectServiceNodes`: service nodes between callers and the workloads behind them.
    pub inject_service_nodes: bool,
    pub edge_label: EdgeLabel,
    /// A find expression (highlights matches); empty for none.
    pub find: String,
    /// A hide expression (removes matches before layout); empty for none.
    pub hide: String,
    pub focus: Option<Focus>,
}

impl Default for GraphQuery {
    fn default() -> GraphQuery {
        GraphQuery {
            graph_type: GraphType::Workload,
            namespaces: Vec::new(),
            duration_secs: 60,
            query_time_ms: None,
            inject_service_nodes: true,
            edge_label: EdgeLabel::None,
            find: String::new(),
            hide: String::new(),
            focus: None,
        }
    }
}

/// Kinds of node, drawn with Kiali's shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeKind {
    Workload,
    App,
    Service,
    /// Traffic from outside the mesh.
    Unknown,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Workload => "workload",
            NodeKind::App => "app",
            NodeKind::Service => "service",
            NodeKind::Unknown => "unknown",
        }
    }
}

/// Kiali's health statuses; `NoTraffic` when there were no HTTP/gRPC requests in the window.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    #[default]
    NoTraffic,
    Healthy,
    Degraded,
    Failure,
}

impl Health {
    /// Kiali's default tolerance for server errors (`health_config.rate`, 5xx and gRPC non-OK):
    /// degraded above 0%, failure at 10% or more. The control plane also weighs 4xx; the console
    /// uses this when only rates are known.
    pub fn from_rates(requests_per_second: f64, errors_per_second: f64) -> Health {
        if requests_per_second <= 0.0 {
            return Health::NoTraffic;
        }
        let percent = errors_per_second / requests_per_second * 100.0;
        if percent >= 10.0 {
            Health::Failure
        } else if percent > 0.0 {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::NoTraffic => "no traffic",
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Failure => "failure",
        }
    }

    /// A CSS class suffix.
    pub fn class(self) -> &'static str {
        match self {
            Health::NoTraffic => "idle",
            Health::Healthy => "ok",
            Health::Degraded => "degraded",
            Health::Failure => "failure",
        }
    }
}

/// Traffic through a node in one direction, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    /// HTTP and gRPC requests.
    pub requests_per_second: f64,
    /// HTTP 5xx and gRPC non-OK.
    pub errors_per_second: f64,
    /// TCP bytes, both ways.
    pub tcp_bytes_per_second: f64,
}

impl Rates {
    pub fn error_percent(&self) -> f64 {
        percent(self.errors_per_second, self.requests_per_second)
    }
}

/// Kiali's node badges and flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Badges {
    /// A VirtualService routes to it (Kiali `hasVS`).
    pub virtual_service: bool,
    /// Its VirtualService injects faults (Kiali `hasFaultInjection`).
    pub fault_injection: bool,
    /// A DestinationRule sets a connection pool or outlier detection (Kiali `hasCB`).
    pub circuit_breaker: bool,
    /// Outside the requested namespaces, shown because an edge crosses into them (`isOutside`).
    pub is_outside: bool,
    /// Sends traffic but receives none: where requests enter (`isRoot`).
    pub is_root: bool,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Unique in the graph, e.g. `workload:shop/reviews-v1`, `service:shop/reviews`, `unknown`.
    pub id: String,
    pub kind: NodeKind,
    pub namespace: Option<String>,
    pub app: Option<String>,
    pub version: Option<String>,
    pub workload: Option<String>,
    pub service: Option<String>,
    pub health: Health,
    pub traffic_in: Rates,
    pub traffic_out: Rates,
    pub badges: Badges,
}

impl Node {
    /// What the node is called on the drawing: the workload, service or app (with version).
    pub fn label(&self) -> String {
        let name = match self.kind {
            NodeKind::Unknown => return "unknown".to_string(),
            NodeKind::Workload => self.workload.as_deref(),
            NodeKind::Service => self.service.as_deref(),
            NodeKind::App => self.app.as_deref(),
        };
        let name = name.unwrap_or(&self.id);
        match (self.kind, &self.version) {
            (NodeKind::App, Some(v)) => format!("{name} {v}"),
            _ => name.to_string(),
        }
    }
}

/// The protocol of an edge, as Kiali names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// An edge: traffic from one node to another over one protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    /// Unique in the graph.
    pub id: String,
    pub source: String,
    pub target: String,
    pub protocol: Protocol,
    /// Requests (HTTP/gRPC) or connections opened (TCP) per second.
    pub requests_per_second: f64,
    pub error_percent: f64,
    /// Share of the source node's outbound traffic of this protocol that took this edge.
    pub traffic_share_percent: f64,
    /// `None` without latency data (TCP).
    pub latency_ms: Option<Latency>,
    /// Bytes per second, both ways.
    pub bytes_per_second: f64,
    /// Share of the traffic that was mutual TLS.
    pub mtls_percent: f64,
    pub health: Health,
}

impl Edge {
    /// Kiali draws the padlock when the edge's traffic is mutual TLS.
    pub fn is_mtls(&self) -> bool {
        self.mtls_percent > 0.0
    }
}

/// The window actually answered, unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Answered from stored history rather than memory.
    pub from_history: bool,
}

/// The backend's answer to a [`GraphQuery`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphData {
    pub window: Window,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

pub(crate) fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}
