//! Cumulative pushes to deltas. Proxies push Istio's metrics as cumulative Sums and Histograms;
//! per (proxy, series) the last value is remembered and each push adds what changed.
//!
//! - A series' start time moving forward, or its value going down, is a reset (the proxy
//!   restarted): the new value is all new.
//! - A point older than the last one seen (a late or repeated export) changes nothing.
//! - The first sight of a series counts only when it cannot be an old total: the proxy was already
//!   known (a series that appears between two pushes is new traffic), or the series started within
//!   [`RECENT_START_NS`] (a proxy that just started). Otherwise (the collector restarted, or a
//!   proxy that ran for hours connects) it is a baseline, so no burst is invented.
//!
//! Delta temporality is accepted too (each point is the change). Every series is also summed over
//! proxies for the mesh-wide Prometheus export, monotonic whatever the proxies do.

use super::istio::{IstioMetric, Label, Role, classify};
use super::model::{Stats, rebucket};
use super::window::{EdgeId, Windows};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    HistogramDataPoint, NumberDataPoint, metric::Data, number_data_point,
};
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use xxhash_rust::xxh64::Xxh64;

/// A series first seen whose start time is at most this old counts from zero.
pub const RECENT_START_NS: u64 = 60_000_000_000;
/// Most distinct series (label sets) kept; beyond it new series are dropped (and counted).
pub const MAX_SERIES: usize = 250_000;
/// A proxy not heard from for this long is forgotten (its next push is a first sight).
pub const PROXY_IDLE_MS: i64 = 10 * 60_000;
/// The resource attribute every Trellis proxy sets to its id.
pub const PROXY_ATTRIBUTE: &str = "trellis.proxy";

const AGGREGATION_DELTA: i32 = 1;
const AGGREGATION_CUMULATIVE: i32 = 2;
const FLAG_NO_RECORDED_VALUE: u32 = 1;

pub type SeriesId = u32;

/// One label set of one Istio metric, summed over proxies.
pub struct Series {
    pub metric: IstioMetric,
    /// Sorted by name.
    pub labels: Box<[Label]>,
    edge: Option<(EdgeId, Role)>,
    pub total: Total,
}

/// A series' mesh-wide value.
pub enum Total {
    Counter(f64),
    Histogram {
        bounds: Box<[f64]>,
        /// Non-cumulative, one per bound plus +Inf.
        counts: Box<[u64]>,
        sum: f64,
        count: u64,
    },
}

/// What was dropped, by reason (exported as `trellis_graph_dropped_total`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Dropped {
    pub series_limit: u64,
    pub edge_limit: u64,
    pub malformed: u64,
    pub out_of_order: u64,
}

/// A proxy's last cumulative values.
struct Proxy {
    pushes: u64,
    last_push_ms: i64,
    last: HashMap<SeriesId, Last>,
}

struct Last {
    start: u64,
    time: u64,
    value: Cumulative,
}

enum Cumulative {
    Counter(f64),
    Histogram {
        count: u64,
        sum: f64,
        buckets: Box<[u64]>,
    },
}

/// One point's change.
enum Change {
    Counter(f64),
    Histogram { sum: f64, buckets: Vec<u64> },
}

#[derive(Default)]
pub struct Ingest {
    pub series: Vec<Series>,
    index: HashMap<u64, Vec<SeriesId>>,
    proxies: HashMap<String, Proxy>,
    /// Every label name and value, once.
    strings: HashSet<Arc<str>>,
    last_sweep_ms: i64,
    pub dropped: Dropped,
}

/// A scalar attribute value as a label value; `None` for arrays, maps and bytes.
fn scalar(value: &Option<AnyValue>) -> Option<Cow<'_, str>> {
    match value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(Cow::Borrowed(s)),
        any_value::Value::BoolValue(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        any_value::Value::IntValue(i) => Some(Cow::Owned(i.to_string())),
        any_value::Value::DoubleValue(d) => Some(Cow::Owned(d.to_string())),
        _ => None,
    }
}

/// A string resource attribute.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// A hash of metric and label set that does not depend on the attributes' order.
fn series_hash(metric: IstioMetric, attributes: &[KeyValue]) -> u64 {
    let mut total = metric as u64;
    for kv in attributes {
        if let Some(value) = scalar(&kv.value) {
            let mut h = Xxh64::new(0x7e11);
            h.update(kv.key.as_bytes());
            h.update(&[0xff]);
            h.update(value.as_bytes());
            total = total.wrapping_add(h.digest());
        }
    }
    total
}

