//! The Services and Workloads pages through the router against the in-memory fixture: lists,
//! detail pages (traffic tables, charts, config with validations, traces) and error paths.

use crate::memory::MemoryBackend;
use crate::model::{ServiceSummary, TrafficSummary};
use crate::test_support::{self as support, section};
use axum::http::StatusCode;
use std::sync::Arc;

#[tokio::test]
async fn services_list_shows_health_rate_errors_p95_and_links() {
    let (status, html) = get("/services").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(r#"<a href="/services" aria-current="page">"#),
        "{html}"
    );
    let reviews = section(
        &html,
        r#"<a href="/namespaces/shop/services/reviews">"#,
        "</tr>",
    );
    assert!(
        reviews.contains("health-degraded") && reviews.contains("Degraded"),
        "{reviews}"
    );
    assert!(reviews.contains("7.50 req/s"), "{reviews}");
    assert!(reviews.contains("0.70 %"), "{reviews}");
    assert!(reviews.contains("18 ms"), "{reviews}");
    assert!(
        reviews.contains(r#"href="/namespaces/shop/workloads/reviews-v2""#),
        "{reviews}"
    );
    assert!(html.contains(r#"href="/namespaces/ops/services/grafana""#));
}

#[tokio::test]
async fn list_pages_filter_by_namespace() {
    let (_, html) = get("/services?namespace=ops").await;
    assert!(
        html.contains("grafana") && !html.contains("reviews"),
        "{html}"
    );
    assert!(html.contains(r#"name="namespace" value="ops""#), "{html}");
    let (_, html) = get("/workloads?namespace=shop").await;
    assert!(html.contains(r#"href="/namespaces/shop/workloads/reviews-v1""#));
    assert!(!html.contains("grafana"), "{html}");
    let (_, html) = get("/workloads?namespace=nowhere").await;
    assert!(html.contains("No workloads match."), "{html}");
}

#[tokio::test]
async fn service_page_has_traffic_tables_charts_config_and_traces() {
    let (status, html) = get("/namespaces/shop/services/reviews").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<h1>Service shop/reviews</h1>"), "{html}");
    assert!(html.contains("reviews.shop.svc.cluster.local"));
    assert!(
        html.contains(
            r#"href="/namespaces/shop/services/reviews/wizard" class="button">Traffic</a>"#
        ),
        "{html}"
    );
    let inbound = section(&html, "<h2>Inbound traffic</h2>", "</section>");
    assert!(
        inbound.contains(r#"href="/namespaces/shop/workloads/productpage-v1""#),
        "{inbound}"
    );
    assert!(inbound.contains("🔒 mTLS"), "{inbound}");
    let outbound = section(&html, "<h2>Outbound traffic</h2>", "</section>");
    let v2 = section(outbound, "shop/reviews-v2", "</tr>");
    assert!(v2.contains("1.50 req/s") && v2.contains("3.3 %"), "{v2}");

    // Three charts, default window 15m selected, the gap 8–12 minutes ago splits the rate line.
    let charts = section(&html, "<h2>Traffic over time</h2>", "</section>");
    assert!(
        charts.contains(r#"<option value="15m" selected"#),
        "{charts}"
    );
    assert_eq!(charts.matches(r#"role="img""#).count(), 3, "{charts}");
    for title in ["Request rate", "Error rate", "Latency"] {
        assert!(
            charts.contains(&format!("<strong>{title}</strong>")),
            "{title}"
        );
    }
    for line in ["p50", "p95", "p99"] {
        assert!(
            charts.contains(&format!(r#"data-series="{line}""#)),
            "{line}"
        );
    }
    assert_eq!(
        charts.matches(r##"fill="none" stroke="#1f6feb""##).count(),
        2,
        "rate line broken at the gap"
    );
    assert!(
        charts.contains(">10:10</text>"),
        "x axis ends at the fixture's now: {charts}"
    );

    let config = section(&html, "<h2>Config</h2>", "</section>");
    assert!(
        config.contains(r#"href="/config/VirtualService/shop/reviews""#),
        "{config}"
    );
    assert!(config.contains(r#"href="/config/DestinationRule/shop/reviews""#));
    assert!(
        config.contains("v3"),
        "the VirtualService's warning: {config}"
    );

    let traces = section(&html, "<h2>Recent traces</h2>", "</section>");
    assert!(
        traces.contains(r#"href="/traces/4bf92f3577b34da6a3ce929d0e0e4736""#),
        "{traces}"
    );
    assert!(traces.contains(r#"href="/traces/00f067aa0ba902b7c3c1c1b1a1f1e1d1""#));
    assert!(
        traces.contains("marker-error"),
        "the failed trace is marked: {traces}"
    );
    assert!(traces.contains("productpage: GET /productpage"));
}

#[tokio::test]
async fn window_and_direction_change_the_charts() {
    let (status, html) =
        get("/namespaces/shop/services/reviews?window=6h&direction=outbound").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<option value="6h" selected"#), "{html}");
    assert!(
        html.contains(r#"<option value="outbound" selected"#),
        "{html}"
    );
    // 6 hours at 10-minute steps: 36 points per line.
    let rate = section(&html, r#"data-series="requests""#, "</g>");
    assert_eq!(rate.matches("<circle").count(), 36, "{rate}");
    assert!(html.contains(">04:10</text>") || html.contains(">05:00</text>"));
}

#[tokio::test]
async fn bad_window_is_a_400_naming_it() {
    let (status, html) = get("/namespaces/shop/services/reviews?window=2d").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains("`window` must be one of 5m, 15m, 1h or 6h"),
        "{html}"
    );
    assert!(html.contains("2d"), "{html}");
    let (status, html) = get("/namespaces/shop/workloads/reviews-v1?direction=up").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("`direction`"), "{html}");
}

#[tokio::test]
async fn unknown_service_or_workload_is_a_404() {
    let (status, html) = get("/namespaces/shop/services/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("service shop/nope not found."), "{html}");
    let (status, html) = get("/namespaces/shop/workloads/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("workload shop/nope not found."), "{html}");
}

#[tokio::test]
async fn backend_failure_is_a_502_with_its_message() {
    for uri in [
        "/services",
        "/workloads",
        "/namespaces/shop/services/reviews",
        "/namespaces/shop/workloads/reviews-v1",
    ] {
        let backend = MemoryBackend::fixture();
        backend.set_failure(Some("collector unreachable"));
        let (status, html) = get_from(backend, uri).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{uri}");
        assert!(html.contains("collector unreachable"), "{uri}: {html}");
    }
}

#[tokio::test]
async fn workload_page_has_labels_services_proxies_and_config() {
    let (status, html) = get("/namespaces/shop/workloads/reviews-v2").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<h1>Workload shop/reviews-v2</h1>"));
    assert!(html.contains("<code>version=v2</code>"), "{html}");
    assert!(html.contains(r#"href="/namespaces/shop/services/reviews">reviews</a>"#));
    assert!(html.contains("reviews-v2-8a1e0"), "{html}");
    assert!(html.contains("NACKED"));
    assert!(html.contains("health-degraded"), "3.3 % 5xx: {html}");
    let config = section(&html, "<h2>Config</h2>", "</section>");
    assert!(config.contains("VirtualService shop/reviews"), "{config}");
    let inbound = section(&html, "<h2>Inbound traffic</h2>", "</section>");
    assert!(inbound.contains("shop/productpage-v1"), "{inbound}");
    let (_, html) = get("/namespaces/ops/workloads/grafana").await;
    assert!(html.contains("No VirtualService, DestinationRule or policy applies."));
    assert!(html.contains("No recent traces."), "{html}");
}

#[tokio::test]
async fn names_are_escaped_and_encoded() {
    let backend = MemoryBackend::new().with_service(ServiceSummary {
        name: "<b>x</b>".into(),
        namespace: "a b".into(),
        host: "x".into(),
        ports: vec![],
        workloads: vec![],
        traffic: TrafficSummary::default(),
    });
    let (status, html) = get_from(backend, "/services").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"), "{html}");
    assert!(
        html.contains(r#"href="/namespaces/a%20b/services/%3Cb%3Ex%3C%2Fb%3E""#),
        "{html}"
    );
    assert!(!html.contains("<b>x"), "{html}");
    assert!(html.contains("No traffic"), "{html}");
}

const STRICT_V2: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: strict-v2
  namespace: shop
spec:
  selector:
    matchLabels:
      version: v2
  mtls:
    mode: STRICT
";

#[tokio::test]
async fn policies_apply_where_their_selector_matches() {
    let with_policy = || MemoryBackend::fixture().with_config(STRICT_V2, "strict v2");
    let (_, html) = get_from(with_policy(), "/namespaces/shop/workloads/reviews-v2").await;
    let config = section(&html, "<h2>Config</h2>", "</section>");
    assert!(
        config.contains(r#"href="/config/PeerAuthentication/shop/strict-v2""#),
        "{config}"
    );
    let (_, html) = get_from(with_policy(), "/namespaces/shop/workloads/reviews-v1").await;
    let config = section(&html, "<h2>Config</h2>", "</section>");
    assert!(!config.contains("strict-v2"), "{config}");
    // The service reaches reviews-v2, so the policy applies to it too.
    let (_, html) = get_from(with_policy(), "/namespaces/shop/services/reviews").await;
    assert!(html.contains("PeerAuthentication shop/strict-v2"), "{html}");
    let (_, html) = get_from(with_policy(), "/namespaces/shop/services/productpage").await;
    assert!(!html.contains("strict-v2"), "{html}");
}

#[test]
fn hosts_match_short_qualified_and_wildcard_names() {
    use super::services::host_matches;
    assert!(host_matches("reviews", "shop", "shop", "reviews"));
    assert!(!host_matches("reviews", "ops", "shop", "reviews"));
    assert!(host_matches("reviews.shop", "ops", "shop", "reviews"));
    assert!(host_matches(
        "reviews.shop.svc.cluster.local",
        "ops",
        "shop",
        "reviews"
    ));
    assert!(host_matches(
        "*.shop.svc.cluster.local",
        "ops",
        "shop",
        "reviews"
    ));
    assert!(!host_matches(
        "*.ops.svc.cluster.local",
        "ops",
        "shop",
        "reviews"
    ));
    assert!(!host_matches("ratings.shop", "shop", "shop", "reviews"));
}

async fn get_from(backend: MemoryBackend, uri: &str) -> (StatusCode, String) {
    support::get(&Arc::new(backend), uri).await
}

async fn get(uri: &str) -> (StatusCode, String) {
    support::get(&support::fixture(), uri).await
}
