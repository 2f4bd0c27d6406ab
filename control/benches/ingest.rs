//! OTLP span ingest with storage on: `trellis control` (the real binary, its own process, SQLite
//! telemetry storage in a temporary directory) receives OTLP/gRPC span batches from concurrent
//! clients for a fixed time. Reports spans/s accepted and stored, and stored spans per second of
//! the collector process's CPU time (utime + stime from /proc), i.e. spans/s per core.
//!
//! A plain program (`harness = false`): `cargo bench -p trellis-control --bench ingest`, or
//! `bash bench/collector.sh`. Knobs (environment): `BENCH_SECONDS` (20), `BENCH_CLIENTS` (4),
//! `BENCH_BATCH` spans per request (512), `BENCH_OUT` (bench/results/collector-latest.md),
//! `TRELLIS_BIN` (default: the trellis binary cargo built beside this bench), `BENCH_COMMAND`,
//! `BENCH_COMMIT` (shown in the report). Exits non-zero only on functional errors (the collector
//! does not start, stores nothing, or loses accepted spans); slow numbers are reported.

#[path = "convergence/measure.rs"]
#[allow(dead_code)]
mod measure;

use bytes::Bytes;
use measure::{clock_ticks, mib, read_proc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use testkit::HttpClient;
use testkit::process::ProxyProcess;

/// The published guide figure for the OpenTelemetry Collector, for comparison.
const OTEL_COLLECTOR_GUIDE: f64 = 15_000.0;
const TARGET_PER_CORE: f64 = 50_000.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

/// A batch of `n` spans shaped like a Trellis proxy's: server/client spans with the HTTP
/// semantic-convention attributes and Istio's, from one proxy's resource; fresh random ids.
fn batch(n: usize, client: usize, now_ns: u64) -> ExportTraceServiceRequest {
    let service = format!("reviews-{}.default", client % 4);
    let spans = (0..n)
        .map(|i| {
            let start = now_ns - 1_000_000_000 + (i as u64) * 1000;
            let status = if i % 50 == 0 { 503 } else { 200 };
            Span {
                trace_id: fastrand::u128(..).to_be_bytes().to_vec(),
                span_id: fastrand::u64(1..).to_be_bytes().to_vec(),
                parent_span_id: if i % 2 == 0 {
                    fastrand::u64(1..).to_be_bytes().to_vec()
                } else {
                    Vec::new()
                },
                name: format!("reviews.default.svc.cluster.local:9080/reviews/{}", i % 20),
                kind: if i % 2 == 0 { 2 } else { 3 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_500_000 + (i as u64 % 100) * 10_000,
                attributes: vec![
                    s("http.request.method", "GET"),
                    s("url.path", &format!("/reviews/{}", i % 20)),
                    s("url.scheme", "http"),
                    s("server.address", "reviews.default.svc.cluster.local"),
                    kv(
                        "http.response.status_code",
                        any_value::Value::IntValue(status),
                    ),
                    s("network.protocol.version", "1.1"),
                    s("user_agent.original", "curl/8.5.0"),
                    s(
                        "upstream_cluster",
                        "outbound|9080|v2|reviews.default.svc.cluster.local",
                    ),
                    s("response_flags", "-"),
                    s("istio.canonical_service", "reviews"),
                    s("istio.namespace", "default"),
                ],
                status: (status >= 500).then_some(Status {
                    code: 2,
                    message: String::new(),
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", &service),
                    s("service.namespace", "default"),
                    s("service.version", "v2"),
                    s("k8s.namespace.name", "default"),
                    s("trellis.proxy", &format!("{:016x}", client)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "trellis-proxy".into(),
                    version: "0.1.0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    requests: AtomicU64,
}

/// One client: its own connection, requests back to back until `until`.
async fn client(url: String, id: usize, batch_size: usize, until: Instant, tally: Arc<Tally>) {
    let channel = match tonic::transport::Endpoint::from_shared(url)
        .expect("valid URL")
        .connect()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("client {id}: cannot connect: {e}");
            tally.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    while Instant::now() < until {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let body = Bytes::from(batch(batch_size, id, now_ns).encode_to_vec());
        if grpc.ready().await.is_err() {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        tally.requests.fetch_add(1, Ordering::Relaxed);
        match grpc
            .unary(
                tonic::Request::new(body),
                path.clone(),
                testkit::grpc::RawCodec,
            )
            .await
        {
            Ok(_) => {
                tally
                    .accepted
                    .fetch_add(batch_size as u64, Ordering::Relaxed);
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tally
                    .refused
                    .fetch_add(batch_size as u64, Ordering::Relaxed);
                // As an OTLP exporter would: back off before retrying.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => {
                eprintln!("client {id}: export failed: {status}");
                tally.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A series' value from `/metrics` text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(metrics: std::net::SocketAddr) -> String {
    HttpClient::http1(metrics)
        .get("metrics", "/metrics", &[])
        .await
        .map(|r| r.body)
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    let seconds: u64 = env_or("BENCH_SECONDS", 20);
    let clients: usize = env_or("BENCH_CLIENTS", 4);
    let batch_size: usize = env_or("BENCH_BATCH", 512);
    let bin = std::env::var("TRELLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_trellis")));
    let out = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results/collector-latest.md")
        });

    let dir = tempfile::tempdir().expect("temporary directory");
    let addrs = testkit::free_addrs(6);
    let args: Vec<String> = [
        "control",
        "--console",
        &addrs[0].to_string(),
        "--push",
        &addrs[1].to_string(),
        "--otlp-grpc",
        &addrs[2].to_string(),
        "--otlp-http",
        &addrs[3].to_string(),
        "--jaeger",
        &addrs[4].to_string(),
        "--metrics",
        &addrs[5].to_string(),
        "--data-dir",
        &dir.path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut control = match ProxyProcess::spawn(&bin, &args, &[("RUST_LOG", "warn")]) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start {}: {e}", bin.display());
            return ExitCode::FAILURE;
        }
    };
    if let Ok(pidfile) = std::env::var("BENCH_PIDFILE") {
        let _ = std::fs::write(pidfile, control.pid().to_string());
    }
    let metrics_addr = addrs[5];
    let ready = testkit::client::wait_until(Duration::from_secs(20), || async move {
        !scrape(metrics_addr).await.is_empty()
    })
    .await;
    if !ready {
        eprintln!(
            "the collector did not start:\n{}",
            control.stderr_lines().join("\n")
        );
        control.kill();
        return ExitCode::FAILURE;
    }
    let pid = control.pid().to_string();
    let ticks = clock_ticks();

    let tally = Arc::new(Tally::default());
    let url = format!("http://{}", addrs[2]);
    let before = read_proc(&pid).unwrap_or_default();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(url.clone(), i, batch_size, until, tally.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let sending = started.elapsed();
    // Let the writer drain what was accepted; the collector's CPU time includes the drain.
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stored = 0.0;
    loop {
        let text = scrape(metrics_addr).await;
        stored = metric(
            &text,
            "trellis_collector_stored_rows_total{table=\"spans\"}",
        )
        .max(stored);
        let queued = metric(&text, "trellis_collector_queued_items");
        if (stored >= accepted as f64 && queued == 0.0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = started.elapsed();
    let after = read_proc(&pid).unwrap_or_default();
    let text = scrape(metrics_addr).await;
    let write_failed = metric(
        &text,
        "trellis_collector_write_failed_rows_total{table=\"spans\"}",
    );
    let db_bytes: u64 = std::fs::read_dir(dir.path())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("telemetry.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    control.kill();

    let cpu_s = (after.ticks().saturating_sub(before.ticks())) as f64 / ticks;
    let refused = tally.refused.load(Ordering::Relaxed);
    let per_core = if cpu_s > 0.0 { stored / cpu_s } else { 0.0 };
    let mut report = String::new();
    let _ = writeln!(report, "# Collector ingest benchmark\n");
    let _ = writeln!(
        report,
        "- command: `{}`",
        std::env::var("BENCH_COMMAND")
            .unwrap_or_else(|_| "cargo bench -p trellis-control --bench ingest".into())
    );
    if let Ok(commit) = std::env::var("BENCH_COMMIT") {
        let _ = writeln!(report, "- commit: {commit}");
    }
    let _ = writeln!(
        report,
        "- machine: {} cores; the clients run on the same machine (they share the cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(
        report,
        "- load: {clients} OTLP/gRPC clients, {batch_size} spans per request (proxy-shaped: 11 \
         attributes, 5 resource attributes), back to back for {seconds} s; storage SQLite \
         (`telemetry.db`, WAL, synchronous=NORMAL)\n"
    );
    let _ = writeln!(report, "| measure | value |\n|---|---|");
    let rows = [
        ("spans accepted", format!("{accepted}")),
        (
            "spans refused (queue full, retryable)",
            format!("{refused}"),
        ),
        ("spans stored", format!("{stored:.0}")),
        ("spans lost in failed writes", format!("{write_failed:.0}")),
        (
            "accepted spans/s (sending time)",
            format!("{:.0}", accepted as f64 / sending.as_secs_f64()),
        ),
        (
            "stored spans/s (until drained)",
            format!("{:.0}", stored / total.as_secs_f64()),
        ),
        ("collector CPU time", format!("{cpu_s:.2} s")),
        (
            "collector CPU use",
            format!("{:.2} cores", cpu_s / total.as_secs_f64()),
        ),
        (
            "**stored spans/s per core** (stored / CPU s)",
            format!("**{per_core:.0}**"),
        ),
        (
            "collector peak RSS",
            format!("{:.0} MiB", mib(after.hwm_kib)),
        ),
        (
            "database size",
            format!(
                "{:.0} MiB ({:.0} bytes/span)",
                db_bytes as f64 / 1048576.0,
                db_bytes as f64 / stored.max(1.0)
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(report, "| {name} | {value} |");
    }
    let _ = writeln!(
        report,
        "\nTarget: at least {TARGET_PER_CORE:.0} stored spans/s per core ({}); the OpenTelemetry \
         Collector's published sizing guide is about {OTEL_COLLECTOR_GUIDE:.0} spans/s per core.",
        if per_core >= TARGET_PER_CORE {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("{report}");
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(&out, &report) {
        eprintln!("cannot write {}: {e}", out.display());
    }
    if stored == 0.0 || stored + write_failed < accepted as f64 {
        eprintln!("functional error: {accepted} spans accepted but {stored} stored");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
