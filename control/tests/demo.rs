//! `trellis demo` end to end, as a user runs it: the release binary starts the whole mesh on free
//! ports; the graph shows bookinfo's calls with mutual TLS; the 80/20 sample applied through the
//! CLI shows in the collector's numbers; a product page trace joins four services; a real
//! Prometheus scraping the control plane (with `addons/prometheus/prometheus.yml`'s jobs) answers
//! every Grafana dashboard panel's query with data; Ctrl-C stops every process the demo started.

mod common;

use common::{dashboards, repo};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::client::HttpClient;
use testkit::process::ProxyProcess;
use testkit::prometheus::Prometheus;

/// The longest the demo may take to print its banner.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Product page views per second from the demo's traffic generator.
const RATE: u32 = 20;

/// How often the sidecars push their metrics to the collector (`trellis proxy`'s default, which
/// the demo keeps).
const METRICS_PUSH: Duration = Duration::from_secs(5);

/// How long the 80/20 split is measured.
const SPLIT_WINDOW: Duration = Duration::from_secs(20);

/// Ports the demo takes from `--ports-from`.
const PORT_BLOCK: u16 = 35;

/// What the demo starts: the control plane, and 7 applications (bookinfo's six workloads and the
/// ingress) each with its sidecar.
const PROCESSES: usize = 15;

/// The dashboards' variables for this mesh. The workload is productpage-v1: it both receives
/// (from the ingress) and sends (to details and reviews), so every panel of the workload dashboard
/// is about traffic that exists. `$__rate_interval` is Grafana's: four scrape intervals at least.
const VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "15s"),
    ("$service", "reviews.default.svc.cluster.local"),
    ("$workload", "productpage-v1"),
    ("$namespace", "default"),
    ("$job", "trellis-control-plane"),
];

/// `cargo build --release --bin trellis` into this test's target directory (a no-op when up to
/// date); the binary.
fn release_trellis() -> PathBuf {
    // The test runs as TARGET/debug/deps/demo-HASH.
    let exe = std::env::current_exe().expect("the test's executable");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test runs from TARGET/PROFILE/deps/")
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let mut build = Command::new(&cargo);
    // Without what `cargo test` sets for this process (CARGO_PKG_*, CARGO_MANIFEST_DIR, OUT_DIR,
    // the library path, ...): build scripts that read them (ring's reads OUT_DIR) would see other
    // values than in a user's `cargo build --release`, and each would rebuild what the other built.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if (key_text.starts_with("CARGO_") && key_text != "CARGO_HOME")
            || key_text == "LD_LIBRARY_PATH"
            || key_text == "OUT_DIR"
        {
            build.env_remove(&key);
        }
    }
    let out = build
        .args(["build", "--release", "--bin", "trellis"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    assert!(
        out.status.success(),
        "cargo build --release --bin trellis failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target.join("release/trellis");
    eprintln!(
        "release build of {} took {:.1?}",
        bin.display(),
        started.elapsed()
    );
    assert!(
        bin.is_file(),
        "{} is missing after the build",
        bin.display()
    );
    bin
}

/// A base port below the kernel's ephemeral range (where no free-port picking of other tests
/// lands) with `PORT_BLOCK` free ports from it.
fn free_port_block() -> u16 {
    for _ in 0..200 {
        let base = fastrand::u16(22_000..32_000);
        let held: Result<Vec<TcpListener>, _> = (base..base + PORT_BLOCK)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if held.is_ok() {
            return base;
        }
    }
    panic!("no block of {PORT_BLOCK} free loopback ports found between 22000 and 32000");
}

/// Every descendant of `pid` (children, theirs, ...), from `/proc/PID/task/*/children`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&child) {
                    out.push(child);
                    queue.push(child);
                }
            }
        }
    }
    out
}

/// A process's command line, arguments joined by spaces; `None` when it is gone.
fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// A process's state letter from `/proc/PID/stat` (`Z`: a zombie); `None` when it is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE ...`: COMM may hold spaces and parentheses, so after the last `)`.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The last `n` lines of every log in `dir`.
fn logs_tail(dir: &Path, n: usize) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return format!("(no logs in {})", dir.display());
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    let mut out = String::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!(
            "--- {} (last {n} lines) ---\n{}\n",
            file.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        ));
    }
    out
}

