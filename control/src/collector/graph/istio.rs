//! Istio's standard metrics as proxies push them over OTLP: which names count, and what one
//! series (one label set) adds to the graph, worked out once per series as Kiali reads them.
//!
//! Edges follow Kiali: `reporter="source"` series for traffic from mesh workloads (the client's
//! proxy saw the whole request, retries and local replies included), and `reporter="destination"`
//! series only for traffic whose source is `unknown` (from outside the mesh, where no client proxy
//! reports). App and version are the canonical service and revision, falling back to the
//! `app`/`version` labels.

use super::model::{
    Code, EdgeKey, Protocol, Service, Source, Workload, grpc_status_from_http, is_error,
};
use std::sync::Arc;

/// One label: name and value, shared between series (values repeat across thousands of them).
pub type Label = (Arc<str>, Arc<str>);

/// The Istio metrics the collector understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IstioMetric {
    Requests,
    Duration,
    RequestBytes,
    ResponseBytes,
    RequestMessages,
    ResponseMessages,
    TcpSent,
    TcpReceived,
    TcpOpened,
    TcpClosed,
}

impl IstioMetric {
    pub const ALL: [IstioMetric; 10] = [
        IstioMetric::Requests,
        IstioMetric::Duration,
        IstioMetric::RequestBytes,
        IstioMetric::ResponseBytes,
        IstioMetric::RequestMessages,
        IstioMetric::ResponseMessages,
        IstioMetric::TcpSent,
        IstioMetric::TcpReceived,
        IstioMetric::TcpOpened,
        IstioMetric::TcpClosed,
    ];

    /// The metric an OTLP name stands for; counters are accepted with or without `_total`.
    pub fn from_name(name: &str) -> Option<IstioMetric> {
        let base = name.strip_suffix("_total").unwrap_or(name);
        IstioMetric::ALL.into_iter().find(|m| m.base_name() == base)
    }

    /// The Prometheus name without the counter suffix (`_total` is added by the encoder).
    pub fn base_name(self) -> &'static str {
        match self {
            IstioMetric::Requests => "istio_requests",
            IstioMetric::Duration => "istio_request_duration_milliseconds",
            IstioMetric::RequestBytes => "istio_request_bytes",
            IstioMetric::ResponseBytes => "istio_response_bytes",
            IstioMetric::RequestMessages => "istio_request_messages",
            IstioMetric::ResponseMessages => "istio_response_messages",
            IstioMetric::TcpSent => "istio_tcp_sent_bytes",
            IstioMetric::TcpReceived => "istio_tcp_received_bytes",
            IstioMetric::TcpOpened => "istio_tcp_connections_opened",
            IstioMetric::TcpClosed => "istio_tcp_connections_closed",
        }
    }

    pub fn is_histogram(self) -> bool {
        matches!(
            self,
            IstioMetric::Duration | IstioMetric::RequestBytes | IstioMetric::ResponseBytes
        )
    }

    pub fn help(self) -> &'static str {
        match self {
            IstioMetric::Requests => "Requests, summed over the mesh's proxies.",
            IstioMetric::Duration => {
                "Request duration in milliseconds, summed over the mesh's proxies."
            }
            IstioMetric::RequestBytes => "HTTP request body sizes, summed over the mesh's proxies.",
            IstioMetric::ResponseBytes => {
                "HTTP response body sizes, summed over the mesh's proxies."
            }
            IstioMetric::RequestMessages => {
                "gRPC messages sent by clients, summed over the mesh's proxies."
            }
            IstioMetric::ResponseMessages => {
                "gRPC messages sent by servers, summed over the mesh's proxies."
            }
            IstioMetric::TcpSent => {
                "Bytes sent in responses on TCP connections, summed over the mesh's proxies."
            }
            IstioMetric::TcpReceived => {
                "Bytes received in requests on TCP connections, summed over the mesh's proxies."
            }
            IstioMetric::TcpOpened => "TCP connections opened, summed over the mesh's proxies.",
            IstioMetric::TcpClosed => "TCP connections closed, summed over the mesh's proxies.",
        }
    }
}

/// What a series' deltas add to its edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Requests {
        code: Code,
        error: bool,
        mtls: bool,
    },
    Latency,
    RequestBytes,
    ResponseBytes,
    /// TCP bytes from client to server (`istio_tcp_received_bytes_total`).
    TcpRequestBytes {
        mtls: bool,
    },
    /// TCP bytes from server to client (`istio_tcp_sent_bytes_total`).
    TcpResponseBytes {
        mtls: bool,
    },
    TcpOpened,
    /// The destination's report that mutual TLS carried these requests (TCP: bytes) of an edge
    /// whose traffic the source reports.
    Mtls,
}

/// A label value, or `None` when empty or "unknown".
fn known<'a>(labels: &'a [Label], name: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(k, _)| (**k).cmp(name))
        .ok()
        .map(|i| &*labels[i].1)
        .filter(|v| !v.is_empty() && *v != "unknown")
}

fn workload(labels: &[Label], side: &str) -> Option<Workload> {
    let get = |suffix: &str| known(labels, &format!("{side}_{suffix}"));
    let name = get("workload")?;
    let unknown = || "unknown".to_string();
    Some(Workload {
        namespace: get("workload_namespace").map_or_else(unknown, str::to_string),
        name: name.to_string(),
        app: get("canonical_service")
            .or_else(|| get("app"))
            .map_or_else(unknown, str::to_string),
        version: get("canonical_revision")
            .or_else(|| get("version"))
            .map_or_else(unknown, str::to_string),
    })
}

