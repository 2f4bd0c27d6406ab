//! The same data as OTLP metrics, for the push exporter: cumulative monotonic Sums for counters
//! and cumulative explicit-bucket Histograms, Istio's names, labels as attributes, start time =
//! proxy start.

use super::families::{DROPPED, DROPPED_HELP, FAMILIES, Family, Value};
use super::histogram::{ENVOY_BOUNDS, Histogram};
use super::labels::LabelSet;
use super::store::Snapshot;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, Sum, metric,
    number_data_point,
};

/// Timestamps of the points: the proxy's start and now, nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub start_ns: u64,
    pub now_ns: u64,
}

pub fn encode(snapshot: &Snapshot, dropped: &[(&'static str, u64)], t: Times) -> Vec<Metric> {
    let mut out = Vec::with_capacity(FAMILIES.len() + 1);
    for family in FAMILIES {
        let metric = match &family.value {
            Value::HttpCounter { get, grpc_only } => sum(
                family,
                snapshot
                    .http
                    .iter()
                    .filter(|(_, d)| d.grpc || !grpc_only)
                    .map(|(l, d)| point(attributes(l), get(d), t))
                    .collect(),
            ),
            Value::HttpHistogram(get) => histogram(
                family,
                snapshot
                    .http
                    .iter()
                    .map(|(l, d)| histogram_point(attributes(l), get(d), t))
                    .collect(),
            ),
            Value::TcpCounter(get) => sum(
                family,
                snapshot
                    .tcp
                    .iter()
                    .map(|(l, d)| point(attributes(l), get(d), t))
                    .collect(),
            ),
        };
        if let Some(metric) = metric {
            out.push(metric);
        }
    }
    let dropped_points = dropped
        .iter()
        .map(|(signal, n)| point(vec![string_attribute("signal", signal)], *n, t))
        .collect();
    out.push(Metric {
        name: DROPPED.into(),
        description: DROPPED_HELP.into(),
        unit: "1".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: dropped_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    });
    out
}

fn sum(family: &Family, points: Vec<NumberDataPoint>) -> Option<Metric> {
    (!points.is_empty()).then(|| Metric {
        name: family.name.into(),
        description: family.help.into(),
        unit: family.unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    })
}

fn histogram(family: &Family, points: Vec<HistogramDataPoint>) -> Option<Metric> {
    (!points.is_empty()).then(|| Metric {
        name: family.name.into(),
        description: family.help.into(),
        unit: family.unit.into(),
        data: Some(metric::Data::Histogram(
            opentelemetry_proto::tonic::metrics::v1::Histogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            },
        )),
        ..Metric::default()
    })
}

fn point(attributes: Vec<KeyValue>, value: u64, t: Times) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: t.start_ns,
        time_unix_nano: t.now_ns,
        value: Some(number_data_point::Value::AsInt(
            i64::try_from(value).unwrap_or(i64::MAX),
        )),
        ..NumberDataPoint::default()
    }
}

fn histogram_point(attributes: Vec<KeyValue>, h: &Histogram, t: Times) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: t.start_ns,
        time_unix_nano: t.now_ns,
        count: h.count(),
        sum: Some(h.sum as f64),
        bucket_counts: h.buckets.to_vec(),
        explicit_bounds: ENVOY_BOUNDS.to_vec(),
        ..HistogramDataPoint::default()
    }
}

/// Labels as string attributes; empty values (a plain HTTP request's `grpc_response_status`) are
/// left out, as Prometheus treats an empty label as absent.
fn attributes(labels: &LabelSet) -> Vec<KeyValue> {
    labels
        .pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| string_attribute(k, v))
        .collect()
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}