/// A running `trellis demo`. Dropped while the demo runs (a failed test), it SIGKILLs every
/// process the demo started, then the demo.
struct Demo {
    process: ProxyProcess,
    data: tempfile::TempDir,
    trellis: PathBuf,
    console: SocketAddr,
    metrics: SocketAddr,
    jaeger: SocketAddr,
}

impl Demo {
    /// Starts the demo on free ports and waits for its banner.
    async fn start(trellis: PathBuf) -> Demo {
        let data = tempfile::Builder::new()
            .prefix("trellis-demo-test-")
            .tempdir()
            .expect("a temporary data dir");
        let [
            console,
            push,
            otlp_grpc,
            otlp_http,
            jaeger,
            metrics,
            ingress,
        ] = testkit::free_addrs(7)[..]
        else {
            unreachable!()
        };
        let ports_from = free_port_block();
        let mut args = vec![
            "demo".to_string(),
            "--data-dir".into(),
            data.path().display().to_string(),
            "--rate".into(),
            RATE.to_string(),
            "--ports-from".into(),
            ports_from.to_string(),
        ];
        for (flag, addr) in [
            ("--console", console),
            ("--push", push),
            ("--otlp-grpc", otlp_grpc),
            ("--otlp-http", otlp_http),
            ("--jaeger", jaeger),
            ("--metrics", metrics),
            ("--ingress", ingress),
        ] {
            args.extend([flag.to_string(), addr.to_string()]);
        }
        let process = ProxyProcess::spawn(&trellis, &args, &[]).expect("trellis demo starts");
        let mut demo = Demo {
            process,
            data,
            trellis,
            console,
            metrics,
            jaeger,
        };
        demo.wait_banner().await;
        demo
    }

    fn logs(&self) -> PathBuf {
        self.data.path().join("logs")
    }

    /// What the demo printed and the end of its children's logs, for a failure message.
    fn output(&self) -> String {
        format!(
            "--- demo stdout ---\n{}\n--- demo stderr ---\n{}\n{}",
            self.process.stdout_lines().join("\n"),
            self.process.stderr_lines().join("\n"),
            logs_tail(&self.logs(), 20)
        )
    }

    async fn wait_banner(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let up = self
                .process
                .wait_for_stdout(
                    |l| l.starts_with("Trellis demo is up"),
                    Duration::from_millis(200),
                )
                .await;
            if let Some(line) = up {
                eprintln!("{line}");
                return;
            }
            if let Some(status) = self.process.try_status() {
                let _ = self.process.wait_exit(Duration::from_secs(2)).await;
                panic!(
                    "trellis demo exited ({status}) before it was up\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "trellis demo was not up within {READY_TIMEOUT:?}\n{}",
                self.output()
            );
        }
    }

