//! Shared setup for the control plane's end-to-end tests: `trellis control` and `trellis-proxy`
//! processes on loopback, and the `trellis` CLI.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::process::ProxyProcess;

pub const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");

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

/// A running `trellis control`.
pub struct Control {
    pub process: ProxyProcess,
    pub push: SocketAddr,
    pub console: SocketAddr,
    pub data_dir: PathBuf,
}

impl Control {
    /// Starts a control plane on free ports with its SQLite database in `data_dir`.
    pub async fn start(data_dir: &Path) -> Control {
        Self::start_at(data_dir, testkit::free_addr(), testkit::free_addr()).await
    }

    /// Starts on given addresses (to restart on the same ones).
    pub async fn start_at(data_dir: &Path, push: SocketAddr, console: SocketAddr) -> Control {
        let args = [
            "control".to_string(),
            "--push".into(),
            push.to_string(),
            "--console".into(),
            console.to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--registration-grace".into(),
            "2s".into(),
        ];
        // The collector's listeners on free ports too, so tests run side by side.
        let collector = testkit::free_addrs(4);
        let mut args = args.to_vec();
        for (flag, addr) in ["--otlp-grpc", "--otlp-http", "--jaeger", "--metrics"]
            .iter()
            .zip(collector)
        {
            args.extend([flag.to_string(), addr.to_string()]);
        }
        let mut process = ProxyProcess::spawn(TRELLIS, &args, &[("RUST_LOG", "info")])
            .expect("trellis control starts");
        let client = HttpClient::http1(console).with_timeout(Duration::from_secs(1));
        let ready = testkit::client::wait_until(Duration::from_secs(15), || {
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
            data_dir: data_dir.to_path_buf(),
        }
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
