//! Workload metadata exchanged between proxies (never taken from the app): the outbound proxy
//! tells the inbound proxy who the source is and which service it meant, and the inbound proxy
//! answers with who the destination is, so both reporters fill in `source_*` and `destination_*`.
//!
//! # Wire format
//!
//! Istio sends `x-envoy-peer-metadata` (base64 of a protobuf `Struct` of the node's metadata).
//! Trellis sends a smaller, readable, versioned header instead:
//!
//! ```text
//! x-trellis-peer: 1;w=reviews-v2;n=default;c=Kubernetes;a=reviews;v=v2;cs=reviews;cr=v2;sa=bookinfo-reviews
//! x-trellis-peer-service: reviews.default.svc.cluster.local
//! ```
//!
//! The first field is the format version (`1`); then `key=value` fields separated by `;`, values
//! percent-encoded (every byte outside `A-Z a-z 0-9 - . _ ~ / :`). Keys: `w` workload, `n`
//! namespace, `c` cluster, `a` app, `v` version, `cs`/`cr` canonical service/revision, `sa`
//! service account. Unknown keys are ignored (newer senders may add some); an unknown version,
//! a malformed field or an oversized header makes the peer unknown, never an error for traffic.
//! `x-trellis-peer-service` goes with requests only: the service host the outbound proxy routed
//! to, so the inbound reporter names the same `destination_service`.
//!
//! Direction of travel: outbound requests carry both headers (whatever the app sent under these
//! names is removed first); the inbound proxy reads and removes them before the app sees the
//! request, and answers with its own `x-trellis-peer`, which the outbound proxy reads and removes
//! before the app sees the response.

use super::TelemetrySettings;
use super::record::{Direction, RequestRecord};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use trellis_api::model::NodeIdentity;

/// The header carrying a proxy's workload metadata (requests and responses).
pub const PEER_HEADER: HeaderName = HeaderName::from_static("x-trellis-peer");
/// The header carrying the destination service host (requests only).
pub const PEER_SERVICE_HEADER: HeaderName = HeaderName::from_static("x-trellis-peer-service");

/// The format version this proxy writes and reads.
const VERSION: &str = "1";
/// Larger headers are not metadata a proxy wrote: treat the peer as unknown.
const MAX_HEADER_BYTES: usize = 2048;
/// Decoded headers kept per thread, so a busy peer costs one decode, not one per request.
const CACHE_ENTRIES: usize = 256;

/// The metadata of the workload on one side of a request, as Istio's stats filter uses it.
/// Empty strings mean "not known" (the metrics print `unknown`, or `latest` for the revision).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMeta {
    pub workload: String,
    pub namespace: String,
    pub cluster: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    pub service_account: String,
}

/// Why a peer header was not understood (the peer is then reported as unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("peer metadata is {0} bytes, more than {MAX_HEADER_BYTES}")]
    TooLong(usize),
    #[error("peer metadata version {0:?} is not supported (expected {VERSION})")]
    Version(String),
    #[error("peer metadata field {0:?} is not key=value")]
    Field(String),
    #[error("peer metadata field {0:?} has a bad percent-encoding or is not UTF-8")]
    Encoding(String),
}

impl PeerMeta {
    /// The metadata of the workload a proxy runs beside, with Istio's canonical names.
    pub fn from_node(node: &NodeIdentity, cluster: &str) -> PeerMeta {
        let mut meta = PeerMeta::from_labels(&node.labels);
        meta.workload = node.workload.clone();
        meta.namespace = node.namespace.clone();
        meta.cluster = cluster.to_string();
        meta.service_account = node.service_account.clone();
        if meta.canonical_service.is_empty() {
            meta.canonical_service = node.workload.clone();
        }
        meta
    }

