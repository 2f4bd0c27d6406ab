//! Resilience through the real binary: retries, timeouts, fault injection, mirroring, load
//! balancing policies, outlier detection and circuit breaking.

mod common;

use common::{Mesh, service_entry};
use http::Method;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::client::{HttpClient, count_by_upstream, wait_until};
use testkit::echo::EchoServer;

const SVC: &str = "svc.default.svc.cluster.local";

fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc, namespace: default}}\nspec:\n  hosts: [svc]\n  http:\n{http}"
    )
}

fn dr(traffic_policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc, namespace: default}}\nspec:\n  host: svc\n  trafficPolicy:\n{traffic_policy}\n  subsets:\n  - {{name: a, labels: {{v: a}}}}\n  - {{name: b, labels: {{v: b}}}}\n"
    )
}

async fn mesh(endpoints: &[(SocketAddr, &str)], files: &[(&str, &str)]) -> Mesh {
    let se = service_entry("svc", SVC, 80, "HTTP", endpoints);
    let mut all = vec![("se.yaml", se.as_str())];
    all.extend_from_slice(files);
    Mesh::start(&all).await
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    testkit::free_addr()
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_hide_failing_endpoints_and_are_counted() {
    let good = EchoServer::start("good").await;
    let bad = EchoServer::start("bad").await;
    bad.set_status(Some(503));
    let dead = dead_addr();
    let routes = vs(
        "  - route: [{destination: {host: svc}}]\n    retries: {attempts: 4, retryOn: \"5xx,connect-failure\"}\n",
    );
    let policy = dr("    loadBalancer: {simple: ROUND_ROBIN}");
    let m = mesh(
        &[(good.addr(), "v=a"), (bad.addr(), "v=b"), (dead, "v=b")],
        &[("vs.yaml", &routes), ("dr.yaml", &policy)],
    )
    .await;
    let c = HttpClient::http1(m.outbound());
    let tally = count_by_upstream(60, 4, || c.get("svc", "/", &[])).await;
    assert_eq!(tally.status(200), 60, "{tally:?}");
    assert!(
        bad.requests() > 0,
        "some first tries went to the bad endpoint"
    );
    let retried = m
        .access_log()
        .iter()
        .filter(|r| r["attempts"].as_u64() > Some(1))
        .count();
    assert!(retried > 0, "access log shows attempts > 1");

    // Without retries the failures reach the client.
    m.reconfigure(
        "vs.yaml",
        &vs("  - route: [{destination: {host: svc}}]\n    retries: {attempts: 0}\n"),
    )
    .await;
    let tally = count_by_upstream(60, 4, || c.get("svc", "/", &[])).await;
    assert!(tally.status(503) >= 20, "{tally:?}");
    let uf = m.wait_log(|r| r["response_flags"] == "UF").await;
    assert_eq!(uf["response_code"], 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_are_flagged_urx() {
    let bad = EchoServer::start("bad").await;
    bad.set_status(Some(503));
    let routes =
        vs("  - route: [{destination: {host: svc}}]\n    retries: {attempts: 2, retryOn: 5xx}\n");
    let m = mesh(&[(bad.addr(), "v=a")], &[("vs.yaml", &routes)]).await;
    let r = HttpClient::http1(m.outbound())
        .get("svc", "/", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(bad.requests(), 3, "one try and two retries");
    let rec = m.wait_log(|r| r["response_code"] == 503).await;
    assert_eq!(rec["response_flags"], "URX");
    assert_eq!(rec["attempts"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn route_timeout_and_per_try_timeout() {
    let slow = EchoServer::start("slow").await;
    slow.set_delay(Some(Duration::from_millis(1500)));
    let fast = EchoServer::start("fast").await;
    let routes = vs(
        "  - match: [{uri: {prefix: /whole}}]\n    route: [{destination: {host: svc, subset: a}}]\n    timeout: 200ms\n  - route: [{destination: {host: svc}}]\n    retries: {attempts: 3, perTryTimeout: 150ms, retryOn: 5xx}\n",
    );
    let policy = dr("    loadBalancer: {simple: ROUND_ROBIN}");
    let m = mesh(
        &[(slow.addr(), "v=a"), (fast.addr(), "v=b")],
        &[("vs.yaml", &routes), ("dr.yaml", &policy)],
    )
    .await;
    let c = HttpClient::http1(m.outbound());
    let started = Instant::now();
    let r = c.get("svc", "/whole", &[]).await.unwrap();
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "timed out early: {:?}",
        started.elapsed()
    );
    assert_eq!(r.body.trim(), "upstream request timeout");
    let rec = m.wait_log(|r| r["path"] == "/whole").await;
    assert_eq!(rec["response_flags"], "UT");
    // Per-try timeouts move slow tries to the fast endpoint.
    let tally = count_by_upstream(10, 2, || c.get("svc", "/any", &[])).await;
    assert_eq!(tally.upstream("fast"), 10, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_abort_percentage_and_delay() {
    let up = EchoServer::start("up").await;
    let routes = vs(
        "  - match: [{uri: {prefix: /slow}}]\n    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}\n    route: [{destination: {host: svc}}]\n  - fault: {abort: {httpStatus: 418, percentage: {value: 30}}}\n    route: [{destination: {host: svc}}]\n",
    );
    let m = mesh(&[(up.addr(), "v=a")], &[("vs.yaml", &routes)]).await;
    let c = HttpClient::http1(m.outbound());
    let tally = count_by_upstream(2000, 32, || c.get("svc", "/", &[])).await;
    let aborted = tally.status(418) as f64 / 2000.0;
    assert!(
        (aborted - 0.30).abs() < 0.04,
        "aborted share {aborted} ({tally:?})"
    );
    assert_eq!(tally.status(418) + tally.status(200), 2000);
    assert_eq!(
        up.requests(),
        tally.status(200),
        "aborted requests never reach the upstream"
    );
    let rec = m.wait_log(|r| r["response_code"] == 418).await;
    assert_eq!(rec["response_flags"], "FI");
    let started = Instant::now();
    assert_eq!(c.get("svc", "/slow", &[]).await.unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let rec = m.wait_log(|r| r["path"] == "/slow").await;
    assert_eq!(rec["response_flags"], "DI");
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_copies_requests_with_shadow_authority() {
    let main = EchoServer::start("main").await;
    let shadow = EchoServer::start("shadow").await;
    let routes = vs(
        "  - route: [{destination: {host: svc, subset: a}}]\n    mirror: {host: svc, subset: b}\n    mirrorPercentage: {value: 50}\n",
    );
    let m = mesh(
        &[(main.addr(), "v=a"), (shadow.addr(), "v=b")],
        &[
            ("vs.yaml", &routes),
            ("dr.yaml", &dr("    loadBalancer: {simple: RANDOM}")),
        ],
    )
    .await;
    let c = HttpClient::http1(m.outbound());
    let tally = count_by_upstream(1000, 16, || {
        c.request(Method::POST, "http://svc/orders", &[], "order-body")
    })
    .await;
    assert_eq!(
        tally.upstream("main"),
        1000,
        "clients only see the primary: {tally:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            shadow.requests() >= 400
        })
        .await
    );
    let share = shadow.requests() as f64 / 1000.0;
    assert!((share - 0.5).abs() < 0.06, "mirrored share {share}");
    let seen = shadow.last_request().unwrap();
    assert_eq!(seen.authority.as_deref(), Some("svc-shadow"));
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str(), seen.body_len),
        ("POST", "/orders", 10)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn load_balancing_policies() {
    let ups = [
        EchoServer::start("e0").await,
        EchoServer::start("e1").await,
        EchoServer::start("e2").await,
    ];
    let eps: Vec<_> = ups.iter().map(|u| (u.addr(), "v=a")).collect();
    let routes = vs("  - route: [{destination: {host: svc}}]\n");
    let m = mesh(
        &eps,
        &[
            ("vs.yaml", &routes),
            ("dr.yaml", &dr("    loadBalancer: {simple: ROUND_ROBIN}")),
        ],
    )
    .await;
    let c = HttpClient::http1(m.outbound());

    let tally = count_by_upstream(300, 1, || c.get("svc", "/", &[])).await;
    for u in &ups {
        assert_eq!(
            tally.upstream(u.name()),
            100,
            "round robin is even: {tally:?}"
        );
    }

    m.reconfigure("dr.yaml", &dr("    loadBalancer: {simple: RANDOM}"))
        .await;
    let tally = count_by_upstream(900, 8, || c.get("svc", "/", &[])).await;
    for u in &ups {
        let share = tally.share(u.name());
        assert!(
            (share - 1.0 / 3.0).abs() < 0.07,
            "random spreads: {tally:?}"
        );
    }

    m.reconfigure("dr.yaml", &dr("    loadBalancer: {simple: LEAST_REQUEST}"))
        .await;
    ups[0].set_delay(Some(Duration::from_millis(300)));
    ups[1].set_delay(Some(Duration::from_millis(300)));
    let tally = count_by_upstream(200, 8, || c.get("svc", "/", &[])).await;
    assert!(
        tally.share("e2") > 0.5,
        "least request favours the fast endpoint (P2C gives it about 2/3; random would give 1/3): {tally:?}"
    );
    ups[0].set_delay(None);
    ups[1].set_delay(None);

    for algorithm in [
        "",
        "\n        ringHash: {minimumRingSize: 2048}",
        "\n        maglev: {tableSize: 65537}",
    ] {
        let policy = format!(
            "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user{algorithm}"
        );
        m.reconfigure("dr.yaml", &dr(&policy)).await;
        let mut seen = std::collections::BTreeSet::new();
        for user in 0..30 {
            let h = format!("user-{user}");
            let first = c
                .get("svc", "/", &[("x-user", &h)])
                .await
                .unwrap()
                .upstream()
                .unwrap()
                .to_string();
            for _ in 0..3 {
                let again = c.get("svc", "/", &[("x-user", &h)]).await.unwrap();
                assert_eq!(
                    again.upstream(),
                    Some(first.as_str()),
                    "sticky for {h} ({algorithm})"
                );
            }
            seen.insert(first);
        }
        assert_eq!(
            seen.len(),
            3,
            "keys spread over all endpoints ({algorithm})"
        );
    }

    m.reconfigure("dr.yaml", &dr("    loadBalancer:\n      consistentHash:\n        httpCookie: {name: session, ttl: 60s, path: /}")).await;
    let first = c.get("svc", "/", &[]).await.unwrap();
    let cookie = first
        .header("set-cookie")
        .expect("cookie is issued")
        .to_string();
    assert!(cookie.starts_with("session="), "{cookie}");
    let value = cookie.split(';').next().unwrap().to_string();
    let up = first.upstream().unwrap().to_string();
    for _ in 0..10 {
        let r = c.get("svc", "/", &[("cookie", &value)]).await.unwrap();
        assert_eq!(r.upstream(), Some(up.as_str()));
        assert!(r.header("set-cookie").is_none());
    }

    m.reconfigure(
        "dr.yaml",
        &dr("    loadBalancer:\n      consistentHash: {useSourceIp: true}"),
    )
    .await;
    let tally = count_by_upstream(30, 4, || c.get("svc", "/", &[])).await;
    assert_eq!(
        tally.by_upstream.len(),
        1,
        "one source IP, one endpoint: {tally:?}"
    );

    m.reconfigure(
        "dr.yaml",
        &dr("    loadBalancer:\n      consistentHash: {httpQueryParameterName: shard}"),
    )
    .await;
    let a = c
        .get("svc", "/?shard=7", &[])
        .await
        .unwrap()
        .upstream()
        .unwrap()
        .to_string();
    let tally = count_by_upstream(20, 4, || c.get("svc", "/?shard=7", &[])).await;
    assert_eq!(tally.upstream(&a), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn outlier_detection_ejects_and_brings_back() {
    let good = EchoServer::start("good").await;
    let bad = EchoServer::start("bad").await;
    bad.set_status(Some(500));
    let routes = vs("  - route: [{destination: {host: svc}}]\n    retries: {attempts: 0}\n");
    let policy = dr(
        "    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 100}",
    );
    let m = mesh(
        &[(good.addr(), "v=a"), (bad.addr(), "v=b")],
        &[("vs.yaml", &routes), ("dr.yaml", &policy)],
    )
    .await;
    let c = HttpClient::http1(m.outbound());
    let tally = count_by_upstream(40, 1, || c.get("svc", "/", &[])).await;
    assert_eq!(
        tally.status(500),
        3,
        "ejected after three consecutive errors: {tally:?}"
    );
    let clusters = m.admin_json("/clusters").await;
    let cluster = clusters["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == format!("outbound|80||{SVC}"))
        .unwrap()
        .clone();
    let bad_ep = cluster["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == bad.addr().to_string())
        .unwrap()
        .clone();
    assert_eq!(bad_ep["health"], "ejected", "{cluster:#}");
    bad.set_status(None);
    bad.reset_counts();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let tally = count_by_upstream(20, 1, || c.get("svc", "/", &[])).await;
    assert_eq!(tally.status(200), 20);
    assert!(
        tally.upstream("bad") >= 8,
        "the endpoint is back after its ejection time: {tally:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_pool_overflow_is_503_uo() {
    let up = EchoServer::start("up").await;
    up.set_delay(Some(Duration::from_millis(1000)));
    let routes = vs("  - route: [{destination: {host: svc}}]\n    retries: {attempts: 0}\n");
    let policy = dr(
        "    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1}",
    );
    let m = mesh(
        &[(up.addr(), "v=a")],
        &[("vs.yaml", &routes), ("dr.yaml", &policy)],
    )
    .await;
    let c = HttpClient::http1(m.outbound());
    let tally = count_by_upstream(8, 8, || c.get("svc", "/", &[])).await;
    assert_eq!(
        tally.status(200),
        2,
        "one in flight, one pending: {tally:?}"
    );
    assert_eq!(tally.status(503), 6, "{tally:?}");
    let rec = m.wait_log(|r| r["response_code"] == 503).await;
    assert_eq!(rec["response_flags"], "UO");
}
