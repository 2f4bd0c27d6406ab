//! Simulated proxies pushing Istio's standard metrics over OTLP, shaped as Trellis proxies push
//! them: cumulative Sums and Histograms (Envoy's default buckets), Istio's names and full label
//! sets as data point attributes, resource attribute `trellis.proxy`. Shared by the graph tests
//! and the graph benchmark.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::BTreeMap;

/// Istio's request duration buckets (Envoy's defaults), milliseconds.
pub const ENVOY_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Byte size buckets (Istio's `istio_request_bytes`: exponential, 1 to 10^8).
pub const BYTE_BUCKETS: [f64; 8] = [
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];

const CUMULATIVE: i32 = 2;

pub use testkit::otlp::build::string_kv as kv;

/// A workload: namespace, name, app, version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct W {
    pub ns: &'static str,
    pub name: &'static str,
    pub app: &'static str,
    pub version: &'static str,
}

pub const fn w(
    ns: &'static str,
    name: &'static str,
    app: &'static str,
    version: &'static str,
) -> W {
    W {
        ns,
        name,
        app,
        version,
    }
}

/// One kind of request, as a proxy labels it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub reporter: &'static str,
    /// `None`: from outside the mesh.
    pub source: Option<W>,
    /// Service namespace and name.
    pub service: Option<(String, String)>,
    pub destination: Option<W>,
    pub protocol: &'static str,
    pub code: &'static str,
    pub grpc_status: &'static str,
    pub mtls: bool,
}

impl Call {
    pub fn http(
        reporter: &'static str,
        source: Option<W>,
        service: (&str, &str),
        destination: Option<W>,
    ) -> Call {
        Call {
            reporter,
            source,
            service: Some((service.0.to_string(), service.1.to_string())),
            destination,
            protocol: "http",
            code: "200",
            grpc_status: "",
            mtls: true,
        }
    }

    pub fn code(mut self, code: &'static str) -> Call {
        self.code = code;
        self
    }

    pub fn grpc(mut self, status: &'static str) -> Call {
        self.protocol = "grpc";
        self.grpc_status = status;
        self
    }

    pub fn plaintext(mut self) -> Call {
        self.mtls = false;
        self
    }

