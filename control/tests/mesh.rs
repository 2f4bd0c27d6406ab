//! The control plane end to end: `trellis control`, three sidecars taking config from it, echo
//! upstreams, and the `trellis` CLI, all on loopback.

mod common;

use common::{Control, SERVICE, sidecar, split, text};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::EchoServer;
use testkit::client::{HttpClient, Tally, count_by_upstream};

async fn tally(client: &HttpClient, n: usize) -> Tally {
    count_by_upstream(n, 16, || client.get("reviews:9080", "/", &[])).await
}

fn assert_share(t: &Tally, upstream: &str, expected: f64, tolerance: f64) {
    let share = t.share(upstream);
    assert!(
        (share - expected).abs() <= tolerance,
        "{upstream} got {share:.3} of {} requests, expected {expected}±{tolerance}: {t:?}",
        t.total()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_changes_reach_proxies_and_survive_control_plane_restarts() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut control = Control::start(data.path()).await;
    let (push, console) = (control.push, control.console);

    let v1 = EchoServer::start("reviews-v1").await;
    let v2 = EchoServer::start("reviews-v2").await;
    let _r1 = sidecar(
        push,
        "reviews-v1",
        "app=reviews,version=v1",
        Some(v1.port()),
    )
    .await;
    let _r2 = sidecar(
        push,
        "reviews-v2",
        "app=reviews,version=v2",
        Some(v2.port()),
    )
    .await;
    let client_proxy = sidecar(push, "productpage", "app=productpage", None).await;
    let client = HttpClient::http1(client_proxy.outbound_addr());

    // 50/50 through the CLI.
    let service = files.path().join("service.yaml");
    std::fs::write(&service, SERVICE).unwrap();
    let vs = files.path().join("vs.yaml");
    std::fs::write(&vs, split(50, 50)).unwrap();
    for f in [&service, &vs] {
        let out = control.cli(&["apply", "-f", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "apply {}: {}",
            f.display(),
            text(&out)
        );
    }
    let synced = control.wait_synced(3, 2, Duration::from_secs(10)).await;
    let version_50 = synced[0]["version_acked"].as_str().unwrap().to_string();
    let t = tally(&client, 1000).await;
    assert_eq!(t.status(200), 1000, "{t:?}");
    assert_share(&t, "reviews-v1", 0.5, 0.05);

    // 90/10 under load: the split changes within a second and no request fails.
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, failures, sent, stop) =
            (client.clone(), failures.clone(), sent.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = client
                    .get("reviews:9080", "/", &[])
                    .await
                    .is_ok_and(|r| r.status == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    std::fs::write(&vs, split(90, 10)).unwrap();
    let applied = Instant::now();
    let out = control.cli(&["apply", "-f", vs.to_str().unwrap(), "-m", "shift to v1"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut converged = None;
    while applied.elapsed() < Duration::from_secs(5) {
        let t = tally(&client, 200).await;
        if t.share("reviews-v1") > 0.8 {
            converged = Some(applied.elapsed());
            break;
        }
    }
    // Keep the load on a little longer: requests right after the switch must not fail either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let converged = converged.expect("the 90/10 split never showed");
    assert!(
        converged < Duration::from_secs(1),
        "took {converged:?} to converge"
    );
    assert!(
        sent.load(Ordering::Relaxed) > 50,
        "too little load to judge"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the change"
    );
    let t = tally(&client, 1000).await;
    assert_share(&t, "reviews-v1", 0.9, 0.04);

    // A bad config is rejected with file:line detail and changes nothing.
    let bad = files.path().join("bad.yaml");
    std::fs::write(
        &bad,
        split(10, 90).replace("  - route:", "  - timeout: soon\n    route:"),
    )
    .unwrap();
    let out = control.cli(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("bad.yaml:7:") && text(&out).contains("spec.http[0].timeout"),
        "{}",
        text(&out)
    );
    let t = tally(&client, 500).await;
    assert_share(&t, "reviews-v1", 0.9, 0.05);

    // The control plane dies: traffic goes on.
    control.process.kill();
    let t = tally(&client, 500).await;
    assert_eq!(t.status(200), 500, "{t:?}");
    assert_share(&t, "reviews-v1", 0.9, 0.05);

    // It comes back: history intact, proxies re-sync.
    let control = Control::start_at(data.path(), push, console).await;
    control.wait_synced(3, 3, Duration::from_secs(15)).await;
    let history = control.api("revisions").await;
    let revisions = history["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 3, "{history:#}");
    assert_eq!(revisions[0]["message"], "shift to v1");
    assert!(
        revisions[0]["author"]
            .as_str()
            .unwrap()
            .starts_with("tester")
    );
    let out = control.cli(&["history"]);
    assert!(
        out.status.success() && text(&out).contains("shift to v1"),
        "{}",
        text(&out)
    );

    // Rollback to the 50/50 revision restores the split.
    let out = control.cli(&["rollback", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let synced = control.wait_synced(3, 4, Duration::from_secs(10)).await;
    assert!(
        synced
            .iter()
            .all(|p| p["version_acked"] == version_50.as_str()),
        "after rollback proxies serve the 50/50 version {version_50}: {synced:#?}"
    );
    let t = tally(&client, 1000).await;
    assert_share(&t, "reviews-v1", 0.5, 0.05);
    let out = control.cli(&["proxy-status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).matches("SYNCED").count(), 3, "{}", text(&out));
}
