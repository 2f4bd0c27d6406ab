//! The ready-made addons: `addons/prometheus/prometheus.yml` passes `promtool check config`, and
//! every Grafana dashboard in `addons/grafana/` is well formed, every panel query is valid PromQL
//! (`promtool check rules` on the queries written as recording rules, with the dashboard variables
//! replaced by sample values) and uses only metric names Trellis exposes. Whether each panel returns
//! data from a real Prometheus is the demo's end-to-end test.

mod common;

use common::{dashboards, repo};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (apt package `prometheus`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every metric name a dashboard may use, with the source file and the text there that defines
/// it (prometheus_client adds `_total` to counters; histograms expose `_bucket`).
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "istio_requests_total",
        "proxy/src/telemetry/metrics/families.rs",
        "\"istio_requests_total\"",
    ),
    (
        "istio_request_duration_milliseconds_bucket",
        "proxy/src/telemetry/metrics/families.rs",
        "\"istio_request_duration_milliseconds\"",
    ),
    (
        "istio_tcp_sent_bytes_total",
        "proxy/src/telemetry/metrics/families.rs",
        "\"istio_tcp_sent_bytes_total\"",
    ),
    (
        "istio_tcp_received_bytes_total",
        "proxy/src/telemetry/metrics/families.rs",
        "\"istio_tcp_received_bytes_total\"",
    ),
    (
        "trellis_collector_received_items_total",
        "control/src/collector/self_metrics.rs",
        "\"received_items\"",
    ),
    (
        "trellis_collector_accepted_items_total",
        "control/src/collector/self_metrics.rs",
        "\"accepted_items\"",
    ),
    (
        "trellis_collector_dropped_items_total",
        "control/src/collector/self_metrics.rs",
        "\"dropped_items\"",
    ),
    (
        "trellis_collector_rejected_items_total",
        "control/src/collector/self_metrics.rs",
        "\"rejected_items\"",
    ),
    (
        "trellis_collector_otlp_requests_total",
        "control/src/collector/self_metrics.rs",
        "\"otlp_requests\"",
    ),
    (
        "trellis_collector_table_rows",
        "control/src/collector/self_metrics.rs",
        "\"table_rows\"",
    ),
    (
        "trellis_collector_queued_items",
        "control/src/collector/self_metrics.rs",
        "\"queued_items\"",
    ),
    (
        "trellis_ca_certificates_issued_total",
        "control/src/ca/service.rs",
        "\"certificates_issued\"",
    ),
    (
        "trellis_ca_refusals_total",
        "control/src/ca/service.rs",
        "\"refusals\"",
    ),
    (
        "trellis_ca_trust_bundle_roots",
        "control/src/ca/service.rs",
        "\"trust_bundle_roots\"",
    ),
    (
        "trellis_graph_edges",
        "control/src/collector/graph/export.rs",
        "\"trellis_graph_edges\"",
    ),
    (
        "trellis_graph_series",
        "control/src/collector/graph/export.rs",
        "\"trellis_graph_series\"",
    ),
    (
        "trellis_graph_spans_held",
        "control/src/collector/graph/export.rs",
        "\"trellis_graph_spans_held\"",
    ),
    (
        "trellis_graph_dropped_total",
        "control/src/collector/graph/export.rs",
        "\"trellis_graph_dropped\"",
    ),
    // Prometheus's own per-target series.
    ("up", "", ""),
];

/// Labels a dashboard may select or group on: Istio's standard labels (as the proxy writes them)
/// and the control plane's own.
const KNOWN_LABELS: &[&str] = &[
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_service",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "response_code",
    "connection_security_policy",
    "le",
    "signal",
    "protocol",
    "outcome",
    "table",
    "reason",
    "job",
];

/// PromQL words that are not metric names.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "rate",
    "irate",
    "increase",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "or",
    "and",
    "unless",
    "bool",
    "offset",
    "histogram_quantile",
    "vector",
    "count",
    "max",
    "min",
    "avg",
    "round",
    "topk",
    "clamp_min",
    "label_join",
];

/// Sample values for the dashboards' variables (`$__rate_interval` first: `$__rate` is not a
/// variable).
const VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "1m"),
    ("$service", "reviews.default.svc.cluster.local"),
    ("$workload", "reviews-v1"),
    ("$namespace", "default"),
    ("$job", "trellis-control-plane"),
];

/// Identifiers outside string literals, as (identifier, inside `{...}` or a grouping list,
/// followed by `(`).
fn identifiers(expr: &str) -> Vec<(String, bool, bool)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut braces = 0;
    let mut group_depth: Option<usize> = None;
    let mut parens = 0usize;
    let mut last_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
            continue;
        }
        match c {
            '{' => braces += 1,
            '}' => braces -= 1,
            '(' => {
                parens += 1;
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&last_word.as_str())
                {
                    group_depth = Some(parens);
                }
            }
            ')' => {
                if group_depth == Some(parens) {
                    group_depth = None;
                }
                parens -= 1;
            }
            _ => {}
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let call = j < chars.len() && chars[j] == '(';
            out.push((word.clone(), braces > 0 || group_depth.is_some(), call));
            last_word = word;
            continue;
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    out
}

