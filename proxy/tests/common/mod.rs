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
}
