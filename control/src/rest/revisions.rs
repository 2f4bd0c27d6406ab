//! History, diff and rollback.

use super::AppState;
use super::error::ApiError;
use super::resources::change_info;
use super::{Params, param, parse};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// `GET /revisions?limit=N`: newest first (default 50).
pub async fn history(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let limit = param(&params, "limit")?.unwrap_or(50);
    let revisions = state.store.history(limit).await?;
    Ok(Json(serde_json::json!({ "revisions": revisions })).into_response())
}

/// `GET /revisions/{revision}`: one revision with the bodies before and after.
pub async fn detail(
    State(state): State<AppState>,
    Path(revision): Path<String>,
) -> Result<Response, ApiError> {
    let revision = parse("revision", &revision)?;
    Ok(Json(state.store.revision_detail(revision).await?).into_response())
}

/// `GET /diff?from=A&to=B`.
pub async fn diff(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let required = |name: &str| {
        param(&params, name)?
            .ok_or_else(|| ApiError::bad_request(format!("query parameter `{name}` is required")))
    };
    let (from, to) = (required("from")?, required("to")?);
    Ok(Json(state.store.diff(from, to).await?).into_response())
}

#[derive(Debug, Deserialize)]
pub struct RollbackRequest {
    revision: u64,
}

/// `POST /rollback` with `{"revision": N}`.
pub async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RollbackRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body must be {{\"revision\": N}}: {e}")))?;
    if request.revision == 0 {
        return Err(ApiError::bad_request(
            "revision 0 is the empty configuration; delete resources explicitly to remove them all",
        ));
    }
    let outcome = state
        .store
        .rollback(request.revision, &change_info(&headers))
        .await?;
    Ok(Json(outcome).into_response())
}
