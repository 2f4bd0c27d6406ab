//! The Grafana dashboards in `addons/grafana/`: their files, every panel's PromQL queries, and the
//! dashboard variables replaced by values (as Grafana does before it sends a query).

use serde_json::Value;
use std::path::{Path, PathBuf};

/// `addons/grafana/` in the repository.
pub fn dir() -> PathBuf {
    super::repo().join("addons/grafana")
}

/// Every dashboard file (`*.json`), sorted by name.
pub fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("addons/grafana is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// A dashboard file's name (`istio-mesh-dashboard.json`).
pub fn name(file: &Path) -> String {
    file.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// A dashboard's JSON.
pub fn load(file: &Path) -> Value {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", name(file)))
}

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The dashboard's file name.
    pub dashboard: String,
    /// The panel's title.
    pub panel: String,
    /// The PromQL as written in the dashboard (with its `$variables`).
    pub expr: String,
}

/// Every panel query (`targets[].expr`) of every dashboard, in file and panel order.
pub fn queries() -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for file in files() {
        let dashboard = name(&file);
        let dash = load(&file);
        for panel in dash["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(PanelQuery {
                        dashboard: dashboard.clone(),
                        panel: title.to_string(),
                        expr: expr.to_string(),
                    });
                }
            }
        }
    }
    out
}

/// `expr` with each `(variable, value)` replaced in order (put `$__rate_interval` before any
/// variable it starts with); panics if a `$` is left.
pub fn substitute(expr: &str, values: &[(&str, &str)]) -> String {
    let mut out = expr.to_string();
    for (var, value) in values {
        out = out.replace(var, value);
    }
    assert!(!out.contains('$'), "unknown variable in {expr}");
    out
}
