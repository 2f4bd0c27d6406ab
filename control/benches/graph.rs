//! The live graph at scale: 1,000 nodes and 5,000 edges in the workload graph (700 workloads,
//! 300 services in front of two versions each; every workload calls 6–8 services), fed through
//! `observe_metrics` by 700 simulated proxies pushing Istio's cumulative metrics over OTLP
//! (reporter=source and reporter=destination, as real proxies do). Reports ingest time per push,
//! the time to build the graph API's JSON answer per graph type (p50/p99), the `/metrics`
//! scrape, and memory with an hour of history in memory.
//!
//! A plain program (`harness = false`): `cargo bench -p trellis-control --bench graph`. Knobs:
//! `BENCH_QUERIES` (answers timed per graph type, default 30), `BENCH_OUT` (report path, default
//! `bench/results/graph-latest.md`). Time runs on the graph's manual clock, so the hour of traffic
//! takes as long as its pushes take to fold in, not an hour.

#[path = "../tests/graph/sim.rs"]
mod sim;

use sim::{Call, ProxySim, W};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use trellis_control::collector::graph::{Clock, GraphQuery, GraphType, LiveGraph, ViewOptions};

const NAMESPACES: usize = 10;
const SERVICES: usize = 300;
const CLIENTS: usize = 100;
const START_MS: i64 = 1_800_000_000_000;

/// Names live for the whole run (the simulator takes `&'static str`).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

struct Mesh {
    proxies: Vec<ProxySim>,
    /// Per proxy: its outbound calls and, per call, the destination's proxy index.
    calls: Vec<Vec<(Call, usize)>>,
}

fn build_mesh() -> Mesh {
    let mut workloads: Vec<W> = Vec::new();
    let mut services: Vec<(String, String)> = Vec::new();
    for i in 0..SERVICES {
        let ns = leak(format!("ns{}", i % NAMESPACES));
        let app = leak(format!("svc{i}"));
        services.push((ns.to_string(), app.to_string()));
        for v in ["v1", "v2"] {
            workloads.push(sim::w(ns, leak(format!("{app}-{v}")), app, v));
        }
    }
    for j in 0..CLIENTS {
        let ns = leak(format!("ns{}", j % NAMESPACES));
        let app = leak(format!("client{j}"));
        workloads.push(sim::w(ns, leak(format!("{app}-v1")), app, "v1"));
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let mut calls: Vec<Vec<(Call, usize)>> = vec![Vec::new(); workloads.len()];
    for (src, workload) in workloads.iter().enumerate() {
        let fanout = if src < 2 * SERVICES { 6 } else { 8 };
        let mut picked = Vec::new();
        while picked.len() < fanout {
            let s = rng.usize(..SERVICES);
            if !picked.contains(&s) && 2 * s != src && 2 * s + 1 != src {
                picked.push(s);
            }
        }
        for s in picked {
            for version in 0..2 {
                let dst = 2 * s + version;
                let call = Call::http(
                    "source",
                    Some(*workload),
                    (&services[s].0, &services[s].1),
                    Some(workloads[dst]),
                );
                calls[src].push((call, dst));
            }
        }
    }
    let proxies = workloads
        .iter()
        .map(|w| ProxySim::new(&format!("{}-proxy", w.name), START_MS))
        .collect();
    Mesh { proxies, calls }
}

impl Mesh {
    /// One push interval of traffic: 9 requests to v1 and 1 to v2 per call, one 503 on every
    /// seventh; both proxies of a call count it (source and destination reporter).
    fn interval(&mut self) {
        for src in 0..self.calls.len() {
            for (i, (call, dst)) in self.calls[src].clone().into_iter().enumerate() {
                let n = if call.destination.is_some_and(|d| d.version == "v1") {
                    9
                } else {
                    1
                };
                self.proxies[src].requests(&call, n, 12.0, 200.0, 800.0);
                let mut inbound = call.clone();
                inbound.reporter = "destination";
                self.proxies[dst].requests(&inbound, n, 10.0, 200.0, 800.0);
                if i % 14 == 0 {
                    self.proxies[src].requests(&call.clone().code("503"), 1, 3.0, 200.0, 90.0);
                }
            }
        }
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Pushes one round (every proxy once) at the graph's clock; returns per-push ingest times.
fn push_round(graph: &LiveGraph, mesh: &Mesh, points: &mut usize) -> Vec<f64> {
    let now = graph.clock().now_ms();
    let mut times = Vec::with_capacity(mesh.proxies.len());
    for proxy in &mesh.proxies {
        let request = proxy.export(now);
        *points += request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => {
                    s.data_points.len()
                }
                Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Histogram(h)) => {
                    h.data_points.len()
                }
                _ => 0,
            })
            .sum::<usize>();
        let started = Instant::now();
        graph.observe_metrics(&request);
        times.push(ms(started.elapsed()));
    }
    times
}