    /// `GET http://ADDR/PATH` as JSON (status 200).
    async fn get_json(&self, addr: SocketAddr, path: &str) -> Value {
        let r = HttpClient::http1(addr)
            .with_timeout(Duration::from_secs(10))
            .get(&addr.to_string(), path, &[])
            .await
            .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
        assert_eq!(r.status, 200, "GET http://{addr}{path}: {}", r.body);
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}: {}", r.body))
    }

    /// `trellis --server http://CONSOLE ARGS` with the release binary; its stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.trellis)
            .arg("--server")
            .arg(format!("http://{}", self.console))
            .args(args)
            .output()
            .expect("trellis runs");
        assert!(
            out.status.success(),
            "trellis {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `istio_requests_total` on the control plane's `/metrics` (Istio's series summed over every
    /// proxy), as the reviews workloads report what they received: workload -> requests.
    async fn reviews_received(&self) -> BTreeMap<String, f64> {
        let r = HttpClient::http1(self.metrics)
            .with_timeout(Duration::from_secs(10))
            .get("metrics", "/metrics", &[])
            .await
            .expect("GET /metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        let samples = testkit::prometheus::parse_exposition(&r.body).expect("/metrics parses");
        let mut by_workload = BTreeMap::new();
        for s in samples {
            if s.label("__name__") == Some("istio_requests_total")
                && s.label("reporter") == Some("destination")
                && let Some(w) = s.label("destination_workload")
                && w.starts_with("reviews-")
            {
                *by_workload.entry(w.to_string()).or_insert(0.0) += s.value;
            }
        }
        by_workload
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.process.try_status().is_none() {
            // Children run in their own process groups: each gets its own SIGKILL.
            for pid in descendants(self.process.pid()) {
                // SAFETY: kill(2) on a process the demo (our child) started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", logs_tail(&self.logs(), 30));
        }
        // Then `process` drops: SIGTERM to the demo, SIGKILL after 3 s.
    }
}

/// The edge `source -> target` of a graph answer.
fn edge<'g>(graph: &'g Value, source: &str, target: &str) -> Option<&'g Value> {
    graph["edges"]
        .as_array()?
        .iter()
        .find(|e| e["source"] == source && e["target"] == target)
}

/// A real Prometheus with `addons/prometheus/prometheus.yml`'s jobs, scraping the demo's control
/// plane every second.
async fn start_prometheus(metrics: SocketAddr) -> Prometheus {
    let shipped = std::fs::read_to_string(repo().join("addons/prometheus/prometheus.yml"))
        .expect("addons/prometheus/prometheus.yml");
    let mut config = shipped.clone();
    for (from, to) in [
        ("127.0.0.1:15014", metrics.to_string()),
        (
            "scrape_interval: 5s",
            "scrape_interval: 1s\n  scrape_timeout: 1s".to_string(),
        ),
        ("evaluation_interval: 5s", "evaluation_interval: 1s".into()),
    ] {
        assert!(shipped.contains(from), "prometheus.yml has no {from:?}");
        config = config.replace(from, &to);
    }
    Prometheus::start_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("prometheus did not start: {e}"))
}