    /// What workload labels alone say (endpoint labels of a destination that is not a proxy):
    /// app, version and canonical names; the workload itself stays unknown.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> PeerMeta {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()))
                .cloned()
                .unwrap_or_default()
        };
        PeerMeta {
            app: get(&["app", "app.kubernetes.io/name"]),
            version: get(&["version", "app.kubernetes.io/version"]),
            canonical_service: canonical_service(labels).unwrap_or_default().to_string(),
            canonical_revision: canonical_revision(labels).to_string(),
            ..PeerMeta::default()
        }
    }

    /// The header value this metadata travels as (see the module docs).
    pub fn encode(&self) -> String {
        let mut out = String::from(VERSION);
        for (key, value) in self.fields() {
            if !value.is_empty() {
                out.push(';');
                out.push_str(key);
                out.push('=');
                percent_encode(value, &mut out);
            }
        }
        out
    }

    /// Parses a header written by [`encode`](Self::encode), by this or a newer proxy.
    pub fn decode(raw: &[u8]) -> Result<PeerMeta, DecodeError> {
        if raw.len() > MAX_HEADER_BYTES {
            return Err(DecodeError::TooLong(raw.len()));
        }
        let text = std::str::from_utf8(raw)
            .map_err(|_| DecodeError::Encoding(String::from_utf8_lossy(raw).into_owned()))?;
        let mut fields = text.split(';');
        let version = fields.next().unwrap_or_default().trim();
        if version != VERSION {
            return Err(DecodeError::Version(version.to_string()));
        }
        let mut meta = PeerMeta::default();
        for field in fields {
            if field.is_empty() {
                continue;
            }
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| DecodeError::Field(field.to_string()))?;
            let value =
                percent_decode(value).ok_or_else(|| DecodeError::Encoding(field.to_string()))?;
            match key {
                "w" => meta.workload = value,
                "n" => meta.namespace = value,
                "c" => meta.cluster = value,
                "a" => meta.app = value,
                "v" => meta.version = value,
                "cs" => meta.canonical_service = value,
                "cr" => meta.canonical_revision = value,
                "sa" => meta.service_account = value,
                _ => {} // a newer sender's field
            }
        }
        Ok(meta)
    }

    fn fields(&self) -> [(&'static str, &str); 8] {
        [
            ("w", &self.workload),
            ("n", &self.namespace),
            ("c", &self.cluster),
            ("a", &self.app),
            ("v", &self.version),
            ("cs", &self.canonical_service),
            ("cr", &self.canonical_revision),
            ("sa", &self.service_account),
        ]
    }
}

/// Hashes every field: metrics key their series by the peer's content.
impl Hash for PeerMeta {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for (_, value) in self.fields() {
            value.hash(state);
        }
    }
}

/// Istio's canonical service of a workload: `service.istio.io/canonical-name`, else
/// `app.kubernetes.io/name`, else `app`; `None` when no label says (Istio then uses the
/// workload name).
pub fn canonical_service(labels: &BTreeMap<String, String>) -> Option<&str> {
    [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .iter()
    .find_map(|k| labels.get(*k).map(String::as_str).filter(|v| !v.is_empty()))
}

/// Istio's canonical revision: `service.istio.io/canonical-revision`, else
/// `app.kubernetes.io/version`, else `version`, else `latest`.
pub fn canonical_revision(labels: &BTreeMap<String, String>) -> &str {
    [
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ]
    .iter()
    .find_map(|k| labels.get(*k).map(String::as_str).filter(|v| !v.is_empty()))
    .unwrap_or("latest")
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':')
}

fn percent_encode(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if is_plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Per-thread caches of decoded headers: requests from one peer share one `Arc<PeerMeta>` and
/// one `Arc<str>` service name, so recording a request allocates nothing for them.
struct Caches {
    peers: HashMap<HeaderValue, Option<Arc<PeerMeta>>>,
    services: HashMap<HeaderValue, Arc<str>>,
}

thread_local! {
    static CACHES: RefCell<Caches> = RefCell::new(Caches {
        peers: HashMap::new(),
        services: HashMap::new(),
    });
}

/// The peer a header describes; `None` when it is malformed (logged at debug level).
fn decode_cached(value: &HeaderValue) -> Option<Arc<PeerMeta>> {
    CACHES.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(hit) = c.peers.get(value) {
            return hit.clone();
        }
        let decoded = match PeerMeta::decode(value.as_bytes()) {
            Ok(meta) => Some(Arc::new(meta)),
            Err(e) => {
                tracing::debug!(error = %e, "peer metadata ignored");
                None
            }
        };
        if c.peers.len() >= CACHE_ENTRIES {
            c.peers.clear();
        }
        // A copy: the received value may share the connection's whole read buffer.
        if let Ok(key) = HeaderValue::from_bytes(value.as_bytes()) {
            c.peers.insert(key, decoded.clone());
        }
        decoded
    })
}

fn service_cached(value: &HeaderValue) -> Option<Arc<str>> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || text.len() > 253 {
        return None;
    }
    CACHES.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(hit) = c.services.get(value) {
            return Some(hit.clone());
        }
        if c.services.len() >= CACHE_ENTRIES {
            c.services.clear();
        }
        let service: Arc<str> = Arc::from(text.to_ascii_lowercase());
        if let Ok(key) = HeaderValue::from_bytes(value.as_bytes()) {
            c.services.insert(key, service.clone());
        }
        Some(service)
    })
}

/// The `x-trellis-peer-service` value for traffic to `cluster` (Istio's cluster name), built once
/// per cluster rather than per request; `None` for clusters outside the mesh (passthrough).
pub fn destination_service_value(cluster: &str) -> Option<HeaderValue> {
    super::metrics::labels::cluster_host(cluster).and_then(|host| HeaderValue::from_str(host).ok())
}