fn main() {
    let queries: usize = std::env::var("BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let out = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../bench/results/graph-latest.md"
            ))
        });
    trellis_control::memory::tune();
    let rss_start = rss_mib();
    let graph = LiveGraph::with_clock(Clock::manual(START_MS));
    let mut mesh = build_mesh();

    // An hour of traffic: a push a minute for 55 minutes, then every 5 s for the last 5 minutes
    // (so the 10-second slots are full too). Ingest is timed over the last 5 minutes (steady state).
    let mut points = 0usize;
    for _ in 0..55 {
        graph.clock().advance_ms(60_000);
        mesh.interval();
        push_round(&graph, &mesh, &mut points);
    }
    let mut push_times = Vec::new();
    let mut round_times = Vec::new();
    points = 0;
    for _ in 0..60 {
        graph.clock().advance_ms(5_000);
        mesh.interval();
        let times = push_round(&graph, &mesh, &mut points);
        round_times.push(times.iter().sum::<f64>());
        push_times.extend(times);
    }
    let steady_points = points;
    let rss_loaded = rss_mib();
    // The simulator's own cumulative state is as large as the graph's: drop it to see the graph's.
    let proxies = mesh.proxies.len();
    drop(mesh);
    trellis_control::memory::release_freed();
    let rss_graph = rss_mib();

    let mut report = String::new();
    let pushes = push_times.len();
    let ingest_total: f64 = push_times.iter().sum();
    let _ = writeln!(report, "# Live graph benchmark\n");
    let _ = writeln!(
        report,
        "{} proxies pushing Istio's cumulative metrics over OTLP (both reporters), {} data points per round of pushes; an hour of history in memory.\n",
        proxies,
        steady_points / 60
    );
    let _ = writeln!(report, "## Ingest (`observe_metrics`)\n");
    let _ = writeln!(
        report,
        "| pushes | points/push | p50 ms/push | p99 ms/push | ms per round (all proxies) p50 | points/s (one core) |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|");
    let _ = writeln!(
        report,
        "| {pushes} | {:.0} | {:.3} | {:.3} | {:.1} | {:.0} |\n",
        steady_points as f64 / pushes as f64,
        percentile(&mut push_times, 50.0),
        percentile(&mut push_times, 99.0),
        percentile(&mut round_times, 50.0),
        steady_points as f64 / (ingest_total / 1000.0)
    );

    let _ = writeln!(
        report,
        "## Graph API answer (query + JSON), window 1 minute unless noted\n"
    );
    let _ = writeln!(
        report,
        "| graph type | nodes | edges | JSON KiB | p50 ms | p99 ms |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|");
    let cases = [
        ("workload", GraphType::Workload, 60_000),
        ("app", GraphType::App, 60_000),
        ("versionedApp", GraphType::VersionedApp, 60_000),
        ("service", GraphType::Service, 60_000),
        ("workload, 1 h window", GraphType::Workload, 3_600_000),
    ];
    let mut workload_p99 = 0.0;
    for (name, graph_type, duration_ms) in cases {
        let query = GraphQuery {
            view: ViewOptions {
                graph_type,
                namespaces: Vec::new(),
                inject_service_nodes: true,
            },
            duration_ms,
            query_time_ms: None,
        };
        let mut times = Vec::new();
        let mut size = (0, 0, 0);
        for _ in 0..queries {
            let started = Instant::now();
            let answer = graph.query(&query).expect("a memory window");
            let json = serde_json::to_vec(&answer).expect("JSON");
            times.push(ms(started.elapsed()));
            size = (answer.nodes.len(), answer.edges.len(), json.len());
        }
        let p99 = percentile(&mut times, 99.0);
        if graph_type == GraphType::Workload && duration_ms == 60_000 {
            workload_p99 = p99;
        }
        let _ = writeln!(
            report,
            "| {name} | {} | {} | {:.0} | {:.1} | {p99:.1} |",
            size.0,
            size.1,
            size.2 as f64 / 1024.0,
            percentile(&mut times, 50.0),
        );
    }

    let graph = std::sync::Arc::new(graph);
    let mut registry = prometheus_client::registry::Registry::default();
    graph.register_metrics(&mut registry);
    let started = Instant::now();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    let scrape_ms = ms(started.elapsed());
    let series = text.lines().filter(|l| !l.starts_with('#')).count();

    let _ = writeln!(report, "\n## `/metrics` and memory\n");
    let _ = writeln!(
        report,
        "- scrape: {series} samples, {:.1} MiB of text, encoded in {scrape_ms:.0} ms",
        text.len() as f64 / 1_048_576.0
    );
    let _ = writeln!(
        report,
        "- RSS: {rss_start:.0} MiB at start; {rss_loaded:.0} MiB after the hour of pushes, with the simulator; {rss_graph:.0} MiB for the graph alone (every series' labels and last values, mesh-wide totals, an hour of per-edge slots)"
    );
    let _ = writeln!(
        report,
        "- target: the console's graph page (1,000 nodes / 3,000 edges) within 300 ms end to end; the workload graph answer here (1,000 nodes / 5,000 edges) takes {workload_p99:.1} ms at p99"
    );
    print!("{report}");
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&out, &report) {
        eprintln!("cannot write {}: {e}", out.display());
    }
}
