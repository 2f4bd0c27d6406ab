//! Local rate limiting (Trellis's LocalRateLimit) as a client sees it: exactly the burst passes,
//! the rest get Envoy's 429 `local_rate_limited` with `x-ratelimit-*` headers (gRPC clients
//! RESOURCE_EXHAUSTED), a reload does not refill the bucket, a route limit touches only its route,
//! and refusals are counted on `/stats/prometheus`. Fill intervals are long (60s) so no refill
//! can happen during a test.

mod common;

use common::{Mesh, service_entry, stat_value};
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::echo::EchoServer;

const INBOUND_LIMIT: &str = "\
apiVersion: networking.trellis.io/v1alpha1
kind: LocalRateLimit
metadata:
  name: reviews
  namespace: default
spec:
  workloadSelector:
    labels:
      app: reviews
  tokenBucket:
    maxTokens: 5
    tokensPerFill: 5
    fillInterval: 60s
---
# Another workload's limit: it must not touch reviews.
apiVersion: networking.trellis.io/v1alpha1
kind: LocalRateLimit
metadata:
  name: ratings
  namespace: default
spec:
  workloadSelector:
    labels:
      app: ratings
  tokenBucket: {maxTokens: 1, fillInterval: 60s}
";

/// The value of the sample of `metric` with exactly `labels` on the proxy's stats port.
async fn counter(mesh: &Mesh, metric: &str, labels: &str) -> Option<u64> {
    stat_value(&mesh.stats().await, &format!("{metric}{{{labels}}} "))
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_limit_is_exact_and_survives_reloads() {
    let app = EchoServer::start("reviews").await;
    let mesh = Mesh::start_with(
        &[("limits.yaml", INBOUND_LIMIT)],
        &[
            "--app-port",
            &app.port().to_string(),
            "--labels",
            "app=reviews",
        ],
    )
    .await;
    let client = HttpClient::http1(mesh.proxy.inbound_addr()).with_timeout(Duration::from_secs(5));

    let mut passed = Vec::new();
    let mut limited = Vec::new();
    for _ in 0..8 {
        let r = client
            .get("reviews", "/", &[])
            .await
            .expect("the proxy answers");
        if r.status == 200 {
            passed.push(r);
        } else {
            limited.push(r);
        }
    }
    assert_eq!(passed.len(), 5, "exactly the burst passes");
    let remaining: Vec<_> = passed
        .iter()
        .map(|r| {
            assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
            r.header("x-ratelimit-remaining").unwrap_or("missing")
        })
        .collect();
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);
    assert_eq!(limited.len(), 3);
    for r in &limited {
        assert_eq!(r.status, 429);
        assert_eq!(r.body.trim(), "local_rate_limited");
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        let reset: u64 = r
            .header("x-ratelimit-reset")
            .and_then(|v| v.parse().ok())
            .expect("x-ratelimit-reset in seconds");
        assert!((1..=60).contains(&reset), "reset {reset}");
    }
    let record = mesh.wait_log(|r| r["response_code"] == 429).await;
    assert_eq!(record["response_flags"], "RL", "{record}");

    // A reload for an unrelated change keeps the (empty) bucket.
    let other = service_entry(
        "unrelated",
        "unrelated.example.com",
        80,
        "HTTP",
        &[("127.0.0.1:9".parse().unwrap(), "")],
    );
    mesh.reconfigure("unrelated.yaml", &other).await;
    let r = client.get("reviews", "/", &[]).await.expect("answer");
    assert_eq!(r.status, 429, "a reload must not refill the bucket");

    // gRPC clients get RESOURCE_EXHAUSTED as a trailers-only response.
    let h2 = HttpClient::http2(mesh.proxy.inbound_addr()).with_timeout(Duration::from_secs(5));
    let r = h2
        .request(
            http::Method::POST,
            "http://reviews/echo.Echo/Say",
            &[("content-type", "application/grpc"), ("te", "trailers")],
            "",
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("8"));
    assert_eq!(r.header("grpc-message"), Some("local_rate_limited"));

    assert_eq!(
        counter(
            &mesh,
            "trellis_ratelimit_limited_total",
            "scope=\"inbound\",name=\"default/reviews\""
        )
        .await,
        Some(5)
    );
    assert_eq!(app.requests(), 5, "refused requests never reach the app");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_limit_applies_to_that_route_only() {
    let app = EchoServer::start("reviews").await;
    let se = service_entry(
        "reviews",
        "reviews.default.svc.cluster.local",
        9080,
        "HTTP",
        &[(app.addr(), "")],
    );
    let vs = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: v2-only
    match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: reviews}}]
  - name: rest
    route: [{destination: {host: reviews}}]
";
    let limit = "\
apiVersion: networking.trellis.io/v1alpha1
kind: LocalRateLimit
metadata: {name: reviews-routes, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  routes:
  - virtualService: reviews
    route: v2-only
    tokenBucket: {maxTokens: 2, tokensPerFill: 2, fillInterval: 60s}
";
    // The caller is another workload: route limits apply on the calling side.
    let mesh = Mesh::start_with(
        &[("se.yaml", &se), ("vs.yaml", vs), ("limit.yaml", limit)],
        &["--labels", "app=productpage"],
    )
    .await;
    let client = HttpClient::http1(mesh.outbound()).with_timeout(Duration::from_secs(5));

    let mut v2 = Vec::new();
    let mut rest = Vec::new();
    for _ in 0..4 {
        let r = client
            .get("reviews:9080", "/v2/books", &[])
            .await
            .expect("answer");
        v2.push(r.status.as_u16());
        if r.status == 200 {
            assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
        } else {
            assert_eq!(r.body.trim(), "local_rate_limited");
            assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        }
        let r = client
            .get("reviews:9080", "/other", &[])
            .await
            .expect("answer");
        assert!(r.header("x-ratelimit-limit").is_none());
        rest.push(r.status.as_u16());
    }
    assert_eq!(v2, [200, 200, 429, 429]);
    assert_eq!(rest, [200, 200, 200, 200]);
    assert_eq!(
        counter(
            &mesh,
            "trellis_ratelimit_limited_total",
            "scope=\"route\",name=\"default/reviews/v2-only\""
        )
        .await,
        Some(2)
    );
    assert_eq!(app.requests(), 6, "refused requests never reach the app");
}
