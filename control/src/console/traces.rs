//! Trace search and one trace, from the collector's span storage, as the Jaeger query API reads
//! it (`collector/jaeger`): a trace matches when one of its spans matches every criterion.

use crate::collector::jaeger::{model, params};
use crate::collector::spans::SpanRow;
use crate::collector::storage::{SpanScan, StorageError, TelemetryStore};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use trellis_console::BackendError;
use trellis_console::model::{Span, SpanEvent, Trace, TraceQuery, TraceSummary};

/// Most spans one search reads before answering with what it found (as the Jaeger API).
const MAX_SCANNED_SPANS: usize = 200_000;
/// The window searched when the query gives no start: the last hour, as Jaeger.
const DEFAULT_LOOKBACK_US: i64 = 3_600_000_000;

fn unavailable(e: StorageError) -> BackendError {
    BackendError::Unavailable(format!("trace storage: {e}"))
}

/// The span scan a query asks for; a query Jaeger would refuse is refused with a message.
pub fn scan_of(query: &TraceQuery, now_us: i64) -> Result<SpanScan, BackendError> {
    let bad = |m: &str| Err(BackendError::BadRequest(m.to_string()));
    if query.service.trim().is_empty() {
        return bad("choose a service to search its traces");
    }
    let end_us = query.end_us.unwrap_or(now_us);
    let start_us = query.start_us.unwrap_or(end_us - DEFAULT_LOOKBACK_US);
    if start_us > end_us {
        return bad("the start of the search window is after its end");
    }
    if let (Some(min), Some(max)) = (query.min_duration_us, query.max_duration_us)
        && max < min
    {
        return bad("the maximum duration is below the minimum duration");
    }
    let duration = |d: Option<u64>| d.map(|d| i64::try_from(d).unwrap_or(i64::MAX));
    Ok(SpanScan {
        service: query.service.trim().to_string(),
        operation: query.operation.clone().filter(|o| !o.is_empty()),
        start_us,
        end_us,
        min_duration_us: duration(query.min_duration_us),
        max_duration_us: duration(query.max_duration_us),
    })
}

/// Matching traces, newest first, at most `query.limit` (Jaeger's default and cap apply).
pub async fn find(
    store: &TelemetryStore,
    query: &TraceQuery,
) -> Result<Vec<TraceSummary>, BackendError> {
    let now_us = trellis_api::time::now_millis().saturating_mul(1000);
    let scan = scan_of(query, now_us)?;
    let limit = match query.limit {
        0 => params::DEFAULT_LIMIT,
        n => n.min(params::MAX_LIMIT),
    };
    // Newest span start seen of each matching trace, over every service the name stands for.
    let mut found: HashMap<String, i64> = HashMap::new();
    for service in span_services(store, &scan.service).await? {
        let scan = SpanScan {
            service,
            ..scan.clone()
        };
        let mut seen = HashSet::new();
        store
            .scan_spans(&scan, MAX_SCANNED_SPANS, |span| {
                if !seen.contains(&span.trace_id) && model::matches_tags(&span, &query.tags) {
                    seen.insert(span.trace_id.clone());
                    let newest = found.entry(span.trace_id).or_insert(span.start_us);
                    *newest = (*newest).max(span.start_us);
                }
                seen.len() < limit
            })
            .await
            .map_err(unavailable)?;
    }
    let mut found: Vec<(String, i64)> = found.into_iter().collect();
    found.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    found.truncate(limit);
    let found: Vec<String> = found.into_iter().map(|(id, _)| id).collect();
    let mut by_trace: HashMap<String, Vec<SpanRow>> = HashMap::new();
    for span in store.spans_of(&found).await.map_err(unavailable)? {
        by_trace
            .entry(span.trace_id.clone())
            .or_default()
            .push(span);
    }
    Ok(found
        .iter()
        .filter_map(|id| by_trace.remove(id))
        .map(|spans| summary(&spans))
        .collect())
}

