//! The proxy's own configuration model.
//!
//! The compiler turns Istio resources plus the service registry into one [`ProxyConfig`] per proxy;
//! the proxy executes it as is. Standalone proxies compile it themselves from YAML, and the control
//! plane pushes the very same model, so there is one meaning of "config" in the whole mesh.
//! Everything is already resolved here: hosts are fully qualified, durations are milliseconds,
//! defaults are filled in, and cluster names follow Envoy's `outbound|PORT|SUBSET|HOST` spelling so
//! they read the same in `/config_dump`, `/clusters` and telemetry.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything one proxy needs to route traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// Opaque version of this config (a content hash or a control-plane revision).
    pub version: String,
    /// Who the proxy is; rules with `sourceLabels`/`sourceNamespace` were already filtered by it.
    pub node: NodeIdentity,
    /// Services this proxy can reach, each with its routes.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Upstream destinations referenced by routes, each a service port (and subset).
    pub clusters: Vec<Cluster>,
    /// What happens to traffic for a destination no virtual host knows.
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// The AuthorizationPolicies that apply to this workload's inbound traffic, compiled.
    #[serde(default)]
    pub authorization: crate::authz::PolicySet,
    /// Which inbound connections must, may or must not be mutual TLS (PeerAuthentication).
    #[serde(default)]
    pub inbound_mtls: InboundMtls,
    /// Local rate limits (Trellis's LocalRateLimit): on this workload's inbound requests and on
    /// the routes it calls through.
    #[serde(default)]
    pub rate_limits: RateLimits,
}

impl ProxyConfig {
    /// Puts virtual hosts and clusters in name order. Compiled and pushed configs are both
    /// canonical, so a config assembled from pushed pieces equals the one compiled in one go.
    pub fn canonicalize(&mut self) {
        self.virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
        self.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// A stable content hash of everything but `version` and `node`: equal routing gives equal
    /// versions across processes and machines, whichever proxy it was compiled for.
    pub fn content_version(&self) -> String {
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
        let parts = (
            &self.virtual_hosts,
            &self.clusters,
            &self.outbound_traffic_policy,
            &self.authorization,
            &self.inbound_mtls,
            &self.rate_limits,
        );
        match serde_json::to_vec(&parts) {
            Ok(bytes) => {
                hasher.update(&bytes);
                format!("{:016x}", hasher.digest())
            }
            Err(_) => String::from("0"),
        }
    }

    /// The parts of a config that are neither a virtual host nor a cluster.
    pub fn meta(&self) -> ProxyMeta {
        ProxyMeta {
            node: self.node.clone(),
            outbound_traffic_policy: self.outbound_traffic_policy,
            authorization: self.authorization.clone(),
            inbound_mtls: self.inbound_mtls.clone(),
            rate_limits: self.rate_limits.clone(),
        }
    }
}

/// What the control plane pushes besides virtual hosts and clusters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyMeta {
    pub node: NodeIdentity,
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    #[serde(default)]
    pub authorization: crate::authz::PolicySet,
    #[serde(default)]
    pub inbound_mtls: InboundMtls,
    #[serde(default)]
    pub rate_limits: RateLimits,
}

/// The local rate limits one proxy enforces, resolved from LocalRateLimit resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// The limit on requests to this workload (one bucket for the whole proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<RateLimit>,
    /// Limits on outbound routes: by virtual host name, then by http route name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, BTreeMap<String, RateLimit>>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.inbound.is_none() && self.routes.is_empty()
    }

    /// The limit on the http route `route` of virtual host `virtual_host`.
    pub fn for_route(&self, virtual_host: &str, route: &str) -> Option<&RateLimit> {
        self.routes.get(virtual_host)?.get(route)
    }
}

/// One token bucket and the name it is reported under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateLimit {
    /// Inbound: the LocalRateLimit's `namespace/name`; a route: `namespace/virtualservice/route`.
    /// One bucket per name: every virtual host of a VirtualService route shares it.
    pub name: String,
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval_ms: u64,
}

/// The PeerAuthentication that applies to a workload, resolved: the mode of every inbound port,
/// with the exceptions a workload policy makes for some of them. The default (no policy anywhere)
/// is PERMISSIVE, as in Istio.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMtls {
    /// The mode of ports without a port-level setting.
    #[serde(default)]
    pub mode: MtlsMode,
    /// Modes by the workload's (application's) port, from `portLevelMtls`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, MtlsMode>,
}

