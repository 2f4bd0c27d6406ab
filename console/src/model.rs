//! What the console shows, in its own types: the control plane fills them from its store, push
//! server and collector, and tests fill them from the in-memory backend. Plain data (serde both
//! ways) so an implementation may also fetch them over HTTP.

use serde::{Deserialize, Serialize};

pub use trellis_api::{Diagnostic, Severity};

/// One namespace with what its Overview card needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceSummary {
    pub name: String,
    /// Inbound traffic to the namespace's workloads over the health window.
    pub traffic: TrafficHealthInputs,
    pub mtls: MtlsStatus,
    pub workloads: usize,
    pub services: usize,
    pub proxies: ProxyCounts,
}

/// The numbers Kiali's health calculator needs; the console applies the thresholds
/// ([`Health::of`]) so every page colours alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficHealthInputs {
    /// HTTP + gRPC requests per second.
    pub request_rate: f64,
    /// Share of HTTP requests answered 5xx, in percent (0–100).
    pub http_5xx_percent: f64,
    /// Share of HTTP requests answered 4xx, in percent.
    pub http_4xx_percent: f64,
    /// Share of gRPC requests with status 1–16, in percent.
    pub grpc_error_percent: f64,
}

impl TrafficHealthInputs {
    /// Every error, for display: 5xx plus gRPC errors (4xx are the client's fault, as in Kiali's
    /// "error %" label).
    pub fn error_percent(&self) -> f64 {
        self.http_5xx_percent + self.grpc_error_percent
    }
}

/// Kiali's health statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    NoTraffic,
    Healthy,
    Degraded,
    Failure,
}

impl Health {
    /// Kiali's default `health_config.rate` tolerances: HTTP 5xx degraded above 0 %, failure at
    /// 10 %; HTTP 4xx degraded at 10 %, failure at 20 %; gRPC 1–16 degraded above 0 %, failure
    /// at 10 %. The worst wins; no requests is "no traffic".
    pub fn of(t: &TrafficHealthInputs) -> Health {
        if t.request_rate <= 0.0 {
            return Health::NoTraffic;
        }
        [
            threshold(t.http_5xx_percent, 0.0, 10.0),
            threshold(t.http_4xx_percent, 10.0, 20.0),
            threshold(t.grpc_error_percent, 0.0, 10.0),
        ]
        .into_iter()
        .max()
        .unwrap_or(Health::Healthy)
    }

    /// The word shown next to the colour (never colour alone).
    pub fn label(self) -> &'static str {
        match self {
            Health::NoTraffic => "No traffic",
            Health::Healthy => "Healthy",
            Health::Degraded => "Degraded",
            Health::Failure => "Failure",
        }
    }

    /// The CSS class carrying the colour.
    pub fn css_class(self) -> &'static str {
        match self {
            Health::NoTraffic => "health-none",
            Health::Healthy => "health-ok",
            Health::Degraded => "health-degraded",
            Health::Failure => "health-failure",
        }
    }
}

/// Kiali's `applyThresholds`: failure at or above `failure`, degraded at or above `degraded`,
/// any error at all when `degraded` is 0.
fn threshold(percent: f64, degraded: f64, failure: f64) -> Health {
    if percent <= 0.0 {
        Health::Healthy
    } else if percent >= failure {
        Health::Failure
    } else if percent >= degraded {
        Health::Degraded
    } else {
        Health::Healthy
    }
}

/// A namespace's mutual TLS as its PeerAuthentications and the observed traffic say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MtlsStatus {
    /// STRICT for every workload.
    Enabled,
    /// PERMISSIVE, or STRICT for some workloads only.
    Partial,
    /// DISABLE, or no policy and no mTLS traffic.
    Disabled,
}

impl MtlsStatus {
    pub fn label(self) -> &'static str {
        match self {
            MtlsStatus::Enabled => "mTLS enabled",
            MtlsStatus::Partial => "mTLS partially enabled",
            MtlsStatus::Disabled => "mTLS disabled",
        }
    }
}

/// How many proxies of a namespace are in each sync state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounts {
    pub synced: usize,
    pub stale: usize,
    pub nacked: usize,
}

impl ProxyCounts {
    pub fn connected(&self) -> usize {
        self.synced + self.stale + self.nacked
    }

    pub fn of<'a>(proxies: impl IntoIterator<Item = &'a ProxySummary>) -> ProxyCounts {
        let mut counts = ProxyCounts::default();
        for p in proxies {
            match p.state {
                SyncState::Synced => counts.synced += 1,
                SyncState::Stale => counts.stale += 1,
                SyncState::Nacked => counts.nacked += 1,
                SyncState::Disconnected => {}
            }
        }
        counts
    }
}

/// Where a proxy stands relative to the config the control plane wants it to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    Synced,
    Stale,
    Nacked,
    Disconnected,
}

