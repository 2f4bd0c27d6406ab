//! The one error shape of the REST API: `{"error": "...", "diagnostics": [...]}`, where
//! diagnostics carry the same file/line/resource/field detail as `trellis analyze`.

use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use trellis_api::Diagnostic;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
}

/// An error answer: status plus body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                diagnostics: Vec::new(),
            },
        }
    }

    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    /// Input that parsed but is not a valid configuration.
    pub fn invalid(diagnostics: Vec<Diagnostic>) -> ApiError {
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        let summary = match errors {
            1 => "the configuration has 1 error".to_string(),
            n => format!("the configuration has {n} errors"),
        };
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                error: summary,
                diagnostics,
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Invalid(diagnostics) => ApiError::invalid(diagnostics),
            StoreError::NotFound(_) | StoreError::NoSuchRevision(..) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            StoreError::Database(_) => {
                tracing::error!(error = %e, "store failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
