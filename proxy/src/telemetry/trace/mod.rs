//! Spans: each HTTP request gets a span in the trace it arrived with (or a new trace), a SERVER
//! span inbound and a CLIENT span outbound, and the next hop is told that span is its parent.
//!
//! Like Envoy in Istio, the proxy only propagates between its own two sides and the network: the
//! application must copy the trace headers from the request it received to the requests it makes.
//! Sampling is parent-based: a caller's decision (W3C flags, `x-b3-sampled`, B3 debug) is kept;
//! a request without one starts a trace sampled at `--trace-sampling` percent.

pub mod propagation;

use super::TelemetrySettings;
use super::record::{Direction, RequestRecord};
use http::HeaderValue;
use propagation::{Outgoing, carries_context, extract_known, inject_known};

/// The span a request's record reports (only sampled requests have one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The caller's span, absent when this span starts the trace.
    pub parent_span_id: Option<u64>,
    /// The W3C `tracestate` the request arrived with, carried on the exported span.
    pub trace_state: Option<HeaderValue>,
}

impl SpanContext {
    pub fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id.to_be_bytes()
    }

    pub fn span_id_bytes(&self) -> [u8; 8] {
        self.span_id.to_be_bytes()
    }

    /// The trace id as 32 lower-case hex digits (as `traceparent` and Jaeger spell it).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// Starts each request's span and rewrites its propagation headers.
pub struct Tracer {
    /// Percentage (0–100) of new traces sampled.
    sampling: f64,
}

impl Tracer {
    pub fn new(settings: &TelemetrySettings) -> Tracer {
        Tracer {
            sampling: settings.trace_sampling.clamp(0.0, 100.0),
        }
    }

    /// Reads the incoming context, starts this proxy's span (recorded in `rec.span` when
    /// sampled) and writes the headers so that the next hop, the upstream outbound or the
    /// application inbound, sees this span as its parent. The direction only decides the span's
    /// kind when it is exported.
    pub fn on_request(
        &self,
        _direction: Direction,
        headers: &mut http::HeaderMap,
        rec: &mut RequestRecord,
    ) {
        let carried = carries_context(headers);
        let incoming = extract_known(headers, carried);
        let sampled = incoming.sampled.unwrap_or_else(|| self.sample());
        let trace_id = incoming.trace_id.unwrap_or_else(new_trace_id);
        let span_id = new_span_id();
        inject_known(
            headers,
            &Outgoing {
                trace_id,
                span_id,
                parent_span_id: incoming.span_id,
                sampled,
                debug: incoming.debug,
                trace_state: incoming.trace_state.as_ref(),
                b3_single: incoming.b3_single,
            },
            carried,
        );
        rec.span = sampled.then(|| SpanContext {
            trace_id,
            span_id,
            parent_span_id: incoming.span_id,
            trace_state: incoming.trace_state,
        });
    }

    fn sample(&self) -> bool {
        self.sampling >= 100.0 || (self.sampling > 0.0 && fastrand::f64() * 100.0 < self.sampling)
    }
}

/// A random, never zero, trace id.
fn new_trace_id() -> u128 {
    fastrand::u128(1..)
}

/// A random, never zero, span id.
fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::record::Direction;
    use http::HeaderMap;

    fn tracer(sampling: f64) -> Tracer {
        Tracer { sampling }
    }

    fn run(t: &Tracer, pairs: &[(&'static str, &str)]) -> (HeaderMap, RequestRecord) {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        let mut rec = RequestRecord::new(Direction::Outbound, "HTTP/1.1");
        t.on_request(Direction::Outbound, &mut h, &mut rec);
        (h, rec)
    }

    #[test]
    fn continues_the_callers_trace_with_a_child_span() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (h, rec) = run(&tracer(0.0), &[("traceparent", parent)]);
        let span = rec.span.expect("a sampled caller is sampled even at 0%");
        assert_eq!(span.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.parent_span_id, Some(0x00f067aa0ba902b7));
        assert_ne!(span.span_id, 0x00f067aa0ba902b7);
        assert_eq!(
            h["traceparent"],
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                span.span_id_hex()
            )
        );
        assert_eq!(h["x-b3-spanid"], span.span_id_hex());
        assert_eq!(h["x-b3-parentspanid"], "00f067aa0ba902b7");
    }

    #[test]
    fn honours_a_not_sampled_caller_and_still_propagates() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let (h, rec) = run(&tracer(100.0), &[("traceparent", parent)]);
        assert!(rec.span.is_none());
        let tp = h["traceparent"].to_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-00"));
        assert_eq!(h["x-b3-sampled"], "0");
        assert!(
            h.get("x-b3-traceid").is_none(),
            "B3 ids only for sampled traces"
        );
    }

    #[test]
    fn new_traces_follow_the_sampling_rate() {
        let (h, rec) = run(&tracer(100.0), &[]);
        let span = rec.span.expect("100% samples everything");
        assert_eq!(span.parent_span_id, None);
        assert!(h["traceparent"].to_str().unwrap().ends_with("-01"));
        assert!(h.get("x-b3-parentspanid").is_none());
        let (h, rec) = run(&tracer(0.0), &[]);
        assert!(rec.span.is_none());
        assert!(h["traceparent"].to_str().unwrap().ends_with("-00"));
        // A B3 context without a decision is decided here.
        let (_, rec) = run(
            &tracer(100.0),
            &[
                ("x-b3-traceid", "a3ce929d0e0e4736"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
            ],
        );
        assert_eq!(rec.span.unwrap().trace_id, 0xa3ce929d0e0e4736);
        let sampled = (0..2000)
            .filter(|_| run(&tracer(25.0), &[]).1.span.is_some())
            .count();
        assert!((300..700).contains(&sampled), "{sampled} of 2000 at 25%");
    }

    #[test]
    fn garbage_headers_start_a_new_trace() {
        let (h, rec) = run(
            &tracer(100.0),
            &[
                ("traceparent", "00-zzzz-yyyy-01"),
                ("x-b3-traceid", "00000000000000000000000000000000"),
                ("x-b3-spanid", "0000000000000000"),
                ("b3", "nonsense-here-too-and-more"),
            ],
        );
        let span = rec.span.unwrap();
        assert_eq!(span.parent_span_id, None);
        assert_eq!(h["x-b3-traceid"], span.trace_id_hex());
        assert!(h.get("b3").is_none());
    }
}