impl InboundMtls {
    /// The mode for inbound traffic to the application's `port`.
    pub fn mode_for(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }
}

/// A resolved mutual TLS mode (`UNSET` has already been replaced by what it inherits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Only mutual TLS from the mesh is accepted; plaintext is refused.
    Strict,
    /// Mesh mutual TLS is terminated; anything else passes through as plaintext.
    #[default]
    Permissive,
    /// No termination: everything passes through as it arrives.
    Disable,
}

/// The identity of the workload a proxy runs beside.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub workload: String,
    pub namespace: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
}

/// Istio's `outboundTrafficPolicy.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficPolicy {
    /// Unknown destinations reached by transparent capture pass through to their original address.
    #[default]
    AllowAny,
    /// Unknown destinations are refused (502 for HTTP, connection closed for TCP).
    RegistryOnly,
}

/// Application protocol of a service port, from the port's `protocol` field (Istio's rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Protocol {
    /// Not declared: detect HTTP/1, HTTP/2 or opaque TCP from the first bytes.
    #[default]
    Unspecified,
    /// HTTP/1.1 (HTTP/2 prior knowledge is still accepted from the client).
    Http,
    /// HTTP/2 end to end.
    Http2,
    /// gRPC (HTTP/2 end to end).
    Grpc,
    /// Opaque bytes: HTTPS, TLS, TCP, MONGO, MYSQL, REDIS ports.
    Tcp,
}

impl Protocol {
    /// Whether requests on this port are handled as HTTP (after detection for `Unspecified`).
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }
}

/// One service port as the proxy sees it: the names that reach it and what to do with its traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VirtualHost {
    /// `host:port`, e.g. `reviews.default.svc.cluster.local:9080`.
    pub name: String,
    /// Fully qualified service host (may be a wildcard such as `*.example.com`).
    pub service: String,
    pub port: u16,
    pub protocol: Protocol,
    /// Lower-case names an HTTP `Host`/`:authority` may use to reach this host: `name` and
    /// `name:port` forms, including the short names valid in the proxy's namespace. A leading `*.`
    /// is a wildcard. Port-less names are listed only for the port a bare name should reach.
    pub domains: Vec<String>,
    /// Service addresses (VIPs) and endpoint addresses, for routing by original destination.
    pub addresses: Vec<String>,
    /// HTTP rules in order; the first match wins. Always ends with a route when the service has no
    /// VirtualService (the default route to the whole service).
    pub http_routes: Vec<HttpRoute>,
    /// TCP rules in order; the first match wins.
    pub tcp_routes: Vec<TcpRoute>,
}

/// One VirtualService `http` rule, compiled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpRoute {
    /// Rule name (`name` field, or `<vs namespace>/<vs name>[index]`), reported in telemetry.
    pub name: String,
    /// Alternatives; any may match. Empty means every request matches.
    pub matches: Vec<RequestMatch>,
    pub action: RouteAction,
    pub rewrite: Option<Rewrite>,
    pub headers: HeaderOperations,
    /// Whole-request timeout covering all retries; `None` means no timeout (Istio's default).
    pub timeout_ms: Option<u64>,
    pub retries: Option<RetryPolicy>,
    pub fault: Option<Fault>,
    pub mirrors: Vec<Mirror>,
    pub cors: Option<CorsPolicy>,
}

/// One `match` block: every condition present must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestMatch {
    pub name: Option<String>,
    /// Matched against the path without the query string.
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    /// Header names are lower case.
    pub headers: Vec<HeaderMatch>,
    /// Each listed header must NOT match (a `None` matcher: must be absent).
    pub without_headers: Vec<HeaderMatch>,
    pub query_params: Vec<QueryParamMatch>,
    /// The destination port the request was sent to.
    pub port: Option<u16>,
    /// `uri` compares case-insensitively.
    pub ignore_uri_case: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderMatch {
    pub name: String,
    /// `None`: the header only has to be present.
    pub value: Option<StringMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryParamMatch {
    pub name: String,
    /// `None`: the parameter only has to be present.
    pub value: Option<StringMatch>,
}

/// Istio's StringMatch. Regexes are RE2 syntax and must match the whole value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    /// Send to one of the weighted destinations.
    Forward(Vec<WeightedDestination>),
    Redirect(Redirect),
    DirectResponse(DirectResponse),
}

