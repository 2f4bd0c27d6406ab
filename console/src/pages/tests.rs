//! The pages through the router against the in-memory fixture: rendered HTML is checked for
//! content (names, numbers, states, links), and error paths for their status and message.

use crate::ConsoleBackend;
use crate::memory::{FIXTURE_VIRTUAL_SERVICE_V1, MemoryBackend};
use crate::model::ResourceRef;
use crate::server::{ConsoleOptions, router};
use crate::test_support::{fixture, get, post, section, send};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::Arc;
use tower::ServiceExt;

#[tokio::test]
async fn overview_shows_each_namespace_with_health_rate_mtls_and_proxies() {
    let (status, html) = get(&fixture(), "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains(r#"<a href="/" aria-current="page">Overview</a>"#),
        "{html}"
    );
    let shop = section(&html, "<h2>shop</h2>", "</li>");
    assert!(shop.contains("health health-degraded"), "{shop}");
    assert!(shop.contains("Degraded"), "{shop}");
    assert!(shop.contains("12.5 req/s"), "{shop}");
    assert!(shop.contains("0.40 %"), "{shop}");
    assert!(shop.contains("mTLS enabled"), "{shop}");
    assert!(shop.contains("3 connected"), "{shop}");
    assert!(
        shop.contains("2 SYNCED") && shop.contains("0 STALE") && shop.contains("1 NACKED"),
        "{shop}"
    );
    assert!(shop.contains(r#"href="/graph?namespaces=shop""#), "{shop}");
    let ops = section(&html, "<h2>ops</h2>", "</li>");
    assert!(
        ops.contains("health health-ok") && ops.contains("Healthy"),
        "{ops}"
    );
    assert!(
        ops.contains("mTLS partially enabled") && ops.contains("1 STALE"),
        "{ops}"
    );
}

#[tokio::test]
async fn overview_escapes_names_and_says_when_empty() {
    let backend = Arc::new(MemoryBackend::new().with_namespace(
        "<script>x</script>",
        Default::default(),
        crate::model::MtlsStatus::Disabled,
    ));
    let (_, html) = get(&backend, "/").await;
    assert!(!html.contains("<script>x"), "{html}");
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(html.contains("No traffic"));
    let (_, html) = get(&Arc::new(MemoryBackend::new()), "/").await;
    assert!(html.contains("No namespaces yet"));
}

#[tokio::test]
async fn backend_failure_is_a_502_page_with_the_message() {
    let backend = fixture();
    backend.set_failure(Some("database is locked"));
    for uri in ["/", "/proxies", "/config", "/config/history"] {
        let (status, html) = get(&backend, uri).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{uri}");
        assert!(html.contains("database is locked"), "{uri}: {html}");
        assert!(html.contains(r#"role="alert""#));
        assert!(html.contains("Proxies"), "the nav is still there");
    }
}

#[tokio::test]
async fn unknown_page_is_a_404_in_the_shell() {
    let (status, html) = get(&fixture(), "/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("There is no page at /nowhere."));
}

#[tokio::test]
async fn proxies_table_shows_states_versions_and_nack_reason() {
    let (status, html) = get(&fixture(), "/proxies").await;
    assert_eq!(status, StatusCode::OK);
    let nacked = section(&html, "reviews-v2-8a1e0", "</tr>");
    assert!(
        nacked.contains(r#"<span class="badge state-nacked">NACKED</span>"#),
        "{nacked}"
    );
    assert!(nacked.contains("unknown subset"), "{nacked}");
    assert!(nacked.contains("10.0.0.13:15006"));
    let stale = section(&html, "grafana-6b7d1", "</tr>");
    assert!(
        stale.contains("STALE") && stale.contains("<td>ops</td>"),
        "{stale}"
    );
    assert!(section(&html, "productpage-v1-7d4b9", "</tr>").contains("SYNCED"));
    // Sorted by namespace: ops before shop.
    assert!(html.find("grafana-6b7d1") < html.find("productpage-v1-7d4b9"));
}

#[tokio::test]
async fn config_list_marks_warnings_and_filters() {
    let backend = fixture();
    let (status, html) = get(&backend, "/config").await;
    assert_eq!(status, StatusCode::OK);
    let vs = section(
        &html,
        r#"<a href="/config/VirtualService/shop/reviews">"#,
        "</tr>",
    );
    assert!(
        vs.contains("marker-warning") && vs.contains("1 warning(s)"),
        "{vs}"
    );
    let dr = section(
        &html,
        r#"<a href="/config/DestinationRule/shop/reviews">"#,
        "</tr>",
    );
    assert!(dr.contains("Valid"), "{dr}");

    let (status, html) = get(&backend, "/config?kind=vs&namespace=shop").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("/config/VirtualService/shop/reviews"));
    assert!(!html.contains("/config/DestinationRule/shop/reviews"));
    assert!(
        html.contains(r#"<option value="VirtualService" selected"#),
        "{html}"
    );

    let (_, html) = get(&backend, "/config?namespace=ops").await;
    assert!(html.contains("No resources match."));
}

#[tokio::test]
async fn bad_query_parameters_are_400_with_the_message() {
    let backend = fixture();
    let (status, html) = get(&backend, "/config?kind=gizmo").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("unknown resource type &quot;gizmo&quot;")
            || html.contains("unknown resource type \"gizmo\""),
        "{html}"
    );
    let (status, html) = get(&backend, "/config/history?from=abc&to=2").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("`from` must be a whole number"), "{html}");
    let (status, html) = get(&backend, "/config/history?from=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("`to` is required"), "{html}");
    let (status, html) = get(&backend, "/config/history?from=1&to=99").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("revision 99 does not exist (latest is 3)"),
        "{html}"
    );
    let (status, _) = get(&backend, "/config/rollback").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn resource_page_shows_escaped_yaml_and_its_messages() {
    let backend = fixture();
    let (status, html) = get(&backend, "/config/VirtualService/shop/reviews").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("<h1>VirtualService shop/reviews</h1>"),
        "{html}"
    );
    assert!(html.contains("subset: v3"));
    assert!(html.contains("weight: 20"));
    assert!(html.contains("msg msg-warning"), "{html}");
    assert!(html.contains("v3"));
    assert!(
        html.contains(
            r#"href="/config/apply?kind=VirtualService&amp;namespace=shop&amp;name=reviews""#
        ),
        "{html}"
    );

    let (status, html) = get(&backend, "/config/vs/shop/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("VirtualService shop/nope not found"),
        "{html}"
    );

    // YAML text is escaped.
    let tricky = FIXTURE_VIRTUAL_SERVICE_V1.replace(
        "name: reviews\n",
        "name: reviews\n  annotations:\n    note: \"</code><b>bold</b>\"\n",
    );
    backend.apply(&tricky, "me").await.unwrap();
    let (_, html) = get(&backend, "/config/VirtualService/shop/reviews").await;
    assert!(!html.contains("<b>bold</b>"), "{html}");
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"), "{html}");
}

#[tokio::test]
async fn history_lists_revisions_and_shows_a_diff() {
    let (status, html) = get(&fixture(), "/config/history?from=2&to=3").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Changes from revision 2 to 3"));
    assert!(
        html.contains(r#"<span class="diff-add">+          weight: 80"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<span class="diff-add">+            subset: v3"#),
        "{html}"
    );
    let row1 = section(&html, "<th scope=\"row\">1", "</tr>");
    assert!(
        row1.contains("reviews subsets") && row1.contains("fixture"),
        "{row1}"
    );
    assert!(
        row1.contains(r#"href="/config/rollback?revision=1""#),
        "{row1}"
    );
    let row3 = section(&html, "<th scope=\"row\">3", "</tr>");
    assert!(
        row3.contains("current") && !row3.contains("Roll back"),
        "{row3}"
    );
}

#[tokio::test]
async fn rollback_confirms_then_writes_a_new_revision() {
    let backend = fixture();
    let (status, html) = get(&backend, "/config/rollback?revision=2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Roll back to revision 2?"));
    assert!(
        html.contains(r#"<span class="diff-del">-            subset: v3"#),
        "{html}"
    );
    assert!(html.contains(r#"<form method="post" action="/config/rollback""#));
    assert!(html.contains(r#"name="revision" value="2""#));
    assert_eq!(
        backend.revisions(1).await.unwrap()[0].number,
        3,
        "a GET changes nothing"
    );

    let (status, html) = post(&backend, "/config/rollback", &[("revision", "2")]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("Rolled back to revision 2: written as revision 4."),
        "{html}"
    );
    assert!(html.contains("VirtualService shop/reviews"));
    let latest = &backend.revisions(1).await.unwrap()[0];
    assert_eq!(
        (latest.number, latest.summary.as_str()),
        (4, "rollback to revision 2")
    );
    let vs = ResourceRef {
        kind: "VirtualService".into(),
        namespace: "shop".into(),
        name: "reviews".into(),
    };
    assert!(!backend.resource(&vs).await.unwrap().yaml.contains("v3"));

    let (status, html) = post(&backend, "/config/rollback", &[("revision", "x")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("`revision` must be a whole number"));
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let backend = fixture();
    let request = Request::post("/config/rollback")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(Body::from("revision=1"))
        .unwrap();
    let (status, html) = send(&backend, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("refused a change sent from another site"));
    assert_eq!(backend.revisions(1).await.unwrap()[0].number, 3);
}

#[tokio::test]
async fn apply_form_prefills_a_resource() {
    let (status, html) = get(
        &fixture(),
        "/config/apply?kind=DestinationRule&namespace=shop&name=reviews",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(r#"<textarea id="yaml" name="yaml""#),
        "{html}"
    );
    assert!(html.contains("kind: DestinationRule"));
    let (status, html) = get(&fixture(), "/config/apply?kind=DestinationRule").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("give all of `kind`, `namespace` and `name`"));
}

#[tokio::test]
async fn bad_yaml_is_refused_next_to_the_field_and_nothing_is_stored() {
    let backend = fixture();
    let bad = FIXTURE_VIRTUAL_SERVICE_V1.replace("subset: v1", "subset: v1\n      weight: 300");
    let (status, html) = post(
        &backend,
        "/config/apply",
        &[("yaml", &bad), ("action", "apply")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("Nothing was applied."));
    assert!(
        html.contains(r#"aria-invalid="true""#)
            && html.contains(r#"aria-describedby="yaml-messages""#),
        "{html}"
    );
    let messages = section(
        &html,
        r#"<ul id="yaml-messages" class="messages">"#,
        "</ul>",
    );
    assert!(messages.contains("msg msg-error"), "{messages}");
    assert!(messages.contains("weight"), "{messages}");
    assert!(
        html.contains("weight: 300"),
        "the edit is kept in the field"
    );
    assert_eq!(backend.revisions(1).await.unwrap()[0].number, 3);

    let (status, html) = post(
        &backend,
        "/config/apply",
        &[("yaml", "kind: [unclosed"), ("action", "validate")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("YAML syntax error"), "{html}");

    let (status, html) = post(
        &backend,
        "/config/apply",
        &[("yaml", "  "), ("action", "apply")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("the YAML is empty"));

    let (status, html) = post(
        &backend,
        "/config/apply",
        &[("yaml", FIXTURE_VIRTUAL_SERVICE_V1), ("action", "launch")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("`action` must be `validate` or `apply`"));
}

#[tokio::test]
async fn valid_yaml_validates_then_applies_as_a_revision() {
    let backend = fixture();
    let (status, html) = post(
        &backend,
        "/config/apply",
        &[("yaml", FIXTURE_VIRTUAL_SERVICE_V1), ("action", "validate")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Valid: no messages."), "{html}");
    assert_eq!(
        backend.revisions(1).await.unwrap()[0].number,
        3,
        "validate writes nothing"
    );

    let (status, html) = post(
        &backend,
        "/config/apply",
        &[("yaml", FIXTURE_VIRTUAL_SERVICE_V1), ("action", "apply")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Applied as revision 4."), "{html}");
    assert!(html.contains(r#"href="/config/VirtualService/shop/reviews""#));
    assert_eq!(
        backend.revisions(1).await.unwrap()[0].summary,
        "VirtualService shop/reviews configured"
    );
}

#[tokio::test]
async fn static_files_are_served_with_cache_headers() {
    let app = router(fixture(), ConsoleOptions::default());
    for (uri, kind) in [
        ("/static/console.css", "text/css"),
        ("/static/console.js", "text/javascript"),
    ] {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=3600");
    }
}

#[tokio::test]
async fn console_title_is_in_the_header() {
    let app = router(
        fixture(),
        ConsoleOptions {
            title: "Prod mesh".into(),
            jaeger_ui_url: None,
        },
    );
    let response = app
        .oneshot(Request::get("/proxies").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let html = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        html.contains("<title>Proxies · Prod mesh</title>"),
        "{html}"
    );
    assert!(html.contains(r#"<a href="/" class="brand">Prod mesh</a>"#));
}

#[tokio::test]
async fn graph_page_draws_the_backend_graph_and_refuses_bad_parameters() {
    let backend = fixture();
    let (status, html) = get(&backend, "/graph?graphType=versionedApp&edges=rate").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<svg"), "{html}");
    for name in ["productpage", "reviews", "details"] {
        assert!(html.contains(name), "{name} missing: {html}");
    }
    assert!(html.contains(r#"aria-current="page""#), "{html}");

    let (status, html) = get(&backend, "/graph?graphType=pods").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("graphType"), "{html}");

    let (status, html) = get(&backend, "/graph?find=rt%20%3E%20fast").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("is not a number"), "{html}");

    backend.set_failure(Some("collector unreachable"));
    let (status, html) = get(&backend, "/graph").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{html}");
    assert!(html.contains("collector unreachable"), "{html}");
}