fn service(labels: &[Label]) -> Option<Service> {
    let name = known(labels, "destination_service_name")
        .or_else(|| known(labels, "destination_service"))?;
    Some(Service {
        namespace: known(labels, "destination_service_namespace")
            .unwrap_or("unknown")
            .to_string(),
        name: name.to_string(),
    })
}

/// The edge and role of a series with `labels` (sorted by name), or `None` when the series does
/// not make an edge (unknown destination, connections closed, gRPC message counts).
///
/// An edge's traffic comes from the source's reports when the source is in the mesh, else from the
/// destination's. Whether mutual TLS carried it comes from the destination's reports, as Kiali
/// reads it: only the server side knows (a source proxy reports `unknown`, in Istio and here).
pub fn classify(metric: IstioMetric, labels: &[Label]) -> Option<(EdgeKey, Role)> {
    let source = workload(labels, "source");
    let reporter = known(labels, "reporter")?;
    let mtls = reporter == "destination"
        && known(labels, "connection_security_policy") == Some("mutual_tls");
    let security_only = match (reporter, &source) {
        ("source", Some(_)) => false,
        ("destination", None) => false,
        ("destination", Some(_)) => true,
        _ => return None,
    };
    let tcp = matches!(
        metric,
        IstioMetric::TcpSent | IstioMetric::TcpReceived | IstioMetric::TcpOpened
    );
    let protocol = if tcp {
        Protocol::Tcp
    } else if known(labels, "request_protocol") == Some("grpc") {
        Protocol::Grpc
    } else {
        Protocol::Http
    };
    let role = match metric {
        IstioMetric::Requests => {
            let http = Code::parse(known(labels, "response_code").unwrap_or("-"));
            let code = match protocol {
                Protocol::Grpc => match known(labels, "grpc_response_status").map(Code::parse) {
                    Some(c) if c != Code::NONE => c,
                    _ => grpc_status_from_http(http),
                },
                _ => http,
            };
            Role::Requests {
                code,
                error: is_error(protocol, code),
                mtls,
            }
        }
        IstioMetric::Duration => Role::Latency,
        IstioMetric::RequestBytes => Role::RequestBytes,
        IstioMetric::ResponseBytes => Role::ResponseBytes,
        IstioMetric::TcpReceived => Role::TcpRequestBytes { mtls },
        IstioMetric::TcpSent => Role::TcpResponseBytes { mtls },
        IstioMetric::TcpOpened => Role::TcpOpened,
        IstioMetric::TcpClosed | IstioMetric::RequestMessages | IstioMetric::ResponseMessages => {
            return None;
        }
    };
    let role = match (security_only, role) {
        (false, role) => role,
        (true, Role::Requests { mtls: true, .. })
        | (true, Role::TcpRequestBytes { mtls: true })
        | (true, Role::TcpResponseBytes { mtls: true }) => Role::Mtls,
        (true, _) => return None,
    };
    let service = service(labels);
    let destination = workload(labels, "destination");
    if service.is_none() && destination.is_none() {
        return None;
    }
    let key = EdgeKey {
        protocol,
        source: source.map_or(Source::Unknown, Source::Workload),
        service,
        destination,
        from_traces: false,
    };
    Some((key, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        let mut v: Vec<Label> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn names_with_and_without_total() {
        assert_eq!(
            IstioMetric::from_name("istio_requests_total"),
            Some(IstioMetric::Requests)
        );
        assert_eq!(
            IstioMetric::from_name("istio_requests"),
            Some(IstioMetric::Requests)
        );
        assert_eq!(
            IstioMetric::from_name("istio_request_duration_milliseconds"),
            Some(IstioMetric::Duration)
        );
        assert_eq!(IstioMetric::from_name("http_requests_total"), None);
    }

    #[test]
    fn reporters_as_kiali_reads_them() {
        let base = [
            ("source_workload", "productpage-v1"),
            ("source_workload_namespace", "default"),
            ("source_canonical_service", "productpage"),
            ("source_canonical_revision", "v1"),
            ("destination_service_name", "reviews"),
            ("destination_service_namespace", "default"),
            ("destination_workload", "reviews-v2"),
            ("destination_workload_namespace", "default"),
            ("request_protocol", "grpc"),
            ("response_code", "200"),
            ("grpc_response_status", "14"),
            ("connection_security_policy", "mutual_tls"),
        ];
        let mut src = base.to_vec();
        src.push(("reporter", "source"));
        let (key, role) = classify(IstioMetric::Requests, &labels(&src)).unwrap();
        assert_eq!(key.protocol, Protocol::Grpc);
        // The source's traffic, but not its word on mutual TLS.
        assert_eq!(
            role,
            Role::Requests {
                code: Code(14),
                error: true,
                mtls: false
            }
        );
        // The destination's report of the same calls adds only that mutual TLS carried them, to
        // the same edge.
        let mut dst = base.to_vec();
        dst.push(("reporter", "destination"));
        let (dst_key, dst_role) = classify(IstioMetric::Requests, &labels(&dst)).unwrap();
        assert_eq!((dst_key, dst_role), (key, Role::Mtls));
        assert!(classify(IstioMetric::Duration, &labels(&dst)).is_none());
        let plaintext: Vec<(&str, &str)> = dst
            .iter()
            .map(|&(k, v)| {
                if k == "connection_security_policy" {
                    (k, "none")
                } else {
                    (k, v)
                }
            })
            .collect();
        assert!(classify(IstioMetric::Requests, &labels(&plaintext)).is_none());
        let unknown: Vec<(&str, &str)> = dst
            .into_iter()
            .map(|(k, v)| {
                if k == "source_workload" {
                    (k, "unknown")
                } else {
                    (k, v)
                }
            })
            .collect();
        let (key, _) = classify(IstioMetric::Requests, &labels(&unknown)).unwrap();
        assert_eq!(key.source, Source::Unknown);
    }
}