/// Until the control plane has been scraped for `window` (one sample a second).
async fn wait_scraped(prometheus: &Prometheus, window: Duration) {
    let secs = window.as_secs();
    let promql = format!("count_over_time(up{{job=\"trellis-control-plane\"}}[{secs}s])");
    let deadline = Instant::now() + window + Duration::from_secs(30);
    loop {
        let data = prometheus
            .query_data(&promql)
            .await
            .map_err(|e| e.to_string());
        let count = data
            .as_ref()
            .ok()
            .and_then(|d| d["result"][0]["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let up = prometheus
            .query_data("up{job=\"trellis-control-plane\"}")
            .await
            .map_err(|e| e.to_string());
        let is_up = up
            .as_ref()
            .is_ok_and(|d| d["result"][0]["value"][1].as_str() == Some("1"));
        if is_up && count >= (secs - 2) as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape the control plane for {window:?}: {promql} = {data:?}, up = {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_bookinfo_observed_and_stops_every_process() {
    let trellis = release_trellis();
    let started = Instant::now();
    let demo = Demo::start(trellis).await;
    eprintln!("demo up after {:.1?}", started.elapsed());

    // Scrapes accumulate while the rest is checked.
    let prometheus = if testkit::prometheus::available("prometheus", "the dashboards' queries") {
        Some(start_prometheus(demo.metrics).await)
    } else {
        None
    };

    // The graph: every bookinfo call, workload -> service -> workload, with mutual TLS.
    let hops = [
        ("ingress-v1", "productpage", "productpage-v1"),
        ("productpage-v1", "details", "details-v1"),
        ("productpage-v1", "reviews", "reviews-v1"),
        ("productpage-v1", "reviews", "reviews-v2"),
        ("productpage-v1", "reviews", "reviews-v3"),
        ("reviews-v2", "ratings", "ratings-v1"),
        ("reviews-v3", "ratings", "ratings-v1"),
    ];
    // mTLS is what the destinations report, the traffic what the sources report; the two push
    // every 5 s on their own clocks, so in a window still filling up one runs ahead of the other.
    // Wait until the share has settled near all (the edge is all mutual TLS: the demo has no
    // plaintext path).
    let path = "/api/v1/graph?graphType=workload&namespaces=default&duration=60s";
    let pairs: Vec<(String, String)> = hops
        .iter()
        .flat_map(|(from, service, to)| {
            [
                (
                    format!("workload:default/{from}"),
                    format!("service:default/{service}"),
                ),
                (
                    format!("service:default/{service}"),
                    format!("workload:default/{to}"),
                ),
            ]
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let graph = demo.get_json(demo.console, path).await;
        let missing: Vec<String> = pairs
            .iter()
            .filter(|(s, t)| edge(&graph, s, t).is_none())
            .map(|(s, t)| format!("{s} -> {t}"))
            .collect();
        let not_mtls: Vec<String> = pairs
            .iter()
            .filter_map(|(s, t)| {
                let mtls = edge(&graph, s, t)?["mtlsPercent"].as_f64().unwrap_or(0.0);
                (mtls < 90.0).then(|| format!("{s} -> {t}: mTLS {mtls:.1} %"))
            })
            .collect();
        if missing.is_empty() && not_mtls.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the graph lacks {missing:?}, or shows edges not carried by mutual TLS: {not_mtls:?}\n{graph:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 80% of reviews to v1, 20% to v2, applied through the CLI.
    let configs = repo().join("samples/config");
    let mut revision = 0;
    for file in [
        "destination-rule-all.yaml",
        "virtual-service-reviews-80-20.yaml",
    ] {
        let out = demo.cli(&["apply", "-f", configs.join(file).to_str().unwrap()]);
        let rev = out
            .lines()
            .find_map(|l| l.strip_prefix("revision "))
            .and_then(|r| r.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("trellis apply -f {file} printed no revision:\n{out}"));
        revision = revision.max(rev);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let proxies = demo.get_json(demo.console, "/api/v1/proxies").await["proxies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let synced = proxies.len() == 7
            && proxies.iter().all(|p| {
                p["status"] == "SYNCED"
                    && p["connected"] == true
                    && p["revision_acked"].as_u64() >= Some(revision)
            });
        if synced {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sidecars did not all take revision {revision}: {proxies:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Requests routed before the split reach the collector with the sidecars' next metrics push.
    tokio::time::sleep(METRICS_PUSH + Duration::from_secs(1)).await;
    // The collector's own numbers: istio_requests_total on its /metrics, the requests each
    // reviews version received (reporter="destination"), over the window.
    let before = demo.reviews_received().await;
    tokio::time::sleep(SPLIT_WINDOW).await;
    let after = demo.reviews_received().await;
    let delta =
        |w: &str| after.get(w).copied().unwrap_or(0.0) - before.get(w).copied().unwrap_or(0.0);
    let (v1, v2, v3) = (
        delta("reviews-v1"),
        delta("reviews-v2"),
        delta("reviews-v3"),
    );
    let total = v1 + v2 + v3;
    let expected = f64::from(RATE) * SPLIT_WINDOW.as_secs_f64();
    assert!(
        total >= expected / 2.0,
        "only {total} reviews requests in {SPLIT_WINDOW:?} at {RATE} views/s: before {before:?}, after {after:?}"
    );
    let (share_v1, share_v2) = (v1 / total, v2 / total);
    eprintln!(
        "80/20 split measured: v1 {v1} ({:.1}%), v2 {v2} ({:.1}%), v3 {v3} of {total}",
        share_v1 * 100.0,
        share_v2 * 100.0
    );
    assert!(
        (0.70..=0.90).contains(&share_v1) && (0.10..=0.30).contains(&share_v2) && v3 <= 3.0,
        "the 80/20 split measured v1 {v1}, v2 {v2}, v3 {v3}: before {before:?}, after {after:?}"
    );

    // A product page trace with spans from the four bookinfo services.
    let wanted = [
        "productpage.default",
        "details.default",
        "reviews.default",
        "ratings.default",
    ];
    let query = "/api/traces?service=productpage.default&limit=50&lookback=5m";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = demo.get_json(demo.jaeger, query).await;
        let traces = body["data"].as_array().cloned().unwrap_or_default();
        let services_of = |t: &Value| -> Vec<String> {
            let processes = &t["processes"];
            let mut names: Vec<String> = t["spans"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| processes[s["processID"].as_str()?]["serviceName"].as_str())
                .map(str::to_string)
                .collect();
            names.sort();
            names.dedup();
            names
        };
        let whole = traces.iter().find(|t| {
            let names = services_of(t);
            wanted.iter().all(|w| names.iter().any(|n| n == w))
        });
        if let Some(t) = whole {
            eprintln!(
                "trace {} has {} spans from {:?}",
                t["traceID"],
                t["spans"].as_array().map_or(0, Vec::len),
                services_of(t)
            );
            break;
        }
        let seen: Vec<Vec<String>> = traces.iter().take(5).map(services_of).collect();
        assert!(
            Instant::now() < deadline,
            "no trace of {query} has spans from all of {wanted:?}; services of the first traces: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every dashboard panel's query answers with data from a real Prometheus.
    if let Some(prometheus) = &prometheus {
        wait_scraped(prometheus, Duration::from_secs(20)).await;
        let mut failures = Vec::new();
        let queries = dashboards::queries();
        for q in &queries {
            let promql = dashboards::substitute(&q.expr, VARIABLES);
            let problem = match prometheus.query_data(&promql).await {
                Err(answer) => Some(format!("error: {answer}")),
                Ok(data) => {
                    let result = data["result"].as_array().cloned().unwrap_or_default();
                    let nan = result.iter().any(|r| r["value"][1] == "NaN");
                    if result.is_empty() {
                        Some(format!("no data: {data}"))
                    } else if nan {
                        Some(format!("NaN: {data}"))
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                failures.push(format!(
                    "{} / {:?}:\n  {promql}\n  {problem}",
                    q.dashboard, q.panel
                ));
            }
        }
        eprintln!(
            "{} dashboard queries run, {} without data",
            queries.len(),
            failures.len()
        );
        assert!(
            failures.is_empty(),
            "{} of {} dashboard queries return no data:\n{}",
            failures.len(),
            queries.len(),
            failures.join("\n")
        );
    }
    drop(prometheus);

    // Ctrl-C stops every process the demo started.
    let mut demo = demo;
    let children = descendants(demo.process.pid());
    let commands: Vec<(u32, String)> = children
        .iter()
        .map(|&pid| (pid, cmdline(pid).unwrap_or_default()))
        .collect();
    assert_eq!(
        children.len(),
        PROCESSES,
        "the demo runs {} processes: {commands:#?}",
        children.len()
    );
    demo.process
        .send_signal(libc::SIGINT)
        .expect("SIGINT to the demo");
    let status = demo.process.wait_exit(Duration::from_secs(30)).await;
    let stdout = demo.process.stdout_lines().join("\n");
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo did not exit cleanly within 30 s of SIGINT: {status:?}\n{}",
        demo.output()
    );
    assert!(
        stdout.contains(&format!("Stopped: all {PROCESSES} processes exited.")),
        "{}",
        demo.output()
    );
    for (pid, command) in &commands {
        // Gone, or (a recycled pid) some other process.
        let left = state(*pid).is_some() && cmdline(*pid).as_deref() == Some(command.as_str());
        assert!(
            !left,
            "process {pid} ({command}) is still there (state {:?}) after the demo stopped",
            state(*pid)
        );
    }
    let data_dir = demo.data.path().display().to_string();
    let mut running = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
            && let Some(command) = cmdline(pid)
            && command.contains(&data_dir)
        {
            running.push(format!("{pid} [{:?}]: {command}", state(pid)));
        }
    }
    assert!(
        running.is_empty(),
        "processes on the demo's data dir are still running:\n{}",
        running.join("\n")
    );
    eprintln!(
        "whole test (after the build) took {:.1?}",
        started.elapsed()
    );
}
