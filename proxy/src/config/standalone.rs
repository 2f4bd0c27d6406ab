//! Standalone mode: config from Istio-format YAML on disk (`--config DIR`), endpoints from
//! ServiceEntry resources. The directory is re-read when a file changes or on SIGHUP; a bad edit
//! is logged with its file and line and the proxy keeps serving its last good config.

use super::ConfigStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use trellis_api::compile::MeshSettings;
use trellis_api::model::{NodeIdentity, ProxyConfig};

/// Reads and compiles the config at `path` for this node of `mesh` (whose trust domain is the
/// proxy's `--trust-domain`).
pub fn load(path: &Path, node: &NodeIdentity, mesh: &MeshSettings) -> Result<ProxyConfig, String> {
    let set = trellis_api::load_path(path).map_err(|d| trellis_api::diagnostics::render(&d))?;
    Ok(trellis_api::compile::compile_standalone_in(
        &set, node, mesh,
    ))
}

/// Loads the config once (failing loudly), then watches it for the life of the process.
pub fn start(
    path: PathBuf,
    node: NodeIdentity,
    mesh: MeshSettings,
    store: Arc<ConfigStore>,
) -> Result<(), String> {
    let config = load(&path, &node, &mesh)?;
    store.apply(config)?;
    tokio::spawn(watch(path, node, mesh, store));
    Ok(())
}

async fn watch(path: PathBuf, node: NodeIdentity, mesh: MeshSettings, store: Arc<ConfigStore>) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = fingerprint(&path);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = fingerprint(&path);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let (path, node, mesh) = (path.clone(), node.clone(), mesh.clone());
        let loaded = tokio::task::spawn_blocking(move || load(&path, &node, &mesh)).await;
        match loaded {
            Ok(Ok(config)) => {
                if let Err(e) = store.apply(config) {
                    tracing::error!(error = %e, "config rejected; keeping the last good config");
                }
            }
            Ok(Err(e)) => tracing::error!("config rejected; keeping the last good config:\n{e}"),
            Err(e) => tracing::error!(error = %e, "config reload failed"),
        }
    }
}

/// Names, sizes and modification times of every file under `path`: cheap to take twice a second.
fn fingerprint(path: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else {
            out.push((p, meta.len(), meta.modified().ok()));
        }
    }
    out.sort();
    out
}