/// Tells the next proxy which service an outbound request was routed to (`value` from
/// [`destination_service_value`]); traffic leaving the mesh (`None`) carries no metadata at all.
pub fn set_destination_service(headers: &mut HeaderMap, value: Option<&HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(PEER_SERVICE_HEADER, v.clone());
        }
        None => strip(headers),
    }
}

/// Removes this proxy's metadata from a request that must not carry it (one leaving the mesh).
pub fn strip(headers: &mut HeaderMap) {
    headers.remove(PEER_HEADER);
    headers.remove(PEER_SERVICE_HEADER);
}

/// Whether either metadata header is present: one pass over the names, cheaper than looking
/// both up on every request and response (most carry neither).
fn carries_metadata(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with("x-trellis-peer"))
}

/// This proxy's side of the exchange.
pub struct PeerExchange {
    /// This proxy's own metadata.
    pub local: Arc<PeerMeta>,
    /// `local`, encoded once.
    header: Option<HeaderValue>,
}

impl PeerExchange {
    pub fn new(settings: &TelemetrySettings) -> PeerExchange {
        let local = PeerMeta::from_node(&settings.node, &settings.cluster);
        let header = HeaderValue::from_str(&local.encode()).ok();
        PeerExchange {
            local: Arc::new(local),
            header,
        }
    }

    /// Outbound: replaces whatever the app sent with this proxy's metadata. Inbound: reads the
    /// source's metadata and the service it meant, and hides both from the app.
    pub fn on_request(
        &self,
        direction: Direction,
        headers: &mut HeaderMap,
        rec: &mut RequestRecord,
    ) {
        match direction {
            Direction::Outbound => self.announce(headers),
            Direction::Inbound => {
                if !carries_metadata(headers) {
                    return;
                }
                if let Some(v) = headers.remove(PEER_HEADER) {
                    rec.peer = decode_cached(&v);
                }
                if let Some(v) = headers.remove(PEER_SERVICE_HEADER) {
                    rec.destination_service = service_cached(&v);
                }
            }
        }
    }

    /// Puts this proxy's own metadata in `headers`, replacing whatever was there under either
    /// metadata header (the app's, never trusted).
    fn announce(&self, headers: &mut HeaderMap) {
        if carries_metadata(headers) {
            headers.remove(PEER_SERVICE_HEADER);
        }
        match &self.header {
            Some(h) => headers.insert(PEER_HEADER, h.clone()),
            None => headers.remove(PEER_HEADER),
        };
    }

