//! Where series live: one shard per worker thread, so recording a request takes only its own
//! thread's (uncontended) lock; a scrape locks each shard in turn and merges them by label set.
//!
//! A series is found by a hash of the record's label inputs (peer metadata, cluster, status, ...)
//! compared field by field on a hit, so a request allocates nothing unless it starts a new series;
//! labels are rendered once, when a series is created.

use super::histogram::Histogram;
use super::labels::{self, LabelSet};
use crate::route::split_authority;
use crate::telemetry::ResponseFlags;
use crate::telemetry::peer::PeerMeta;
use crate::telemetry::record::{Direction, RequestRecord};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Series per shard and kind beyond which new label sets are dropped (and counted), so a flood
/// of distinct peers or status codes cannot grow memory without bound.
pub const MAX_SERIES: usize = 10_000;

/// What varies a series' labels, borrowed from a record. Hashed by content; compared by
/// pointer first, since a record and its series usually share the same `Arc`s (the cluster
/// name, the decoded peer), so most comparisons never look at the strings.
#[derive(Hash)]
struct KeyView<'a> {
    direction: Direction,
    peer: Option<&'a PeerMeta>,
    endpoint_peer: Option<&'a PeerMeta>,
    cluster: Option<&'a str>,
    service: Option<&'a str>,
    /// The request's host, only where the labels fall back to it.
    authority: &'a str,
    grpc: bool,
    status: u16,
    grpc_status: Option<u32>,
    flags: ResponseFlags,
    local_principal: Option<&'a str>,
    peer_principal: Option<&'a str>,
}

impl<'a> KeyView<'a> {
    fn of(rec: &'a RequestRecord, tcp: bool) -> KeyView<'a> {
        let authority = if needs_authority(rec) {
            split_authority(&rec.authority).0
        } else {
            ""
        };
        KeyView {
            direction: rec.direction,
            peer: rec.peer.as_deref(),
            endpoint_peer: rec.endpoint_peer.as_deref(),
            cluster: rec.upstream_cluster.as_deref(),
            service: rec.destination_service.as_deref(),
            authority,
            grpc: !tcp && rec.grpc,
            status: if tcp { 0 } else { rec.status },
            grpc_status: if tcp || !rec.grpc {
                None
            } else {
                rec.grpc_status
            },
            flags: rec.flags,
            local_principal: rec.local_principal.as_deref(),
            peer_principal: rec.peer_principal.as_deref(),
        }
    }

    fn hash_value(&self) -> u64 {
        let mut h = FxHasher::default();
        self.hash(&mut h);
        h.finish()
    }
}

impl PartialEq for KeyView<'_> {
    fn eq(&self, other: &KeyView<'_>) -> bool {
        self.direction == other.direction
            && self.status == other.status
            && self.grpc == other.grpc
            && self.grpc_status == other.grpc_status
            && self.flags == other.flags
            && same(self.cluster, other.cluster)
            && same(self.service, other.service)
            && same(self.peer, other.peer)
            && same(self.endpoint_peer, other.endpoint_peer)
            && self.authority == other.authority
            && same(self.local_principal, other.local_principal)
            && same(self.peer_principal, other.peer_principal)
    }
}

impl Eq for KeyView<'_> {}

/// Equal values: the same one (pointer), or equal contents.
fn same<T: PartialEq + ?Sized>(a: Option<&T>, b: Option<&T>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// Whether `destination_service` falls back to the request's host (see
/// [`labels::destination_service`]).
fn needs_authority(rec: &RequestRecord) -> bool {
    match rec.direction {
        Direction::Inbound => rec.destination_service.is_none(),
        Direction::Outbound => rec
            .upstream_cluster
            .as_deref()
            .and_then(labels::cluster_host)
            .is_none(),
    }
}

/// A [`KeyView`]'s values, kept by the series it identifies.
struct OwnedKey {
    direction: Direction,
    peer: Option<Arc<PeerMeta>>,
    endpoint_peer: Option<Arc<PeerMeta>>,
    cluster: Option<Arc<str>>,
    service: Option<Arc<str>>,
    authority: Box<str>,
    grpc: bool,
    status: u16,
    grpc_status: Option<u32>,
    flags: ResponseFlags,
    local_principal: Option<Arc<str>>,
    peer_principal: Option<Arc<str>>,
}

impl OwnedKey {
    fn new(rec: &RequestRecord, view: &KeyView<'_>) -> OwnedKey {
        OwnedKey {
            direction: view.direction,
            peer: rec.peer.clone(),
            endpoint_peer: rec.endpoint_peer.clone(),
            cluster: rec.upstream_cluster.clone(),
            service: rec.destination_service.clone(),
            authority: view.authority.into(),
            grpc: view.grpc,
            status: view.status,
            grpc_status: view.grpc_status,
            flags: view.flags,
            local_principal: rec.local_principal.clone(),
            peer_principal: rec.peer_principal.clone(),
        }
    }

    fn view(&self) -> KeyView<'_> {
        KeyView {
            direction: self.direction,
            peer: self.peer.as_deref(),
            endpoint_peer: self.endpoint_peer.as_deref(),
            cluster: self.cluster.as_deref(),
            service: self.service.as_deref(),
            authority: &self.authority,
            grpc: self.grpc,
            status: self.status,
            grpc_status: self.grpc_status,
            flags: self.flags,
            local_principal: self.local_principal.as_deref(),
            peer_principal: self.peer_principal.as_deref(),
        }
    }
}

