//! Stored spans in Jaeger's JSON shape (what Jaeger UI and Grafana's Jaeger datasource read):
//! a trace is `{traceID, spans, processes, warnings}`; a span has `references` (its parent as
//! CHILD_OF first, then links as FOLLOWS_FROM), `startTime`/`duration` in microseconds, typed
//! `tags`, `logs` from its events and a `processID` into `processes`. OpenTelemetry fields
//! without a Jaeger field become tags as the OpenTelemetry-to-Jaeger mapping says: `span.kind`
//! (not for INTERNAL), `otel.status_code`, `otel.status_description`, `error=true`,
//! `otel.scope.name`/`otel.scope.version`.

use crate::collector::spans::SpanRow;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Jaeger's span kind names for OTLP kinds; `None` for unspecified.
pub fn kind_name(kind: i64) -> Option<&'static str> {
    match kind {
        1 => Some("internal"),
        2 => Some("server"),
        3 => Some("client"),
        4 => Some("producer"),
        5 => Some("consumer"),
        _ => None,
    }
}

/// OTLP kind number of a Jaeger span kind name (`""` is any kind).
pub fn kind_number(name: &str) -> Option<i64> {
    (1..=5).find(|k| kind_name(*k) == Some(name))
}

/// A trace id as Jaeger prints it: 16 hex digits when the high half is zero, else 32.
pub fn jaeger_trace_id(hex32: &str) -> &str {
    match hex32.strip_prefix("0000000000000000") {
        Some(low) if hex32.len() == 32 => low,
        _ => hex32,
    }
}

fn parse_array(text: &str) -> Vec<Value> {
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

fn tag(key: &str, kind: &str, value: Value) -> Value {
    json!({"key": key, "type": kind, "value": value})
}

/// Stored attributes (a JSON object) as Jaeger tags, typed by their JSON values; arrays and
/// objects become their JSON text, as the OpenTelemetry-to-Jaeger mapping says.
fn attribute_tags(text: &str) -> Vec<Value> {
    let Ok(Value::Object(attributes)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    attributes
        .into_iter()
        .map(|(key, value)| {
            let (kind, value) = match value {
                Value::String(_) => ("string", value),
                Value::Bool(_) => ("bool", value),
                Value::Number(ref n) if n.is_i64() || n.is_u64() => ("int64", value),
                Value::Number(_) => ("float64", value),
                Value::Null => ("string", Value::String(String::new())),
                other => ("string", Value::String(other.to_string())),
            };
            tag(&key, kind, value)
        })
        .collect()
}

/// The tags Jaeger shows for a span: its attributes, then the mapped OpenTelemetry fields.
pub fn span_tags(span: &SpanRow) -> Vec<Value> {
    let mut tags = attribute_tags(&span.attributes);
    if !span.scope_name.is_empty() {
        tags.push(tag(
            "otel.scope.name",
            "string",
            span.scope_name.clone().into(),
        ));
    }
    if !span.scope_version.is_empty() {
        tags.push(tag(
            "otel.scope.version",
            "string",
            span.scope_version.clone().into(),
        ));
    }
    if let Some(kind) = kind_name(span.kind).filter(|k| *k != "internal") {
        tags.push(tag("span.kind", "string", kind.into()));
    }
    match span.status_code {
        1 => tags.push(tag("otel.status_code", "string", "OK".into())),
        2 => {
            tags.push(tag("otel.status_code", "string", "ERROR".into()));
            if !span.status_message.is_empty() {
                tags.push(tag(
                    "otel.status_description",
                    "string",
                    span.status_message.clone().into(),
                ));
            }
            tags.retain(|t| t["key"] != "error");
            tags.push(tag("error", "bool", true.into()));
        }
        _ => {}
    }
    tags
}

/// Process tags of a span (its resource without `service.name`).
pub fn process_tags(span: &SpanRow) -> Vec<Value> {
    parse_array(&span.process)
}

/// Log fields of every event of a span.
pub fn span_logs(span: &SpanRow) -> Vec<Value> {
    parse_array(&span.events)
}

/// A tag's value as the text a `tags` search compares with.
pub fn tag_text(tag: &Value) -> Option<(&str, String)> {
    let key = tag.get("key")?.as_str()?;
    let value = match tag.get("value")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some((key, value))
}

/// Whether a span has every `key=value` among its tags, its process's tags or its log fields
/// (as Jaeger's search matches).
pub fn matches_tags(span: &SpanRow, wanted: &[(String, String)]) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let mut all: Vec<Value> = span_tags(span);
    all.extend(process_tags(span));
    for log in span_logs(span) {
        if let Some(Value::Array(fields)) = log.get("fields") {
            all.extend(fields.iter().cloned());
        }
    }
    let texts: Vec<(&str, String)> = all.iter().filter_map(tag_text).collect();
    wanted
        .iter()
        .all(|(k, v)| texts.iter().any(|(key, value)| key == k && value == v))
}

/// One trace from its spans (any order; sorted by start time here).
pub fn trace(mut spans: Vec<SpanRow>) -> Value {
    spans.sort_by(|a, b| (a.start_us, &a.span_id).cmp(&(b.start_us, &b.span_id)));
    let trace_id = spans
        .first()
        .map(|s| jaeger_trace_id(&s.trace_id).to_string())
        .unwrap_or_default();
    let mut processes = serde_json::Map::new();
    let mut process_ids: HashMap<(String, std::sync::Arc<str>), String> = HashMap::new();
    let mut out_spans = Vec::with_capacity(spans.len());
    for span in &spans {
        let key = (span.service.clone(), span.process.clone());
        let next = process_ids.len() + 1;
        let process_id = process_ids
            .entry(key)
            .or_insert_with(|| {
                let id = format!("p{next}");
                processes.insert(
                    id.clone(),
                    json!({"serviceName": span.service, "tags": process_tags(span)}),
                );
                id
            })
            .clone();
        let mut references = Vec::new();
        if !span.parent_id.is_empty() {
            references.push(json!({
                "refType": "CHILD_OF",
                "traceID": trace_id,
                "spanID": span.parent_id,
            }));
        }
        for link in parse_array(&span.links) {
            let (Some(t), Some(s)) = (link["traceID"].as_str(), link["spanID"].as_str()) else {
                continue;
            };
            references.push(json!({
                "refType": "FOLLOWS_FROM",
                "traceID": jaeger_trace_id(t),
                "spanID": s,
            }));
        }
        out_spans.push(json!({
            "traceID": trace_id,
            "spanID": span.span_id,
            "flags": span.flags & 0xff,
            "operationName": span.operation,
            "references": references,
            "startTime": span.start_us,
            "duration": span.duration_us,
            "tags": span_tags(span),
            "logs": span_logs(span),
            "processID": process_id,
            "warnings": Value::Null,
        }));
    }
    json!({
        "traceID": trace_id,
        "spans": out_spans,
        "processes": processes,
        "warnings": Value::Null,
    })
}