    /// Istio's full label set for this call.
    pub fn labels(&self, tcp: bool) -> Vec<(String, String)> {
        let u = "unknown";
        let (s, d) = (self.source, self.destination);
        let side = |x: Option<W>, f: fn(&W) -> &'static str| x.as_ref().map_or(u, f).to_string();
        let (svc_ns, svc_name) = self
            .service
            .clone()
            .unwrap_or_else(|| (u.to_string(), u.to_string()));
        let host = if self.service.is_some() {
            format!("{svc_name}.{svc_ns}.svc.cluster.local")
        } else {
            u.to_string()
        };
        let principal = |x: Option<W>| {
            x.map_or(u.to_string(), |w| {
                format!("spiffe://cluster.local/ns/{}/sa/{}", w.ns, w.app)
            })
        };
        let mut v = vec![
            ("reporter", self.reporter.to_string()),
            ("source_workload", side(s, |w| w.name)),
            ("source_workload_namespace", side(s, |w| w.ns)),
            (
                "source_principal",
                if self.mtls {
                    principal(s)
                } else {
                    u.to_string()
                },
            ),
            ("source_app", side(s, |w| w.app)),
            ("source_version", side(s, |w| w.version)),
            ("source_canonical_service", side(s, |w| w.app)),
            ("source_canonical_revision", side(s, |w| w.version)),
            ("source_cluster", "Kubernetes".to_string()),
            ("destination_workload", side(d, |w| w.name)),
            ("destination_workload_namespace", side(d, |w| w.ns)),
            (
                "destination_principal",
                if self.mtls {
                    principal(d)
                } else {
                    u.to_string()
                },
            ),
            ("destination_app", side(d, |w| w.app)),
            ("destination_version", side(d, |w| w.version)),
            ("destination_service", host),
            ("destination_service_name", svc_name),
            ("destination_service_namespace", svc_ns),
            ("destination_canonical_service", side(d, |w| w.app)),
            ("destination_canonical_revision", side(d, |w| w.version)),
            ("destination_cluster", "Kubernetes".to_string()),
            (
                "request_protocol",
                if tcp { "tcp" } else { self.protocol }.to_string(),
            ),
            (
                "connection_security_policy",
                if self.mtls { "mutual_tls" } else { "none" }.to_string(),
            ),
        ];
        if !tcp {
            v.push(("response_code", self.code.to_string()));
            v.push(("grpc_response_status", self.grpc_status.to_string()));
            v.push(("response_flags", "-".to_string()));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

type Key = (String, Vec<(String, String)>);

/// A proxy's cumulative Istio metrics.
#[derive(Debug, Clone)]
pub struct ProxySim {
    pub id: String,
    pub start_ms: i64,
    /// Counter names end in `_total` (else without, as some OTLP exporters name them).
    pub total_suffix: bool,
    sums: BTreeMap<Key, f64>,
    histograms: BTreeMap<Key, (Vec<u64>, f64)>,
}

fn bucket(bounds: &[f64], value: f64) -> usize {
    bounds
        .iter()
        .position(|b| value <= *b)
        .unwrap_or(bounds.len())
}

impl ProxySim {
    pub fn new(id: &str, start_ms: i64) -> ProxySim {
        ProxySim {
            id: id.to_string(),
            start_ms,
            total_suffix: true,
            sums: BTreeMap::new(),
            histograms: BTreeMap::new(),
        }
    }

    fn counter_name(&self, base: &str) -> String {
        if self.total_suffix {
            format!("{base}_total")
        } else {
            base.to_string()
        }
    }

    fn observe(
        &mut self,
        name: &str,
        labels: &[(String, String)],
        bounds: &[f64],
        value: f64,
        n: u64,
    ) {
        let (counts, sum) = self
            .histograms
            .entry((name.to_string(), labels.to_vec()))
            .or_insert_with(|| (vec![0; bounds.len() + 1], 0.0));
        counts[bucket(bounds, value)] += n;
        *sum += value * n as f64;
    }

    /// `n` requests of `call`, each taking `latency_ms` with the given body sizes.
    pub fn requests(
        &mut self,
        call: &Call,
        n: u64,
        latency_ms: f64,
        request_bytes: f64,
        response_bytes: f64,
    ) {
        let labels = call.labels(false);
        *self
            .sums
            .entry((self.counter_name("istio_requests"), labels.clone()))
            .or_default() += n as f64;
        self.observe(
            "istio_request_duration_milliseconds",
            &labels,
            &ENVOY_BUCKETS,
            latency_ms,
            n,
        );
        self.observe(
            "istio_request_bytes",
            &labels,
            &BYTE_BUCKETS,
            request_bytes,
            n,
        );
        self.observe(
            "istio_response_bytes",
            &labels,
            &BYTE_BUCKETS,
            response_bytes,
            n,
        );
    }

    /// TCP traffic of `call`: bytes sent by the server (response), received (request), connections.
    pub fn tcp(&mut self, call: &Call, sent: f64, received: f64, opened: u64) {
        let labels = call.labels(true);
        for (base, v) in [
            ("istio_tcp_sent_bytes", sent),
            ("istio_tcp_received_bytes", received),
            ("istio_tcp_connections_opened", opened as f64),
        ] {
            *self
                .sums
                .entry((self.counter_name(base), labels.clone()))
                .or_default() += v;
        }
    }

    /// Starts over, as after a restart at `start_ms`: every counter back to zero.
    pub fn restart(&mut self, start_ms: i64) {
        self.start_ms = start_ms;
        self.sums.values_mut().for_each(|v| *v = 0.0);
        for (counts, sum) in self.histograms.values_mut() {
            counts.iter_mut().for_each(|c| *c = 0);
            *sum = 0.0;
        }
    }

    /// The OTLP export of everything so far, at `now_ms`.
    pub fn export(&self, now_ms: i64) -> ExportMetricsServiceRequest {
        let start = self.start_ms as u64 * 1_000_000;
        let time = now_ms as u64 * 1_000_000;
        let attrs =
            |labels: &[(String, String)]| labels.iter().map(|(k, v)| kv(k, v)).collect::<Vec<_>>();
        let mut sums: BTreeMap<&str, Vec<NumberDataPoint>> = BTreeMap::new();
        for ((name, labels), value) in &self.sums {
            sums.entry(name).or_default().push(NumberDataPoint {
                attributes: attrs(labels),
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsDouble(*value)),
                ..Default::default()
            });
        }
        let mut histograms: BTreeMap<&str, Vec<HistogramDataPoint>> = BTreeMap::new();
        for ((name, labels), (counts, sum)) in &self.histograms {
            let bounds = if name == "istio_request_duration_milliseconds" {
                ENVOY_BUCKETS.to_vec()
            } else {
                BYTE_BUCKETS.to_vec()
            };
            histograms
                .entry(name)
                .or_default()
                .push(HistogramDataPoint {
                    attributes: attrs(labels),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count: counts.iter().sum(),
                    sum: Some(*sum),
                    bucket_counts: counts.clone(),
                    explicit_bounds: bounds,
                    ..Default::default()
                });
        }
        let mut metrics: Vec<Metric> = sums
            .into_iter()
            .map(|(name, data_points)| Metric {
                name: name.to_string(),
                data: Some(Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: CUMULATIVE,
                    is_monotonic: true,
                })),
                ..Default::default()
            })
            .collect();
        metrics.extend(histograms.into_iter().map(|(name, data_points)| {
            Metric {
                name: name.to_string(),
                unit: if name.ends_with("milliseconds") {
                    "ms"
                } else {
                    "By"
                }
                .to_string(),
                data: Some(Data::Histogram(Histogram {
                    data_points,
                    aggregation_temporality: CUMULATIVE,
                })),
                ..Default::default()
            }
        }));
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("trellis.proxy", &self.id),
                        kv("service.name", "trellis-proxy"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}
