//! Join tokens for operators: create one for a namespace and service account (the only time the
//! token is shown), list them (without the secret), revoke one by id. Proxies present a token to
//! the CA's `Identity` service to get their certificates.

use super::AppState;
use super::error::ApiError;
use crate::ca::JoinTokens;
use crate::ca::tokens::TokenInfo;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Tokens are reused for every renewal, so they outlive certificates by far: 30 days.
const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest lifetime a token may be given: ten years.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    namespace: String,
    service_account: String,
    /// A duration like `720h`; default 30 days.
    #[serde(default)]
    ttl: Option<String>,
}

/// A token as listed: never the secret.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView {
    id: String,
    namespace: String,
    service_account: String,
    expires: String,
    expired: bool,
}

impl TokenView {
    fn new(info: TokenInfo, now: SystemTime) -> TokenView {
        TokenView {
            expires: rfc3339(info.expires),
            expired: info.expires <= now,
            id: info.id,
            namespace: info.namespace,
            service_account: info.service_account,
        }
    }
}

/// `POST /tokens` with `{"namespace","serviceAccount","ttl"}` → `{"token","id","expires", ...}`.
pub async fn create(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: CreateRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be {{\"namespace\": NS, \"serviceAccount\": SA, \"ttl\": \"720h\"}}: {e}"
        ))
    })?;
    let ttl = match request.ttl.as_deref() {
        None => DEFAULT_TTL,
        Some(text) => parse_ttl(text)?,
    };
    let (token, info) = with_tokens(state.tokens, move |tokens| {
        let token = tokens
            .create(&request.namespace, &request.service_account, ttl)
            .map_err(|e| match e {
                crate::ca::TokenError::Scope(_) => ApiError::bad_request(e.to_string()),
                other => internal(other),
            })?;
        // The token just created is the newest entry.
        let info = tokens
            .list()
            .pop()
            .ok_or_else(|| internal("the token was not stored"))?;
        Ok((token, info))
    })
    .await?;
    tracing::info!(
        id = %info.id,
        namespace = %info.namespace,
        service_account = %info.service_account,
        expires = %rfc3339(info.expires),
        "join token created"
    );
    let view = TokenView::new(info, SystemTime::now());
    let body = serde_json::json!({
        "token": token,
        "id": view.id,
        "namespace": view.namespace,
        "serviceAccount": view.service_account,
        "expires": view.expires,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /tokens`: every stored token, oldest first, without the secret.
pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let infos = with_tokens(state.tokens, |tokens| Ok(tokens.list())).await?;
    let now = SystemTime::now();
    let tokens: Vec<TokenView> = infos.into_iter().map(|i| TokenView::new(i, now)).collect();
    Ok(Json(serde_json::json!({ "tokens": tokens })).into_response())
}

/// `DELETE /tokens/{id}`: the token is refused from now on (certificates already issued stay
/// valid until they expire).
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = id.trim().to_ascii_lowercase();
    if !(12..=64).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "{id:?} is not a token id (12 hex digits, as `trellis token list` shows)"
        )));
    }
    let existed = with_tokens(state.tokens, {
        let id = id.clone();
        move |tokens| tokens.revoke_id(&id).map_err(internal)
    })
    .await?;
    if !existed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no join token with id {id}"),
        ));
    }
    tracing::info!(id = %id, "join token revoked");
    Ok(Json(serde_json::json!({ "revoked": id })).into_response())
}

/// Runs `f` on the token store off the async threads (writes go to disk).
async fn with_tokens<T: Send + 'static>(
    tokens: Arc<Mutex<JoinTokens>>,
    f: impl FnOnce(&mut JoinTokens) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut guard = tokens
            .lock()
            .map_err(|_| internal("the join-token store is unavailable"))?;
        f(&mut guard)
    })
    .await
    .map_err(internal)?
}

fn parse_ttl(text: &str) -> Result<Duration, ApiError> {
    let ms = trellis_api::duration::parse_ms(text)
        .map_err(|e| ApiError::bad_request(format!("`ttl`: {e}")))?;
    let ttl = Duration::from_millis(ms);
    if ttl < Duration::from_secs(1) {
        return Err(ApiError::bad_request(format!(
            "`ttl` {text:?} is too short: at least 1s"
        )));
    }
    if ttl > MAX_TTL {
        return Err(ApiError::bad_request(format!(
            "`ttl` {text:?} is too long: at most 87600h (ten years)"
        )));
    }
    Ok(ttl)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "join-token store failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn rfc3339(t: SystemTime) -> String {
    crate::store::rfc3339_millis(trellis_api::time::unix_millis(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("720h").unwrap(), DEFAULT_TTL);
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("30d").is_err());
        assert!(parse_ttl("100000h").is_err());
    }
}
