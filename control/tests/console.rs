//! The web console served by `trellis control` over a running mesh: config applied with the CLI,
//! traffic through two sidecars, then the console's pages read over HTTP next to the REST API
//! they share the listener with.

mod common;

use common::{Control, SERVICE, observed, text};
use http::Method;
use std::time::Duration;
use testkit::EchoServer;
use testkit::client::{HttpClient, Response, count_by_upstream};

/// `GET path` on the console listener.
async fn page(control: &Control, path: &str) -> Response {
    HttpClient::http1(control.console)
        .get(&control.console.to_string(), path, &[])
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A form post as the console's own page sends it (same Origin).
async fn post_form(control: &Control, path: &str, form: &[(&str, &str)]) -> Response {
    let host = control.console.to_string();
    let origin = format!("http://{host}");
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    HttpClient::http1(control.console)
        .request(
            Method::POST,
            &format!("http://{host}{path}"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", &origin),
            ],
            body,
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// `application/x-www-form-urlencoded` of one value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first link to one trace on a page.
fn trace_link(body: &str) -> Option<String> {
    let start = body.find("href=\"/traces/")? + "href=\"".len();
    let end = start + body[start..].find('"')?;
    Some(body[start..end].to_string())
}

fn assert_html(r: &Response, path: &str, wanted: &[&str]) {
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "{path}: {content_type}"
    );
    for w in wanted {
        assert!(r.body.contains(w), "{path} lacks {w:?}:\n{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_show_the_running_mesh_next_to_the_rest_api() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start_with(
        data.path(),
        &["--jaeger-ui-url", "http://jaeger.example:16686/"],
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("reviews.yaml");
    std::fs::write(&config, SERVICE).unwrap();
    let out = control.cli(&["apply", "-f", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    let echo = EchoServer::start("reviews-v1").await;
    let _reviews = observed(
        control.push,
        "reviews-v1",
        "app=reviews,version=v1",
        Some(echo.port()),
    )
    .await;
    let productpage = observed(
        control.push,
        "productpage-v1",
        "app=productpage,version=v1",
        None,
    )
    .await;
    control.wait_synced(2, 1, Duration::from_secs(10)).await;

    let client = HttpClient::http1(productpage.outbound_addr());
    let t = count_by_upstream(40, 4, || client.get("reviews:9080", "/", &[])).await;
    assert_eq!(t.upstream("reviews-v1"), 40, "{t:?}");

    // The graph shows the traffic once the sidecars pushed their metrics (every second):
    // productpage -> the reviews service -> reviews-v1, each edge a link to its details.
    let graph_path = "/graph?namespaces=default&graphType=workload";
    let edges = [
        "focus=edge:workload:default/productpage-v1-%3Eservice:default/reviews:http",
        "focus=edge:service:default/reviews-%3Eworkload:default/reviews-v1:http",
    ];
    let shown = testkit::wait_until(Duration::from_secs(10), || async {
        let r = page(&control, graph_path).await;
        r.status == 200 && edges.iter().all(|e| r.body.contains(e))
    })
    .await;
    let r = page(&control, graph_path).await;
    assert!(shown, "the graph never showed the traffic:\n{}", r.body);
    assert_html(&r, graph_path, &["productpage-v1", "reviews-v1", "reviews"]);

    // Services and workloads, with the traffic between them.
    let r = page(&control, "/services").await;
    assert_html(
        &r,
        "/services",
        &["reviews", "/namespaces/default/services/reviews"],
    );
    let path = "/namespaces/default/services/reviews";
    assert_html(
        &page(&control, path).await,
        path,
        &["reviews", "productpage-v1", "reviews-v1"],
    );
    let r = page(&control, "/workloads").await;
    assert_html(&r, "/workloads", &["productpage-v1", "reviews-v1"]);
    let path = "/namespaces/default/workloads/reviews-v1";
    assert_html(
        &page(&control, path).await,
        path,
        &["reviews-v1", "productpage-v1"],
    );
    let r = page(&control, "/namespaces/default/services/nobody").await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Traces of the mesh service, found by its name (spans say `reviews.default`), and one
    // trace with the spans of both proxies.
    let found = testkit::wait_until(Duration::from_secs(10), || async {
        trace_link(
            &page(&control, "/traces?service=reviews&lookback=1h")
                .await
                .body,
        )
        .is_some()
    })
    .await;
    let r = page(&control, "/traces?service=reviews&lookback=1h").await;
    assert!(found, "no trace of reviews:\n{}", r.body);
    let link = trace_link(&r.body).unwrap();
    assert_html(
        &page(&control, &link).await,
        &link,
        &["productpage-v1", "reviews"],
    );

    // Overview: the namespace with both proxies in sync.
    let r = page(&control, "/").await;
    assert_html(
        &r,
        "/",
        &[
            "default",
            "card health-ok",
            "2 connected",
            "2 SYNCED",
            "/graph?namespaces=default",
        ],
    );

    // Proxies: both, SYNCED.
    let r = page(&control, "/proxies").await;
    assert_html(&r, "/proxies", &["productpage-v1", "reviews-v1"]);
    assert_eq!(r.body.matches("SYNCED").count(), 2, "{}", r.body);
    // The live tap: without script, the page shows the last requests reviews-v1 served (from
    // the access logs the sidecars export over OTLP).
    let tap = "/proxies/tap?namespace=default&workload=reviews-v1";
    let tapped = testkit::wait_until(Duration::from_secs(10), || async {
        let r = page(&control, tap).await;
        r.status == 200 && r.body.contains("reviews-v1.default") && r.body.contains("GET")
    })
    .await;
    let r = page(&control, tap).await;
    assert!(
        tapped,
        "the tap never showed reviews-v1's requests:\n{}",
        r.body
    );

    // Config: the applied resources, and the revision in the history.
    let r = page(&control, "/config").await;
    assert_html(
        &r,
        "/config",
        &["ServiceEntry", "DestinationRule", "reviews"],
    );
    let r = page(&control, "/config/history").await;
    assert_html(&r, "/config/history", &["tester"]);

    // A bad edit is refused with the validation message, and nothing is stored.
    let bad = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - timeout: soon
    route:
    - destination: {host: reviews, subset: v1}
";
    let r = post_form(
        &control,
        "/config/apply",
        &[("yaml", bad), ("action", "apply")],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    for message in ["spec.http[0].timeout", "invalid duration"] {
        assert!(
            r.body.contains(message),
            "no {message:?} on the page:\n{}",
            r.body
        );
    }
    let resources = control.api("resources").await;
    let items = resources["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{resources:#}");
    assert!(
        items.iter().all(|i| i["kind"] != "VirtualService"),
        "{resources:#}"
    );
    assert_eq!(
        control.api("revisions").await["revisions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A good one is applied as a new revision through the same path as `trellis apply`.
    let good = bad.replace("timeout: soon", "timeout: 2s");
    let r = post_form(
        &control,
        "/config/apply",
        &[("yaml", &good), ("action", "apply")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let revisions = control.api("revisions").await;
    assert_eq!(revisions["revisions"][0]["revision"], 2, "{revisions:#}");
    let r = page(&control, "/config?kind=VirtualService").await;
    assert_html(
        &r,
        "/config?kind=VirtualService",
        &["VirtualService", "reviews"],
    );

    // The REST API and health check still answer on the same listener; unknown API paths get
    // the API's JSON error, other paths the console's page.
    let r = page(&control, "/api/v1/resources").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .contains("json")
    );
    let r = page(&control, "/healthz").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "ok"));
    let r = page(&control, "/api/v1/nothing-here").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no such API endpoint"), "{}", r.body);
    let r = page(&control, "/nothing-here").await;
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("There is no page at /nothing-here"),
        "{}",
        r.body
    );
    let r = page(&control, "/api/v1/graph?namespaces=default").await;
    assert_eq!(r.status, 200, "{}", r.body);
}
