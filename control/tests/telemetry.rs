//! The mesh observed end to end: `trellis control` with its collector, sidecars that take their
//! config and their telemetry destination from it, and what a user then reads back — the live
//! graph, a trace joined across two proxies in the Jaeger API, and Kiali's PromQL against a real
//! Prometheus scraping the control plane's `/metrics`.

mod common;

use common::{Control, SERVICE, cli, sidecar_with, split, text};
use serde_json::Value;
use std::time::Duration;
use testkit::EchoServer;
use testkit::client::{HttpClient, count_by_upstream};
use testkit::process::ProxyProcess;

/// A sidecar of this test: traces every request, pushes metrics every second, and sends its
/// telemetry where the control plane tells it (no `--otlp-endpoint`).
async fn observed_sidecar(
    push: std::net::SocketAddr,
    workload: &str,
    labels: &str,
    app: Option<u16>,
) -> ProxyProcess {
    let extra = ["--trace-sampling", "100", "--metrics-push-seconds", "1"];
    sidecar_with(push, workload, labels, app, &extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_shows_up_in_the_graph_the_traces_and_prometheus() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start_with(data.path(), &[]).await;
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("reviews.yaml");
    std::fs::write(&config, format!("{SERVICE}---\n{}", split(90, 10))).unwrap();
    let out = cli(
        &format!("http://{}", control.console),
        &["apply", "-f", config.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));

    let v1 = EchoServer::start("reviews-v1").await;
    let v2 = EchoServer::start("reviews-v2").await;
    v2.set_status(Some(500));
    let _r1 = observed_sidecar(
        control.push,
        "reviews-v1",
        "app=reviews,version=v1",
        Some(v1.port()),
    )
    .await;
    let _r2 = observed_sidecar(
        control.push,
        "reviews-v2",
        "app=reviews,version=v2",
        Some(v2.port()),
    )
    .await;
    let productpage = observed_sidecar(
        control.push,
        "productpage-v1",
        "app=productpage,version=v1",
        None,
    )
    .await;

    // Wait until the split is in force, then send known traffic: 90% to v1 (200), 10% to v2 (500).
    let client = HttpClient::http1(productpage.outbound_addr());
    let routed = testkit::wait_until(Duration::from_secs(15), || {
        let client = client.clone();
        async move {
            let t = count_by_upstream(50, 8, || client.get("reviews:9080", "/", &[])).await;
            t.upstream("reviews-v1") > 0 && t.upstream("reviews-v2") > 0
        }
    })
    .await;
    assert!(routed, "the 90/10 split never reached the sidecars");
    let t = count_by_upstream(600, 8, || client.get("reviews:9080", "/", &[])).await;
    let v2_share = t.share("reviews-v2");
    assert!(
        (0.05..=0.15).contains(&v2_share),
        "reviews-v2 got {v2_share:.3} of the requests: {t:?}"
    );

    // The live graph: productpage -> reviews (service) -> reviews v1 / v2, with the split and
    // v2's errors, from the metrics the sidecars pushed over OTLP.
    let graph = wait_for_graph(&control, |g| {
        edge(g, "service:default/reviews", "app:default/reviews/v2").is_some()
            && edge(g, "service:default/reviews", "app:default/reviews/v1").is_some()
    })
    .await;
    let to_v1 = edge(&graph, "service:default/reviews", "app:default/reviews/v1").unwrap();
    let to_v2 = edge(&graph, "service:default/reviews", "app:default/reviews/v2").unwrap();
    let share_v2 = to_v2["trafficSharePercent"].as_f64().unwrap();
    assert!(
        (5.0..=15.0).contains(&share_v2),
        "v2's traffic share in the graph is {share_v2}%: {to_v2:#}"
    );
    assert_eq!(to_v1["errorPercent"].as_f64(), Some(0.0), "{to_v1:#}");
    assert_eq!(to_v2["errorPercent"].as_f64(), Some(100.0), "{to_v2:#}");
    assert_eq!(to_v2["protocol"], "http", "{to_v2:#}");
    let into_service = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target"] == "service:default/reviews")
        .unwrap_or_else(|| panic!("no edge into the reviews service: {graph:#}"));
    assert!(
        into_service["source"]
            .as_str()
            .unwrap()
            .starts_with("app:default/productpage"),
        "{into_service:#}"
    );

    // One trace, two proxies: productpage's CLIENT span is the parent of reviews' SERVER span.
    let traces = wait_for_jaeger(&control, "/api/traces?service=reviews.default&limit=5").await;
    let trace = &traces[0];
    let processes = &trace["processes"];
    let service_of = |span: &Value| {
        processes[span["processID"].as_str().unwrap()]["serviceName"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let spans = trace["spans"].as_array().unwrap();
    let client_span = spans
        .iter()
        .find(|s| service_of(s) == "productpage.default")
        .unwrap_or_else(|| panic!("no productpage span in {trace:#}"));
    let server_span = spans
        .iter()
        .find(|s| service_of(s) == "reviews.default")
        .unwrap_or_else(|| panic!("no reviews span in {trace:#}"));
    let parent = &server_span["references"][0];
    assert_eq!(parent["refType"], "CHILD_OF", "{server_span:#}");
    assert_eq!(parent["spanID"], client_span["spanID"], "{trace:#}");
    assert_eq!(parent["traceID"], client_span["traceID"], "{trace:#}");

    // Kiali's queries against one target: a real Prometheus scraping the control plane.
    if !testkit::prometheus::available("prometheus", "telemetry") {
        return;
    }
    let prometheus = testkit::prometheus::Prometheus::start(
        &[("trellis", control.metrics)],
        "/metrics",
        Duration::from_secs(1),
    )
    .await
    .expect("prometheus starts");
    // Rates need traffic while Prometheus watches.
    let load = tokio::spawn({
        let client = client.clone();
        async move {
            loop {
                let _ = client.get("reviews:9080", "/", &[]).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let (_, by_code) = prometheus
        .query_until(
            r#"sum(rate(istio_requests_total{reporter="source",source_workload="productpage-v1"}[1m])) by (destination_service_name, destination_version, response_code)"#,
            Duration::from_secs(30),
            |samples| samples.len() >= 2 && samples.iter().all(|s| s.value > 0.0),
        )
        .await
        .expect("Kiali's request rate query answers");
    let codes: Vec<(&str, &str)> = by_code
        .iter()
        .map(|s| {
            (
                s.label("destination_version").unwrap_or(""),
                s.label("response_code").unwrap_or(""),
            )
        })
        .collect();
    assert!(codes.contains(&("v1", "200")), "{by_code:?}");
    assert!(codes.contains(&("v2", "500")), "{by_code:?}");
    let (_, p95) = prometheus
        .query_until(
            r#"histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[1m])) by (le, destination_workload))"#,
            Duration::from_secs(30),
            |samples| samples.len() >= 2 && samples.iter().all(|s| s.value.is_finite()),
        )
        .await
        .expect("the latency quantile query answers");
    load.abort();
    assert!(
        p95.len() == 2 && p95.iter().all(|s| s.value.is_finite() && s.value > 0.0),
        "{p95:?}"
    );
}

/// The edge from `source` to `target` in a graph answer.
fn edge<'g>(graph: &'g Value, source: &str, target: &str) -> Option<&'g Value> {
    graph["edges"]
        .as_array()?
        .iter()
        .find(|e| e["source"] == source && e["target"] == target)
}

async fn wait_for_graph(control: &Control, ready: impl Fn(&Value) -> bool) -> Value {
    let api = HttpClient::http1(control.console);
    let path = "/api/v1/graph?graphType=versionedApp&namespaces=default&duration=60s";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = api
            .get("control", path, &[])
            .await
            .expect("graph API answers");
        assert_eq!(r.status, 200, "{}", r.body);
        let graph: Value = serde_json::from_str(&r.body).unwrap();
        if ready(&graph) {
            return graph;
        }
        if std::time::Instant::now() > deadline {
            panic!("the graph never showed the expected edges: {graph:#}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_for_jaeger(control: &Control, query: &str) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let data = control.jaeger_data(query).await;
        let traces: Vec<Value> = data.as_array().cloned().unwrap_or_default();
        let joined = traces.iter().any(|t| {
            t["spans"].as_array().is_some_and(|s| s.len() >= 2)
                && t["processes"].as_object().is_some_and(|p| p.len() >= 2)
        });
        if joined {
            return traces
                .into_iter()
                .filter(|t| t["processes"].as_object().is_some_and(|p| p.len() >= 2))
                .collect();
        }
        if std::time::Instant::now() > deadline {
            panic!("no trace with spans from both proxies: {data:#}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
