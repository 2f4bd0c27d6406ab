//! `trellis-proxy --control`: the real binary against a fake push server in the test, which
//! records every Hello, Ack and Nack and sends exactly the updates each test builds.

mod common;

use common::{BIN, IsolatedServer, service_entry};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::client::{HttpClient, count_by_upstream, wait_until};
use testkit::echo::EchoServer;
use testkit::process::{ConfigDir, ProxyProcess};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use trellis_api::model::{NodeIdentity, ProxyConfig, RouteAction};
use trellis_api::push::config_push_server::{ConfigPush, ConfigPushServer};
use trellis_api::push::proxy_message::Kind;
use trellis_api::push::{ConfigUpdate, Hello, ProxyMessage, Resource, ResourceRef, ResourceType};

const WAIT: Duration = Duration::from_secs(10);
const REVIEWS: &str = "reviews.default.svc.cluster.local";
const VH: &str = "reviews.default.svc.cluster.local:9080";

// ---- the fake control plane ----

/// What the fake control plane saw and will send; outlives restarts of the server.
#[derive(Default)]
struct Shared {
    hellos: Mutex<Vec<Hello>>,
    /// Acks and Nacks in arrival order.
    answers: Mutex<Vec<Kind>>,
    /// Sent first on every new stream.
    full: Mutex<Option<ConfigUpdate>>,
    /// The latest stream's sender.
    current: Mutex<Option<mpsc::Sender<Result<ConfigUpdate, Status>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Service(Arc<Shared>);

#[tonic::async_trait]
impl ConfigPush for Service {
    type StreamStream = ReceiverStream<Result<ConfigUpdate, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let shared = self.0.clone();
        tokio::spawn(async move {
            let Ok(Some(ProxyMessage {
                kind: Some(Kind::Hello(hello)),
            })) = incoming.message().await
            else {
                return;
            };
            lock(&shared.hellos).push(hello);
            let full = lock(&shared.full).clone();
            if let Some(full) = full
                && tx.send(Ok(full)).await.is_err()
            {
                return;
            }
            *lock(&shared.current) = Some(tx);
            while let Ok(Some(msg)) = incoming.message().await {
                lock(&shared.answers).extend(msg.kind);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A push server on its own runtime: stopping it drops every stream and socket at once, as a
/// crashed control plane would.
struct FakeControl {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: IsolatedServer,
}

impl FakeControl {
    fn start(full: Option<ConfigUpdate>) -> FakeControl {
        let shared = Arc::new(Shared::default());
        *lock(&shared.full) = full;
        // Bound to port 0 directly: a port picked first and bound later can be taken in between
        // (by an outgoing connection's ephemeral port, for one).
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake control plane");
        Self::serve(listener, shared)
    }

    /// Starts again at `addr` (a restart of a control plane that went away).
    fn start_at(addr: SocketAddr, shared: Arc<Shared>) -> FakeControl {
        let listener = std::net::TcpListener::bind(addr).expect("bind the fake control plane");
        Self::serve(listener, shared)
    }

    fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) -> FakeControl {
        let addr = listener.local_addr().expect("local address");
        let router = tonic::transport::Server::builder()
            .add_service(ConfigPushServer::new(Service(shared.clone())));
        FakeControl {
            addr,
            shared,
            server: IsolatedServer::start(listener, router),
        }
    }

    /// Kills the server; what it recorded stays in the returned state.
    fn stop(mut self) -> Arc<Shared> {
        self.server.stop();
        lock(&self.shared.current).take();
        self.shared
    }

    fn set_full(&self, update: ConfigUpdate) {
        *lock(&self.shared.full) = Some(update);
    }

    /// Sends `update` on the latest stream.
    async fn push(&self, update: ConfigUpdate) {
        let tx = lock(&self.shared.current)
            .clone()
            .expect("a stream is open");
        tx.send(Ok(update)).await.expect("stream open");
    }

    /// Waits for the `n`th Hello (1-based).
    async fn hello(&self, n: usize) -> Hello {
        let got = wait_until(WAIT, || async { lock(&self.shared.hellos).len() >= n }).await;
        let hellos = lock(&self.shared.hellos);
        assert!(got, "hello #{n} not received; have {hellos:#?}");
        hellos[n - 1].clone()
    }

    /// Waits for the proxy's answer to `version`.
    async fn answer(&self, version: &str) -> Kind {
        let find = || {
            lock(&self.shared.answers)
                .iter()
                .rev()
                .find(|k| match k {
                    Kind::Ack(a) => a.version == version,
                    Kind::Nack(n) => n.version == version,
                    Kind::Hello(_) => false,
                })
                .cloned()
        };
        let got = wait_until(WAIT, || async { find().is_some() }).await;
        assert!(
            got,
            "no answer to {version}; answers {:#?}",
            lock(&self.shared.answers)
        );
        find().expect("answer")
    }

    async fn acked(&self, version: &str) {
        match self.answer(version).await {
            Kind::Ack(_) => {}
            other => panic!("version {version} not acked: {other:?}"),
        }
    }

    async fn nacked(&self, version: &str) -> String {
        match self.answer(version).await {
            Kind::Nack(n) => n.reason,
            other => panic!("version {version} not nacked: {other:?}"),
        }
    }
}

// ---- config the fake control plane pushes ----

/// reviews:9080 with subsets v1 and v2, split by `weights` (a zero weight leaves that subset out).
fn reviews(version: &str, v1: &EchoServer, v2: &EchoServer, weights: (u32, u32)) -> ProxyConfig {
    let se = service_entry(
        "reviews",
        REVIEWS,
        9080,
        "HTTP",
        &[(v1.addr(), "version=v1"), (v2.addr(), "version=v2")],
    );
    let mut routes = String::new();
    for (subset, weight) in [("v1", weights.0), ("v2", weights.1)] {
        if weight > 0 {
            routes.push_str(&format!(
                "    - {{destination: {{host: reviews, subset: {subset}}}, weight: {weight}}}\n"
            ));
        }
    }
    let yaml = format!(
        "{se}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
{routes}"
    );
    let resources = trellis_api::load_str(&yaml, "reviews.yaml").expect("valid YAML");
    let set = trellis_api::ConfigSet::from_resources(resources).expect("no duplicates");
    let node = NodeIdentity {
        workload: "reviews".into(),
        namespace: "default".into(),
        service_account: "default".into(),
        labels: Default::default(),
    };
    let mut config = trellis_api::compile_standalone(&set, &node);
    config.canonicalize();
    config.version = version.into();
    config
}

fn full(config: &ProxyConfig) -> ConfigUpdate {
    ConfigUpdate {
        version: config.version.clone(),
        base_version: String::new(),
        meta: trellis_api::push::encode_meta(&config.meta()),
        resources: config
            .virtual_hosts
            .iter()
            .map(Resource::virtual_host)
            .chain(config.clusters.iter().map(Resource::cluster))
            .collect(),
        removed: vec![],
        continued: false,
        otlp_endpoint: String::new(),
        trust_bundle_pem: String::new(),
    }
}

/// What changed from `prev` to `next`, as the control plane sends it.
fn delta(prev: &ProxyConfig, next: &ProxyConfig) -> ConfigUpdate {
    let old_vhs: HashMap<_, _> = prev.virtual_hosts.iter().map(|v| (&v.name, v)).collect();
    let old_clusters: HashMap<_, _> = prev.clusters.iter().map(|c| (&c.name, c)).collect();
    let mut resources = Vec::new();
    for vh in &next.virtual_hosts {
        if old_vhs.get(&vh.name) != Some(&vh) {
            resources.push(Resource::virtual_host(vh));
        }
    }
    for c in &next.clusters {
        if old_clusters.get(&c.name) != Some(&c) {
            resources.push(Resource::cluster(c));
        }
    }
    let mut removed = Vec::new();
    for vh in &prev.virtual_hosts {
        if !next.virtual_hosts.iter().any(|v| v.name == vh.name) {
            removed.push(ResourceRef {
                r#type: ResourceType::VirtualHost as i32,
                name: vh.name.clone(),
            });
        }
    }
    for c in &prev.clusters {
        if !next.clusters.iter().any(|n| n.name == c.name) {
            removed.push(ResourceRef {
                r#type: ResourceType::Cluster as i32,
                name: c.name.clone(),
            });
        }
    }
    ConfigUpdate {
        version: next.version.clone(),
        base_version: prev.version.clone(),
        meta: Default::default(),
        resources,
        removed,
        continued: false,
        otlp_endpoint: String::new(),
        trust_bundle_pem: String::new(),
    }
}

// ---- the proxy side ----

async fn upstream(client: &HttpClient) -> String {
    let r = client
        .get("reviews:9080", "/", &[])
        .await
        .expect("request through the proxy");
    assert_eq!(r.status, 200, "{r:?}");
    r.upstream().unwrap_or_default().to_string()
}

async fn assert_served_by(client: &HttpClient, want: &str) {
    for _ in 0..10 {
        assert_eq!(upstream(client).await, want);
    }
}

async fn admin_json(proxy: &ProxyProcess, path: &str) -> serde_json::Value {
    let r = testkit::client::get(proxy.admin_addr(), "admin", path, &[])
        .await
        .expect("admin answers");
    serde_json::from_str(&r.body).expect("admin JSON")
}

/// A proxy on a fake control plane that already has `config` to send.
async fn proxy_on(config: &ProxyConfig) -> (FakeControl, ProxyProcess) {
    let control = FakeControl::start(Some(full(config)));
    let proxy = ProxyProcess::trellis_proxy_control(BIN, control.addr, &["--workload", "reviews"])
        .await
        .expect("proxy starts on the pushed config");
    control.acked(&config.version).await;
    (control, proxy)
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread")]
async fn hello_then_full_update_routes_and_is_acked() {
    let (v1, v2) = (EchoServer::start("v1").await, EchoServer::start("v2").await);
    let control = FakeControl::start(None);
    let admin = testkit::free_addr().to_string();
    let addr = control.addr;
    let admin_flag = admin.clone();
    // The proxy is ready only once a config arrives: start it and push while it waits.
    let starting = tokio::spawn(async move {
        ProxyProcess::trellis_proxy_control(
            BIN,
            addr,
            &[
                "--workload",
                "reviews",
                "--service-account",
                "reviews-sa",
                "--labels",
                "app=reviews,version=v1",
                "--app-port",
                "9999",
                "--advertise",
                "10.1.2.3:15006",
                "--app-protocol",
                "GRPC",
                "--admin",
                &admin_flag,
            ],
        )
        .await
    });

    let hello = control.hello(1).await;
    assert!(
        hello.proxy_id.starts_with("reviews-") && hello.proxy_id.ends_with(".default"),
        "{hello:?}"
    );
    assert_eq!(hello.workload, "reviews");
    assert_eq!(hello.namespace, "default");
    assert_eq!(hello.service_account, "reviews-sa");
    assert_eq!(hello.labels.get("app").map(String::as_str), Some("reviews"));
    assert_eq!(hello.labels.get("version").map(String::as_str), Some("v1"));
    assert_eq!(hello.inbound_address, "10.1.2.3:15006");
    assert_eq!(hello.app_port, 9999);
    assert_eq!(hello.app_protocol, "grpc");
    assert_eq!(hello.version, "", "nothing served yet");
    assert_eq!(hello.proxy_version, env!("CARGO_PKG_VERSION"));

    let ready = testkit::client::get(admin.parse().unwrap(), "admin", "/ready", &[])
        .await
        .expect("admin answers");
    assert_eq!(ready.status, 503, "not ready before a config: {ready:?}");

    let config = reviews("1", &v1, &v2, (100, 0));
    control.push(full(&config)).await;
    let proxy = tokio::time::timeout(WAIT * 2, starting)
        .await
        .expect("proxy start is bounded")
        .expect("no panic")
        .expect("proxy ready after the full update");
    control.acked("1").await;
    assert_served_by(&HttpClient::http1(proxy.outbound_addr()), "v1").await;

    let dump = admin_json(&proxy, "/config_dump").await;
    assert_eq!(dump["version"], "1");
    assert_eq!(dump["source"]["type"], "control");
    assert_eq!(dump["source"]["address"], control.addr.to_string());
    assert_eq!(dump["source"]["connected"], true);
    assert_eq!(dump["source"]["proxy_id"], hello.proxy_id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn deltas_change_routing_and_carry_only_what_changed() {
    let (v1, v2) = (EchoServer::start("v1").await, EchoServer::start("v2").await);
    let first = reviews("1", &v1, &v2, (100, 0));
    let (control, proxy) = proxy_on(&first).await;
    let client = HttpClient::http1(proxy.outbound_addr());
    assert_served_by(&client, "v1").await;

    let cluster = |subset: &str| format!("outbound|9080|{subset}|{REVIEWS}");
    let names =
        |u: &ConfigUpdate| -> Vec<String> { u.resources.iter().map(|r| r.name.clone()).collect() };

    // The split changes: the virtual host and the newly used cluster are sent, the v1 cluster is
    // untouched and not resent.
    let second = reviews("2", &v1, &v2, (50, 50));
    let update = delta(&first, &second);
    assert_eq!(names(&update), [VH.to_string(), cluster("v2")]);
    control.push(update).await;
    control.acked("2").await;
    let tally = count_by_upstream(200, 8, || client.get("reviews:9080", "/", &[])).await;
    assert_eq!(tally.status(200), 200, "{tally:?}");
    assert!(
        tally.upstream("v1") > 40 && tally.upstream("v2") > 40,
        "{tally:?}"
    );

    // All to v2: only the virtual host changes, and the v1 cluster goes.
    let third = reviews("3", &v1, &v2, (0, 100));
    let update = delta(&second, &third);
    assert_eq!(names(&update), [VH]);
    let removed: Vec<_> = update.removed.iter().map(|r| r.name.clone()).collect();
    assert_eq!(removed, [cluster("v1")]);
    control.push(update).await;
    control.acked("3").await;
    assert_served_by(&client, "v2").await;

    let dump = admin_json(&proxy, "/config_dump").await;
    assert_eq!(dump["version"], "3");
    let clusters: Vec<_> = dump["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<_> = third.clusters.iter().map(|c| c.name.clone()).collect();
    assert_eq!(
        clusters, want,
        "the held clusters, as the control plane sees them"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_in_parts_is_applied_and_answered_once() {
    let (v1, v2) = (EchoServer::start("v1").await, EchoServer::start("v2").await);
    let first = reviews("1", &v1, &v2, (100, 0));
    let (control, proxy) = proxy_on(&first).await;
    let client = HttpClient::http1(proxy.outbound_addr());

    // One resource per message: the virtual host first, the cluster it needs last.
    let second = reviews("2", &v1, &v2, (0, 100));
    let whole = delta(&first, &second);
    assert!(whole.resources.len() >= 2, "{whole:?}");
    let count = whole.resources.len();
    for (i, resource) in whole.resources.iter().enumerate() {
        control
            .push(ConfigUpdate {
                resources: vec![resource.clone()],
                removed: if i == 0 {
                    whole.removed.clone()
                } else {
                    vec![]
                },
                continued: i + 1 < count,
                ..whole.clone()
            })
            .await;
    }
    control.acked("2").await;
    assert_served_by(&client, "v2").await;
    let answers = lock(&control.shared.answers)
        .iter()
        .filter(|k| matches!(k, Kind::Ack(a) if a.version == "2"))
        .count();
    assert_eq!(answers, 1, "one answer for the whole update");
    let dump = admin_json(&proxy, "/config_dump").await;
    assert_eq!(dump["version"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_updates_are_nacked_and_the_old_config_keeps_serving() {
    let (v1, v2) = (EchoServer::start("v1").await, EchoServer::start("v2").await);
    let first = reviews("1", &v1, &v2, (100, 0));
    let (control, proxy) = proxy_on(&first).await;
    let client = HttpClient::http1(proxy.outbound_addr());

    // A body that does not decode, next to a change that would otherwise apply.
    let mut update = delta(&first, &reviews("2", &v1, &v2, (0, 100)));
    let mut broken = Resource::cluster(&first.clusters[0]);
    broken.body = b"{\"name\": 7".to_vec().into();
    update.resources.push(broken);
    control.push(update).await;
    let reason = control.nacked("2").await;
    assert!(
        reason.contains(&first.clusters[0].name) && reason.contains("invalid body"),
        "{reason}"
    );
    assert_served_by(&client, "v1").await;

    // A route to a cluster the config does not have.
    let mut vh = first.virtual_hosts[0].clone();
    let RouteAction::Forward(dests) = &mut vh.http_routes[0].action else {
        panic!("a forward route: {vh:?}");
    };
    dests[0].cluster = format!("outbound|9080|v9|{REVIEWS}");
    control
        .push(ConfigUpdate {
            version: "3".into(),
            base_version: "1".into(),
            resources: vec![Resource::virtual_host(&vh)],
            ..ConfigUpdate::default()
        })
        .await;
    let reason = control.nacked("3").await;
    assert!(
        reason.contains("unknown cluster") && reason.contains("|v9|"),
        "{reason}"
    );
    assert_served_by(&client, "v1").await;

    let dump = admin_json(&proxy, "/config_dump").await;
    assert_eq!(dump["version"], "1");
    assert_eq!(dump["source"]["last_nack"]["version"], "3");

    // Nothing of the refused updates was kept: a delta on "1" still applies, to exactly "1".
    let fourth = reviews("4", &v1, &v2, (0, 100));
    control.push(delta(&first, &fourth)).await;
    control.acked("4").await;
    assert_served_by(&client, "v2").await;
    assert_eq!(lock(&control.shared.hellos).len(), 1, "no reconnect");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delta_on_the_wrong_base_makes_the_proxy_reconnect() {
    let (v1, v2) = (EchoServer::start("v1").await, EchoServer::start("v2").await);
    let first = reviews("1", &v1, &v2, (100, 0));
    let (control, proxy) = proxy_on(&first).await;

    let third = reviews("3", &v1, &v2, (0, 100));
    control.set_full(full(&third));
    let mut wrong = delta(&first, &third);
    wrong.base_version = "2".into();
    control.push(wrong).await;

    let hello = control.hello(2).await;
    assert_eq!(
        hello.version, "1",
        "the new Hello says what the proxy serves"
    );
    assert_eq!(hello.proxy_id, control.hello(1).await.proxy_id);
    control.acked("3").await;
    assert_served_by(&HttpClient::http1(proxy.outbound_addr()), "v2").await;
    let answered_2 = lock(&control.shared.answers).iter().any(|k| match k {
        Kind::Ack(a) => a.version == "2",
        Kind::Nack(n) => n.version == "2",
        Kind::Hello(_) => false,
    });
    assert!(!answered_2, "an out-of-sync delta is not answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_survives_the_control_plane_going_away_and_a_restart_gets_a_new_hello() {
    let (v1, v2) = (EchoServer::start("v1").await, EchoServer::start("v2").await);
    let first = reviews("1", &v1, &v2, (100, 0));
    let (control, proxy) = proxy_on(&first).await;
    let client = HttpClient::http1(proxy.outbound_addr());
    let addr = control.addr;
    let shared = control.stop();

    let disconnected = wait_until(WAIT, || async {
        admin_json(&proxy, "/config_dump").await["source"]["connected"] == false
    })
    .await;
    assert!(disconnected, "config_dump shows the lost stream");
    let dump = admin_json(&proxy, "/config_dump").await;
    assert!(dump["source"]["last_error"].is_string(), "{dump:#}");
    assert_eq!(dump["version"], "1");
    // Several retries go by while traffic keeps flowing on the last good config.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(upstream(&client).await, "v1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = testkit::client::get(proxy.admin_addr(), "admin", "/ready", &[])
        .await
        .expect("admin answers");
    assert_eq!(ready.status, 200, "still ready on the last good config");

    // The control plane comes back on the same address with a newer config.
    let second = reviews("2", &v1, &v2, (0, 100));
    *lock(&shared.full) = Some(full(&second));
    let control = FakeControl::start_at(addr, shared);
    let hello = control.hello(2).await;
    assert_eq!(hello.version, "1");
    control.acked("2").await;
    assert_served_by(&client, "v2").await;
    let dump = admin_json(&proxy, "/config_dump").await;
    assert_eq!(dump["source"]["connected"], true);

    let outages = proxy
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("control plane unavailable"))
        .count();
    assert_eq!(
        outages,
        1,
        "one log line per outage: {:#?}",
        proxy.stderr_lines()
    );
    assert!(
        proxy
            .stderr_lines()
            .iter()
            .any(|l| l.contains("control plane back")),
        "{:#?}",
        proxy.stderr_lines()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_and_control_are_exclusive_and_the_dump_names_the_source() {
    let dir = ConfigDir::new();
    let echo = EchoServer::start("a").await;
    dir.write(
        "se.yaml",
        &service_entry("svc", "svc.example.com", 80, "HTTP", &[(echo.addr(), "")]),
    );
    let path = dir.path().display().to_string();
    let mut both = ProxyProcess::spawn(BIN, &["--config", &path, "--control", "127.0.0.1:1"], &[])
        .expect("spawn");
    let status = both.wait_exit(WAIT).await.expect("exits");
    assert!(!status.success());
    assert!(
        both.stderr_lines()
            .iter()
            .any(|l| l.contains("mutually exclusive")),
        "{:?}",
        both.stderr_lines()
    );

    let standalone = ProxyProcess::trellis_proxy(BIN, dir.path(), &[])
        .await
        .expect("standalone proxy starts");
    let dump = admin_json(&standalone, "/config_dump").await;
    assert_eq!(dump["source"]["type"], "file");
    assert_eq!(dump["source"]["path"], path.as_str());
}
