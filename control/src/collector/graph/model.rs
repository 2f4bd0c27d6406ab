//! What the graph is made of: the finest edge the collector keeps (one source, the destination
//! service and workload, one protocol) and the numbers an edge carries for a stretch of time.
//!
//! Graph types (workload, app, versioned app, service) are views computed from these edges at
//! query time, so one set of counters answers every view.

use serde::{Deserialize, Serialize};

/// Istio's default request duration buckets (Envoy's defaults), in milliseconds. Latency
/// histograms are kept in these buckets whatever bounds a proxy sends (see [`rebucket`]).
pub const LATENCY_BOUNDS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Buckets of a latency histogram: one per bound plus +Inf, non-cumulative counts.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Non-cumulative counts per [`LATENCY_BOUNDS_MS`] bucket (the last is +Inf).
pub type Latency = [u64; LATENCY_BUCKETS];

/// The index in [`LATENCY_BOUNDS_MS`] (or the +Inf bucket) that holds values up to `upper`.
pub fn rebucket(upper: f64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|b| upper <= *b)
        .unwrap_or(LATENCY_BUCKETS - 1)
}

/// The protocol of an edge, as Kiali names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// A workload as Istio's labels name it (`*_workload`, `*_workload_namespace`, canonical service
/// and revision as app and version, as Kiali reads them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub app: String,
    pub version: String,
}

/// A service: `destination_service_namespace` and `destination_service_name` (the host when the
/// name is not known, as for external services), or a traced application's `service.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
}

/// Where an edge's traffic comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// Outside the mesh, as the destination proxy saw it (`source_workload="unknown"`).
    Unknown,
    Workload(Workload),
    /// A service known from spans only (graph from traces).
    Service(Service),
}

/// The finest edge kept: source, destination service and workload (either may be unknown), and
/// protocol. Edges from spans have no destination workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeKey {
    pub protocol: Protocol,
    pub source: Source,
    pub service: Option<Service>,
    pub destination: Option<Workload>,
    #[serde(default)]
    pub from_traces: bool,
}

impl EdgeKey {
    /// Every namespace the edge touches (for the namespace filter).
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        let source = match &self.source {
            Source::Unknown => None,
            Source::Workload(w) => Some(w.namespace.as_str()),
            Source::Service(s) => Some(s.namespace.as_str()),
        };
        source
            .into_iter()
            .chain(self.service.iter().map(|s| s.namespace.as_str()))
            .chain(self.destination.iter().map(|w| w.namespace.as_str()))
    }
}

/// A response code as kept per edge: the HTTP status for HTTP, the gRPC status for gRPC;
/// [`Code::NONE`] when not known (Istio's "-"/"unknown", TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u16);

impl Code {
    pub const NONE: Code = Code(u16::MAX);

    /// Parses a label value; anything that is not a number is "not known".
    pub fn parse(text: &str) -> Code {
        text.parse::<u16>()
            .ok()
            .filter(|c| *c != u16::MAX)
            .map(Code)
            .unwrap_or(Code::NONE)
    }

    /// The code as Kiali shows it ("-" when not known).
    pub fn label(self) -> String {
        if self == Code::NONE {
            "-".to_string()
        } else {
            self.0.to_string()
        }
    }
}

/// The numbers of one edge over some stretch of time (a slot, a minute, a query's window).
/// "Requests" are HTTP/gRPC requests, or TCP connections opened; `mtls` counts the part of the
/// rate basis (requests; bytes for TCP) that was mutual TLS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub requests: f64,
    pub errors: f64,
    pub mtls: f64,
    /// Bytes from source to destination (HTTP request bytes; TCP bytes received by the server).
    pub request_bytes: f64,
    /// Bytes from destination to source (HTTP response bytes; TCP bytes sent by the server).
    pub response_bytes: f64,
    /// Requests per response code, sorted by code.
    pub codes: Vec<(Code, f64)>,
    /// Latency histogram, when any latency was recorded.
    pub latency: Option<Box<Latency>>,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.mtls += other.mtls;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
        for (code, n) in &other.codes {
            self.add_code(*code, *n);
        }
        if let Some(theirs) = &other.latency {
            let mine = self
                .latency
                .get_or_insert_with(|| Box::new([0; LATENCY_BUCKETS]));
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m += t;
            }
        }
    }

    /// Counts `n` requests with `code`.
    pub fn add_code(&mut self, code: Code, n: f64) {
        match self.codes.binary_search_by_key(&code, |(c, _)| *c) {
            Ok(i) => self.codes[i].1 += n,
            Err(i) => self.codes.insert(i, (code, n)),
        }
    }

    /// Adds `n` observations to latency bucket `bucket`.
    pub fn add_latency(&mut self, bucket: usize, n: u64) {
        if n == 0 || bucket >= LATENCY_BUCKETS {
            return;
        }
        self.latency
            .get_or_insert_with(|| Box::new([0; LATENCY_BUCKETS]))[bucket] += n;
    }

    /// The basis of rates and shares: requests, or bytes both ways for TCP.
    pub fn volume(&self, protocol: Protocol) -> f64 {
        match protocol {
            Protocol::Tcp => self.request_bytes + self.response_bytes,
            _ => self.requests,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0.0
            && self.mtls == 0.0
            && self.request_bytes == 0.0
            && self.response_bytes == 0.0
            && self.latency.is_none()
            && self.codes.is_empty()
    }
}

/// Whether a response is an error as the graph counts them: HTTP 5xx; for gRPC a non-OK status.
pub fn is_error(protocol: Protocol, code: Code) -> bool {
    match protocol {
        Protocol::Http => (500..600).contains(&code.0) && code != Code::NONE,
        Protocol::Grpc => code != Code::NONE && code.0 != 0,
        Protocol::Tcp => false,
    }
}

/// The gRPC status a response without one stands for, from its HTTP status (gRPC's
/// "HTTP to gRPC status code mapping"): used when `grpc_response_status` is not known.
pub fn grpc_status_from_http(http: Code) -> Code {
    Code(match http.0 {
        200 => 0,
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ if http == Code::NONE => return Code::NONE,
        _ => 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebucket_maps_upper_bounds_to_envoy_buckets() {
        assert_eq!(rebucket(0.5), 0);
        assert_eq!(rebucket(1.0), 1);
        assert_eq!(rebucket(3.0), 2);
        assert_eq!(rebucket(3_600_000.0), 18);
        assert_eq!(rebucket(f64::INFINITY), 19);
    }

    #[test]
    fn merge_adds_codes_and_buckets() {
        let mut a = Stats::default();
        a.add_code(Code(200), 3.0);
        a.add_latency(2, 3);
        let mut b = Stats::default();
        b.add_code(Code(503), 1.0);
        b.add_code(Code(200), 1.0);
        b.add_latency(2, 1);
        b.add_latency(5, 2);
        a.merge(&b);
        assert_eq!(a.codes, vec![(Code(200), 4.0), (Code(503), 1.0)]);
        let l = a.latency.unwrap();
        assert_eq!((l[2], l[5]), (4, 2));
    }

    #[test]
    fn errors_follow_protocol() {
        assert!(is_error(Protocol::Http, Code(503)));
        assert!(!is_error(Protocol::Http, Code(404)));
        assert!(!is_error(Protocol::Http, Code::NONE));
        assert!(is_error(Protocol::Grpc, Code(14)));
        assert!(!is_error(Protocol::Grpc, Code(0)));
        assert_eq!(grpc_status_from_http(Code(503)), Code(14));
    }
}
