//! The proxy's life: hot reload under load, bad config kept out, SIGHUP, the admin endpoints and
//! graceful drain on SIGTERM.

mod common;

use common::{Mesh, service_entry};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use testkit::client::{HttpClient, count_by_upstream, wait_until};
use testkit::echo::EchoServer;

const HOST: &str = "svc.default.svc.cluster.local";

fn split(a: u32, b: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc, namespace: default}}\nspec:\n  hosts: [svc]\n  http:\n  - route:\n    - {{destination: {{host: svc, subset: a}}, weight: {a}}}\n    - {{destination: {{host: svc, subset: b}}, weight: {b}}}\n"
    )
}

const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: svc, namespace: default}\nspec:\n  host: svc\n  subsets:\n  - {name: a, labels: {v: a}}\n  - {name: b, labels: {v: b}}\n";

async fn two_versions() -> (Mesh, EchoServer, EchoServer) {
    let a = EchoServer::start("a").await;
    let b = EchoServer::start("b").await;
    let se = service_entry(
        "svc",
        HOST,
        80,
        "HTTP",
        &[(a.addr(), "v=a"), (b.addr(), "v=b")],
    );
    let m = Mesh::start(&[
        ("se.yaml", &se),
        ("dr.yaml", DR),
        ("vs.yaml", &split(100, 0)),
    ])
    .await;
    (m, a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_under_load_fails_no_request() {
    let (m, _a, _b) = two_versions().await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served_b = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let c = HttpClient::http1(m.outbound());
        let (stop, failures, served_b, total) = (
            stop.clone(),
            failures.clone(),
            served_b.clone(),
            total.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                total.fetch_add(1, Ordering::Relaxed);
                match c.get("svc", "/", &[]).await {
                    Ok(r) if r.status == 200 => {
                        if r.upstream() == Some("b") {
                            served_b.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for (a, b) in [(50, 50), (0, 100), (90, 10), (100, 0), (20, 80)] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        m.reconfigure("vs.yaml", &split(a, b)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(
        total.load(Ordering::Relaxed) > 500,
        "load ran: {}",
        total.load(Ordering::Relaxed)
    );
    assert!(served_b.load(Ordering::Relaxed) > 0, "reloads took effect");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed across reloads"
    );
    // The last split holds.
    let c = HttpClient::http1(m.outbound());
    let tally = count_by_upstream(1000, 16, || c.get("svc", "/", &[])).await;
    assert!((tally.share("b") - 0.8).abs() < 0.05, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_is_rejected_and_traffic_keeps_the_old_one() {
    let (m, _a, _b) = two_versions().await;
    let before = m.admin_json("/config_dump").await["version"].clone();
    m.dir.write("vs.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: svc}\nspec:\n  hosts: [svc]\n  http:\n  - route:\n    - destination: {host: svc}\n      weight: 250\n");
    let logged = m
        .proxy
        .wait_for_stderr(
            |l| l.contains("vs.yaml") && l.contains("weight"),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        logged.is_some(),
        "the error names the file and field: {:?}",
        m.proxy.stderr_lines()
    );
    assert_eq!(m.admin_json("/config_dump").await["version"], before);
    let c = HttpClient::http1(m.outbound());
    let tally = count_by_upstream(50, 4, || c.get("svc", "/", &[])).await;
    assert_eq!(
        tally.upstream("a"),
        50,
        "old config still routes: {tally:?}"
    );
    // Fixing the file recovers.
    m.reconfigure("vs.yaml", &split(0, 100)).await;
    assert_eq!(c.get("svc", "/", &[]).await.unwrap().upstream(), Some("b"));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_and_sighup() {
    let (mut m, a, _b) = two_versions().await;
    let ready = testkit::client::get(m.proxy.admin_addr(), "admin", "/ready", &[])
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
    let health = testkit::client::get(m.proxy.stats_addr(), "stats", "/healthz/ready", &[])
        .await
        .unwrap();
    assert_eq!(health.status, 200);
    let dump = m.admin_json("/config_dump").await;
    assert_eq!(dump["node"]["workload"], "test");
    let names: Vec<_> = dump["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&format!("outbound|80|a|{HOST}")),
        "{names:?}"
    );
    let clusters = m.admin_json("/clusters").await;
    let all = clusters["clusters"].as_array().unwrap();
    let sub_a = all
        .iter()
        .find(|c| c["name"] == format!("outbound|80|a|{HOST}"))
        .unwrap();
    assert_eq!(sub_a["endpoints"][0]["address"], a.addr().to_string());
    assert_eq!(sub_a["endpoints"][0]["health"], "healthy");
    let set = HttpClient::http1(m.proxy.admin_addr())
        .request(
            http::Method::POST,
            "http://admin/logging?level=debug",
            &[],
            "",
        )
        .await
        .unwrap();
    assert_eq!(set.status, 200);
    let bad = HttpClient::http1(m.proxy.admin_addr())
        .request(
            http::Method::POST,
            "http://admin/logging?level=%5B",
            &[],
            "",
        )
        .await
        .unwrap();
    assert_eq!(bad.status, 400);

    // SIGHUP re-reads even when mtimes look unchanged.
    let applied = m
        .proxy
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("config applied"))
        .count();
    m.dir.write("vs.yaml", &split(0, 100));
    m.proxy.send_signal(libc::SIGHUP).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            m.proxy
                .stderr_lines()
                .iter()
                .filter(|l| l.contains("config applied"))
                .count()
                > applied
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let (mut m, a, _b) = two_versions().await;
    a.set_delay(Some(Duration::from_millis(800)));
    let c = HttpClient::http1(m.outbound());
    let in_flight = tokio::spawn(async move { c.get("svc", "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    m.proxy.send_signal(libc::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = testkit::client::get(m.proxy.stats_addr(), "stats", "/healthz/ready", &[])
        .await
        .unwrap();
    assert_eq!(health.status, 503, "not ready while draining");
    let r = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(r.status, 200);
    let status = m
        .proxy
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("proxy exits after draining");
    assert!(status.success(), "{status:?}");
}