impl SyncState {
    pub fn label(self) -> &'static str {
        match self {
            SyncState::Synced => "SYNCED",
            SyncState::Stale => "STALE",
            SyncState::Nacked => "NACKED",
            SyncState::Disconnected => "DISCONNECTED",
        }
    }
}

/// One proxy as the push server sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxySummary {
    /// The proxy's id (its pod or host name).
    pub name: String,
    pub namespace: String,
    pub workload: String,
    /// Its inbound address; empty when it serves nothing.
    pub address: String,
    /// The config version it serves (acknowledged), short hash.
    pub config_version: String,
    pub state: SyncState,
    /// RFC 3339 UTC.
    pub connected_since: String,
    /// The reason of the last NACK.
    pub error: Option<String>,
}

/// A stored resource's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    /// Istio's kind name, e.g. `VirtualService`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One resource of the current configuration with its validation messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigResource {
    #[serde(flatten)]
    pub id: ResourceRef,
    pub yaml: String,
    pub messages: Vec<Diagnostic>,
}

impl ConfigResource {
    /// The worst severity among its messages, `None` when it has none.
    pub fn worst(&self) -> Option<Severity> {
        self.messages.iter().map(|d| d.severity).min()
    }
}

/// Which resources to list; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFilter {
    pub kind: Option<String>,
    pub namespace: Option<String>,
}

/// One entry of the config history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionSummary {
    pub number: u64,
    /// RFC 3339 UTC.
    pub time: String,
    pub author: String,
    /// What it did, e.g. `VirtualService shop/reviews configured`, or the author's message.
    pub summary: String,
}

/// What changed between two revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionDiff {
    pub from: u64,
    pub to: u64,
    /// A unified diff of the YAML of every changed resource.
    pub unified: String,
}

/// The outcome of an apply or a rollback: the revision written (`None` when nothing changed)
/// and warnings about what was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub revision: Option<u64>,
    pub changed: Vec<ResourceRef>,
    pub warnings: Vec<Diagnostic>,
}

/// Traffic over the summary window, both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSummary {
    pub inbound: TrafficHealthInputs,
    pub outbound: TrafficHealthInputs,
    /// Latency of inbound requests, milliseconds; `None` without traffic.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub name: String,
    pub namespace: String,
    /// Fully qualified host, e.g. `reviews.shop.svc.cluster.local`.
    pub host: String,
    pub ports: Vec<u16>,
    /// Workloads behind it.
    pub workloads: Vec<String>,
    pub traffic: TrafficSummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSummary {
    pub name: String,
    pub namespace: String,
    /// The `app` and `version` labels, when set.
    pub app: Option<String>,
    pub version: Option<String>,
    pub labels: Vec<(String, String)>,
    /// Connected proxies (instances).
    pub proxies: usize,
    pub traffic: TrafficSummary,
}

/// A trace search, as Jaeger's: times in microseconds since the epoch, durations in
/// microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceQuery {
    pub service: String,
    pub operation: Option<String>,
    /// `key=value` pairs every matching trace has on some span.
    pub tags: Vec<(String, String)>,
    pub min_duration_us: Option<u64>,
    pub max_duration_us: Option<u64>,
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
    pub limit: usize,
}

/// One trace in search results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    /// `service: operation` of the root span.
    pub root_service: String,
    pub root_operation: String,
    pub start_us: i64,
    pub duration_us: u64,
    pub spans: usize,
    pub errors: usize,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub trace_id: String,
    /// In start order.
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub span_id: String,
    pub parent_id: Option<String>,
    pub service: String,
    pub operation: String,
    /// `server`, `client`, ... or empty.
    pub kind: String,
    pub start_us: i64,
    pub duration_us: u64,
    pub error: bool,
    pub tags: Vec<(String, String)>,
    /// The attributes of the process that reported the span (OTLP resource attributes, Jaeger's
    /// "process" tags: `service.version`, `host.name`, `trellis.proxy`, ...).
    #[serde(default)]
    pub resource: Vec<(String, String)>,
    /// Timed events (OTLP span events, Jaeger's "logs"), in time order.
    #[serde(default)]
    pub events: Vec<SpanEvent>,
}

/// Something that happened during a span (an exception, a retry, a message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    /// Microseconds since the epoch.
    pub time_us: i64,
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

/// Which requests a live tap shows; `None` means any. Like `linkerd viz tap`, a tap is rate
/// limited at the source so a busy mesh cannot flood the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapFilter {
    pub namespace: Option<String>,
    pub workload: Option<String>,
    /// At most this many events per second; the rest are dropped and counted
    /// ([`TapEvent::dropped_before`]).
    pub max_per_second: u32,
}

/// Which side of a request the reporting proxy saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TapDirection {
    /// The proxy in front of the destination workload.
    Inbound,
    /// The proxy beside the calling workload.
    Outbound,
}

impl TapDirection {
    pub fn label(self) -> &'static str {
        match self {
            TapDirection::Inbound => "inbound",
            TapDirection::Outbound => "outbound",
        }
    }
}

