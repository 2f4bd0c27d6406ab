//! What the router tests share: requests through `router` over a `MemoryBackend`, and scoping an
//! assertion to one part of a page.

use crate::memory::MemoryBackend;
use crate::server::{ConsoleOptions, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

/// The fixture mesh of [`MemoryBackend::fixture`], shareable across requests.
pub fn fixture() -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::fixture())
}

/// Status and body of `request` through a router with `options`.
pub async fn send_with(
    backend: &Arc<MemoryBackend>,
    options: ConsoleOptions,
    request: Request<Body>,
) -> (StatusCode, String) {
    let app = router(backend.clone(), options);
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Status and body of `request` through a router with the default options.
pub async fn send(backend: &Arc<MemoryBackend>, request: Request<Body>) -> (StatusCode, String) {
    send_with(backend, ConsoleOptions::default(), request).await
}

pub async fn get(backend: &Arc<MemoryBackend>, uri: &str) -> (StatusCode, String) {
    send(backend, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// A form POST as the console's pages send it.
pub async fn post(
    backend: &Arc<MemoryBackend>,
    uri: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", crate::pages::encode(k), crate::pages::encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(backend, request).await
}

/// The text from `start` to the next `end` after it (not included), to scope an assertion to
/// one card, row or section.
pub fn section<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in {html}"));
    let rest = &html[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}
