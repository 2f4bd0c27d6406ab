//! The push protocol as a proxy sees it, with simulated proxies speaking gRPC to a real
//! `trellis control`: full then delta updates, ACK/NACK bookkeeping, registration, bad Hellos.

mod common;

use common::Control;
use std::collections::BTreeMap;
use std::time::Duration;
use testkit::client::HttpClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use trellis_api::push::config_push_client::ConfigPushClient;
use trellis_api::push::{
    Ack, ConfigUpdate, Hello, Nack, ProxyMessage, ResourceType, proxy_message,
};

/// A simulated proxy: one push stream.
struct SimProxy {
    tx: mpsc::Sender<ProxyMessage>,
    updates: Streaming<ConfigUpdate>,
}

impl SimProxy {
    async fn connect(control: &Control, hello: Hello) -> Result<SimProxy, tonic::Status> {
        let mut client = ConfigPushClient::connect(format!("http://{}", control.push))
            .await
            .expect("push server reachable");
        let (tx, rx) = mpsc::channel(8);
        tx.send(message(proxy_message::Kind::Hello(hello)))
            .await
            .unwrap();
        let updates = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        Ok(SimProxy { tx, updates })
    }

    async fn next(&mut self) -> ConfigUpdate {
        tokio::time::timeout(Duration::from_secs(5), self.updates.message())
            .await
            .expect("an update within 5s")
            .expect("stream healthy")
            .expect("stream open")
    }

    async fn ack(&self, version: &str) {
        let ack = Ack {
            version: version.to_string(),
        };
        self.tx
            .send(message(proxy_message::Kind::Ack(ack)))
            .await
            .unwrap();
    }

    async fn nack(&self, version: &str, reason: &str) {
        let nack = Nack {
            version: version.to_string(),
            reason: reason.to_string(),
        };
        self.tx
            .send(message(proxy_message::Kind::Nack(nack)))
            .await
            .unwrap();
    }
}

fn message(kind: proxy_message::Kind) -> ProxyMessage {
    ProxyMessage { kind: Some(kind) }
}

fn hello(id: &str) -> Hello {
    Hello {
        proxy_id: format!("{id}.default"),
        workload: id.to_string(),
        namespace: "default".to_string(),
        ..Hello::default()
    }
}

fn names(update: &ConfigUpdate, kind: ResourceType) -> Vec<String> {
    let mut out: Vec<String> = update
        .resources
        .iter()
        .filter(|r| r.r#type() == kind)
        .map(|r| r.name.clone())
        .collect();
    out.sort();
    out
}

fn service_entries(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc{i}, namespace: default}}
spec:
  hosts: [svc{i}.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 10.0.0.{i}}}]
---
"
            )
        })
        .collect()
}

fn route_to(host: &str, path_prefix: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc0, namespace: default}}
spec:
  hosts: [svc0.example.internal]
  http:
  - match: [{{uri: {{prefix: {path_prefix}}}}}]
    route: [{{destination: {{host: {host}}}}}]
  - route: [{{destination: {{host: svc0.example.internal}}}}]
"
    )
}

async fn apply(control: &Control, yaml: &str) {
    let response = HttpClient::http1(control.console)
        .request(
            http::Method::POST,
            "http://control/api/v1/apply",
            &[("content-type", "application/yaml")],
            yaml.to_string(),
        )
        .await
        .expect("apply answers");
    assert_eq!(response.status, 200, "{}", response.body);
}

async fn proxy_status(control: &Control, id: &str) -> serde_json::Value {
    control
        .proxies()
        .await
        .into_iter()
        .find(|p| p["id"] == id)
        .unwrap_or(serde_json::Value::Null)
}