/// The HTTP/gRPC metrics of one label set.
#[derive(Debug, Clone, Default)]
pub struct HttpData {
    pub grpc: bool,
    pub requests: u64,
    pub duration_ms: Histogram,
    pub request_bytes: Histogram,
    pub response_bytes: Histogram,
    pub request_messages: u64,
    pub response_messages: u64,
}

impl HttpData {
    fn add(&mut self, rec: &RequestRecord) {
        self.requests += 1;
        self.duration_ms.observe(rec.duration_ms);
        self.request_bytes.observe(rec.bytes_received);
        self.response_bytes.observe(rec.bytes_sent);
        self.request_messages += rec.request_messages;
        self.response_messages += rec.response_messages;
    }

    fn merge(&mut self, other: &HttpData) {
        self.grpc |= other.grpc;
        self.requests += other.requests;
        self.duration_ms.merge(&other.duration_ms);
        self.request_bytes.merge(&other.request_bytes);
        self.response_bytes.merge(&other.response_bytes);
        self.request_messages += other.request_messages;
        self.response_messages += other.response_messages;
    }
}

/// The TCP counters of one label set, shared with the open connections that report to it.
#[derive(Debug, Default)]
pub struct TcpCounters {
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received_bytes: AtomicU64,
}

/// A copy of [`TcpCounters`] taken at a scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpData {
    pub opened: u64,
    pub closed: u64,
    pub sent_bytes: u64,
    pub received_bytes: u64,
}

impl TcpData {
    fn of(c: &TcpCounters) -> TcpData {
        TcpData {
            opened: c.opened.load(Ordering::Relaxed),
            closed: c.closed.load(Ordering::Relaxed),
            sent_bytes: c.sent_bytes.load(Ordering::Relaxed),
            received_bytes: c.received_bytes.load(Ordering::Relaxed),
        }
    }

    fn merge(&mut self, other: &TcpData) {
        self.opened += other.opened;
        self.closed += other.closed;
        self.sent_bytes += other.sent_bytes;
        self.received_bytes += other.received_bytes;
    }
}

struct Series<T> {
    key: OwnedKey,
    labels: Arc<LabelSet>,
    data: T,
}

/// Series by key hash; a bucket holds more than one only on a hash collision.
type SeriesMap<T> = HashMap<u64, Vec<Series<T>>, BuildHasherDefault<PassThrough>>;

#[derive(Default)]
struct Shard {
    http: SeriesMap<HttpData>,
    http_len: usize,
    tcp: SeriesMap<Arc<TcpCounters>>,
    tcp_len: usize,
}

/// All series of a proxy.
pub struct Store {
    shards: Vec<Mutex<Shard>>,
    local: PeerMeta,
    /// New series refused for being over [`MAX_SERIES`].
    overflow: Arc<AtomicU64>,
}

/// Every series merged across shards, sorted by labels.
#[derive(Default)]
pub struct Snapshot {
    pub http: Vec<(Arc<LabelSet>, HttpData)>,
    pub tcp: Vec<(Arc<LabelSet>, TcpData)>,
}

impl Store {
    pub fn new(shards: usize, local: PeerMeta, overflow: Arc<AtomicU64>) -> Store {
        Store {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            local,
            overflow,
        }
    }

