//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with `application/x-protobuf` or
//! `application/json` bodies (OTLP/JSON: hex ids, integer enums, 64-bit integers as strings or
//! numbers), optionally gzip-compressed. Answers in the request's encoding: the `Export*Response`
//! on success, a `google.rpc.Status` on 400 (malformed) and 503 (overloaded, with Retry-After);
//! 415 for another content type or encoding.

use super::{Logs, MAX_REQUEST_BYTES, Metrics, OtlpSignal, Traces, outcome};
use crate::collector::ingest::Ingest;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message as _;
use std::io::Read as _;
use std::sync::Arc;

/// `google.rpc.Status`, the body of OTLP/HTTP error answers.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// gRPC status codes used in `google.rpc.Status`.
const INVALID_ARGUMENT: i32 = 3;
const UNAVAILABLE: i32 = 14;

/// The receiver's routes.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/traces", post(export::<Traces>))
        .route("/v1/metrics", post(export::<Metrics>))
        .route("/v1/logs", post(export::<Logs>))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(ingest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The body's encoding from `Content-Type` (parameters such as charset ignored).
fn encoding(headers: &HeaderMap) -> Result<Encoding, String> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = value.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/x-protobuf") {
        Ok(Encoding::Protobuf)
    } else if media.eq_ignore_ascii_case("application/json") {
        Ok(Encoding::Json)
    } else {
        Err(format!(
            "unsupported Content-Type {value:?}: OTLP/HTTP takes application/x-protobuf or application/json"
        ))
    }
}

/// The body, gunzipped when `Content-Encoding: gzip`, at most [`MAX_REQUEST_BYTES`].
fn decompress(headers: &HeaderMap, body: Bytes) -> Result<Bytes, (StatusCode, String)> {
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim();
    if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
        return Ok(body);
    }
    if !coding.eq_ignore_ascii_case("gzip") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {coding:?}: use gzip or none"),
        ));
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    let read = flate2::read::GzDecoder::new(&body[..])
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut out);
    match read {
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            format!("the gzip-compressed body is corrupt: {e}"),
        )),
        Ok(n) if n > MAX_REQUEST_BYTES => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_REQUEST_BYTES} bytes once decompressed"),
        )),
        Ok(_) => Ok(Bytes::from(out)),
    }
}

fn encoded<M: prost::Message + serde::Serialize>(
    status: StatusCode,
    encoding: Encoding,
    message: &M,
) -> Response {
    let body = match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec()),
    };
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, encoding: Encoding, code: i32, message: String) -> Response {
    encoded(status, encoding, &RpcStatus { code, message })
}

async fn export<S: OtlpSignal>(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let metrics = ingest.metrics();
    let encoding = match encoding(&headers) {
        Ok(e) => e,
        Err(message) => {
            metrics.request(S::SIGNAL, "http", "invalid");
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
        }
    };
    let body = match decompress(&headers, body) {
        Ok(body) => body,
        Err((status, message)) => {
            metrics.request(S::SIGNAL, "http", "invalid");
            return error(status, encoding, INVALID_ARGUMENT, message);
        }
    };
    let decoded = match encoding {
        Encoding::Protobuf => S::Request::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice::<S::Request>(&body).map_err(|e| e.to_string()),
    };
    let request = match decoded {
        Ok(r) => r,
        Err(e) => {
            metrics.request(S::SIGNAL, "http", "invalid");
            let what = match encoding {
                Encoding::Protobuf => "protobuf",
                Encoding::Json => "OTLP/JSON",
            };
            return error(
                StatusCode::BAD_REQUEST,
                encoding,
                INVALID_ARGUMENT,
                format!("malformed {what} {}: {e}", S::REQUEST_NAME),
            );
        }
    };
    let result = S::ingest(&ingest, request);
    metrics.request(S::SIGNAL, "http", outcome(&result));
    match result {
        Ok(accepted) => encoded(StatusCode::OK, encoding, &S::response(accepted)),
        Err(overloaded) => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                encoding,
                UNAVAILABLE,
                overloaded.to_string(),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}
