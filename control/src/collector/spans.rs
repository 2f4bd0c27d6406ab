//! OTLP spans flattened into storage rows, validated on the way: a span without a valid trace or
//! span id, or without a start time, is rejected (and counted in the OTLP partial-success answer)
//! while the rest of the request is kept.

use super::json;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::fmt::Write as _;
use std::sync::Arc;

/// The service of a resource without `service.name` (the SDKs' default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// One span as stored (see `migrations-telemetry`).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: String,
    pub service: String,
    pub operation: String,
    pub kind: i64,
    pub start_us: i64,
    pub duration_us: i64,
    pub status_code: i64,
    pub status_message: String,
    pub flags: i64,
    pub scope_name: String,
    pub scope_version: String,
    /// The span's attributes as a JSON object.
    pub attributes: String,
    /// Identifies the resource (hash of the service and `process`).
    pub process_id: String,
    /// Jaeger process tags (JSON array): the resource without `service.name`. Stored once per
    /// resource in `span_processes`, not with every span.
    pub process: Arc<str>,
    /// Jaeger logs (JSON array) from the span's events.
    pub events: String,
    /// `[{"traceID","spanID"}]` from the span's links.
    pub links: String,
}

/// What became of a request's spans.
#[derive(Debug, Default)]
pub struct SpanRows {
    pub rows: Vec<SpanRow>,
    pub rejected: usize,
    /// Why the first rejected span was rejected (the OTLP partial-success message).
    pub first_error: Option<String>,
}

/// Counts the spans of a request.
pub fn count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Flattens a request into rows.
pub fn rows(request: &ExportTraceServiceRequest) -> SpanRows {
    let mut out = SpanRows {
        rows: Vec::with_capacity(count(request)),
        ..SpanRows::default()
    };
    for resource_spans in &request.resource_spans {
        let attributes = resource_spans
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let service = json::string_attribute(attributes, "service.name").unwrap_or(UNKNOWN_SERVICE);
        let process: Arc<str> = json::tags(attributes, Some("service.name")).into();
        let process_id = process_id(service, &process);
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref();
            for span in &scope_spans.spans {
                match row(span, service, (&process_id, &process), scope) {
                    Ok(row) => out.rows.push(row),
                    Err(why) => {
                        out.rejected += 1;
                        out.first_error.get_or_insert_with(|| {
                            format!("span {:?} of service {service:?}: {why}", span.name)
                        });
                    }
                }
            }
        }
    }
    out
}

/// Lowercase hex of an id that must be `len` bytes and not all zero.
fn id(bytes: &[u8], len: usize, what: &str) -> Result<String, String> {
    if bytes.len() != len {
        return Err(format!(
            "{what} must be {len} bytes, got {} bytes",
            bytes.len()
        ));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err(format!("{what} is all zeroes"));
    }
    Ok(hex::encode(bytes))
}

/// A resource's id: a hash of its service and process tags (16 hex digits).
fn process_id(service: &str, process: &str) -> String {
    let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
    hasher.update(service.as_bytes());
    hasher.update(b"\n");
    hasher.update(process.as_bytes());
    format!("{:016x}", hasher.digest())
}

/// Nanoseconds since the epoch to microseconds (always fits an i64).
pub fn micros(nanos: u64) -> i64 {
    (nanos / 1000) as i64
}

fn row(
    span: &Span,
    service: &str,
    (process_id, process): (&str, &Arc<str>),
    scope: Option<&InstrumentationScope>,
) -> Result<SpanRow, String> {
    let trace_id = id(&span.trace_id, 16, "trace_id")?;
    let span_id = id(&span.span_id, 8, "span_id")?;
    let parent_id = if span.parent_span_id.is_empty() || span.parent_span_id.iter().all(|b| *b == 0)
    {
        String::new()
    } else {
        id(&span.parent_span_id, 8, "parent_span_id")?
    };
    if span.start_time_unix_nano == 0 {
        return Err("start_time_unix_nano is missing".into());
    }
    // A span ending before it starts (clock trouble) is kept with no duration.
    let duration_ns = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    let status = span.status.as_ref();
    Ok(SpanRow {
        trace_id,
        span_id,
        parent_id,
        service: json::column_text(service),
        operation: json::column_text(&span.name),
        kind: i64::from(span.kind),
        start_us: micros(span.start_time_unix_nano),
        duration_us: micros(duration_ns),
        status_code: status.map_or(0, |s| i64::from(s.code)),
        status_message: status
            .map(|s| json::column_text(&s.message))
            .unwrap_or_default(),
        flags: i64::from(span.flags),
        scope_name: scope
            .map(|s| json::column_text(&s.name))
            .unwrap_or_default(),
        scope_version: scope
            .map(|s| json::column_text(&s.version))
            .unwrap_or_default(),
        attributes: json::object(&span.attributes),
        process_id: process_id.to_string(),
        process: process.clone(),
        events: events(span),
        links: links(span),
    })
}

