//! The wizard through the router against the in-memory fixture (`shop/reviews` has versions v1
//! and v2, a DestinationRule with both subsets and a VirtualService sending 80/20 to v1 and v3),
//! and the generator on its own: every section's YAML must load with `trellis_api::load_str`.

use super::form::{Tab, prefill};
use super::generate::{
    Change, CircuitBreaker, Fault, MatchOn, MatchRule, Retries, Target, Timeouts, generate,
};
use super::yaml;
use crate::ConsoleBackend;
use crate::memory::MemoryBackend;
use crate::model::{ResourceRef, ServiceSummary, TrafficSummary, WorkloadSummary};
use crate::test_support::{fixture, get, post, send};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use std::sync::Arc;

const WIZARD: &str = "/namespaces/shop/services/reviews/wizard";

/// A mesh with `shop/ratings` (v1, v2) and no traffic rules yet.
fn bare() -> Arc<MemoryBackend> {
    let workload = |name: &str, version: &str| WorkloadSummary {
        name: name.into(),
        namespace: "shop".into(),
        app: Some("ratings".into()),
        version: Some(version.into()),
        labels: vec![("version".into(), version.into())],
        proxies: 1,
        traffic: TrafficSummary::default(),
    };
    Arc::new(
        MemoryBackend::new()
            .with_service(ServiceSummary {
                name: "ratings".into(),
                namespace: "shop".into(),
                host: "ratings.shop.svc.cluster.local".into(),
                ports: vec![9080],
                workloads: vec!["ratings-v1".into(), "ratings-v2".into()],
                traffic: TrafficSummary::default(),
            })
            .with_workload(workload("ratings-v1", "v1"))
            .with_workload(workload("ratings-v2", "v2")),
    )
}

fn id(kind: &str, name: &str) -> ResourceRef {
    ResourceRef {
        kind: kind.into(),
        namespace: "shop".into(),
        name: name.into(),
    }
}

/// The stored document, as JSON.
async fn stored(backend: &MemoryBackend, kind: &str, name: &str) -> Value {
    let resource = backend.resource(&id(kind, name)).await.unwrap();
    trellis_api::load_str(&resource.yaml, "stored").unwrap()[0]
        .raw
        .clone()
}

async fn latest_revision(backend: &MemoryBackend) -> u64 {
    backend.revisions(1).await.unwrap()[0].number
}

fn target() -> Target {
    Target {
        namespace: "shop".into(),
        name: "ratings".into(),
        host: "ratings.shop.svc.cluster.local".into(),
    }
}

