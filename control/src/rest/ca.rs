//! The certificate authority for operators: `GET /ca` lists the roots proxies trust (which one
//! signs, a rotation's next root, replaced roots and until when they stay trusted);
//! `POST /ca/rotate` starts a root rotation (`trellis ca rotate`).

use super::AppState;
use super::error::ApiError;
use crate::ca::{IdentityService, RootRole, RootView, RotateError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateRequest {
    /// How long the replaced root stays trusted after the new one signs, like `48h`; default
    /// twice the certificate lifetime.
    #[serde(default)]
    grace: Option<String>,
    /// How long the new root is only trusted before it signs, like `30s`; default the control
    /// plane's `--root-propagation`.
    #[serde(default)]
    propagation: Option<String>,
}

/// A root as listed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RootJson {
    subject: String,
    sha256: String,
    not_after: String,
    /// `signing`, `trusted`, `next` or `previous`.
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    signs_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_until: Option<String>,
}

impl RootJson {
    fn new(view: &RootView) -> RootJson {
        let (role, signs_from, trusted_until) = match view.role {
            RootRole::Signing => ("signing", None, None),
            RootRole::Trusted => ("trusted", None, None),
            RootRole::Next { activates_at } => ("next", Some(rfc3339(activates_at)), None),
            RootRole::Previous { trusted_until } => {
                ("previous", None, Some(rfc3339(trusted_until)))
            }
        };
        RootJson {
            subject: view.subject.clone(),
            sha256: view.sha256.clone(),
            not_after: rfc3339(view.not_after),
            role,
            signs_from,
            trusted_until,
        }
    }
}

/// `GET /ca` → `{"roots": [...]}`, the bundle's roots, newest first.
pub async fn show(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ca = authority(&state)?;
    let roots: Vec<RootJson> = ca.roots().iter().map(RootJson::new).collect();
    Ok(Json(serde_json::json!({ "roots": roots })).into_response())
}

/// `POST /ca/rotate` with `{"grace": "48h", "propagation": "30s"}` (both optional) →
/// `{"newRoot", "replaced", "signsFrom", "oldTrustedUntil"}`.
pub async fn rotate(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let ca = authority(&state)?.clone();
    let request: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "body must be {{\"grace\": \"48h\", \"propagation\": \"30s\"}} (both optional): {e}"
            ))
        })?
    };
    let grace = request
        .grace
        .as_deref()
        .map(|g| duration("grace", g))
        .transpose()?;
    let propagation = request
        .propagation
        .as_deref()
        .map(|p| duration("propagation", p))
        .transpose()?;
    // New keys and files: off the async threads.
    let rotation = tokio::task::spawn_blocking(move || ca.rotate(grace, propagation))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(rotate_error)?;
    let body = serde_json::json!({
        "newRoot": RootJson::new(&rotation.new_root),
        "replaced": rotation.replaced.iter().map(RootJson::new).collect::<Vec<_>>(),
        "signsFrom": rfc3339(rotation.activates_at),
        "oldTrustedUntil": rfc3339(rotation.old_trusted_until),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn authority(state: &AppState) -> Result<&IdentityService, ApiError> {
    state.ca.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this control plane runs no certificate authority",
        )
    })
}

fn rotate_error(e: RotateError) -> ApiError {
    if e.is_request_error() {
        let status = match e {
            RotateError::Ca(crate::ca::CaError::RotationInProgress { .. }) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    } else {
        tracing::error!(error = %e, "root rotation failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

fn duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    trellis_api::duration::parse_ms(text)
        .map(Duration::from_millis)
        .map_err(|e| ApiError::bad_request(format!("`{field}` {text:?}: {e}")))
}

fn rfc3339(t: SystemTime) -> String {
    crate::store::rfc3339_millis(trellis_api::time::unix_millis(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_name_the_field() {
        assert_eq!(duration("grace", "2m").unwrap(), Duration::from_secs(120));
        let e = duration("grace", "soon").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.body.error.starts_with("`grace` \"soon\""),
            "{}",
            e.body.error
        );
    }

    #[test]
    fn refusals_are_client_errors_and_failures_are_not() {
        let short = rotate_error(RotateError::GraceTooShort {
            grace: Duration::from_secs(30),
            cert_ttl: Duration::from_secs(60),
        });
        assert_eq!(short.status, StatusCode::BAD_REQUEST);
        assert!(
            short
                .body
                .error
                .contains("grace 30s is shorter than the certificate lifetime 1m"),
            "{}",
            short.body.error
        );
        let busy = rotate_error(RotateError::Ca(crate::ca::CaError::RotationInProgress {
            dir: "/ca".into(),
            activates_unix: 5,
        }));
        assert_eq!(busy.status, StatusCode::CONFLICT);
        let failed = rotate_error(RotateError::Ca(crate::ca::CaError::Generate("x".into())));
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