/// One request seen by a proxy, as its access log record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapEvent {
    /// When the request ended, RFC 3339 UTC.
    pub time: String,
    pub direction: TapDirection,
    /// The calling workload as `name.namespace`, or its address when unknown.
    pub source: String,
    /// The answering workload (or service) as `name.namespace`, or its address.
    pub destination: String,
    pub method: String,
    pub authority: String,
    pub path: String,
    /// HTTP status; 0 when the request got no response (reset, timeout before headers).
    pub status: u16,
    pub duration_ms: f64,
    /// Envoy's response flags (`UF`, `UH`, `URX`, ...), `-` when none, as Istio's access log.
    pub flags: String,
    pub mtls: bool,
    /// Events the source dropped between the previous event and this one (rate limit, a slow
    /// reader); the page adds them up so a person knows the table is not every request.
    #[serde(default)]
    pub dropped_before: u64,
}

/// What a traffic series or a detail page is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TrafficTarget {
    Service { namespace: String, name: String },
    Workload { namespace: String, name: String },
}

impl TrafficTarget {
    pub fn namespace(&self) -> &str {
        match self {
            TrafficTarget::Service { namespace, .. }
            | TrafficTarget::Workload { namespace, .. } => namespace,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            TrafficTarget::Service { name, .. } | TrafficTarget::Workload { name, .. } => name,
        }
    }
}

/// Requests arriving at the target (inbound) or sent by it (outbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A request for a traffic time series, as a Prometheus range query: one point per `step`
/// over the `window` ending at `end_us` (microseconds since the epoch; `None`: now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesQuery {
    pub target: TrafficTarget,
    pub direction: Direction,
    pub window: std::time::Duration,
    pub step: std::time::Duration,
    pub end_us: Option<i64>,
}

/// One step of a traffic series. Latencies are `None` when the step saw no requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// The end of the step, microseconds since the epoch.
    pub t_us: i64,
    /// Requests per second over the step.
    pub request_rate: f64,
    /// 5xx and gRPC errors, in percent (0–100), as [`TrafficHealthInputs::error_percent`].
    pub error_percent: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A traffic series over `[start_us, end_us]`. A step with no stored data (the collector was
/// down, the history does not reach back so far) has no point: charts draw a gap there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSeries {
    pub start_us: i64,
    pub end_us: i64,
    pub step: std::time::Duration,
    /// In time order.
    pub points: Vec<SeriesPoint>,
}

/// The other end of a traffic edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PeerKind {
    Service,
    Workload,
    /// Traffic from outside the mesh or from a proxy-less client.
    Unknown,
}

/// One row of a detail page's inbound or outbound traffic table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficEdge {
    pub peer_kind: PeerKind,
    pub peer_namespace: String,
    pub peer_name: String,
    /// `http`, `grpc` or `tcp`.
    pub protocol: String,
    pub traffic: TrafficHealthInputs,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Share of the requests sent over mutual TLS, in percent.
    pub mtls_percent: f64,
}

/// A service's page: its summary and the traffic edges on both sides (inbound: the workloads
/// calling it; outbound: the workloads behind it that answered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDetail {
    pub summary: ServiceSummary,
    pub inbound: Vec<TrafficEdge>,
    pub outbound: Vec<TrafficEdge>,
}

/// A workload's page: its summary (labels included), the services that select it, its proxies
/// and the traffic edges on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadDetail {
    pub summary: WorkloadSummary,
    /// Names of the services (same namespace) whose selector matches it.
    pub services: Vec<String>,
    pub proxies: Vec<ProxySummary>,
    pub inbound: Vec<TrafficEdge>,
    pub outbound: Vec<TrafficEdge>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rate: f64, e5: f64, e4: f64, grpc: f64) -> TrafficHealthInputs {
        TrafficHealthInputs {
            request_rate: rate,
            http_5xx_percent: e5,
            http_4xx_percent: e4,
            grpc_error_percent: grpc,
        }
    }

    #[test]
    fn kiali_default_thresholds() {
        assert_eq!(Health::of(&t(0.0, 50.0, 0.0, 0.0)), Health::NoTraffic);
        assert_eq!(Health::of(&t(5.0, 0.0, 0.0, 0.0)), Health::Healthy);
        assert_eq!(Health::of(&t(5.0, 0.1, 0.0, 0.0)), Health::Degraded);
        assert_eq!(Health::of(&t(5.0, 10.0, 0.0, 0.0)), Health::Failure);
        assert_eq!(Health::of(&t(5.0, 0.0, 9.9, 0.0)), Health::Healthy);
        assert_eq!(Health::of(&t(5.0, 0.0, 10.0, 0.0)), Health::Degraded);
        assert_eq!(Health::of(&t(5.0, 0.0, 20.0, 0.0)), Health::Failure);
        assert_eq!(Health::of(&t(5.0, 0.0, 0.0, 3.0)), Health::Degraded);
    }
}