async fn wait_status(control: &Control, id: &str, status: &str) -> serde_json::Value {
    for _ in 0..200 {
        let p = proxy_status(control, id).await;
        if p["status"] == status {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never {status}: {:#}", proxy_status(control, id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_full_then_deltas_of_what_changed() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start(data.path()).await;
    apply(&control, &service_entries(20)).await;

    let mut proxy = SimProxy::connect(&control, hello("sim")).await.unwrap();
    let mut full = proxy.next().await;
    assert!(
        full.base_version.is_empty() && !full.meta.is_empty(),
        "a new stream starts with a full update: {full:?}"
    );
    // The first update may predate the apply's epoch; take the one with all 20 services.
    while names(&full, ResourceType::VirtualHost).len() < 20 {
        proxy.ack(&full.version).await;
        full = proxy.next().await;
    }
    assert_eq!(names(&full, ResourceType::Cluster).len(), 20);
    proxy.ack(&full.version).await;
    wait_status(&control, "sim.default", "SYNCED").await;

    // One VirtualService changes one virtual host: only that is sent, on top of the ACKed version.
    apply(&control, &route_to("svc1.example.internal", "/one")).await;
    let delta = proxy.next().await;
    assert_eq!(delta.base_version, full.version);
    assert_ne!(delta.version, full.version);
    assert_eq!(
        names(&delta, ResourceType::VirtualHost),
        vec!["svc0.example.internal:80".to_string()]
    );
    assert!(names(&delta, ResourceType::Cluster).is_empty(), "{delta:?}");
    assert!(delta.removed.is_empty());
    assert!(delta.meta.is_empty(), "meta unchanged, not resent");
    proxy.ack(&delta.version).await;
    let status = wait_status(&control, "sim.default", "SYNCED").await;
    assert_eq!(status["version_acked"], delta.version.as_str());

    // Deleting a service removes its virtual host and cluster.
    let out = control.cli(&["delete", "se", "svc19"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let removal = proxy.next().await;
    assert_eq!(removal.base_version, delta.version);
    let mut removed: Vec<String> = removal.removed.iter().map(|r| r.name.clone()).collect();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            "outbound|80||svc19.example.internal".to_string(),
            "svc19.example.internal:80".to_string()
        ]
    );
    assert!(removal.resources.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_version_is_reported_and_the_next_delta_builds_on_the_acked_one() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start(data.path()).await;
    apply(&control, &service_entries(3)).await;
    let mut proxy = SimProxy::connect(&control, hello("picky")).await.unwrap();
    let mut good = proxy.next().await;
    while names(&good, ResourceType::VirtualHost).len() < 3 {
        proxy.ack(&good.version).await;
        good = proxy.next().await;
    }
    proxy.ack(&good.version).await;
    wait_status(&control, "picky.default", "SYNCED").await;

    apply(&control, &route_to("svc1.example.internal", "/one")).await;
    let refused = proxy.next().await;
    proxy
        .nack(&refused.version, "route names unknown cluster")
        .await;
    let status = wait_status(&control, "picky.default", "NACKED").await;
    assert_eq!(status["version_nacked"], refused.version.as_str());
    assert_eq!(status["version_acked"], good.version.as_str());
    assert_eq!(status["error"], "route names unknown cluster");
    let out = control.cli(&["proxy-status"]);
    assert!(
        common::text(&out).contains("NACKED"),
        "{}",
        common::text(&out)
    );

    // The next change is a delta from what the proxy still serves, not from the refused version.
    apply(&control, &route_to("svc2.example.internal", "/two")).await;
    let next = proxy.next().await;
    assert_eq!(next.base_version, good.version);
    assert_eq!(
        names(&next, ResourceType::VirtualHost),
        vec!["svc0.example.internal:80".to_string()]
    );
    proxy.ack(&next.version).await;
    let status = wait_status(&control, "picky.default", "SYNCED").await;
    assert!(status["error"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_workloads_become_endpoints_and_leave_after_the_grace_period() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start(data.path()).await;
    let mut watcher = SimProxy::connect(&control, hello("watcher")).await.unwrap();
    let first = watcher.next().await;
    watcher.ack(&first.version).await;

    let server = SimProxy::connect(
        &control,
        Hello {
            inbound_address: "127.0.0.1:15106".to_string(),
            app_port: 9080,
            app_protocol: "http".to_string(),
            labels: BTreeMap::from([("app".to_string(), "ratings".to_string())])
                .into_iter()
                .collect(),
            ..hello("ratings-v1")
        },
    )
    .await
    .unwrap();
    let update = watcher.next().await;
    assert_eq!(
        names(&update, ResourceType::VirtualHost),
        vec!["ratings.default.svc.cluster.local:9080".to_string()]
    );
    let cluster = update
        .resources
        .iter()
        .find(|r| r.r#type() == ResourceType::Cluster)
        .expect("a cluster for the new service");
    let trellis_api::push::Decoded::Cluster(cluster) = trellis_api::push::decode(cluster).unwrap()
    else {
        panic!("not a cluster")
    };
    assert_eq!(cluster.endpoints.len(), 1);
    assert_eq!(
        (
            cluster.endpoints[0].address.as_str(),
            cluster.endpoints[0].port
        ),
        ("127.0.0.1", 15106)
    );
    watcher.ack(&update.version).await;

    // The serving proxy goes away: its service goes once the 2s grace period is over.
    let gone = std::time::Instant::now();
    drop(server);
    let removal = tokio::time::timeout(Duration::from_secs(5), watcher.next())
        .await
        .expect("removal within the grace period plus a margin");
    assert!(
        gone.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        gone.elapsed()
    );
    let removed: Vec<&str> = removal.removed.iter().map(|r| r.name.as_str()).collect();
    assert!(
        removed.contains(&"ratings.default.svc.cluster.local:9080"),
        "{removal:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hellos_are_refused_with_a_reason() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start(data.path()).await;
    let bad_address = Hello {
        inbound_address: "not-an-address".to_string(),
        app_port: 80,
        ..hello("bad")
    };
    let status = match SimProxy::connect(&control, bad_address).await {
        Err(status) => status,
        Ok(mut proxy) => match proxy.updates.message().await {
            Err(status) => status,
            Ok(update) => panic!("accepted: {update:?}"),
        },
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("inbound_address"), "{status:?}");

    let no_id = Hello::default();
    let status = match SimProxy::connect(&control, no_id).await {
        Err(status) => status,
        Ok(mut proxy) => proxy.updates.message().await.expect_err("refused"),
    };
    assert!(status.message().contains("proxy_id"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_means_holding_the_latest_revision() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start(data.path()).await;
    apply(&control, &service_entries(2)).await;
    let mut proxy = SimProxy::connect(&control, hello("sim")).await.unwrap();
    // Answer everything, as a proxy does.
    let answering = tokio::spawn(async move {
        loop {
            let update = proxy.next().await;
            proxy.ack(&update.version).await;
        }
    });
    wait_status(&control, "sim.default", "SYNCED").await;
    for i in 0..5 {
        apply(
            &control,
            &route_to("svc1.example.internal", &format!("/r{i}")),
        )
        .await;
        let revision = control.api("revisions?limit=1").await["revisions"][0]["revision"]
            .as_u64()
            .unwrap();
        // Right after an apply the proxy cannot claim SYNCED on the config from before it.
        let status = proxy_status(&control, "sim.default").await;
        assert!(
            status["status"] != "SYNCED" || status["revision_acked"].as_u64() >= Some(revision),
            "SYNCED on an older revision than {revision}: {status:#}"
        );
        let status = wait_status(&control, "sim.default", "SYNCED").await;
        assert!(status["revision_acked"].as_u64() >= Some(revision));
    }
    answering.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_ends_proxy_streams_instead_of_waiting_for_them() {
    let data = tempfile::tempdir().unwrap();
    let mut control = Control::start(data.path()).await;
    let mut proxy = SimProxy::connect(&control, hello("sim")).await.unwrap();
    let first = proxy.next().await;
    proxy.ack(&first.version).await;
    control.process.send_signal(libc::SIGTERM).unwrap();
    let status = control
        .process
        .wait_exit(Duration::from_secs(4))
        .await
        .expect("exits within its shutdown grace while a proxy is connected");
    assert!(status.success(), "{status:?}");
    // The proxy's stream ended cleanly.
    let end = tokio::time::timeout(Duration::from_secs(2), proxy.updates.message()).await;
    assert!(matches!(end, Ok(Ok(None)) | Ok(Err(_))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_revision_zero_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start(data.path()).await;
    apply(&control, &service_entries(1)).await;
    let out = control.cli(&["rollback", "0"]);
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("revision 0"),
        "{}",
        common::text(&out)
    );
    assert_eq!(
        control.api("resources").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