/// The span services a name stands for: itself when spans carry it, else Istio's canonical
/// `name.namespace` of every namespace (the console offers mesh service names, proxies report
/// `reviews.default`).
async fn span_services(store: &TelemetryStore, name: &str) -> Result<Vec<String>, BackendError> {
    let known = store.services().await.map_err(unavailable)?;
    Ok(qualified_services(&known, name))
}

/// See [`span_services`].
pub fn qualified_services(known: &[String], name: &str) -> Vec<String> {
    if known.iter().any(|s| s == name) {
        return vec![name.to_string()];
    }
    let prefix = format!("{name}.");
    let matching: Vec<String> = known
        .iter()
        .filter(|s| s.strip_prefix(&prefix).is_some_and(|ns| !ns.contains('.')))
        .cloned()
        .collect();
    if matching.is_empty() {
        vec![name.to_string()]
    } else {
        matching
    }
}

/// One trace; its id as Jaeger accepts it (up to 32 hex digits).
pub async fn trace(store: &TelemetryStore, trace_id: &str) -> Result<Trace, BackendError> {
    let id = params::trace_id(trace_id.trim()).map_err(BackendError::BadRequest)?;
    let rows = store
        .spans_of(std::slice::from_ref(&id))
        .await
        .map_err(unavailable)?;
    if rows.is_empty() {
        return Err(BackendError::NotFound(format!("trace {trace_id}")));
    }
    let mut spans: Vec<Span> = rows.iter().map(span).collect();
    spans.sort_by(|a, b| (a.start_us, &a.span_id).cmp(&(b.start_us, &b.span_id)));
    Ok(Trace {
        trace_id: id,
        spans,
    })
}

fn is_error(row: &SpanRow) -> bool {
    row.status_code == 2
}

fn span(row: &SpanRow) -> Span {
    Span {
        span_id: row.span_id.clone(),
        parent_id: Some(row.parent_id.clone()).filter(|p| !p.is_empty()),
        service: row.service.clone(),
        operation: row.operation.clone(),
        kind: model::kind_name(row.kind).unwrap_or_default().to_string(),
        start_us: row.start_us,
        duration_us: u64::try_from(row.duration_us).unwrap_or(0),
        error: is_error(row),
        tags: pairs(&model::span_tags(row)),
        resource: pairs(&model::process_tags(row)),
        events: model::span_logs(row).iter().map(event).collect(),
    }
}

/// Jaeger tags (`{"key", "type", "value"}`) as text pairs.
fn pairs(tags: &[Value]) -> Vec<(String, String)> {
    tags.iter()
        .filter_map(model::tag_text)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// A Jaeger log (`{"timestamp", "fields"}`) as a span event: its `event` field names it.
fn event(log: &Value) -> SpanEvent {
    let fields = log["fields"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut attributes = pairs(fields);
    let name = attributes
        .iter()
        .position(|(k, _)| k == "event")
        .map(|i| attributes.remove(i).1)
        .unwrap_or_default();
    SpanEvent {
        time_us: log["timestamp"].as_i64().unwrap_or_default(),
        name,
        attributes,
    }
}

/// A search result line: the root span (no parent in the trace; the earliest such), the whole
/// duration, error and service counts.
pub fn summary(spans: &[SpanRow]) -> TraceSummary {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let root = spans
        .iter()
        .filter(|s| s.parent_id.is_empty() || !ids.contains(s.parent_id.as_str()))
        .min_by_key(|s| s.start_us)
        .or_else(|| spans.iter().min_by_key(|s| s.start_us));
    let start = spans.iter().map(|s| s.start_us).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.start_us.saturating_add(s.duration_us))
        .max()
        .unwrap_or(start);
    let services: BTreeSet<String> = spans.iter().map(|s| s.service.clone()).collect();
    TraceSummary {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.clone())
            .unwrap_or_default(),
        root_service: root.map(|s| s.service.clone()).unwrap_or_default(),
        root_operation: root.map(|s| s.operation.clone()).unwrap_or_default(),
        start_us: start,
        duration_us: u64::try_from(end - start).unwrap_or(0),
        spans: spans.len(),
        errors: spans.iter().filter(|s| is_error(s)).count(),
        services: services.into_iter().collect(),
    }
}
