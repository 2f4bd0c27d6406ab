//! Applying, reading and deleting resources.

use super::error::ApiError;
use super::{AppState, Params, param};
use crate::store::{ChangeInfo, to_yaml, to_yaml_documents};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trellis_api::{Kind, ResourceKey};

/// Who made a change and why, from `X-Trellis-Author` / `X-Trellis-Message`.
pub fn change_info(headers: &HeaderMap) -> ChangeInfo {
    let text = |name: &str| header_text(headers, name);
    ChangeInfo {
        author: text("x-trellis-author").unwrap_or_else(|| "unknown".to_string()),
        message: text("x-trellis-message").unwrap_or_default(),
    }
}

/// `POST /apply`: the body is one or more YAML/JSON documents, applied as one revision.
pub async fn apply(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let dry_run = param::<bool>(&params, "dryRun")?.unwrap_or(false);
    let file = header_text(&headers, "x-trellis-file").unwrap_or_else(|| "<request body>".into());
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("{file}: the body is not UTF-8: {e}")))?;
    let resources = trellis_api::load_str(text, &file).map_err(ApiError::invalid)?;
    if resources.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{file}: no resources in the request body"
        )));
    }
    let outcome = state
        .store
        .apply(resources, &change_info(&headers), dry_run)
        .await?;
    Ok(Json(outcome).into_response())
}

/// One stored resource as the API returns it.
/// A header's text; UTF-8 is accepted (HTTP allows the bytes, `to_str` only allows ASCII).
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?;
    let text = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub resource: Value,
}

impl Item {
    fn of(resource: &trellis_api::Resource) -> Item {
        Item {
            kind: resource.kind().as_str().to_string(),
            namespace: resource.namespace().to_string(),
            name: resource.name().to_string(),
            resource: resource.raw.clone(),
        }
    }
}

/// `GET /resources?kind=&namespace=`: current resources, in kind/namespace/name order.
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = params.get("kind").map(|k| parse_kind(k)).transpose()?;
    let namespace = params.get("namespace").filter(|ns| !ns.is_empty());
    let config = state.store.current();
    let items: Vec<Item> = config
        .iter()
        .filter(|r| kind.is_none_or(|k| r.kind() == k))
        .filter(|r| namespace.is_none_or(|ns| r.namespace() == ns))
        .map(Item::of)
        .collect();
    if wants_yaml(&headers, params.get("output")) {
        let docs: Vec<Value> = items.into_iter().map(|i| i.resource).collect();
        return Ok(yaml(to_yaml_documents(&docs)));
    }
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// `GET /resources/{kind}/{namespace}/{name}`.
pub async fn get_one(
    State(state): State<AppState>,
    Path(path): Path<(String, String, String)>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = resource_key(path)?;
    let config = state.store.current();
    let resource = config.get(&key).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("{key} not found"),
        )
    })?;
    if wants_yaml(&headers, params.get("output")) {
        return Ok(yaml(to_yaml(&resource.raw)));
    }
    Ok(Json(Item::of(resource)).into_response())
}

/// `DELETE /resources/{kind}/{namespace}/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = resource_key(path)?;
    let outcome = state.store.delete(&[key], &change_info(&headers)).await?;
    Ok(Json(outcome).into_response())
}

/// The key of `/resources/{kind}/{namespace}/{name}`.
fn resource_key(
    (kind, namespace, name): (String, String, String),
) -> Result<ResourceKey, ApiError> {
    Ok(ResourceKey {
        kind: parse_kind(&kind)?,
        namespace,
        name,
    })
}

/// A kind as kubectl spells it; an unknown one lists the valid kinds.
pub fn parse_kind(name: &str) -> Result<Kind, ApiError> {
    Kind::parse_cli(name).map_err(ApiError::bad_request)
}

fn wants_yaml(headers: &HeaderMap, output: Option<&String>) -> bool {
    match output {
        Some(o) => o.eq_ignore_ascii_case("yaml"),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("yaml")),
    }
}

fn yaml(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        text,
    )
        .into_response()
}