#[test]
fn prometheus_config_is_valid() {
    let root = repo();
    let config = root.join("addons/prometheus/prometheus.yml");
    let (ok, text) = promtool(&["check", "config", config.to_str().unwrap()]);
    assert!(ok, "promtool check config failed:\n{text}");
    let yaml = std::fs::read_to_string(&config).unwrap();
    assert!(yaml.contains("scrape_interval: 5s"));
    assert!(yaml.contains("127.0.0.1:15014"));
    assert!(yaml.contains("/stats/prometheus"));
    assert!(yaml.contains("targets/*.json"));
    // The example file_sd file has file_sd's shape.
    let example = root.join("addons/prometheus/targets/sidecars.json.example");
    let groups: Value = serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    let groups = groups.as_array().expect("a list of target groups");
    assert!(!groups.is_empty());
    for group in groups {
        assert!(!group["targets"].as_array().unwrap().is_empty());
    }
}

#[test]
fn known_metric_names_are_in_the_code() {
    let root = repo();
    for (name, file, needle) in KNOWN {
        if file.is_empty() {
            continue;
        }
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            source.contains(needle),
            "{name}: {needle} not found in {file}"
        );
    }
    let service = std::fs::read_to_string(root.join("control/src/ca/service.rs")).unwrap();
    assert!(service.contains("sub_registry_with_prefix(\"trellis_ca\")"));
    let collector =
        std::fs::read_to_string(root.join("control/src/collector/self_metrics.rs")).unwrap();
    assert!(collector.contains("sub_registry_with_prefix(\"trellis_collector\")"));
}

#[test]
fn grafana_dashboards_are_valid() {
    let files = dashboards::files();
    let names: BTreeSet<String> = files.iter().map(|p| dashboards::name(p)).collect();
    for expected in [
        "istio-mesh-dashboard.json",
        "istio-service-dashboard.json",
        "istio-workload-dashboard.json",
        "trellis-control-plane-dashboard.json",
    ] {
        assert!(names.contains(expected), "missing {expected}");
    }

    let known: BTreeSet<&str> = KNOWN.iter().map(|(n, _, _)| *n).collect();
    let scratch = tempfile::tempdir().unwrap();
    let mut uids = BTreeSet::new();
    for file in &files {
        let name = dashboards::name(file);
        let dash = dashboards::load(file);
        assert!(
            dash["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: title"
        );
        let uid = dash["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: uid"));
        assert!(uid.len() <= 40, "{name}: uid too long for Grafana");
        assert!(uids.insert(uid.to_string()), "{name}: duplicate uid {uid}");
        assert!(
            dash["schemaVersion"].as_u64().unwrap() >= 36,
            "{name}: schemaVersion"
        );
        let variables = dash["templating"]["list"].as_array().unwrap();
        assert!(
            variables
                .iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{name}: no Prometheus datasource variable"
        );
        let panels = dash["panels"].as_array().unwrap();
        assert!(
            (6..=10).contains(&panels.len()),
            "{name}: {} panels",
            panels.len()
        );

        let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
        let mut n = 0;
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap();
            assert!(!title.is_empty(), "{name}: panel without a title");
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{name}: panel id"
            );
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {title}"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title} has no query");
            for target in targets {
                let expr = target["expr"].as_str().unwrap();
                for (word, in_labels, call) in identifiers(expr) {
                    if in_labels {
                        assert!(
                            KNOWN_LABELS.contains(&word.as_str()),
                            "{name}: {title}: unknown label {word} in {expr}"
                        );
                    } else if call || PROMQL_WORDS.contains(&word.as_str()) {
                        assert!(
                            PROMQL_WORDS.contains(&word.as_str()),
                            "{name}: {title}: unexpected function {word} in {expr}"
                        );
                    } else {
                        assert!(
                            ["istio_", "trellis_", "process_"]
                                .iter()
                                .any(|p| word.starts_with(p))
                                || word == "up",
                            "{name}: {title}: metric {word} outside istio_/trellis_/up/process_"
                        );
                        assert!(
                            known.contains(word.as_str()),
                            "{name}: {title}: metric {word} is not one Trellis exposes"
                        );
                    }
                }
                n += 1;
                rules.push_str(&format!(
                    "      - record: panel_{n}\n        expr: {}\n",
                    serde_json::to_string(&dashboards::substitute(expr, VARIABLES)).unwrap()
                ));
            }
        }
        let path = scratch.path().join(format!("{name}.rules.yml"));
        std::fs::write(&path, &rules).unwrap();
        let (ok, text) = promtool(&["check", "rules", path.to_str().unwrap()]);
        assert!(ok, "{name}: promtool check rules failed:\n{text}\n{rules}");
        assert!(text.contains(&format!("{n} rules found")), "{name}: {text}");
    }
}