/// Events as Jaeger logs: the event's name as field `event` (unless an attribute is called
/// that), then its attributes.
fn events(span: &Span) -> String {
    if span.events.is_empty() {
        return "[]".into();
    }
    let mut out = String::from("[");
    for (i, event) in span.events.iter().take(json::MAX_ATTRIBUTES).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"timestamp\":{},\"fields\":[",
            micros(event.time_unix_nano)
        );
        let named = event.attributes.iter().any(|kv| kv.key == "event");
        if !named {
            out.push_str("{\"key\":\"event\",\"type\":\"string\",\"value\":");
            json::push_str(&mut out, &event.name);
            out.push('}');
        }
        json::push_tags(&mut out, &event.attributes, None, named);
        out.push_str("]}");
    }
    out.push(']');
    out
}

/// Links with valid ids, as `{"traceID","spanID"}`.
fn links(span: &Span) -> String {
    if span.links.is_empty() {
        return "[]".into();
    }
    let mut out = String::from("[");
    let mut first = true;
    for link in span.links.iter().take(json::MAX_ATTRIBUTES) {
        let (Ok(trace), Ok(span)) = (
            id(&link.trace_id, 16, "trace_id"),
            id(&link.span_id, 8, "span_id"),
        ) else {
            continue;
        };
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{{\"traceID\":\"{trace}\",\"spanID\":\"{span}\"}}");
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span};

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("cart".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_002_500_000,
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            events: vec![span::Event {
                time_unix_nano: 1_700_000_000_001_000_000,
                name: "retry".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn valid_spans_become_rows() {
        let mut child = span(1, 3);
        child.parent_span_id = vec![2; 8];
        let out = rows(&request(vec![span(1, 2), child]));
        assert_eq!(out.rejected, 0);
        let [root, child] = &out.rows[..] else {
            panic!("{out:?}")
        };
        assert_eq!(root.trace_id, "01".repeat(16));
        assert_eq!(root.parent_id, "");
        assert_eq!(child.parent_id, "0202020202020202");
        assert_eq!(root.service, "cart");
        assert_eq!(root.start_us, 1_700_000_000_000_000);
        assert_eq!(root.duration_us, 2500);
        assert_eq!(
            (root.status_code, root.status_message.as_str()),
            (2, "boom")
        );
        assert_eq!(&*root.process, "[]");
        let events: serde_json::Value = serde_json::from_str(&root.events).unwrap();
        assert_eq!(
            events,
            serde_json::json!([{"timestamp": 1_700_000_000_001_000i64,
                "fields": [{"key": "event", "type": "string", "value": "retry"}]}])
        );
    }

    #[test]
    fn bad_ids_reject_only_that_span() {
        let mut short = span(1, 2);
        short.trace_id = vec![1; 8];
        let mut zero = span(1, 0);
        zero.name = "zero".into();
        let mut no_start = span(1, 4);
        no_start.start_time_unix_nano = 0;
        let out = rows(&request(vec![short, span(1, 3), zero, no_start]));
        assert_eq!((out.rows.len(), out.rejected), (1, 3));
        let why = out.first_error.unwrap();
        assert!(why.contains("trace_id must be 16 bytes, got 8"), "{why}");
    }

    #[test]
    fn missing_service_name_is_unknown_service() {
        let mut request = request(vec![span(1, 2)]);
        request.resource_spans[0].resource = None;
        assert_eq!(rows(&request).rows[0].service, UNKNOWN_SERVICE);
    }
}
