//! Istio's standard metrics, served at `/stats/prometheus` and pushed over OTLP.
//!
//! Recording is per worker thread ([`store`]): a request finds its series by a hash of what
//! varies its labels and adds to it under its own thread's lock; label strings are made once per
//! series. Scrapes and OTLP pushes merge the shards.

pub mod families;
pub mod grpc_frames;
pub mod histogram;
pub mod labels;
pub mod otlp;
pub mod prometheus;
pub mod store;
pub mod tcp;

use super::TelemetrySettings;
use super::peer::PeerMeta;
use super::record::{RecordSink, RequestRecord};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use store::Store;
pub use tcp::TcpConnection;

/// The telemetry signals whose drops are always reported, even at zero.
const SIGNALS: [&str; 4] = ["access_log", "spans", "logs", "metrics"];

pub struct Metrics {
    store: Store,
    /// Dropped-item counters by signal (`trellis_telemetry_dropped_total`).
    dropped: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    started: SystemTime,
}

impl Metrics {
    pub fn new(settings: &TelemetrySettings) -> Metrics {
        let dropped: Vec<_> = SIGNALS
            .iter()
            .map(|s| (*s, Arc::new(AtomicU64::new(0))))
            .collect();
        let overflow = dropped[3].1.clone();
        let local = PeerMeta::from_node(&settings.node, &settings.cluster);
        Metrics {
            // Workers are numbered from 0; the main thread shares shard 0 (it rarely records).
            store: Store::new(crate::worker::count(), local, overflow),
            dropped: Mutex::new(dropped),
            started: SystemTime::now(),
        }
    }

    /// A counter of telemetry items dropped for `signal` (`trellis_telemetry_dropped_total`).
    /// Series refused for exceeding the series limit count as dropped `metrics`.
    pub fn dropped_counter(&self, signal: &'static str) -> Arc<AtomicU64> {
        let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = dropped.iter().find(|(s, _)| *s == signal) {
            return c.clone();
        }
        let counter = Arc::new(AtomicU64::new(0));
        dropped.push((signal, counter.clone()));
        counter
    }

    fn dropped_values(&self) -> Vec<(&'static str, u64)> {
        let dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        dropped
            .iter()
            .map(|(s, c)| (*s, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// The metrics in Prometheus text format ([`prometheus::CONTENT_TYPE`]).
    pub fn encode_prometheus(&self) -> String {
        prometheus::encode(&self.store.snapshot(), &self.dropped_values())
    }

    /// The metrics as OTLP data points (cumulative), for the exporter.
    pub fn to_otlp(&self) -> Vec<Metric> {
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let times = otlp::Times {
            start_ns: nanos(self.started),
            now_ns: nanos(SystemTime::now()),
        };
        otlp::encode(&self.store.snapshot(), &self.dropped_values(), times)
    }

    /// Reports an opaque TCP connection as opened (labels as known now: the destination and any
    /// connect failure); the returned handle counts its bytes as they flow and reports the close.
    pub fn tcp_opened(&self, rec: &RequestRecord) -> TcpConnection {
        TcpConnection::opened(self.store.tcp_series(rec))
    }
}

/// HTTP and gRPC requests; opaque TCP connections report through [`Metrics::tcp_opened`].
impl RecordSink for Metrics {
    fn record(&self, record: &RequestRecord) {
        if record.protocol != "TCP" {
            self.store.record_http(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::record::Direction;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use std::collections::BTreeMap;
    use trellis_api::model::NodeIdentity;

    fn metrics() -> Metrics {
        Metrics::new(&TelemetrySettings {
            node: NodeIdentity {
                workload: "reviews-v2".into(),
                namespace: "default".into(),
                service_account: "reviews".into(),
                labels: BTreeMap::from([
                    ("app".to_string(), "reviews".to_string()),
                    ("version".to_string(), "v2".to_string()),
                ]),
            },
            cluster: "Kubernetes".into(),
            ..TelemetrySettings::default()
        })
    }

    #[test]
    fn requests_and_connections_come_out_in_both_encodings() {
        let m = metrics();
        let mut rec = RequestRecord::new(Direction::Inbound, "HTTP/2");
        rec.grpc = true;
        rec.status = 200;
        rec.grpc_status = Some(0);
        rec.request_messages = 3;
        rec.response_messages = 2;
        rec.duration_ms = 7;
        m.record(&rec);
        let tcp = RequestRecord::new(Direction::Inbound, "TCP");
        let conn = m.tcp_opened(&tcp);
        conn.count_sent(10);
        conn.count_received(20);
        drop(conn);
        m.record(&tcp); // the TCP record itself adds nothing more
        m.dropped_counter("spans").fetch_add(4, Ordering::Relaxed);

        let text = m.encode_prometheus();
        assert!(text.contains("# TYPE istio_requests_total counter\n"));
        assert!(text.contains("istio_request_messages_total{reporter=\"destination\""));
        assert!(text.contains(",le=\"10\"} 1\n"), "7 ms is in le=10: {text}");
        assert!(text.contains(",le=\"5\"} 0\n"));
        assert!(text.contains("istio_tcp_connections_closed_total{"));
        assert!(text.contains("request_protocol=\"tcp\""));
        assert!(text.contains("trellis_telemetry_dropped_total{signal=\"spans\"} 4\n"));
        assert!(text.contains("trellis_telemetry_dropped_total{signal=\"access_log\"} 0\n"));

        let otlp = m.to_otlp();
        let find = |name: &str| otlp.iter().find(|m| m.name == name).expect(name);
        let Some(Data::Histogram(h)) = &find("istio_request_duration_milliseconds").data else {
            panic!("histogram expected");
        };
        let p = &h.data_points[0];
        assert_eq!(p.count, 1);
        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
        assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano);
        let Some(Data::Sum(s)) = &find("istio_tcp_received_bytes_total").data else {
            panic!("sum expected");
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.data_points[0].value,
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(20))
        );
        assert!(
            s.data_points[0]
                .attributes
                .iter()
                .any(|kv| kv.key == "destination_workload")
        );
    }
}
