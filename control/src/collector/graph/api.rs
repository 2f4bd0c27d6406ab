//! `GET /api/v1/graph`: the service graph as JSON for the console, with Kiali's parameter names:
//!
//! - `graphType`: `workload` (default), `app`, `versionedApp`, `service`;
//! - `namespaces`: comma-separated; none means every namespace;
//! - `duration`: the window, `60s`, `10m`, `1h` or whole seconds (`600`); default 60s, at most 7 days;
//! - `queryTime`: when the window ends, unix milliseconds or RFC 3339; default now;
//! - `injectServiceNodes`: `true` (default) or `false`.
//!
//! Windows within the last hour come from memory; older or longer ones from the stored minutes,
//! when a history database is attached. Bad parameters get 400 with the REST API's error shape.

use super::view::{GraphType, ViewOptions};
use super::{GraphQuery, LiveGraph, history, window};
use crate::rest::{ApiError, Params};
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use sqlx::AnyPool;
use std::sync::Arc;
use trellis_api::time::parse_rfc3339;

/// The longest window answered.
pub const MAX_DURATION_MS: i64 = 7 * 24 * 3_600_000;
/// How far in the future a `queryTime` may be (clock skew between browser and server).
const FUTURE_SLACK_MS: i64 = 60_000;

/// What the graph API needs.
#[derive(Clone)]
pub struct GraphApi {
    pub graph: Arc<LiveGraph>,
    /// The telemetry database holding graph history; `None`: memory only (the last hour).
    pub history: Option<AnyPool>,
}

/// The routes: `GET /api/v1/graph`. Merge into the control plane's router.
pub fn router(state: GraphApi) -> Router {
    Router::new()
        .route("/api/v1/graph", get(graph))
        .with_state(state)
}

async fn graph(
    State(state): State<GraphApi>,
    Query(params): Query<Params>,
) -> Result<Json<super::GraphJson>, ApiError> {
    let now = state.graph.clock().now_ms();
    let query = parse_query(&params, now)?;
    if let Some(answer) = state.graph.query(&query) {
        return Ok(Json(answer));
    }
    let Some(pool) = &state.history else {
        return Err(ApiError::bad_request(format!(
            "the window reaches back more than {} minutes and no graph history is stored",
            window::MEMORY_SPAN_MS / 60_000
        )));
    };
    history::query(pool, &state.graph, &query)
        .await
        .map(Json)
        .map_err(|e| {
            tracing::error!(error = %e, "graph history query failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        })
}

/// Reads the query parameters.
pub fn parse_query(params: &Params, now_ms: i64) -> Result<GraphQuery, ApiError> {
    let graph_type = match params.get("graphType").map(String::as_str) {
        None | Some("") => GraphType::Workload,
        Some(t) => t.parse().map_err(ApiError::bad_request)?,
    };
    let mut namespaces: Vec<String> = params
        .get("namespaces")
        .map(|n| {
            n.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    namespaces.sort();
    namespaces.dedup();
    let duration_ms = match params.get("duration") {
        None => 60_000,
        Some(d) => parse_duration(d)?,
    };
    let query_time_ms = match params.get("queryTime") {
        None => None,
        Some(t) => {
            let t = parse_time(t)?;
            if t > now_ms + FUTURE_SLACK_MS {
                return Err(ApiError::bad_request(format!(
                    "`queryTime` {} is in the future",
                    params["queryTime"]
                )));
            }
            Some(t)
        }
    };
    let inject_service_nodes = match params.get("injectServiceNodes").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`injectServiceNodes` must be true or false, got {other:?}"
            )));
        }
    };
    Ok(GraphQuery {
        view: ViewOptions {
            graph_type,
            namespaces,
            inject_service_nodes,
        },
        duration_ms,
        query_time_ms,
    })
}

fn parse_duration(text: &str) -> Result<i64, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("`duration` {why}, got {text:?}"));
    let ms = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>()
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .ok_or_else(|| bad("is too long"))?
    } else {
        trellis_api::duration::parse_ms(text)
            .ok()
            .and_then(|ms| i64::try_from(ms).ok())
            .ok_or_else(|| bad("must be a duration like 60s, 10m or 1h, or whole seconds"))?
    };
    if ms < 1000 {
        return Err(bad("must be at least 1s"));
    }
    if ms > MAX_DURATION_MS {
        return Err(bad("must be at most 7 days"));
    }
    Ok(ms)
}

/// Unix milliseconds, or an RFC 3339 time.
fn parse_time(text: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = text.parse::<i64>() {
        if ms < 0 {
            return Err(ApiError::bad_request(format!(
                "`queryTime` must not be negative, got {text:?}"
            )));
        }
        return Ok(ms);
    }
    parse_rfc3339(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`queryTime` must be unix milliseconds or an RFC 3339 time like 2026-11-21T10:00:00Z, got {text:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-21T10:00:00.250Z"),
            Some(1_795_255_200_250)
        );
        assert_eq!(
            parse_rfc3339("2026-11-21T11:00:00+01:00"),
            parse_rfc3339("2026-11-21T10:00:00Z")
        );
        assert_eq!(parse_rfc3339("2026-13-21T10:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn parameters() {
        let now = 1_795_255_200_000;
        let q = parse_query(
            &params(&[
                ("graphType", "versionedApp"),
                ("namespaces", "b, a,,a"),
                ("duration", "10m"),
                ("queryTime", "2026-11-21T10:00:00Z"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(q.view.graph_type, GraphType::VersionedApp);
        assert_eq!(q.view.namespaces, ["a", "b"]);
        assert_eq!(q.duration_ms, 600_000);
        assert_eq!(q.query_time_ms, Some(now));
        assert_eq!(
            parse_query(&params(&[("duration", "600")]), now)
                .unwrap()
                .duration_ms,
            600_000
        );
        for bad in [
            ("graphType", "nodes"),
            ("duration", "soon"),
            ("duration", "0s"),
            ("duration", "30d"),
            ("queryTime", "tomorrow"),
            ("queryTime", "9999999999999"),
            ("injectServiceNodes", "maybe"),
        ] {
            let e = parse_query(&params(&[bad]), now).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(e.body.error.contains(bad.0), "{bad:?}: {}", e.body.error);
        }
    }
}
