//! The graph from traces: edges between services that are not (both) in the mesh, from spans.
//!
//! A span whose parent span belongs to another `service.name` is one call from the parent's
//! service to the span's service (a CLIENT/PRODUCER span and its SERVER/CONSUMER child, or any
//! span under another service's span). Calls where both sides are mesh proxies are left out:
//! metrics already give those edges. Parents and children arrive in any order and any batch, so
//! recent spans are kept in a bounded index by (trace id, span id), and children whose parent has
//! not arrived yet wait, bounded too; the oldest entries go first.
//!
//! A call's latency is the client span's duration when the parent is a CLIENT/PRODUCER span
//! (what the caller waited), else the child's; it is an error when either span's status is
//! ERROR. Only sampled spans reach the collector, so trace edges count sampled calls.

use super::ingest::{PROXY_ATTRIBUTE, attribute};
use super::model::{Code, EdgeKey, Protocol, Service, Source, Stats, rebucket};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use std::collections::{HashMap, VecDeque};

/// Most spans kept for joining, and most children waiting for their parent.
pub const MAX_SPANS: usize = 100_000;
pub const MAX_WAITING: usize = 50_000;

type SpanKey = ([u8; 16], [u8; 8]);

/// What a join needs of a span.
#[derive(Debug, Clone)]
struct Seen {
    service: Service,
    mesh: bool,
    kind: i32,
    duration_ms: f64,
    error: bool,
    protocol: Protocol,
    code: Code,
}

/// Recent spans by id, and children waiting for their parent.
#[derive(Default)]
pub struct SpanIndex {
    spans: HashMap<SpanKey, Seen>,
    order: VecDeque<SpanKey>,
    waiting: HashMap<SpanKey, Vec<Seen>>,
    waiting_order: VecDeque<SpanKey>,
    waiting_count: usize,
    /// Spans with ids of the wrong length.
    pub malformed: u64,
}

fn ids(trace: &[u8], span: &[u8]) -> Option<SpanKey> {
    Some((trace.try_into().ok()?, span.try_into().ok()?))
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            any_value::Value::StringValue(s) => s.parse().ok(),
            _ => None,
        }
    })
}

/// The service a span belongs to: a proxy's `service.name` is `<canonical service>.<namespace>`;
/// other applications' `service.name` in `service.namespace` (or "unknown").
fn service_of(resource: &[KeyValue], mesh: bool) -> Service {
    let name = attribute(resource, "service.name").unwrap_or("unknown_service");
    if mesh && let Some((service, namespace)) = name.rsplit_once('.') {
        return Service {
            namespace: namespace.to_string(),
            name: service.to_string(),
        };
    }
    Service {
        namespace: attribute(resource, "service.namespace")
            .unwrap_or("unknown")
            .to_string(),
        name: name.to_string(),
    }
}

fn seen(span: &Span, service: &Service, mesh: bool) -> Seen {
    let attrs = &span.attributes;
    let grpc = attribute(attrs, "rpc.system") == Some("grpc");
    let (protocol, code) = if grpc {
        let code = int_attribute(attrs, "rpc.grpc.status_code")
            .and_then(|c| u16::try_from(c).ok())
            .map_or(Code::NONE, Code);
        (Protocol::Grpc, code)
    } else {
        let code = int_attribute(attrs, "http.response.status_code")
            .or_else(|| int_attribute(attrs, "http.status_code"))
            .and_then(|c| u16::try_from(c).ok())
            .map_or(Code::NONE, Code);
        (Protocol::Http, code)
    };
    let duration_ns = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    Seen {
        service: service.clone(),
        mesh,
        kind: span.kind,
        duration_ms: duration_ns as f64 / 1e6,
        error: span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32),
        protocol,
        code,
    }
}

/// One call between two services, if the pair makes a trace edge.
fn call(parent: &Seen, child: &Seen) -> Option<(EdgeKey, Stats)> {
    if parent.service == child.service || (parent.mesh && child.mesh) {
        return None;
    }
    let client = parent.kind == SpanKind::Client as i32 || parent.kind == SpanKind::Producer as i32;
    let duration = if client {
        parent.duration_ms
    } else {
        child.duration_ms
    };
    let protocol = if parent.protocol == Protocol::Grpc || child.protocol == Protocol::Grpc {
        Protocol::Grpc
    } else {
        Protocol::Http
    };
    let code = if child.code != Code::NONE {
        child.code
    } else {
        parent.code
    };
    let error = parent.error || child.error;
    let mut stats = Stats {
        requests: 1.0,
        errors: if error { 1.0 } else { 0.0 },
        ..Stats::default()
    };
    stats.add_code(code, 1.0);
    stats.add_latency(rebucket(duration), 1);
    let key = EdgeKey {
        protocol,
        source: Source::Service(parent.service.clone()),
        service: Some(child.service.clone()),
        destination: None,
        from_traces: true,
    };
    Some((key, stats))
}

impl SpanIndex {
    /// Indexes the spans of a request and returns the calls they complete.
    pub fn observe(&mut self, request: &ExportTraceServiceRequest) -> Vec<(EdgeKey, Stats)> {
        let mut calls = Vec::new();
        for resource_spans in &request.resource_spans {
            let resource = resource_spans
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default();
            let mesh = attribute(resource, PROXY_ATTRIBUTE).is_some();
            let service = service_of(resource, mesh);
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                let Some(key) = ids(&span.trace_id, &span.span_id) else {
                    self.malformed += 1;
                    continue;
                };
                let this = seen(span, &service, mesh);
                if !span.parent_span_id.is_empty() {
                    match ids(&span.trace_id, &span.parent_span_id) {
                        Some(parent_key) => match self.spans.get(&parent_key) {
                            Some(parent) => calls.extend(call(parent, &this)),
                            None => self.wait(parent_key, this.clone()),
                        },
                        None => self.malformed += 1,
                    }
                }
                if let Some(children) = self.waiting.remove(&key) {
                    self.waiting_count -= children.len();
                    calls.extend(children.iter().filter_map(|child| call(&this, child)));
                }
                self.remember(key, this);
            }
        }
        calls
    }

    fn remember(&mut self, key: SpanKey, seen: Seen) {
        if self.spans.insert(key, seen).is_none() {
            self.order.push_back(key);
        }
        while self.spans.len() > MAX_SPANS {
            match self.order.pop_front() {
                Some(old) => {
                    self.spans.remove(&old);
                }
                None => break,
            }
        }
    }

    fn wait(&mut self, parent: SpanKey, child: Seen) {
        let list = self.waiting.entry(parent).or_default();
        if list.is_empty() {
            self.waiting_order.push_back(parent);
        }
        list.push(child);
        self.waiting_count += 1;
        // The order also holds parents that arrived since (their entry is gone): bound it too.
        while self.waiting_count > MAX_WAITING || self.waiting_order.len() > 2 * MAX_WAITING {
            let Some(old) = self.waiting_order.pop_front() else {
                break;
            };
            if let Some(dropped) = self.waiting.remove(&old) {
                self.waiting_count -= dropped.len();
            }
        }
    }

    /// Spans held for joining (indexed and waiting).
    pub fn held(&self) -> usize {
        self.spans.len() + self.waiting_count
    }
}