impl Default for RouteAction {
    fn default() -> Self {
        RouteAction::Forward(Vec::new())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WeightedDestination {
    /// Name of a [`Cluster`] in the same config.
    pub cluster: String,
    /// Relative weight; a route with one destination has weight 100.
    pub weight: u32,
    /// Per-destination header operations, applied after the route's own.
    pub headers: HeaderOperations,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Redirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u16>,
    pub scheme: Option<String>,
    /// Defaults to 301.
    pub code: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectResponse {
    pub status: u16,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    /// Replaces the matched prefix when the rule matched by `uri.prefix`, else the whole path.
    pub uri: Option<String>,
    pub authority: Option<String>,
    /// `uriRegexRewrite`: regex (RE2) and its replacement (`\1` style groups).
    pub uri_regex: Option<RegexRewrite>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegexRewrite {
    pub pattern: String,
    pub replacement: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeaderOperations {
    pub request: HeaderMutation,
    pub response: HeaderMutation,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeaderMutation {
    /// Replace any existing value.
    pub set: Vec<(String, String)>,
    /// Append a value, keeping existing ones.
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderMutation {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

impl HeaderOperations {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first try (Istio's `attempts`).
    pub attempts: u32,
    pub per_try_timeout_ms: Option<u64>,
    pub retry_on: RetryOn,
}

/// Parsed `retryOn`, Envoy's vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryOn {
    pub five_xx: bool,
    pub gateway_error: bool,
    pub connect_failure: bool,
    pub reset: bool,
    pub refused_stream: bool,
    pub retriable_4xx: bool,
    /// Numeric codes listed in `retryOn` (`retriable-status-codes`).
    pub status_codes: Vec<u16>,
    /// gRPC status codes: cancelled=1, deadline-exceeded=4, resource-exhausted=8, internal=13,
    /// unavailable=14.
    pub grpc_codes: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultDelay {
    pub fixed_delay_ms: u64,
    /// 0.0..=100.0; Istio's default when absent is 100.
    pub percentage: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultAbort {
    pub status: AbortStatus,
    /// 0.0..=100.0; Istio's default when absent is 100.
    pub percentage: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortStatus {
    Http(u16),
    Grpc(u32),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mirror {
    pub cluster: String,
    /// 0.0..=100.0; 100 when absent.
    pub percentage: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorsPolicy {
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_secs: Option<u64>,
    pub allow_credentials: Option<bool>,
}

/// One VirtualService `tcp` rule (or the default route of a TCP service).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpRoute {
    /// Any may match; empty matches every connection.
    pub matches: Vec<TcpMatch>,
    pub destinations: Vec<WeightedDestination>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpMatch {
    pub port: Option<u16>,
    /// CIDRs or plain addresses of the original destination.
    pub destination_subnets: Vec<String>,
}

/// An upstream destination: one port of one service, optionally narrowed to a subset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `outbound|PORT|SUBSET|HOST` (SUBSET empty when none).
    pub name: String,
    pub service: String,
    pub port: u16,
    pub subset: Option<String>,
    pub protocol: Protocol,
    pub load_balancer: LoadBalancer,
    pub connection_pool: ConnectionPool,
    pub outlier_detection: Option<OutlierDetection>,
    /// Endpoints already narrowed to the subset's labels.
    pub endpoints: Vec<Endpoint>,
    /// How connections to the endpoints are secured (DestinationRule `tls`, or auto mTLS).
    /// Boxed: rarely read per request, and it keeps the cluster small.
    #[serde(default)]
    pub tls: Box<ClusterTls>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// IP address, or a DNS name resolved at connect time (ServiceEntry `resolution: DNS`).
    pub address: String,
    pub port: u16,
    pub labels: BTreeMap<String, String>,
    /// Relative weight, 1 when not given.
    pub weight: u32,
    /// The SPIFFE ID (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`) the workload behind this
    /// endpoint presents, when its service account is known: what mutual TLS expects of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Auto mTLS speaks mutual TLS to this endpoint: a sidecar stands in front of it (Istio's
    /// `security.istio.io/tlsMode: istio` label) and its workload's PeerAuthentication does not
    /// DISABLE mutual TLS on the endpoint's port (Istio's endpoint builder drops the label then,
    /// as the sidecar would not terminate TLS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mesh: bool,
}

/// Istio's default trust domain (MeshConfig `trustDomain`): the one compiled in when none is
/// configured, and the name that stands for the local trust domain in AuthorizationPolicy
/// principals.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// The label by which Istio marks a workload that has a sidecar (value `istio`).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// The SPIFFE ID of a service account in the default trust domain:
/// `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
pub fn spiffe_id(namespace: &str, service_account: &str) -> String {
    spiffe_id_in(TRUST_DOMAIN, namespace, service_account)
}

/// The SPIFFE ID of a service account: `spiffe://<trust_domain>/ns/<ns>/sa/<sa>`.
pub fn spiffe_id_in(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// Istio's `ClientTLSSettings` for one cluster, after the DestinationRule's precedence and
/// defaults: how the proxy secures connections to the cluster's endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterTls {
    pub mode: ClientTlsMode,
    /// The server name sent; for mesh mutual TLS Istio's `outbound_.PORT_.SUBSET_.HOST` when
    /// empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Identities the server may present. Mesh mutual TLS: SPIFFE IDs, replacing each
    /// endpoint's own identity when given. SIMPLE/MUTUAL: DNS or URI names in the certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// SIMPLE/MUTUAL: PEM file of the CAs that sign the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// MUTUAL: PEM file of the certificate chain presented to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// MUTUAL: PEM file of the key of `client_certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// SIMPLE/MUTUAL: accept any server certificate (Istio's `insecureSkipVerify`), for test
    /// servers with self-signed certificates; the connection is encrypted but not authenticated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

impl ClusterTls {
    /// The mode in force for one endpoint: AUTO is mesh mutual TLS to endpoints with a sidecar
    /// and plaintext to the rest; the other modes apply to every endpoint.
    pub fn mode_for(&self, endpoint: &Endpoint) -> ClientTlsMode {
        match self.mode {
            ClientTlsMode::Auto if endpoint.mesh => ClientTlsMode::IstioMutual,
            ClientTlsMode::Auto => ClientTlsMode::Disable,
            mode => mode,
        }
    }
}

/// Istio's `ClientTLSSettings.TLSmode`, plus AUTO for "no `tls` given" (auto mTLS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    /// Auto mTLS: decided per endpoint by [`Endpoint::mesh`].
    #[default]
    Auto,
    /// Plaintext.
    Disable,
    /// Mutual TLS with the workload certificate, verifying the server's SPIFFE ID.
    IstioMutual,
    /// TLS origination: the server is verified, no client certificate.
    Simple,
    /// TLS origination with a client certificate from files.
    Mutual,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    RoundRobin,
    /// Power of two choices over active requests (Istio's default).
    #[default]
    LeastRequest,
    Random,
    /// Forward to the original destination address instead of an endpoint.
    Passthrough,
    ConsistentHash(ConsistentHash),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsistentHash {
    pub key: HashKey,
    pub algorithm: HashAlgorithm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// Lower-case header name.
    Header(String),
    Cookie {
        name: String,
        path: Option<String>,
        /// When set and the cookie is absent, the proxy generates one and sets it on the response.
        ttl_ms: Option<u64>,
    },
    SourceIp,
    QueryParameter(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashAlgorithm {
    /// Ketama-style ring; default minimum ring size 1024.
    RingHash { minimum_ring_size: u64 },
    /// Maglev lookup table; size must be prime, default 65537.
    Maglev { table_size: u64 },
}

/// Envoy circuit-breaker limits from `connectionPool`. `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionPool {
    pub max_connections: Option<u32>,
    pub connect_timeout_ms: u64,
    pub http1_max_pending_requests: Option<u32>,
    pub http2_max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<u32>,
    pub idle_timeout_ms: Option<u64>,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        ConnectionPool {
            max_connections: None,
            connect_timeout_ms: 10_000,
            http1_max_pending_requests: None,
            http2_max_requests: None,
            max_requests_per_connection: None,
            max_retries: None,
            idle_timeout_ms: None,
        }
    }
}

/// `outlierDetection`, with Istio's defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierDetection {
    /// Eject after this many consecutive 5xx (502/503/504 and locally generated failures count).
    pub consecutive_5xx: Option<u32>,
    /// Eject after this many consecutive 502/503/504 or connect failures.
    pub consecutive_gateway_errors: Option<u32>,
    pub interval_ms: u64,
    /// Ejection lasts this times the number of times the endpoint has been ejected.
    pub base_ejection_time_ms: u64,
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints, ejection is ignored (panic mode); 0 disables.
    pub min_health_percent: u32,
}

/// Envoy's cluster name for a service port and optional subset.
pub fn cluster_name(service: &str, port: u16, subset: Option<&str>) -> String {
    format!("outbound|{port}|{}|{service}", subset.unwrap_or(""))
}
