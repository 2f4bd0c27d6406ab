//! A finished request as an OTLP span.
//!
//! Names follow Envoy in Istio: `<host>:<port>/*`, the authority the request was made to (port 80
//! when it names none), so the client span of one proxy and the server span of the next carry
//! the same operation name. Attributes follow the OpenTelemetry HTTP semantic conventions, plus
//! the tags Istio's proxies put on spans (`upstream_cluster`, `response_flags`, `istio.*`).

use super::Finished;
use super::resource::{Source, attribute, int, string};
use crate::route::split_authority;
use crate::telemetry::record::{Direction, RequestRecord};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use std::sync::Arc;

/// W3C trace flags "sampled", and OTLP's "whether the parent is remote is known" and "it is".
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// One export request with the spans of `batch` (records without a span are skipped).
pub fn request(source: &Source, batch: &[Arc<Finished>]) -> ExportTraceServiceRequest {
    let spans = batch.iter().filter_map(|f| span(source, f)).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(source.resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(source.scope.clone()),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// The span of a finished request, if it was sampled.
pub fn span(source: &Source, finished: &Finished) -> Option<Span> {
    let r = &finished.record;
    let ctx = r.span.as_ref()?;
    let error = is_error(r);
    let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
    if ctx.parent_span_id.is_some() {
        flags |= FLAG_IS_REMOTE;
    }
    Some(Span {
        trace_id: ctx.trace_id_bytes().to_vec(),
        span_id: ctx.span_id_bytes().to_vec(),
        trace_state: ctx
            .trace_state
            .as_ref()
            .and_then(|s| s.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        parent_span_id: ctx
            .parent_span_id
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        flags,
        name: operation(r),
        kind: match r.direction {
            Direction::Outbound => SpanKind::Client,
            Direction::Inbound => SpanKind::Server,
        } as i32,
        start_time_unix_nano: unix_nanos(r.start_time),
        end_time_unix_nano: unix_nanos(finished.end).max(unix_nanos(r.start_time)),
        attributes: attributes(source, r, error),
        status: Some(Status {
            code: if error {
                StatusCode::Error
            } else {
                StatusCode::Unset
            } as i32,
            message: if error {
                r.details.to_string()
            } else {
                String::new()
            },
        }),
        ..Span::default()
    })
}

/// `<host>:<port>/*` of the request's authority; the upstream cluster when there was none.
pub fn operation(r: &RequestRecord) -> String {
    let authority = r.authority.to_ascii_lowercase();
    if authority.is_empty() {
        return match &r.upstream_cluster {
            Some(cluster) => format!("{cluster}/*"),
            None => "unknown/*".to_string(),
        };
    }
    let (host, port) = split_authority(&authority);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("{host}:{}/*", port.unwrap_or(80))
}

/// A server error (5xx) or a gRPC status other than OK, as Envoy marks spans.
fn is_error(r: &RequestRecord) -> bool {
    r.status >= 500 || r.grpc_status.is_some_and(|c| c != 0)
}

fn attributes(source: &Source, r: &RequestRecord, error: bool) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(24);
    if let Some(method) = &r.method {
        if KNOWN_METHODS.contains(&method.as_str()) {
            a.push(string("http.request.method", method.as_str()));
        } else {
            a.push(string("http.request.method", "_OTHER"));
            a.push(string("http.request.method_original", method.as_str()));
        }
    }
    if let Some(pq) = &r.path {
        a.push(string("url.path", pq.path()));
    }
    a.push(string("url.scheme", "http"));
    let (host, port) = split_authority(&r.authority);
    if !host.is_empty() {
        a.push(string("server.address", host));
        a.push(int("server.port", i64::from(port.unwrap_or(80))));
    }
    if r.status != 0 {
        a.push(int("http.response.status_code", i64::from(r.status)));
    }
    if let Some(version) = r.protocol.strip_prefix("HTTP/") {
        a.push(string("network.protocol.version", version));
    }
    if let Some(ua) = r.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
        a.push(string("user_agent.original", ua));
    }
    if let Some(code) = r.grpc_status {
        a.push(string("rpc.system", "grpc"));
        a.push(int("rpc.grpc.status_code", i64::from(code)));
    }
    if let Some(client) = r
        .downstream_remote
        .filter(|_| r.direction == Direction::Inbound)
    {
        a.push(string("client.address", client.ip().to_string()));
    }
    if let Some(peer) = r.upstream_host.as_deref() {
        a.push(string("upstream_host", peer));
    }
    a.push(int("http.request.body.size", r.bytes_received as i64));
    a.push(int("http.response.body.size", r.bytes_sent as i64));
    if error {
        let kind = match r.grpc_status.filter(|&c| c != 0) {
            Some(code) => code.to_string(),
            None => r.status.to_string(),
        };
        a.push(string("error.type", kind));
        a.push(attribute("error", any_value::Value::BoolValue(true)));
    }
    if let Some(cluster) = r.upstream_cluster.as_deref() {
        a.push(string("upstream_cluster", cluster));
    }
    a.push(string("response_flags", r.flags.to_string()));
    if let Some(id) = r.request_id.as_ref().and_then(|v| v.to_str().ok()) {
        a.push(string("guid:x-request-id", id));
    }
    a.push(string("component", "proxy"));
    a.extend(source.span_tags.iter().cloned());
    a
}

/// Methods the semantic conventions name as they are; others are `_OTHER`.
const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

pub fn unix_nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::TelemetrySettings;
    use crate::telemetry::trace::SpanContext;
    use std::time::Duration;

    fn finished(direction: Direction, status: u16, grpc: Option<u32>) -> Finished {
        let mut r = RequestRecord::new(direction, "HTTP/2");
        r.method = Some(http::Method::POST);
        r.path = Some("/shop/cart?id=7".parse().unwrap());
        r.authority = "Reviews:9080".into();
        r.status = status;
        r.grpc_status = grpc;
        r.upstream_cluster = Some("outbound|9080||reviews".into());
        r.span = Some(SpanContext {
            trace_id: 0x0af7651916cd43dd8448eb211c80319c,
            span_id: 0xb7ad6b7169203331,
            parent_span_id: Some(0x00f067aa0ba902b7),
            trace_state: Some("congo=t61rcWkgMzE".parse().unwrap()),
        });
        let end = r.start_time + Duration::from_millis(12);
        Finished { record: r, end }
    }

    fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_client_span_carries_ids_times_and_http_attributes() {
        let source = Source::new(&TelemetrySettings::default());
        let f = finished(Direction::Outbound, 200, None);
        let s = span(&source, &f).unwrap();
        assert_eq!(s.name, "reviews:9080/*");
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(hex::encode(&s.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex::encode(&s.span_id), "b7ad6b7169203331");
        assert_eq!(hex::encode(&s.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(s.trace_state, "congo=t61rcWkgMzE");
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 12_000_000);
        assert_eq!(s.status.as_ref().unwrap().code, StatusCode::Unset as i32);
        let text = |k| match attr(&s, k) {
            Some(any_value::Value::StringValue(v)) => v.clone(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(text("http.request.method"), "POST");
        assert_eq!(text("url.path"), "/shop/cart");
        assert_eq!(text("network.protocol.version"), "2");
        assert_eq!(text("upstream_cluster"), "outbound|9080||reviews");
        assert_eq!(text("response_flags"), "-");
        assert_eq!(
            attr(&s, "http.response.status_code"),
            Some(&any_value::Value::IntValue(200))
        );
        assert!(attr(&s, "rpc.grpc.status_code").is_none());
        assert!(attr(&s, "istio.canonical_service").is_some());
    }

    #[test]
    fn server_errors_and_grpc_failures_are_errors() {
        let source = Source::new(&TelemetrySettings::default());
        let s = span(&source, &finished(Direction::Inbound, 503, None)).unwrap();
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(s.status.unwrap().code, StatusCode::Error as i32);
        let s = span(&source, &finished(Direction::Inbound, 404, None)).unwrap();
        assert_eq!(s.status.unwrap().code, StatusCode::Unset as i32);
        let s = span(&source, &finished(Direction::Outbound, 200, Some(14))).unwrap();
        assert_eq!(
            attr(&s, "rpc.grpc.status_code"),
            Some(&any_value::Value::IntValue(14))
        );
        assert_eq!(s.status.unwrap().code, StatusCode::Error as i32);
        let mut unsampled = finished(Direction::Outbound, 200, None);
        unsampled.record.span = None;
        assert!(span(&source, &unsampled).is_none());
    }

    #[test]
    fn operations_default_the_port_and_survive_odd_authorities() {
        let mut r = RequestRecord::new(Direction::Outbound, "HTTP/1.1");
        r.authority = "details".into();
        assert_eq!(operation(&r), "details:80/*");
        r.authority = "[::1]:8080".into();
        assert_eq!(operation(&r), "[::1]:8080/*");
        r.authority = String::new();
        assert_eq!(operation(&r), "unknown/*");
    }
}
