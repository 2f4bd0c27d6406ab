//! The `trellis` binary without a control plane: `analyze` on files (each finding one line with
//! file and line; exit 1 only for errors), and the errors of commands that need a server.

use std::path::Path;
use std::process::{Command, Output};

const SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: api
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
";

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [api.example.com]
  http:
  - route:
    - destination: {host: api.example.com}
";

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: api
spec:
  host: api.example.com
  subsets: [{name: v1, labels: {version: v1}}]
";

/// Runs `trellis` with `args`, pointed at a port nothing listens on.
fn trellis(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .current_dir(dir)
        .env("TRELLIS_SERVER", "http://127.0.0.1:1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run trellis")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temporary directory with `files` written into it.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

/// `analyze -f <files...>` in `dir`: (exit code, stdout lines, stderr).
fn analyze(dir: &Path, files: &[&str]) -> (i32, Vec<String>, String) {
    let mut args = vec!["analyze"];
    for f in files {
        args.extend(["-f", f]);
    }
    let out = trellis(dir, &args);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout).lines().map(str::to_string).collect(),
        text(&out.stderr),
    )
}

#[test]
fn good_config_has_no_findings() {
    let dir = dir_with(&[
        ("se.yaml", SE),
        ("routes/vs.yaml", VS),
        ("routes/dr.yml", DR),
    ]);
    let (code, lines, err) = analyze(dir.path(), &["."]);
    assert_eq!((code, lines.len()), (0, 0), "{lines:#?}\n{err}");
    assert!(err.contains("no issues found"), "{err}");
}

#[test]
fn undeclared_destination_host_is_a_warning() {
    let dir = dir_with(&[("vs.yaml", VS)]);
    let (code, lines, err) = analyze(dir.path(), &["vs.yaml"]);
    assert_eq!(code, 0, "warnings alone exit 0: {lines:#?}");
    assert_eq!(
        lines,
        [
            "vs.yaml:9:21: warning: VirtualService default/api: spec.http[0].route[0].destination.host: host `api.example.com` is not declared by any ServiceEntry (and is not a `*.svc.cluster.local` service); it has no endpoints, so requests routed here get 503"
        ]
    );
    assert_eq!(err.trim(), "1 warning");
}

#[test]
fn duplicate_virtual_services_and_destination_rules() {
    let vs2 = VS.replace("name: api", "name: zz-api");
    let dr2 = DR.replace("name: api", "name: zz-api");
    let dir = dir_with(&[
        ("a.yaml", &format!("{SE}---\n{VS}---\n{DR}")),
        ("b.yaml", &format!("{vs2}---\n{dr2}")),
    ]);
    let (code, lines, _) = analyze(dir.path(), &["a.yaml", "b.yaml"]);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("b.yaml:6:11: warning: VirtualService default/zz-api: spec.hosts[0]: more than one VirtualService for host `api.example.com` (gateway `mesh`): VirtualService default/api at a.yaml:15 has it too"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("b.yaml:16:3: warning: DestinationRule default/zz-api: spec.host: more than one DestinationRule for host `api.example.com`: DestinationRule default/api at a.yaml:25 has it too"),
        "{}",
        lines[1]
    );
}

#[test]
fn destination_rule_for_an_unknown_host_and_missing_subset() {
    let vs = VS.replace(
        "destination: {host: api.example.com}",
        "destination: {host: api.example.com, subset: v2}",
    );
    let dr = DR.replace("host: api.example.com", "host: old.example.com");
    let dir = dir_with(&[("all.yaml", &format!("{SE}---\n{vs}---\n{dr}"))]);
    let (code, lines, err) = analyze(dir.path(), &["all.yaml"]);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("all.yaml:18:44: warning: VirtualService default/api: spec.http[0].route[0].destination.subset: no DestinationRule defines subset `v2`"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("all.yaml:25:3: warning: DestinationRule default/api: spec.host: host `old.example.com` is not declared by any ServiceEntry"),
        "{}",
        lines[1]
    );
    assert_eq!(err.trim(), "2 warnings");
}

