//! Shared setup for the control plane's end-to-end tests: `trellis control` and `trellis-proxy`
//! processes on loopback, and the `trellis` CLI.
#![allow(dead_code)]

pub mod browser;
pub mod collector;
pub mod dashboards;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::process::ProxyProcess;

pub const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");

/// The repository's root (samples/, addons/, ...).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("control/ is inside the repository")
        .to_path_buf()
}

/// `trellis-proxy`, built beside `trellis` by `cargo test --workspace` (or `cargo build`).
pub fn proxy_bin() -> PathBuf {
    let bin = Path::new(TRELLIS).with_file_name("trellis-proxy");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p trellis-proxy` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// A running `trellis control`, every listener on a free loopback port.
pub struct Control {
    pub process: ProxyProcess,
    pub push: SocketAddr,
    pub console: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub jaeger: SocketAddr,
    pub metrics: SocketAddr,
    pub data_dir: PathBuf,
    /// Flags given beyond the listeners and the data dir (kept for [`Control::restart`]).
    pub extra: Vec<String>,
}

impl Control {
    /// Starts a control plane on free ports with its SQLite databases in `data_dir`.
    pub async fn start(data_dir: &Path) -> Control {
        Self::start_with(data_dir, &[]).await
    }

    /// [`Control::start`] with `extra` flags.
    pub async fn start_with(data_dir: &Path, extra: &[&str]) -> Control {
        let [push, console] = testkit::free_addrs(2)[..] else {
            unreachable!()
        };
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Self::launch(data_dir, push, console, extra).await
    }

    /// Starts with the push and console listeners on given addresses (to restart on the same
    /// ones); the collector's listeners get free ports.
    pub async fn start_at(data_dir: &Path, push: SocketAddr, console: SocketAddr) -> Control {
        Self::launch(data_dir, push, console, Vec::new()).await
    }

    async fn launch(
        data_dir: &Path,
        push: SocketAddr,
        console: SocketAddr,
        extra: Vec<String>,
    ) -> Control {
        let [otlp_grpc, otlp_http, jaeger, metrics] = testkit::free_addrs(4)[..] else {
            unreachable!()
        };
        let mut args: Vec<String> = vec!["control".into()];
        for (flag, addr) in [
            ("--push", push),
            ("--console", console),
            ("--otlp-grpc", otlp_grpc),
            ("--otlp-http", otlp_http),
            ("--jaeger", jaeger),
            ("--metrics", metrics),
        ] {
            args.extend([flag.to_string(), addr.to_string()]);
        }
        args.extend(["--data-dir".into(), data_dir.display().to_string()]);
        if !extra.iter().any(|a| a == "--registration-grace") {
            args.extend(["--registration-grace".into(), "2s".into()]);
        }
        args.extend(extra.iter().cloned());
        let mut process = ProxyProcess::spawn(TRELLIS, &args, &[("RUST_LOG", "info")])
            .expect("trellis control starts");
        // Every listener is bound before any serves, so the console answering means all do.
        let client = HttpClient::http1(console).with_timeout(Duration::from_secs(1));
        let ready = testkit::client::wait_until(Duration::from_secs(20), || {
            let client = client.clone();
            async move {
                client
                    .get("control", "/healthz", &[])
                    .await
                    .is_ok_and(|r| r.status == 200)
            }
        })
        .await;
        if !ready {
            process.kill();
            panic!(
                "trellis control did not become ready\n{}",
                process.stderr_lines().join("\n")
            );
        }
        Control {
            process,
            push,
            console,
            otlp_grpc,
            otlp_http,
            jaeger,
            metrics,
            data_dir: data_dir.to_path_buf(),
            extra,
        }
    }

    /// Stops gracefully (SIGTERM) and starts again with the same flags, data and push and
    /// console addresses.
    pub async fn restart(mut self) -> Control {
        self.stop().await;
        self.relaunch().await
    }

    /// Starts a stopped control plane again with the same flags, data and push and console
    /// addresses.
    pub async fn relaunch(&self) -> Control {
        Self::launch(&self.data_dir, self.push, self.console, self.extra.clone()).await
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(&mut self) {
        self.process
            .send_signal(libc::SIGTERM)
            .expect("control is running");
        let status = self.process.wait_exit(Duration::from_secs(15)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "control did not exit cleanly: {status:?}\n{}",
            self.process.stderr_lines().join("\n")
        );
    }

    pub fn server_url(&self) -> String {
        format!("http://{}", self.console)
    }

    /// Runs `trellis ARGS` against this control plane.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.server_url(), args)
    }

    /// `GET /api/v1/PATH` as JSON.
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let r = HttpClient::http1(self.console)
            .get("control", &format!("/api/v1/{path}"), &[])
            .await
            .expect("API answers");
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
    }

    /// Proxies as `GET /api/v1/proxies` lists them.
    pub async fn proxies(&self) -> Vec<serde_json::Value> {
        self.api("proxies").await["proxies"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `n` proxies are connected and SYNCED on config of at least `revision`.
    pub async fn wait_synced(
        &self,
        n: usize,
        revision: u64,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let proxies = self.proxies().await;
            let synced = proxies.len() == n
                && proxies.iter().all(|p| {
                    p["status"] == "SYNCED"
                        && p["connected"] == true
                        && p["revision_acked"].as_u64() >= Some(revision)
                });
            if synced {
                return proxies;
            }
            if std::time::Instant::now() > deadline {
                panic!("proxies not all SYNCED after {timeout:?}: {proxies:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the `trellis` CLI with `--server URL`.
pub fn cli(server: &str, args: &[&str]) -> Output {
    std::process::Command::new(TRELLIS)
        .arg("--server")
        .arg(server)
        .args(args)
        .env("USER", "tester")
        .output()
        .expect("trellis runs")
}

/// stdout + stderr of a CLI run, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A sidecar taking config from `control`: `workload` with `labels` (`k=v,...`), in front of an
/// app on `app_port` (if any).
pub async fn sidecar(
    control: SocketAddr,
    workload: &str,
    labels: &str,
    app_port: Option<u16>,
) -> ProxyProcess {
    sidecar_with(control, workload, labels, app_port, &[]).await
}

/// [`sidecar`] with `extra` flags.
pub async fn sidecar_with(
    control: SocketAddr,
    workload: &str,
    labels: &str,
    app_port: Option<u16>,
    extra: &[&str],
) -> ProxyProcess {
    let app_port = app_port.map(|p| p.to_string());
    let mut args = vec!["--workload", workload, "--labels", labels];
    if let Some(port) = &app_port {
        args.extend(["--app-port", port.as_str()]);
    }
    args.extend(extra);
    ProxyProcess::trellis_proxy_control(proxy_bin(), control, &args)
        .await
        .expect("sidecar starts")
}

/// A sidecar pushing metrics every second and tracing every request (what the console's pages
/// show).
pub async fn observed(
    control: SocketAddr,
    workload: &str,
    labels: &str,
    app_port: Option<u16>,
) -> ProxyProcess {
    let extra = [
        "--trace-sampling",
        "100",
        "--metrics-push-seconds",
        "1",
        "--otlp-access-log",
        "true",
    ];
    sidecar_with(control, workload, labels, app_port, &extra).await
}

/// The reviews service (a ServiceEntry selecting `app: reviews` workloads) and its v1/v2 subsets.
pub const SERVICE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

/// A VirtualService sending `v1`% of reviews traffic to v1 and `v2`% to v2.
pub fn split(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: {v1}
    - destination: {{host: reviews, subset: v2}}
      weight: {v2}
"
    )
}
