//! The Jaeger query API (`--jaeger`, port 16686), read by Jaeger UI and Grafana's Jaeger
//! datasource: `/api/services`, `/api/services/{service}/operations`, `/api/operations`,
//! `/api/traces`, `/api/traces/{id}`, `/api/dependencies`. Every answer is Jaeger's envelope
//! `{"data", "total", "limit", "offset", "errors"}`; bad parameters are 400 with
//! `errors: [{"code", "msg"}]`, as Jaeger answers.

pub mod model;
pub mod params;

use super::storage::{SpanScan, StorageError, TelemetryStore};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use params::TraceSearch;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use trellis_api::time::now_millis;

/// Most spans one search reads before answering with what it found.
const MAX_SCANNED_SPANS: usize = 200_000;

/// The API's routes.
pub fn router(store: Arc<TelemetryStore>) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/traces", get(search))
        .route("/api/traces/{id}", get(trace))
        .route("/api/dependencies", get(dependencies))
        .fallback(|| async { failure(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(store)
}

type Store = State<Arc<TelemetryStore>>;
type RawQuery = Query<Vec<(String, String)>>;

/// Jaeger's envelope around `data`.
fn ok(data: Value, total: usize) -> Response {
    axum::Json(json!({
        "data": data,
        "total": total,
        "limit": 0,
        "offset": 0,
        "errors": Value::Null,
    }))
    .into_response()
}

fn failure(status: StatusCode, msg: String) -> Response {
    (
        status,
        axum::Json(json!({
            "data": Value::Null,
            "total": 0,
            "limit": 0,
            "offset": 0,
            "errors": [{"code": status.as_u16(), "msg": msg}],
        })),
    )
        .into_response()
}

fn bad_request(msg: String) -> Response {
    failure(StatusCode::BAD_REQUEST, msg)
}

fn storage_failed(e: StorageError) -> Response {
    tracing::warn!("Jaeger query failed: {e}");
    failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn services(State(store): Store) -> Response {
    match store.services().await {
        Ok(services) => {
            let n = services.len();
            ok(json!(services), n)
        }
        Err(e) => storage_failed(e),
    }
}

async fn service_operations(State(store): Store, Path(service): Path<String>) -> Response {
    match store.operations(Some(&service)).await {
        Ok(ops) => {
            let mut names: Vec<String> = ops.into_iter().map(|o| o.name).collect();
            names.dedup();
            let n = names.len();
            ok(json!(names), n)
        }
        Err(e) => storage_failed(e),
    }
}

async fn operations(State(store): Store, Query(query): RawQuery) -> Response {
    let Some(service) = params::one(&query, "service") else {
        return bad_request("parameter 'service' is required".into());
    };
    let kind = match params::one(&query, "spanKind") {
        None => None,
        Some(name) => match model::kind_number(name) {
            Some(k) => Some(k),
            None => {
                return bad_request(format!(
                    "unsupported span kind {name:?}: expected server, client, producer, consumer or internal"
                ));
            }
        },
    };
    match store.operations(Some(service)).await {
        Ok(ops) => {
            let data: Vec<Value> = ops
                .into_iter()
                .filter(|o| kind.is_none_or(|k| o.kind == k))
                .map(
                    |o| json!({"name": o.name, "spanKind": model::kind_name(o.kind).unwrap_or("")}),
                )
                .collect();
            let n = data.len();
            ok(Value::Array(data), n)
        }
        Err(e) => storage_failed(e),
    }
}

async fn trace(State(store): Store, Path(id): Path<String>) -> Response {
    let id = match params::trace_id(&id) {
        Ok(id) => id,
        Err(e) => return bad_request(e),
    };
    match store.spans_of(std::slice::from_ref(&id)).await {
        Ok(spans) if spans.is_empty() => failure(StatusCode::NOT_FOUND, "trace not found".into()),
        Ok(spans) => ok(json!([model::trace(spans)]), 1),
        Err(e) => storage_failed(e),
    }
}

async fn search(State(store): Store, Query(query): RawQuery) -> Response {
    let search = match TraceSearch::parse(&query, now_millis().saturating_mul(1000)) {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    match find(&store, &search).await {
        Ok(traces) => {
            let n = traces.len();
            ok(Value::Array(traces), n)
        }
        Err(e) => storage_failed(e),
    }
}

/// The traces a search selects, newest first: a trace matches when one of its spans matches
/// every criterion (as in Jaeger).
async fn find(store: &TelemetryStore, search: &TraceSearch) -> Result<Vec<Value>, StorageError> {
    let ids = if search.trace_ids.is_empty() {
        let scan = SpanScan {
            service: search.service.clone(),
            operation: search.operation.clone(),
            start_us: search.start_us,
            end_us: search.end_us,
            min_duration_us: search.min_duration_us,
            max_duration_us: search.max_duration_us,
        };
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        store
            .scan_spans(&scan, MAX_SCANNED_SPANS, |span| {
                if !seen.contains(&span.trace_id) && model::matches_tags(&span, &search.tags) {
                    seen.insert(span.trace_id.clone());
                    found.push(span.trace_id);
                }
                found.len() < search.limit
            })
            .await?;
        found
    } else {
        search.trace_ids.clone()
    };
    let mut by_trace: HashMap<String, Vec<_>> = HashMap::new();
    for span in store.spans_of(&ids).await? {
        by_trace
            .entry(span.trace_id.clone())
            .or_default()
            .push(span);
    }
    Ok(ids
        .iter()
        .filter_map(|id| by_trace.remove(id))
        .map(model::trace)
        .collect())
}

async fn dependencies(State(store): Store, Query(query): RawQuery) -> Response {
    let (start_us, end_us) = match params::dependencies_window(&query, now_millis()) {
        Ok(w) => w,
        Err(e) => return bad_request(e),
    };
    match store.dependencies(start_us, end_us).await {
        Ok(deps) => {
            let data: Vec<Value> = deps
                .into_iter()
                .map(|d| json!({"parent": d.parent, "child": d.child, "callCount": d.calls}))
                .collect();
            let n = data.len();
            ok(Value::Array(data), n)
        }
        Err(e) => storage_failed(e),
    }
}
