//! The REST API under `/api/v1`: what `trellis` (the CLI) and the console use to read and change
//! the mesh. JSON in and out; resources may be sent as YAML or JSON and read back as either
//! (`Accept: application/yaml` or `?output=yaml`). Errors are [`error::ErrorBody`].

mod ca;
mod error;
mod resources;
mod revisions;
mod tokens;

pub use error::{ApiError, ErrorBody};

use crate::ca::JoinTokens;
use crate::push::PushServer;
use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, response::IntoResponse};
use std::sync::{Arc, Mutex};

/// Largest request body (a big multi-document apply).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub push: PushServer,
    /// The CA's join tokens (the same store the `Identity` service checks).
    pub tokens: Arc<Mutex<JoinTokens>>,
    /// The certificate authority, for `trellis ca show|rotate`; `None` when there is none.
    pub ca: Option<crate::ca::IdentityService>,
}

/// The API routes, to be nested in the console's server.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/apply", post(resources::apply))
        .route("/resources", get(resources::list))
        .route(
            "/resources/{kind}/{namespace}/{name}",
            get(resources::get_one).delete(resources::delete),
        )
        .route("/revisions", get(revisions::history))
        .route("/revisions/{revision}", get(revisions::detail))
        .route("/diff", get(revisions::diff))
        .route("/rollback", post(revisions::rollback))
        .route("/proxies", get(proxies))
        .route("/services", get(services))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/ca", get(ca::show))
        .route("/ca/rotate", post(ca::rotate))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
}

/// `GET /proxies`: every connected proxy and how in sync it is.
async fn proxies(State(state): State<AppState>) -> impl IntoResponse {
    let proxies: Vec<serde_json::Value> = state
        .push
        .proxies(state.store.revision())
        .into_iter()
        .map(|p| {
            let since = crate::store::rfc3339_millis(p.connected_since_unix_ms);
            let mut v = serde_json::to_value(p).unwrap_or_default();
            v["connected_since"] = since.into();
            v
        })
        .collect();
    Json(serde_json::json!({ "proxies": proxies }))
}

/// `GET /services`: the services of the latest push epoch (what proxies are being sent), and
/// the registered workloads.
async fn services(State(state): State<AppState>) -> impl IntoResponse {
    let epoch = state.push.epoch();
    let workloads = state.push.registry().workloads();
    Json(serde_json::json!({ "services": epoch.services(), "workloads": workloads }))
}

/// Query parameters, parsed by the handlers so that a bad value gets a JSON error naming it.
pub type Params = std::collections::HashMap<String, String>;

/// An optional query parameter.
pub fn param<T: std::str::FromStr>(params: &Params, name: &str) -> Result<Option<T>, ApiError> {
    params.get(name).map(|v| parse(name, v)).transpose()
}

/// A path or query value, with an error naming it.
pub fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`{name}` must be a {}, got {value:?}",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("value")
        ))
    })
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("no such API endpoint: {}", uri.path()),
    )
}