#[test]
fn errors_exit_1_with_file_and_line() {
    let weights = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: split
spec:
  hosts: [api.example.com]
  http:
  - route:
    - destination: {host: api.example.com}
      weight: 150
    - destination: {host: api.example.com}
      weight: 30
";
    let dir = dir_with(&[
        ("se.yaml", SE),
        ("split.yaml", weights),
        ("typo.json", "{\"kind\": "),
    ]);
    let (code, lines, err) = analyze(dir.path(), &["se.yaml", "split.yaml", "typo.json"]);
    assert_eq!(code, 1, "{lines:#?}");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(
        lines[0],
        "split.yaml:8:5: warning: VirtualService default/split: spec.http[0].route: destination weights add up to 180, not 100; traffic is split in proportion"
    );
    assert_eq!(
        lines[1],
        "split.yaml:10:7: error: VirtualService default/split: spec.http[0].route[0].weight: weight 150 must be within 0..=100"
    );
    assert!(lines[2].starts_with("typo.json:"), "{}", lines[2]);
    assert!(
        lines[2].contains("error: YAML syntax error"),
        "{}",
        lines[2]
    );
    assert_eq!(err.trim(), "2 errors, 1 warning");
}

#[test]
fn analyze_reads_stdin_and_reports_missing_files() {
    use std::io::Write;
    let dir = dir_with(&[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["analyze", "-f", "-", "-f", "missing.yaml"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{SE}---\n{VS}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "missing.yaml: error: no such file or directory\n"
    );
}

#[test]
fn apply_without_a_server_says_how_to_reach_one() {
    let dir = dir_with(&[("se.yaml", SE)]);
    let out = trellis(dir.path(), &["apply", "-f", "se.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: cannot reach the control plane at http://127.0.0.1:1 (is `trellis control` running? set --server or TRELLIS_SERVER): connection refused"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn apply_validates_locally_first() {
    let dir = dir_with(&[(
        "bad.yaml",
        &VS.replace("hosts: [api.example.com]", "hosts: []"),
    )]);
    let out = trellis(dir.path(), &["apply", "-f", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: 1 error in the input; nothing was sent\nbad.yaml:6:3: VirtualService default/api: spec.hosts: at least one host is required"),
        "{err}"
    );
    assert!(!err.contains("cannot reach"), "{err}");
}

#[test]
fn get_with_an_unknown_kind_lists_the_valid_ones() {
    let dir = dir_with(&[]);
    let out = trellis(dir.path(), &["get", "badkind"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: unknown resource type \"badkind\"; valid kinds: virtualservices (vs), destinationrules (dr), serviceentries (se), gateways (gw), sidecars (sc), peerauthentications (pa), authorizationpolicies (ap), localratelimits (lrl)"
    );
}

#[test]
fn reading_commands_without_a_server_fail_cleanly() {
    let dir = dir_with(&[]);
    for args in [
        &["get", "vs"][..],
        &["history"],
        &["proxy-status"],
        &["diff", "1", "2"],
        &["rollback", "1"],
        &["delete", "vs", "reviews"],
    ] {
        let out = trellis(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr)
                .starts_with("error: cannot reach the control plane at http://127.0.0.1:1"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = trellis(dir.path(), &["--server", "https://cp:1", "history"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("use http://"),
        "{}",
        text(&out.stderr)
    );
}

/// Every `samples/config/*.yaml` analyzes clean: the routes together with
/// `destination-rule-all.yaml` (so their subsets exist), the DestinationRule files on their own
/// (the circuit-breaker one replaces the reviews rule of `destination-rule-all.yaml` by name, so
/// the two are alternatives, not one config). Each file starts with a comment saying how to apply it
/// and is listed in the directory's README.
#[test]
fn sample_configs_analyze_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = root.join("samples/config");
    let readme =
        std::fs::read_to_string(config.join("README.md")).expect("samples/config/README.md");
    let mut names: Vec<String> = std::fs::read_dir(&config)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        let path = format!("samples/config/{name}");
        let content = std::fs::read_to_string(root.join(&path)).unwrap();
        let first = content.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("# ") && first.ends_with(&format!("trellis apply -f {path}")),
            "{path}: first line must say what it does and how to apply it: {first}"
        );
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not listed in samples/config/README.md"
        );
        let mut files = vec![path.as_str()];
        if !name.starts_with("destination-rule-") {
            files.insert(0, "samples/config/destination-rule-all.yaml");
        }
        let (code, lines, err) = analyze(&root, &files);
        assert_eq!((code, lines.len()), (0, 0), "{path}: {lines:#?}\n{err}");
        assert!(err.contains("no issues found"), "{path}: {err}");
    }
}