#[tokio::test]
async fn get_shows_versions_tabs_and_current_split() {
    let (status, html) = get(&fixture(), WIZARD).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Traffic rules: shop/reviews"));
    assert!(html.contains("reviews.shop.svc.cluster.local"));
    assert!(html.contains("Versions: v1, v2"));
    for tab in Tab::ALL {
        assert!(
            html.contains(&format!("{WIZARD}?tab={}", tab.slug())),
            "{}",
            tab.slug()
        );
    }
    // The fixture's split is 80 to v1 (and 20 to v3, which is no version of the service).
    assert!(html.contains(r#"name="weight.v1""#));
    assert!(html.contains(r#"value="80""#));
    assert!(html.contains(r#"<output id="weight-total" aria-live="polite">80 %</output>"#));
    assert!(html.contains(r#"<script src="/static/wizard.js""#));
    assert!(
        html.contains(r#"value="remove""#),
        "offers to remove the existing rules"
    );
}

#[tokio::test]
async fn weights_80_20_write_vs_and_dr_as_a_revision() {
    let backend = bare();
    let before = latest_revision(&backend).await;
    let (status, html) = post(
        &backend,
        "/namespaces/shop/services/ratings/wizard",
        &[
            ("tab", "weights"),
            ("weight.v1", "80"),
            ("weight.v2", "20"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let revision = latest_revision(&backend).await;
    assert_eq!(revision, before + 1);
    assert!(
        html.contains(&format!("Applied as revision {revision}.")),
        "{html}"
    );
    assert!(html.contains(r#"href="/graph?namespaces=shop&amp;graphType=versionedApp""#));
    assert!(html.contains(&format!(
        r#"href="/config/history?from={before}&amp;to={revision}""#
    )));

    let vs = stored(&backend, "VirtualService", "ratings").await;
    assert_eq!(vs["apiVersion"], "networking.istio.io/v1");
    assert_eq!(
        vs["spec"]["hosts"],
        json!(["ratings.shop.svc.cluster.local"])
    );
    assert_eq!(
        vs["spec"]["http"],
        json!([{"route": [
            {"destination": {"host": "ratings.shop.svc.cluster.local", "subset": "v1"}, "weight": 80},
            {"destination": {"host": "ratings.shop.svc.cluster.local", "subset": "v2"}, "weight": 20},
        ]}])
    );
    let dr = stored(&backend, "DestinationRule", "ratings").await;
    assert_eq!(dr["spec"]["host"], "ratings.shop.svc.cluster.local");
    assert_eq!(
        dr["spec"]["subsets"],
        json!([
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}},
        ])
    );
}

#[tokio::test]
async fn totals_other_than_100_are_refused_next_to_the_weights() {
    let backend = bare();
    let before = latest_revision(&backend).await;
    let (status, html) = post(
        &backend,
        "/namespaces/shop/services/ratings/wizard",
        &[
            ("tab", "weights"),
            ("weight.v1", "70"),
            ("weight.v2", "20"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Nothing was written"));
    assert!(
        html.contains(
            r#"id="err-weights" class="field-errors"><li>The weights add up to 90 %; they must total 100 %.</li>"#
        ),
        "{html}"
    );
    assert!(html.contains(r#"aria-describedby="err-weights""#));
    // What the operator typed is shown back.
    assert!(html.contains(r#"value="70""#));
    assert_eq!(latest_revision(&backend).await, before, "nothing stored");

    let (status, html) = post(
        &backend,
        "/namespaces/shop/services/ratings/wizard",
        &[
            ("tab", "weights"),
            ("weight.v1", "lots"),
            ("weight.v2", "20"),
            ("action", "preview"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("the weight of v1 must be a whole number from 0 to 100"));
    assert!(html.contains(r#"id="err-weight-v1""#));
}

#[tokio::test]
async fn applying_weights_keeps_the_retries_and_the_circuit_breaker() {
    let backend = bare();
    let url = "/namespaces/shop/services/ratings/wizard";
    let (status, html) = post(
        &backend,
        url,
        &[
            ("tab", "timeouts"),
            ("timeout", "10s"),
            ("retries.attempts", "3"),
            ("retries.perTryTimeout", "2s"),
            ("retries.retryOn", "5xx,reset"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (status, _) = post(
        &backend,
        url,
        &[
            ("tab", "circuit-breaking"),
            ("cb.maxConnections", "100"),
            ("cb.consecutive5xxErrors", "5"),
            ("cb.interval", "10s"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(
        &backend,
        url,
        &[
            ("tab", "weights"),
            ("weight.v1", "80"),
            ("weight.v2", "20"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let vs = stored(&backend, "VirtualService", "ratings").await;
    let route = &vs["spec"]["http"][0];
    assert_eq!(route["timeout"], "10s");
    assert_eq!(
        route["retries"],
        json!({"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset"})
    );
    assert_eq!(route["route"][0]["weight"], 80);
    let dr = stored(&backend, "DestinationRule", "ratings").await;
    assert_eq!(
        dr["spec"]["trafficPolicy"],
        json!({"connectionPool": {"tcp": {"maxConnections": 100}}, "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s"}})
    );
    assert_eq!(dr["spec"]["subsets"].as_array().unwrap().len(), 2);

    // The sections open showing what is in force.
    let (_, html) = get(&backend, &format!("{url}?tab=timeouts")).await;
    assert!(html.contains(r#"value="5xx,reset""#), "{html}");
    let (_, html) = get(&backend, &format!("{url}?tab=circuit-breaking")).await;
    assert!(
        html.contains(r#"name="cb.maxConnections" value="100""#),
        "{html}"
    );
}

#[tokio::test]
async fn preview_validates_and_shows_the_yaml_escaped() {
    let backend = fixture();
    let before = latest_revision(&backend).await;
    let (status, html) = post(
        &backend,
        WIZARD,
        &[
            ("tab", "routing"),
            ("rule0.on", "header"),
            ("rule0.header", "end-user"),
            ("rule0.op", "exact"),
            ("rule0.value", "<jason & \"co\">"),
            ("rule0.version", "v2"),
            ("rule1.on", "header"),
            ("default", "v1"),
            ("action", "preview"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("YAML that Apply will write"));
    assert!(
        html.contains(r#"exact: "&lt;jason &amp; \"co\"&gt;""#),
        "{html}"
    );
    assert!(!html.contains("<jason"));
    assert_eq!(
        latest_revision(&backend).await,
        before,
        "a preview writes nothing"
    );
    // The value the operator typed goes back into the field, escaped.
    assert!(
        html.contains(r#"value="&lt;jason &amp; &quot;co&quot;&gt;""#),
        "{html}"
    );
}

#[tokio::test]
async fn request_routing_applies_rules_in_order_before_the_default() {
    let backend = fixture();
    let (status, html) = post(
        &backend,
        WIZARD,
        &[
            ("tab", "routing"),
            ("rule0.on", "header"),
            ("rule0.header", "end-user"),
            ("rule0.op", "exact"),
            ("rule0.value", "jason"),
            ("rule0.version", "v2"),
            ("rule1.on", "uri"),
            ("rule1.op", "prefix"),
            ("rule1.value", "/beta"),
            ("rule1.version", "v2"),
            ("rule2.on", "header"),
            ("default", "v1"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let vs = stored(&backend, "VirtualService", "reviews").await;
    let http = vs["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 3);
    assert_eq!(
        http[0]["match"],
        json!([{"headers": {"end-user": {"exact": "jason"}}}])
    );
    assert_eq!(http[0]["route"][0]["destination"]["subset"], "v2");
    assert_eq!(http[1]["match"], json!([{"uri": {"prefix": "/beta"}}]));
    assert_eq!(
        http[2]["route"],
        json!([{"destination": {"host": "reviews.shop.svc.cluster.local", "subset": "v1"}}])
    );
    // The form now shows the two rules and blank rows to add more.
    let (_, html) = get(&backend, &format!("{WIZARD}?tab=routing")).await;
    assert!(
        html.contains(r#"name="rule0.value" value="jason""#),
        "{html}"
    );
    assert!(html.contains(r#"name="rule3.value""#));
}

#[tokio::test]
async fn bad_rule_and_fault_fields_get_messages_next_to_them() {
    let backend = fixture();
    let (status, html) = post(
        &backend,
        WIZARD,
        &[
            ("tab", "routing"),
            ("rule0.on", "header"),
            ("rule0.header", "End User"),
            ("rule0.value", "x"),
            ("rule0.version", "v2"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"id="err-rule0""#));
    assert!(html.contains("Istio takes lowercase letters"));

    let (status, html) = post(
        &backend,
        WIZARD,
        &[
            ("tab", "fault"),
            ("delay.enabled", "on"),
            ("delay.percent", "150"),
            ("delay.fixed", "soon"),
            ("action", "preview"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains(r#"id="err-delay-percent""#));
    assert!(html.contains("a percentage above 0 and at most 100"));
    assert!(html.contains(r#"id="err-delay-fixed""#));
    assert!(html.contains("invalid duration `soon`"));
}

#[tokio::test]
async fn validator_messages_are_mapped_to_the_fields() {
    let backend = bare();
    let (status, html) = post(
        &backend,
        "/namespaces/shop/services/ratings/wizard",
        &[
            ("tab", "timeouts"),
            ("retries.attempts", "2"),
            ("retries.retryOn", "sometimes"),
            ("action", "preview"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    let list = &html[html.find(r#"id="err-retries-retryOn""#).expect(&html)..];
    assert!(list.contains("is not a retryOn policy"), "{html}");
}

#[tokio::test]
async fn remove_deletes_both_resources_as_one_revision() {
    let backend = fixture();
    let before = latest_revision(&backend).await;
    let (status, html) = post(
        &backend,
        WIZARD,
        &[("tab", "weights"), ("action", "remove")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let revision = latest_revision(&backend).await;
    assert_eq!(revision, before + 1);
    assert!(html.contains(&format!(
        "Removed DestinationRule shop/reviews and VirtualService shop/reviews as revision {revision}."
    )), "{html}");
    for kind in ["VirtualService", "DestinationRule"] {
        assert!(backend.resource(&id(kind, "reviews")).await.is_err());
    }
    let (_, html) = post(
        &backend,
        WIZARD,
        &[("tab", "weights"), ("action", "remove")],
    )
    .await;
    assert!(html.contains("There are no traffic rules to remove."));
}

#[tokio::test]
async fn unknown_service_is_404_and_backend_failure_502() {
    let backend = fixture();
    let (status, html) = get(&backend, "/namespaces/shop/services/nope/wizard").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("There is no service nope in namespace shop."));
    let (status, _) = get(&backend, &format!("{WIZARD}?tab=nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    backend.set_failure(Some("store offline"));
    let (status, html) = get(&backend, WIZARD).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(html.contains("store offline"));
    let (status, _) = post(
        &backend,
        WIZARD,
        &[
            ("tab", "weights"),
            ("weight.v1", "50"),
            ("weight.v2", "50"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let backend = fixture();
    let before = latest_revision(&backend).await;
    let request = Request::post(WIZARD)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(Body::from("tab=weights&action=remove"))
        .unwrap();
    let (status, _) = send(&backend, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(latest_revision(&backend).await, before);
}

#[tokio::test]
async fn wizard_script_and_styles_are_served() {
    let backend = fixture();
    let (status, js) = get(&backend, "/static/wizard.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("rebalance"));
    let (status, css) = get(&backend, "/static/wizard.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains(".field-errors"));
}

/// Every section's output loads cleanly with the same loader `trellis apply` uses.
#[test]
fn every_section_yaml_loads_cleanly() {
    let changes = [
        Change::Weights(vec![("v1".into(), 80), ("v2".into(), 20)]),
        Change::Routing {
            rules: vec![
                MatchRule {
                    on: MatchOn::Header("end-user".into()),
                    op: "regex".into(),
                    value: "^j.*".into(),
                    version: "v2".into(),
                },
                MatchRule {
                    on: MatchOn::Uri,
                    op: "exact".into(),
                    value: "/v2".into(),
                    version: "v2".into(),
                },
            ],
            default: Some("v1".into()),
        },
        Change::Fault(Fault {
            delay: Some((12.5, "5s".into())),
            abort: Some((10.0, 503)),
        }),
        Change::Timeouts(Timeouts {
            timeout: Some("10s".into()),
            retries: Some(Retries {
                attempts: 3,
                per_try_timeout: Some("2s".into()),
                retry_on: Some("5xx,reset".into()),
            }),
        }),
        Change::CircuitBreaking(CircuitBreaker {
            max_connections: Some(100),
            http1_max_pending_requests: Some(10),
            max_requests_per_connection: Some(1),
            http2_max_requests: Some(1000),
            consecutive_5xx_errors: Some(5),
            interval: Some("10s".into()),
            base_ejection_time: Some("30s".into()),
            max_ejection_percent: Some(50),
        }),
    ];
    for change in &changes {
        let (vs, dr) = generate(&target(), None, None, change);
        let text = yaml::documents([&vs, &dr]);
        let loaded = trellis_api::load_str(&text, "wizard")
            .unwrap_or_else(|e| panic!("{change:?}\n{text}\n{e:?}"));
        assert_eq!(loaded.len(), 2);
        assert!(loaded.iter().all(|r| r.warnings.is_empty()), "{text}");
        assert_eq!(
            loaded[0].raw, vs,
            "the YAML says exactly what was generated"
        );
        assert_eq!(loaded[1].raw, dr);
        assert_eq!(loaded[0].name(), "ratings");
        assert_eq!(loaded[1].namespace(), "shop");
    }
}

#[test]
fn fault_section_keeps_match_routes_and_removing_a_fault_drops_it() {
    let routing = Change::Routing {
        rules: vec![MatchRule {
            on: MatchOn::Uri,
            op: "prefix".into(),
            value: "/a".into(),
            version: "v2".into(),
        }],
        default: None,
    };
    let (vs, dr) = generate(&target(), None, None, &routing);
    let fault = Change::Fault(Fault {
        delay: None,
        abort: Some((5.0, 500)),
    });
    let (vs, _) = generate(&target(), Some(&vs), Some(&dr), &fault);
    let http = vs["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 2);
    assert!(
        http.iter()
            .all(|r| r["fault"]["abort"]["httpStatus"] == 500)
    );
    let (vs, _) = generate(
        &target(),
        Some(&vs),
        Some(&dr),
        &Change::Fault(Fault::default()),
    );
    assert!(
        vs["spec"]["http"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("fault").is_none())
    );
    assert_eq!(vs["spec"]["http"][0]["match"][0]["uri"]["prefix"], "/a");
}

#[test]
fn prefill_splits_evenly_without_rules() {
    let versions = ["v1".to_string(), "v2".to_string(), "v3".to_string()];
    let form = prefill(None, None, &versions);
    assert_eq!(form["weight.v1"], "34");
    assert_eq!(form["weight.v2"], "33");
    assert_eq!(form["weight.v3"], "33");
}