    /// Outbound: reads the destination's metadata and hides it from the app. Inbound: answers
    /// with this proxy's metadata (replacing any the app set).
    pub fn on_response(
        &self,
        direction: Direction,
        headers: &mut HeaderMap,
        rec: &mut RequestRecord,
    ) {
        match direction {
            Direction::Outbound => {
                if !carries_metadata(headers) {
                    return;
                }
                headers.remove(PEER_SERVICE_HEADER);
                if let Some(v) = headers.remove(PEER_HEADER) {
                    rec.peer = decode_cached(&v);
                }
            }
            Direction::Inbound => self.announce(headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn canonical_names_follow_istio() {
        let l = labels(&[("app", "reviews"), ("version", "v2")]);
        assert_eq!(canonical_service(&l), Some("reviews"));
        assert_eq!(canonical_revision(&l), "v2");
        let l = labels(&[
            ("app", "reviews"),
            ("app.kubernetes.io/name", "reviews-k8s"),
            ("service.istio.io/canonical-name", "reviews-canon"),
            ("version", "v2"),
            ("app.kubernetes.io/version", "2.0"),
        ]);
        assert_eq!(canonical_service(&l), Some("reviews-canon"));
        assert_eq!(canonical_revision(&l), "2.0");
        let l = labels(&[("app.kubernetes.io/name", "ratings")]);
        assert_eq!(canonical_service(&l), Some("ratings"));
        assert_eq!(canonical_revision(&l), "latest");
        assert_eq!(canonical_service(&labels(&[])), None);
    }

    #[test]
    fn node_without_app_label_is_its_workload() {
        let node = NodeIdentity {
            workload: "sleep".into(),
            namespace: "default".into(),
            service_account: "sleep".into(),
            labels: BTreeMap::new(),
        };
        let meta = PeerMeta::from_node(&node, "Kubernetes");
        assert_eq!(meta.canonical_service, "sleep");
        assert_eq!(meta.canonical_revision, "latest");
        assert_eq!(meta.app, "");
        assert_eq!(meta.cluster, "Kubernetes");
    }

    #[test]
    fn header_round_trips_with_odd_characters() {
        let meta = PeerMeta {
            workload: "reviews-v2".into(),
            namespace: "default".into(),
            cluster: "Kubernetes".into(),
            app: "re;views=x%".into(),
            version: "v 2/ünï".into(),
            canonical_service: "reviews".into(),
            canonical_revision: "v2".into(),
            service_account: String::new(),
        };
        let encoded = meta.encode();
        assert!(encoded.starts_with("1;w=reviews-v2;n=default;c=Kubernetes;a=re%3Bviews%3Dx%25"));
        assert!(
            !encoded.contains("sa="),
            "empty fields are left out: {encoded}"
        );
        assert!(HeaderValue::from_str(&encoded).is_ok());
        assert_eq!(PeerMeta::decode(encoded.as_bytes()).unwrap(), meta);
    }

    #[test]
    fn newer_fields_are_ignored_and_bad_input_is_refused() {
        let meta = PeerMeta::decode(b"1;w=a;zz=future;;n=ns").unwrap();
        assert_eq!(meta.workload, "a");
        assert_eq!(meta.namespace, "ns");
        assert!(matches!(
            PeerMeta::decode(b"2;w=a"),
            Err(DecodeError::Version(v)) if v == "2"
        ));
        assert!(matches!(
            PeerMeta::decode(b""),
            Err(DecodeError::Version(_))
        ));
        assert!(matches!(
            PeerMeta::decode(b"1;w"),
            Err(DecodeError::Field(_))
        ));
        for bad in [
            &b"1;w=%4"[..],
            b"1;w=%zz",
            b"1;w=a b",
            b"1;w=%ff",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(PeerMeta::decode(bad), Err(DecodeError::Encoding(_))),
                "{bad:?}"
            );
        }
        let long = format!("1;w={}", "a".repeat(MAX_HEADER_BYTES));
        assert!(matches!(
            PeerMeta::decode(long.as_bytes()),
            Err(DecodeError::TooLong(_))
        ));
    }

    fn exchange(workload: &str, app: &str) -> PeerExchange {
        PeerExchange::new(&TelemetrySettings {
            node: NodeIdentity {
                workload: workload.into(),
                namespace: "default".into(),
                service_account: "default".into(),
                labels: labels(&[("app", app), ("version", "v1")]),
            },
            cluster: "Kubernetes".into(),
            ..TelemetrySettings::default()
        })
    }

    #[test]
    fn metadata_crosses_from_proxy_to_proxy_and_never_reaches_apps() {
        let client = exchange("productpage-v1", "productpage");
        let server = exchange("reviews-v1", "reviews");
        // The app tries to pass itself off as someone else.
        let mut req = HeaderMap::new();
        req.insert(PEER_HEADER, HeaderValue::from_static("1;w=forged"));
        req.insert(PEER_SERVICE_HEADER, HeaderValue::from_static("forged"));
        let mut out_rec = RequestRecord::new(Direction::Outbound, "HTTP/1.1");
        client.on_request(Direction::Outbound, &mut req, &mut out_rec);
        assert!(req.get(PEER_SERVICE_HEADER).is_none());
        let service = destination_service_value("outbound|9080||reviews.default.svc.cluster.local");
        set_destination_service(&mut req, service.as_ref());

        let mut in_rec = RequestRecord::new(Direction::Inbound, "HTTP/1.1");
        server.on_request(Direction::Inbound, &mut req, &mut in_rec);
        assert!(req.get(PEER_HEADER).is_none() && req.get(PEER_SERVICE_HEADER).is_none());
        let source = in_rec.peer.as_deref().expect("source known");
        assert_eq!(source.workload, "productpage-v1");
        assert_eq!(source.app, "productpage");
        assert_eq!(
            in_rec.destination_service.as_deref(),
            Some("reviews.default.svc.cluster.local")
        );

        let mut resp = HeaderMap::new();
        resp.insert(PEER_HEADER, HeaderValue::from_static("1;w=app-forged"));
        server.on_response(Direction::Inbound, &mut resp, &mut in_rec);
        client.on_response(Direction::Outbound, &mut resp, &mut out_rec);
        assert!(resp.get(PEER_HEADER).is_none());
        assert_eq!(out_rec.peer.as_deref().unwrap().workload, "reviews-v1");
    }

    #[test]
    fn garbage_from_the_network_means_unknown_peer() {
        let server = exchange("reviews-v1", "reviews");
        let mut req = HeaderMap::new();
        req.insert(PEER_HEADER, HeaderValue::from_static("9;w=x"));
        let mut rec = RequestRecord::new(Direction::Inbound, "HTTP/1.1");
        server.on_request(Direction::Inbound, &mut req, &mut rec);
        assert!(rec.peer.is_none());
        assert!(req.get(PEER_HEADER).is_none());
    }
}