fn same_labels(labels: &[Label], attributes: &[KeyValue]) -> bool {
    let mut n = 0;
    for kv in attributes {
        let Some(value) = scalar(&kv.value) else {
            continue;
        };
        n += 1;
        match labels.binary_search_by(|(k, _)| (**k).cmp(kv.key.as_str())) {
            Ok(i) if *labels[i].1 == *value => {}
            _ => return false,
        }
    }
    n == labels.len()
}

/// The shared copy of `s`.
fn intern(strings: &mut HashSet<Arc<str>>, s: &str) -> Arc<str> {
    if let Some(shared) = strings.get(s) {
        return shared.clone();
    }
    let shared: Arc<str> = Arc::from(s);
    strings.insert(shared.clone());
    shared
}

/// Sorted labels of a point, or `None` when a name repeats.
fn labels_of(strings: &mut HashSet<Arc<str>>, attributes: &[KeyValue]) -> Option<Box<[Label]>> {
    let mut labels: Vec<Label> = attributes
        .iter()
        .filter_map(|kv| {
            let value = scalar(&kv.value)?;
            Some((intern(strings, &kv.key), intern(strings, &value)))
        })
        .collect();
    labels.sort();
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some(labels.into_boxed_slice())
}

fn number(point: &NumberDataPoint) -> Option<f64> {
    let v = match point.value? {
        number_data_point::Value::AsDouble(d) => d,
        number_data_point::Value::AsInt(i) => i as f64,
    };
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn valid_histogram(point: &HistogramDataPoint) -> bool {
    let bounds_ok = point.explicit_bounds.windows(2).all(|w| w[0] < w[1])
        && point.explicit_bounds.iter().all(|b| b.is_finite());
    // Istio's histograms always have buckets; one without cannot feed quantiles.
    let buckets_ok = point.bucket_counts.len() == point.explicit_bounds.len() + 1;
    bounds_ok && buckets_ok && point.sum.is_none_or(|s| s.is_finite())
}

impl Ingest {
    /// Folds one export request in; `now_ms` is when it was received.
    pub fn observe(
        &mut self,
        windows: &mut Windows,
        request: &ExportMetricsServiceRequest,
        now_ms: i64,
    ) {
        let now_ns = (now_ms.max(0) as u64).saturating_mul(1_000_000);
        for resource_metrics in &request.resource_metrics {
            let attributes = resource_metrics
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default();
            let proxy_id = attribute(attributes, PROXY_ATTRIBUTE)
                .or_else(|| attribute(attributes, "service.instance.id"))
                .unwrap_or_default();
            // Take the proxy out while its points are folded in (the series table is borrowed too).
            let mut proxy = self.proxies.remove(proxy_id).unwrap_or(Proxy {
                pushes: 0,
                last_push_ms: now_ms,
                last: HashMap::new(),
            });
            let known = proxy.pushes > 0;
            for metric in resource_metrics
                .scope_metrics
                .iter()
                .flat_map(|s| s.metrics.iter())
            {
                let Some(istio) = IstioMetric::from_name(&metric.name) else {
                    continue;
                };
                match (&metric.data, istio.is_histogram()) {
                    (Some(Data::Sum(sum)), false) => {
                        for point in &sum.data_points {
                            self.number_point(
                                windows,
                                &mut proxy,
                                istio,
                                sum.aggregation_temporality,
                                point,
                                known,
                                now_ns,
                                now_ms,
                            );
                        }
                    }
                    (Some(Data::Histogram(h)), true) => {
                        for point in &h.data_points {
                            self.histogram_point(
                                windows,
                                &mut proxy,
                                istio,
                                h.aggregation_temporality,
                                point,
                                known,
                                now_ns,
                                now_ms,
                            );
                        }
                    }
                    _ => self.dropped.malformed += 1,
                }
            }
            proxy.pushes += 1;
            proxy.last_push_ms = now_ms;
            self.proxies.insert(proxy_id.to_string(), proxy);
        }
        if now_ms - self.last_sweep_ms > 60_000 {
            self.last_sweep_ms = now_ms;
            self.proxies
                .retain(|_, p| now_ms - p.last_push_ms <= PROXY_IDLE_MS);
        }
    }

    /// The series of a point, created on first sight; `None` when it cannot be kept.
    fn series_id(
        &mut self,
        windows: &mut Windows,
        metric: IstioMetric,
        attributes: &[KeyValue],
        bounds: &[f64],
    ) -> Option<SeriesId> {
        let hash = series_hash(metric, attributes);
        if let Some(ids) = self.index.get(&hash) {
            for id in ids {
                let s = &self.series[*id as usize];
                if s.metric == metric && same_labels(&s.labels, attributes) {
                    return Some(*id);
                }
            }
        }
        if self.series.len() >= MAX_SERIES {
            self.dropped.series_limit += 1;
            return None;
        }
        let Some(labels) = labels_of(&mut self.strings, attributes) else {
            self.dropped.malformed += 1;
            return None;
        };
        let edge = classify(metric, &labels).and_then(|(key, role)| {
            let id = windows.edges.intern(key);
            if id.is_none() {
                self.dropped.edge_limit += 1;
            }
            Some((id?, role))
        });
        let total = if metric.is_histogram() {
            Total::Histogram {
                bounds: bounds.into(),
                counts: vec![0; bounds.len() + 1].into_boxed_slice(),
                sum: 0.0,
                count: 0,
            }
        } else {
            Total::Counter(0.0)
        };
        let id = self.series.len() as SeriesId;
        self.series.push(Series {
            metric,
            labels,
            edge,
            total,
        });
        self.index.entry(hash).or_default().push(id);
        Some(id)
    }

    #[allow(clippy::too_many_arguments)]
    fn number_point(
        &mut self,
        windows: &mut Windows,
        proxy: &mut Proxy,
        metric: IstioMetric,
        temporality: i32,
        point: &NumberDataPoint,
        known: bool,
        now_ns: u64,
        now_ms: i64,
    ) {
        if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
            return;
        }
        let Some(value) = number(point) else {
            self.dropped.malformed += 1;
            return;
        };
        if temporality != AGGREGATION_CUMULATIVE && temporality != AGGREGATION_DELTA {
            self.dropped.malformed += 1;
            return;
        }
        let Some(id) = self.series_id(windows, metric, &point.attributes, &[]) else {
            return;
        };
        let (graph, mesh) = if temporality == AGGREGATION_DELTA {
            (value, value)
        } else {
            let fresh = Cumulative::Counter(value);
            match advance(
                proxy,
                id,
                point.start_time_unix_nano,
                point.time_unix_nano,
                fresh,
                known,
                now_ns,
            ) {
                Advance::Stale => {
                    self.dropped.out_of_order += 1;
                    return;
                }
                Advance::First { counts } => (if counts { value } else { 0.0 }, value),
                Advance::Delta(Change::Counter(d)) => (d, d),
                Advance::Delta(Change::Histogram { .. }) => return,
            }
        };
        let series = &mut self.series[id as usize];
        if let Total::Counter(total) = &mut series.total {
            *total += mesh;
        }
        if graph > 0.0
            && let Some((edge, role)) = series.edge
        {
            let mut stats = Stats::default();
            match role {
                Role::Requests { code, error, mtls } => {
                    stats.requests = graph;
                    stats.errors = if error { graph } else { 0.0 };
                    stats.mtls = if mtls { graph } else { 0.0 };
                    stats.add_code(code, graph);
                }
                Role::TcpRequestBytes { mtls } => {
                    stats.request_bytes = graph;
                    stats.mtls = if mtls { graph } else { 0.0 };
                }
                Role::TcpResponseBytes { mtls } => {
                    stats.response_bytes = graph;
                    stats.mtls = if mtls { graph } else { 0.0 };
                }
                Role::TcpOpened => stats.requests = graph,
                Role::Mtls => stats.mtls = graph,
                Role::Latency | Role::RequestBytes | Role::ResponseBytes => return,
            }
            windows.add(now_ms, edge, &stats);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn histogram_point(
        &mut self,
        windows: &mut Windows,
        proxy: &mut Proxy,
        metric: IstioMetric,
        temporality: i32,
        point: &HistogramDataPoint,
        known: bool,
        now_ns: u64,
        now_ms: i64,
    ) {
        if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
            return;
        }
        if !valid_histogram(point)
            || (temporality != AGGREGATION_CUMULATIVE && temporality != AGGREGATION_DELTA)
        {
            self.dropped.malformed += 1;
            return;
        }
        let Some(id) = self.series_id(windows, metric, &point.attributes, &point.explicit_bounds)
        else {
            return;
        };
        if let Total::Histogram { bounds, .. } = &self.series[id as usize].total
            && **bounds != *point.explicit_bounds
        {
            // Bucket bounds must stay those the series started with.
            self.dropped.malformed += 1;
            return;
        }
        let sum = point.sum.unwrap_or(0.0).max(0.0);
        let buckets: Vec<u64> = point.bucket_counts.clone();
        let (graph, mesh) = if temporality == AGGREGATION_DELTA {
            (Some((sum, buckets.clone())), (sum, buckets, point.count))
        } else {
            let fresh = Cumulative::Histogram {
                count: point.count,
                sum,
                buckets: buckets.clone().into_boxed_slice(),
            };
            match advance(
                proxy,
                id,
                point.start_time_unix_nano,
                point.time_unix_nano,
                fresh,
                known,
                now_ns,
            ) {
                Advance::Stale => {
                    self.dropped.out_of_order += 1;
                    return;
                }
                Advance::First { counts } => (
                    counts.then(|| (sum, buckets.clone())),
                    (sum, buckets, point.count),
                ),
                Advance::Delta(Change::Histogram { sum, buckets }) => {
                    let count = buckets.iter().sum();
                    (Some((sum, buckets.clone())), (sum, buckets, count))
                }
                Advance::Delta(Change::Counter(_)) => return,
            }
        };
        let series = &mut self.series[id as usize];
        if let Total::Histogram {
            counts,
            sum: total_sum,
            count: total_count,
            ..
        } = &mut series.total
        {
            let (sum, buckets, count) = mesh;
            *total_sum += sum;
            *total_count += count;
            for (t, d) in counts.iter_mut().zip(buckets) {
                *t += d;
            }
        }
        let (Some((sum, buckets)), Some((edge, role))) = (graph, series.edge) else {
            return;
        };
        let mut stats = Stats::default();
        match role {
            Role::Latency => {
                let bounds = &point.explicit_bounds;
                for (i, n) in buckets.iter().enumerate() {
                    let upper = bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    stats.add_latency(rebucket(upper), *n);
                }
            }
            Role::RequestBytes => stats.request_bytes = sum,
            Role::ResponseBytes => stats.response_bytes = sum,
            _ => return,
        }
        if !stats.is_empty() {
            windows.add(now_ms, edge, &stats);
        }
    }

    /// Distinct series kept.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }
}

enum Advance {
    /// Older than what was seen: ignore.
    Stale,
    /// First sight; `counts` when its value is new traffic rather than a baseline.
    First {
        counts: bool,
    },
    Delta(Change),
}

/// Moves a proxy's series to `fresh`, returning what changed.
fn advance(
    proxy: &mut Proxy,
    id: SeriesId,
    start: u64,
    time: u64,
    fresh: Cumulative,
    known: bool,
    now_ns: u64,
) -> Advance {
    match proxy.last.entry(id) {
        Entry::Vacant(v) => {
            v.insert(Last {
                start,
                time,
                value: fresh,
            });
            let recent = start > 0 && start.saturating_add(RECENT_START_NS) >= now_ns;
            Advance::First {
                counts: known || recent,
            }
        }
        Entry::Occupied(mut o) => {
            let last = o.get_mut();
            if (time != 0 && last.time != 0 && time <= last.time)
                || (start != 0 && last.start != 0 && start < last.start)
            {
                return Advance::Stale;
            }
            let restarted = start != 0 && last.start != 0 && start > last.start;
            let change = match (&last.value, &fresh) {
                (Cumulative::Counter(old), Cumulative::Counter(new)) => {
                    if restarted || new < old {
                        Change::Counter(*new)
                    } else {
                        Change::Counter(new - old)
                    }
                }
                (
                    Cumulative::Histogram {
                        count: old_count,
                        sum: old_sum,
                        buckets: old_buckets,
                    },
                    Cumulative::Histogram {
                        count,
                        sum,
                        buckets,
                    },
                ) => {
                    let reset = restarted
                        || count < old_count
                        || old_buckets.len() != buckets.len()
                        || old_buckets.iter().zip(buckets.iter()).any(|(o, n)| n < o);
                    if reset {
                        Change::Histogram {
                            sum: *sum,
                            buckets: buckets.to_vec(),
                        }
                    } else {
                        Change::Histogram {
                            sum: (sum - old_sum).max(0.0),
                            buckets: buckets
                                .iter()
                                .zip(old_buckets.iter())
                                .map(|(n, o)| n - o)
                                .collect(),
                        }
                    }
                }
                _ => return Advance::Stale,
            };
            *last = Last {
                start,
                time,
                value: fresh,
            };
            Advance::Delta(change)
        }
    }
}
