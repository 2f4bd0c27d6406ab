//! The live parts through the router: `/graph/fragment`, the scripts, and the hooks the pages
//! give them (the page itself must still read fully without them).

use crate::graph::sample::bookinfo;
use crate::memory::MemoryBackend;
use crate::server::{ConsoleOptions, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

/// Status, content type, cache control and body of a GET.
async fn get(backend: &Arc<MemoryBackend>, uri: &str) -> (StatusCode, String, String, String) {
    let app = router(backend.clone(), ConsoleOptions::default());
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let header_text = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (status, content_type, cache) = (
        response.status(),
        header_text(header::CONTENT_TYPE),
        header_text(header::CACHE_CONTROL),
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        cache,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

fn bookinfo_backend() -> Arc<MemoryBackend> {
    Arc::new(MemoryBackend::new().with_graph(bookinfo()))
}

#[tokio::test]
async fn fragment_has_the_summary_drawing_and_details_but_not_the_form() {
    let backend = bookinfo_backend();
    let data = bookinfo();
    let (status, content_type, cache, html) = get(
        &backend,
        "/graph/fragment?graphType=versionedApp&edges=rate",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert_eq!(cache, "no-store");
    let counts = format!("{} nodes, {} edges", data.nodes.len(), data.edges.len());
    assert!(html.contains(&counts), "{html}");
    assert!(html.contains("<svg") && html.contains("class=\"graph-svg\""));
    assert!(html.contains("id=\"details-title\""), "{html}");
    // Only the live parts: no form, legend, styles, shell or script.
    for absent in [
        "<form",
        ".graph-page",
        "legend-title",
        "<!DOCTYPE",
        "<script",
    ] {
        assert!(!html.contains(absent), "{absent} in the fragment");
    }
}

#[tokio::test]
async fn fragment_keeps_the_focused_nodes_details() {
    let backend = bookinfo_backend();
    let node = bookinfo()
        .nodes
        .into_iter()
        .find(|n| n.workload.as_deref() == Some("reviews-v2"))
        .expect("bookinfo has reviews-v2");
    let uri = format!(
        "/graph/fragment?focus=node:{}",
        crate::graph::query::encode(&node.id)
    );
    let (status, _, _, html) = get(&backend, &uri).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Close details"), "{html}");
    assert!(html.contains("reviews-v2"), "{html}");
    assert!(
        html.contains("focused"),
        "the drawing marks the focused node"
    );
}

#[tokio::test]
async fn fragment_errors_are_short_plain_text() {
    let backend = bookinfo_backend();
    let (status, content_type, _, text) = get(&backend, "/graph/fragment?graphType=pods").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert!(text.contains("graphType") && !text.contains('<'), "{text}");

    backend.set_failure(Some("collector <down>"));
    let (status, _, _, text) = get(&backend, "/graph/fragment").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(text.contains("collector <down>"), "{text}");
}

#[tokio::test]
async fn graph_page_names_its_fragment_and_loads_the_script() {
    let backend = bookinfo_backend();
    let (status, _, _, html) = get(
        &backend,
        "/graph?graphType=app&namespaces=bookinfo&edges=p95",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The fragment URL carries the same query (escaped inside the attribute).
    assert!(
        html.contains(
            r#"<div id="graph-live" data-fragment="/graph/fragment?graphType=app&amp;namespaces=bookinfo&amp;edges=p95">"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"<script src="/static/graph.js" defer></script>"#));
    // Without the script the drawing and the details are already there.
    assert!(html.contains("<svg") && html.contains("id=\"details-title\""));
}

#[tokio::test]
async fn scripts_are_served() {
    let backend = bookinfo_backend();
    let (status, content_type, cache, js) = get(&backend, "/static/graph.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/javascript; charset=utf-8");
    assert!(cache.contains("max-age"), "{cache}");
    for piece in [
        "viewBox",
        "visibilitychange",
        "dataset.fragment",
        "\"wheel\"",
    ] {
        assert!(
            js.contains(piece) || js.contains(&piece.replace('-', "")),
            "{piece}"
        );
    }
    let (status, _, _, js) = get(&backend, "/static/overview.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("visibilitychange") && js.contains("data-live"));
}

#[tokio::test]
async fn overview_marks_its_cards_for_live_refresh() {
    let backend = Arc::new(MemoryBackend::fixture());
    let (status, _, _, html) = get(&backend, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(
            r#"<div id="overview-live" data-live="10"><ul aria-label="Namespaces" class="cards">"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"<script src="/static/overview.js" defer></script>"#));
    // Empty: the message is inside the live region, so namespaces appear when proxies connect.
    let (_, _, _, html) = get(&Arc::new(MemoryBackend::new()), "/").await;
    assert!(
        html.contains(
            r#"<div id="overview-live" data-live="10"><p class="empty">No namespaces yet"#
        ),
        "{html}"
    );
}
