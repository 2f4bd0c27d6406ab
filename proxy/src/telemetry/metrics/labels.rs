//! Istio's metric labels for one request or connection, following Istio's stats filter: which
//! side reports, who the source and destination workloads are (this proxy's own metadata on one
//! side, the peer's on the other, `unknown` where nobody said), and the destination service.

use crate::route::split_authority;
use crate::telemetry::peer::PeerMeta;
use crate::telemetry::record::{Direction, RequestRecord};
use std::fmt::Write;

const UNKNOWN: &str = "unknown";
/// Istio's canonical revision when the workload's labels name none.
const LATEST: &str = "latest";

/// One series' labels, in Istio's order, and their Prometheus rendering (the merge key).
#[derive(Debug)]
pub struct LabelSet {
    pub pairs: Vec<(&'static str, String)>,
    /// `name="value",...`, escaped.
    pub text: String,
}

impl LabelSet {
    fn new(pairs: Vec<(&'static str, String)>) -> LabelSet {
        let mut text = String::with_capacity(pairs.len() * 32);
        for (i, (name, value)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = write!(text, "{name}=\"");
            escape_label_into(value, &mut text);
            text.push('"');
        }
        LabelSet { pairs, text }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Prometheus label value escaping: backslash, double quote and line feed.
pub(crate) fn escape_label_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The labels of an HTTP or gRPC request's series.
pub fn http(local: &PeerMeta, rec: &RequestRecord) -> LabelSet {
    let mut pairs = identity(local, rec);
    pairs.push((
        "request_protocol",
        if rec.grpc { "grpc" } else { "http" }.into(),
    ));
    pairs.push(("response_code", rec.status.to_string()));
    let grpc_status = match (rec.grpc, rec.grpc_status) {
        (true, Some(code)) => code.to_string(),
        _ => String::new(),
    };
    pairs.push(("grpc_response_status", grpc_status));
    pairs.push(("response_flags", rec.flags.to_string()));
    pairs.push(("connection_security_policy", security_policy(rec).into()));
    LabelSet::new(pairs)
}

/// The labels of an opaque TCP connection's series (no response code or gRPC status).
pub fn tcp(local: &PeerMeta, rec: &RequestRecord) -> LabelSet {
    let mut pairs = identity(local, rec);
    pairs.push(("request_protocol", "tcp".into()));
    pairs.push(("response_flags", rec.flags.to_string()));
    pairs.push(("connection_security_policy", security_policy(rec).into()));
    LabelSet::new(pairs)
}

/// As Istio: the server side knows whether mutual TLS authenticated both ends; the client side
/// reports `unknown`.
fn security_policy(rec: &RequestRecord) -> &'static str {
    match rec.direction {
        Direction::Outbound => UNKNOWN,
        Direction::Inbound if rec.local_principal.is_some() && rec.peer_principal.is_some() => {
            "mutual_tls"
        }
        Direction::Inbound => "none",
    }
}

fn or_unknown(value: &str) -> String {
    if value.is_empty() { UNKNOWN } else { value }.to_string()
}

fn revision(value: &str) -> String {
    if value.is_empty() { LATEST } else { value }.to_string()
}

/// The namespace in a SPIFFE id (`spiffe://td/ns/NS/sa/SA`), which Istio prefers over metadata.
fn principal_namespace(principal: &str) -> Option<&str> {
    let rest = &principal[principal.find("/ns/")? + 4..];
    Some(rest.split('/').next().unwrap_or(rest)).filter(|ns| !ns.is_empty())
}

/// `reporter` and the `source_*` / `destination_*` labels.
fn identity(local: &PeerMeta, rec: &RequestRecord) -> Vec<(&'static str, String)> {
    let peer = rec.peer.as_deref().or(rec.endpoint_peer.as_deref());
    let blank = PeerMeta::default();
    let remote = peer.unwrap_or(&blank);
    let local_principal = rec
        .local_principal
        .as_deref()
        .unwrap_or(UNKNOWN)
        .to_string();
    let peer_principal = rec.peer_principal.as_deref().unwrap_or(UNKNOWN).to_string();
    let peer_namespace = rec
        .peer_principal
        .as_deref()
        .and_then(principal_namespace)
        .unwrap_or(&remote.namespace);
    let service = destination_service(local, rec, peer_namespace);
    let mut pairs = Vec::with_capacity(25);
    match rec.direction {
        Direction::Inbound => {
            pairs.push(("reporter", "destination".into()));
            pairs.push(("source_workload", or_unknown(&remote.workload)));
            pairs.push((
                "source_canonical_service",
                or_unknown(&remote.canonical_service),
            ));
            pairs.push((
                "source_canonical_revision",
                revision(&remote.canonical_revision),
            ));
            pairs.push(("source_workload_namespace", or_unknown(peer_namespace)));
            pairs.push(("source_principal", peer_principal));
            pairs.push(("source_app", or_unknown(&remote.app)));
            pairs.push(("source_version", or_unknown(&remote.version)));
            pairs.push(("source_cluster", or_unknown(&remote.cluster)));
            pairs.push(("destination_workload", or_unknown(&local.workload)));
            pairs.push((
                "destination_workload_namespace",
                or_unknown(&local.namespace),
            ));
            pairs.push(("destination_principal", local_principal));
            pairs.push(("destination_app", or_unknown(&local.app)));
            pairs.push(("destination_version", or_unknown(&local.version)));
            pairs.push(("destination_service", service.host));
            pairs.push((
                "destination_canonical_service",
                or_unknown(&local.canonical_service),
            ));
            pairs.push((
                "destination_canonical_revision",
                revision(&local.canonical_revision),
            ));
            pairs.push(("destination_service_name", service.name));
            pairs.push((
                "destination_service_namespace",
                or_unknown(&local.namespace),
            ));
            pairs.push(("destination_cluster", or_unknown(&local.cluster)));
        }
        Direction::Outbound => {
            pairs.push(("reporter", "source".into()));
            pairs.push(("source_workload", or_unknown(&local.workload)));
            pairs.push((
                "source_canonical_service",
                or_unknown(&local.canonical_service),
            ));
            pairs.push((
                "source_canonical_revision",
                revision(&local.canonical_revision),
            ));
            pairs.push(("source_workload_namespace", or_unknown(&local.namespace)));
            pairs.push(("source_principal", local_principal));
            pairs.push(("source_app", or_unknown(&local.app)));
            pairs.push(("source_version", or_unknown(&local.version)));
            pairs.push(("source_cluster", or_unknown(&local.cluster)));
            pairs.push(("destination_workload", or_unknown(&remote.workload)));
            pairs.push(("destination_workload_namespace", or_unknown(peer_namespace)));
            pairs.push(("destination_principal", peer_principal));
            pairs.push(("destination_app", or_unknown(&remote.app)));
            pairs.push(("destination_version", or_unknown(&remote.version)));
            pairs.push(("destination_service", service.host));
            pairs.push((
                "destination_canonical_service",
                or_unknown(&remote.canonical_service),
            ));
            pairs.push((
                "destination_canonical_revision",
                revision(&remote.canonical_revision),
            ));
            pairs.push(("destination_service_name", service.name));
            pairs.push(("destination_service_namespace", service.namespace));
            pairs.push(("destination_cluster", or_unknown(&remote.cluster)));
        }
    }
    pairs
}

/// `destination_service`, `_name` and `_namespace`.
#[derive(Debug, PartialEq, Eq)]
pub struct DestinationService {
    pub host: String,
    pub name: String,
    pub namespace: String,
}

/// The clusters that are not a service: Istio names them in `destination_service_name`.
const SPECIAL_CLUSTERS: [&str; 2] = ["PassthroughCluster", "BlackHoleCluster"];

/// The service a request went to. Outbound: the host of the chosen cluster
/// (`outbound|PORT|SUBSET|HOST`); inbound: what the source's proxy said it routed to. Without
/// either (no route, passthrough, a client outside the mesh), the request's host, as Istio's
/// host-header fallback.
pub fn destination_service(
    local: &PeerMeta,
    rec: &RequestRecord,
    peer_namespace: &str,
) -> DestinationService {
    let authority_host = || {
        let (host, _) = split_authority(&rec.authority);
        Some(host.to_ascii_lowercase()).filter(|h| !h.is_empty())
    };
    let fallback_namespace = |ns: &str| or_unknown(ns);
    match rec.direction {
        Direction::Inbound => {
            let host = rec
                .destination_service
                .as_deref()
                .map(str::to_string)
                .or_else(authority_host)
                .unwrap_or_else(|| or_unknown(&local.canonical_service));
            let (name, _) = split_service_host(&host);
            DestinationService {
                name: name.to_string(),
                host,
                namespace: or_unknown(&local.namespace),
            }
        }
        Direction::Outbound => {
            let cluster = rec.upstream_cluster.as_deref().unwrap_or_default();
            if let Some(host) = cluster_host(cluster) {
                let (name, namespace) = split_service_host(host);
                // A ServiceEntry host names no namespace: the peer's, else this proxy's.
                let namespace = namespace.unwrap_or(if peer_namespace.is_empty() {
                    &local.namespace
                } else {
                    peer_namespace
                });
                return DestinationService {
                    host: host.to_string(),
                    name: name.to_string(),
                    namespace: or_unknown(namespace),
                };
            }
            let host = authority_host().unwrap_or_else(|| UNKNOWN.to_string());
            let name = if SPECIAL_CLUSTERS.contains(&cluster) {
                cluster.to_string()
            } else {
                host.clone()
            };
            DestinationService {
                host,
                name,
                namespace: fallback_namespace(peer_namespace),
            }
        }
    }
}

/// The service host of an `outbound|PORT|SUBSET|HOST` cluster name.
pub fn cluster_host(cluster: &str) -> Option<&str> {
    let mut parts = cluster.splitn(4, '|');
    (parts.next()? == "outbound").then_some(())?;
    let host = parts.nth(2)?;
    (!host.is_empty()).then_some(host)
}

/// A Kubernetes service host (`NAME.NAMESPACE.svc[.DOMAIN]`) splits into name and namespace;
/// any other host (a ServiceEntry's) is its own name, in no namespace.
pub fn split_service_host(host: &str) -> (&str, Option<&str>) {
    let mut labels = host.split('.');
    match (labels.next(), labels.next(), labels.next()) {
        (Some(name), Some(ns), Some("svc")) if !name.is_empty() && !ns.is_empty() => {
            (name, Some(ns))
        }
        _ => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn node(workload: &str, app: &str, version: &str) -> PeerMeta {
        PeerMeta {
            workload: workload.into(),
            namespace: "default".into(),
            cluster: "Kubernetes".into(),
            app: app.into(),
            version: version.into(),
            canonical_service: app.into(),
            canonical_revision: version.into(),
            service_account: "default".into(),
        }
    }

    #[test]
    fn service_hosts_split_like_istio() {
        assert_eq!(
            split_service_host("reviews.default.svc.cluster.local"),
            ("reviews", Some("default"))
        );
        assert_eq!(
            split_service_host("reviews.prod.svc"),
            ("reviews", Some("prod"))
        );
        assert_eq!(split_service_host("httpbin.org"), ("httpbin.org", None));
        assert_eq!(split_service_host("reviews"), ("reviews", None));
        assert_eq!(
            cluster_host("outbound|9080|v2|reviews.default.svc.cluster.local"),
            Some("reviews.default.svc.cluster.local")
        );
        assert_eq!(cluster_host("inbound|9080||"), None);
        assert_eq!(cluster_host("PassthroughCluster"), None);
    }

    #[test]
    fn source_side_without_a_mesh_peer() {
        let local = node("productpage-v1", "productpage", "v1");
        let mut rec = RequestRecord::new(Direction::Outbound, "HTTP/1.1");
        rec.upstream_cluster = Some(Arc::from("outbound|80||httpbin.org"));
        rec.status = 503;
        let labels = http(&local, &rec);
        assert_eq!(labels.get("reporter"), Some("source"));
        assert_eq!(labels.get("source_workload"), Some("productpage-v1"));
        assert_eq!(labels.get("destination_workload"), Some("unknown"));
        assert_eq!(labels.get("destination_canonical_revision"), Some("latest"));
        assert_eq!(labels.get("destination_service"), Some("httpbin.org"));
        assert_eq!(labels.get("destination_service_name"), Some("httpbin.org"));
        assert_eq!(labels.get("destination_service_namespace"), Some("default"));
        assert_eq!(labels.get("response_code"), Some("503"));
        assert_eq!(labels.get("grpc_response_status"), Some(""));
        assert_eq!(labels.get("connection_security_policy"), Some("unknown"));
        assert_eq!(labels.pairs.len(), 25);
    }

    #[test]
    fn destination_side_with_a_mesh_peer() {
        let local = node("reviews-v2", "reviews", "v2");
        let mut rec = RequestRecord::new(Direction::Inbound, "HTTP/2");
        rec.peer = Some(Arc::new(node("productpage-v1", "productpage", "v1")));
        rec.destination_service = Some(Arc::from("reviews.default.svc.cluster.local"));
        rec.authority = "reviews:9080".into();
        rec.grpc = true;
        rec.grpc_status = Some(0);
        rec.status = 200;
        let labels = http(&local, &rec);
        assert_eq!(labels.get("reporter"), Some("destination"));
        assert_eq!(labels.get("source_workload"), Some("productpage-v1"));
        assert_eq!(labels.get("source_version"), Some("v1"));
        assert_eq!(labels.get("destination_workload"), Some("reviews-v2"));
        assert_eq!(
            labels.get("destination_service"),
            Some("reviews.default.svc.cluster.local")
        );
        assert_eq!(labels.get("destination_service_name"), Some("reviews"));
        assert_eq!(labels.get("request_protocol"), Some("grpc"));
        assert_eq!(labels.get("grpc_response_status"), Some("0"));
        assert_eq!(labels.get("connection_security_policy"), Some("none"));
        assert_eq!(labels.get("source_principal"), Some("unknown"));
    }

    #[test]
    fn principals_fill_in_when_mutual_tls_authenticates() {
        let local = node("reviews-v2", "reviews", "v2");
        let mut rec = RequestRecord::new(Direction::Inbound, "TCP");
        rec.local_principal = Some(Arc::from("spiffe://cluster.local/ns/default/sa/reviews"));
        rec.peer_principal = Some(Arc::from("spiffe://cluster.local/ns/shop/sa/productpage"));
        let labels = tcp(&local, &rec);
        assert_eq!(labels.get("connection_security_policy"), Some("mutual_tls"));
        assert_eq!(labels.get("source_workload_namespace"), Some("shop"));
        assert_eq!(labels.get("request_protocol"), Some("tcp"));
        assert_eq!(labels.get("response_code"), None);
        assert_eq!(labels.pairs.len(), 23);
    }

    #[test]
    fn label_values_are_escaped() {
        let set = LabelSet::new(vec![("a", "x\"y\\z\nw".into())]);
        assert_eq!(set.text, r#"a="x\"y\\z\nw""#);
    }
}
