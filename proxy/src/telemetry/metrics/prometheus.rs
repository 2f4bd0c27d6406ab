//! Prometheus text exposition format 0.0.4 (what Istio's `/stats/prometheus` serves and every
//! Prometheus scrapes). Counters keep their `_total` names, as Istio's dashboards query them.

use super::families::{DROPPED, DROPPED_HELP, FAMILIES, Value};
use super::histogram::{ENVOY_BOUNDS, Histogram, format_bound};
use super::store::Snapshot;
use std::fmt::Write;

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family with at least one series, then the dropped-items counter (always present).
pub fn encode(snapshot: &Snapshot, dropped: &[(&'static str, u64)]) -> String {
    let mut out = String::with_capacity(4096 + snapshot.http.len() * 6000);
    for family in FAMILIES {
        match &family.value {
            Value::HttpCounter { get, grpc_only } => {
                let mut series = snapshot
                    .http
                    .iter()
                    .filter(|(_, d)| d.grpc || !grpc_only)
                    .peekable();
                if series.peek().is_some() {
                    header(&mut out, family.name, family.help, "counter");
                    for (labels, data) in series {
                        let _ = writeln!(out, "{}{{{}}} {}", family.name, labels.text, get(data));
                    }
                }
            }
            Value::HttpHistogram(get) => {
                if !snapshot.http.is_empty() {
                    header(&mut out, family.name, family.help, "histogram");
                    for (labels, data) in &snapshot.http {
                        histogram(&mut out, family.name, &labels.text, get(data));
                    }
                }
            }
            Value::TcpCounter(get) => {
                if !snapshot.tcp.is_empty() {
                    header(&mut out, family.name, family.help, "counter");
                    for (labels, data) in &snapshot.tcp {
                        let _ = writeln!(out, "{}{{{}}} {}", family.name, labels.text, get(data));
                    }
                }
            }
        }
    }
    header(&mut out, DROPPED, DROPPED_HELP, "counter");
    for (signal, count) in dropped {
        let _ = writeln!(out, "{DROPPED}{{signal=\"{signal}\"}} {count}");
    }
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (bound, count) in ENVOY_BOUNDS.iter().zip(h.buckets.iter()) {
        cumulative += count;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
            format_bound(*bound)
        );
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}
