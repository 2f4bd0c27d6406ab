//! Shared setup for the proxy's end-to-end tests: Istio YAML builders and a proxy started on it.
#![allow(dead_code)]

use std::net::SocketAddr;
use testkit::process::{ConfigDir, ProxyProcess};

pub const BIN: &str = env!("CARGO_BIN_EXE_trellis-proxy");

/// A ServiceEntry for `host` on `port`, one STATIC endpoint per `(address, labels)`.
pub fn service_entry(
    name: &str,
    host: &str,
    port: u16,
    protocol: &str,
    endpoints: &[(SocketAddr, &str)],
) -> String {
    let mut eps = String::new();
    for (addr, labels) in endpoints {
        eps.push_str(&format!(
            "  - address: {}\n    ports:\n      main: {}\n",
            addr.ip(),
            addr.port()
        ));
        if !labels.is_empty() {
            eps.push_str("    labels:\n");
            for kv in labels.split(',') {
                let (k, v) = kv.split_once('=').expect("labels are k=v");
                eps.push_str(&format!("      {k}: {v}\n"));
            }
        }
    }
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{host}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - number: {port}\n    name: main\n    protocol: {protocol}\n  endpoints:\n{eps}"
    )
}

/// A running proxy and the directory it reads.
pub struct Mesh {
    pub dir: ConfigDir,
    pub proxy: ProxyProcess,
}

impl Mesh {
    /// Starts a proxy on `files` (name, YAML).
    pub async fn start(files: &[(&str, &str)]) -> Mesh {
        Self::start_with(files, &[]).await
    }

    pub async fn start_with(files: &[(&str, &str)], extra: &[&str]) -> Mesh {
        let dir = ConfigDir::new();
        for (name, yaml) in files {
            dir.write(name, yaml);
        }
        let proxy = ProxyProcess::trellis_proxy(BIN, dir.path(), extra)
            .await
            .expect("proxy starts");
        Mesh { dir, proxy }
    }

    pub fn outbound(&self) -> SocketAddr {
        self.proxy.outbound_addr()
    }

    /// Access-log records written so far, parsed.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.proxy
            .stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for an access-log record matching `pred`.
    pub async fn wait_log(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(r) = self.access_log().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no matching access-log record; have: {:#?}",
                self.access_log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// GET on the admin port, as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let resp = testkit::client::get(self.proxy.admin_addr(), "admin", path, &[])
            .await
            .expect("admin answers");
        serde_json::from_str(&resp.body).expect("admin JSON")
    }

    /// Replaces a config file and waits until the proxy serves a config with a new version.
    pub async fn reconfigure(&self, name: &str, yaml: &str) {
        let before = self.admin_json("/config_dump").await["version"].clone();
        self.dir.write(name, yaml);
        let changed = testkit::client::wait_until(std::time::Duration::from_secs(10), || async {
            self.admin_json("/config_dump").await["version"] != before
        })
        .await;
        assert!(changed, "proxy did not pick up the new config");
    }

    /// The proxy's `/stats/prometheus` text.
    pub async fn stats(&self) -> String {
        stats_text(&self.proxy).await
    }

    /// Scrapes until `check` holds of the stats text (counters move when a record finishes, just
    /// after the client has its answer) or five seconds pass; the last text either way.
    pub async fn wait_stats(&self, check: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = self.stats().await;
            if check(&text) || std::time::Instant::now() >= deadline {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// `proxy`'s `/stats/prometheus` text.
pub async fn stats_text(proxy: &ProxyProcess) -> String {
    testkit::client::get(proxy.stats_addr(), "stats", "/stats/prometheus", &[])
        .await
        .expect("the stats port answers")
        .body
}

/// The value of the first sample in `stats` whose line starts with `prefix` (the metric name, and
/// its labels as printed to pin one series).
pub fn stat_value(stats: &str, prefix: &str) -> Option<u64> {
    stats
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A self-signed test root issuing SPIFFE workload certificates, as the control plane's CA does
/// (and as a user's own PKI would for `--cert-chain`); the proxy-specific helpers over
/// [`testkit::pki::TestCa`].
pub struct TestCa(pub testkit::pki::TestCa);

impl std::ops::Deref for TestCa {
    type Target = testkit::pki::TestCa;
    fn deref(&self) -> &testkit::pki::TestCa {
        &self.0
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        TestCa(testkit::pki::TestCa::new(name))
    }

    /// A fresh key and a one-hour certificate for the SPIFFE ID `uri`: (chain PEM, key PEM).
    pub fn spiffe_leaf(&self, uri: &str) -> (String, String) {
        self.0.leaf(&[uri])
    }

    /// Credentials for `uri` from this CA, trusting `bundle_pem` (this CA's root unless given).
    pub fn credentials(
        &self,
        uri: &str,
        bundle_pem: Option<&str>,
    ) -> std::sync::Arc<trellis_identity::tls::Credentials> {
        use trellis_identity::TrustBundle;
        use trellis_identity::tls::{Credentials, WorkloadCert};
        let (chain, key) = self.spiffe_leaf(uri);
        let cert = WorkloadCert::from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
        let bundle =
            TrustBundle::from_pem(bundle_pem.unwrap_or(&self.root_pem).as_bytes()).unwrap();
        std::sync::Arc::new(Credentials::new(cert, bundle))
    }

    /// The flags that give a standalone proxy a certificate for `uri` from this CA (files kept
    /// in `dir`).
    pub fn proxy_flags(&self, dir: &ConfigDir, uri: &str) -> Vec<String> {
        let (chain, key) = self.spiffe_leaf(uri);
        let chain = dir.write("cert-chain.pem", &chain);
        let key = dir.write("key.pem", &key);
        let bundle = dir.write("root.pem", &self.root_pem);
        [
            ("--cert-chain", chain),
            ("--key", key),
            ("--trust-bundle", bundle),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }
}

/// A push server for a proxy under a control plane that only needs its first config: every
/// stream's Hello is answered with this full update, then the stream is held open (the proxy's
/// ACKs read and dropped).
pub struct OneUpdate(pub trellis_api::push::ConfigUpdate);

#[tonic::async_trait]
impl trellis_api::push::config_push_server::ConfigPush for OneUpdate {
    type StreamStream = tokio_stream::wrappers::ReceiverStream<
        Result<trellis_api::push::ConfigUpdate, tonic::Status>,
    >;

    async fn stream(
        &self,
        request: tonic::Request<tonic::Streaming<trellis_api::push::ProxyMessage>>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        use trellis_api::push::{ProxyMessage, proxy_message::Kind};
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let update = self.0.clone();
        tokio::spawn(async move {
            let Ok(Some(ProxyMessage {
                kind: Some(Kind::Hello(_)),
            })) = incoming.message().await
            else {
                return;
            };
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
            while let Ok(Some(_)) = incoming.message().await {}
        });
        Ok(tonic::Response::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
    }
}

/// A gRPC server on its own runtime, for a fake control plane: stopping or dropping it kills
/// every stream and socket at once, as a control plane that went away would.
pub struct IsolatedServer {
    runtime: Option<tokio::runtime::Runtime>,
}

impl IsolatedServer {
    /// Serves `router` on `listener` (bound by the caller: port 0, or the address of a control
    /// plane coming back).
    pub fn start(
        listener: std::net::TcpListener,
        router: tonic::transport::server::Router,
    ) -> IsolatedServer {
        listener.set_nonblocking(true).expect("nonblocking");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = router
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        IsolatedServer {
            runtime: Some(runtime),
        }
    }

    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for IsolatedServer {
    fn drop(&mut self) {
        self.stop();
    }
}