    fn shard(&self) -> std::sync::MutexGuard<'_, Shard> {
        let index = crate::worker::current() % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds one finished HTTP/gRPC request.
    pub fn record_http(&self, rec: &RequestRecord) {
        let view = KeyView::of(rec, false);
        let hash = view.hash_value();
        let mut guard = self.shard();
        let shard = &mut *guard;
        if let Some(series) = shard
            .http
            .get_mut(&hash)
            .and_then(|b| b.iter_mut().find(|s| s.key.view() == view))
        {
            series.data.add(rec);
            return;
        }
        if shard.http_len >= MAX_SERIES {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut data = HttpData {
            grpc: view.grpc,
            ..HttpData::default()
        };
        data.add(rec);
        shard.http.entry(hash).or_default().push(Series {
            key: OwnedKey::new(rec, &view),
            labels: Arc::new(labels::http(&self.local, rec)),
            data,
        });
        shard.http_len += 1;
    }

    /// The counters of a TCP connection's series (created if new); `None` when over the limit.
    pub fn tcp_series(&self, rec: &RequestRecord) -> Option<Arc<TcpCounters>> {
        let view = KeyView::of(rec, true);
        let hash = view.hash_value();
        let mut guard = self.shard();
        let shard = &mut *guard;
        if let Some(series) = shard
            .tcp
            .get(&hash)
            .and_then(|b| b.iter().find(|s| s.key.view() == view))
        {
            return Some(series.data.clone());
        }
        if shard.tcp_len >= MAX_SERIES {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let counters = Arc::new(TcpCounters::default());
        shard.tcp.entry(hash).or_default().push(Series {
            key: OwnedKey::new(rec, &view),
            labels: Arc::new(labels::tcp(&self.local, rec)),
            data: counters.clone(),
        });
        shard.tcp_len += 1;
        Some(counters)
    }

    /// Every series, merged across shards (equal label sets add up).
    pub fn snapshot(&self) -> Snapshot {
        let mut http: HashMap<Arc<LabelSet>, HttpData> = HashMap::new();
        let mut tcp: HashMap<Arc<LabelSet>, TcpData> = HashMap::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for series in shard.http.values().flatten() {
                http.entry(series.labels.clone())
                    .or_default()
                    .merge(&series.data);
            }
            for series in shard.tcp.values().flatten() {
                tcp.entry(series.labels.clone())
                    .or_default()
                    .merge(&TcpData::of(&series.data));
            }
        }
        let mut http: Vec<_> = http.into_iter().collect();
        http.sort_by(|a, b| a.0.text.cmp(&b.0.text));
        let mut tcp: Vec<_> = tcp.into_iter().collect();
        tcp.sort_by(|a, b| a.0.text.cmp(&b.0.text));
        Snapshot { http, tcp }
    }
}

/// Label sets are equal when they render equally (series from different shards merge).
impl PartialEq for LabelSet {
    fn eq(&self, other: &LabelSet) -> bool {
        self.text == other.text
    }
}

impl Eq for LabelSet {}

impl Hash for LabelSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

/// rustc's Fx hash: a multiply and rotate per word, plenty for keys this process made itself
/// (collisions are resolved by comparing keys).
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// For maps keyed by a hash already computed.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> PeerMeta {
        PeerMeta {
            workload: "productpage-v1".into(),
            namespace: "default".into(),
            ..PeerMeta::default()
        }
    }

    fn request(status: u16, peer: Option<&str>) -> RequestRecord {
        let mut rec = RequestRecord::new(Direction::Outbound, "HTTP/1.1");
        rec.upstream_cluster = Some(Arc::from(
            "outbound|9080||reviews.default.svc.cluster.local",
        ));
        rec.status = status;
        rec.duration_ms = 3;
        rec.bytes_sent = 120;
        rec.peer = peer.map(|w| {
            Arc::new(PeerMeta {
                workload: w.into(),
                ..PeerMeta::default()
            })
        });
        rec
    }

    #[test]
    fn equal_requests_share_a_series_and_distinct_ones_do_not() {
        let store = Store::new(2, local(), Arc::new(AtomicU64::new(0)));
        for _ in 0..3 {
            store.record_http(&request(200, Some("reviews-v2")));
        }
        // Same peer content from another decode: same series.
        store.record_http(&request(200, Some("reviews-v2")));
        store.record_http(&request(503, Some("reviews-v2")));
        store.record_http(&request(200, None));
        let snap = store.snapshot();
        let counts: Vec<_> = snap
            .http
            .iter()
            .map(|(l, d)| {
                (
                    l.get("destination_workload").unwrap().to_string(),
                    l.get("response_code").unwrap().to_string(),
                    d.requests,
                )
            })
            .collect();
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.contains(&("reviews-v2".into(), "200".into(), 4)));
        assert!(counts.contains(&("reviews-v2".into(), "503".into(), 1)));
        assert!(counts.contains(&("unknown".into(), "200".into(), 1)));
        let (_, ok) = &snap.http[0];
        assert_eq!(ok.duration_ms.buckets[2], ok.requests, "3 ms <= 5 ms");
    }

    #[test]
    fn series_beyond_the_limit_are_dropped_and_counted() {
        let overflow = Arc::new(AtomicU64::new(0));
        let store = Store::new(1, local(), overflow.clone());
        for code in 0..(MAX_SERIES as u16 + 5) {
            store.record_http(&request(code, None));
        }
        assert_eq!(store.snapshot().http.len(), MAX_SERIES);
        assert_eq!(overflow.load(Ordering::Relaxed), 5);
    }
}
