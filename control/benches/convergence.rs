//! Config push convergence at scale: `trellis control` (the real binary, a separate process) with
//! 1,000 services / 10,000 endpoints and 200 simulated proxies; time from an apply to the last
//! proxy's ACK, the control plane's RSS and CPU.
//!
//! A plain program (`harness = false`): `cargo bench -p trellis-control --bench convergence`, or
//! `bash bench/control.sh`, which builds and runs it. Knobs are environment variables (see
//! `Knobs::from_env` and bench/README.md). It prints a Markdown report and writes it to
//! `bench/results/control-latest.md` (`BENCH_OUT`). It exits non-zero only on functional errors
//! (a proxy that never converges, a refused or out-of-sync update, a config that differs from
//! what the compiler makes of the applied resources); slow numbers are reported, not failed.

#[path = "convergence/measure.rs"]
mod measure;
#[path = "convergence/mesh.rs"]
mod mesh;
#[path = "convergence/sim.rs"]
mod sim;

use measure::{ProcSample, Sampler, mean, mib, ms, percentile, read_proc};
use mesh::Mesh;
use sim::{Applied, Event, Fleet, Probe, Sim};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::HttpClient;
use testkit::process::ProxyProcess;
use tokio::sync::mpsc;
use trellis_api::model::OutboundTrafficPolicy;

const TARGET_P99_MS: f64 = 1000.0;
const TARGET_RSS_MIB: f64 = 300.0;

/// Settings, from the environment.
#[derive(Debug, Clone)]
struct Knobs {
    services: usize,
    endpoints: usize,
    proxies: usize,
    rounds: usize,
    virtual_services: usize,
    endpoint_rounds: usize,
    mesh_rounds: usize,
    sim_threads: usize,
    apps: usize,
    source_labels: bool,
    verify: bool,
    round_timeout: Duration,
    sync_timeout: Duration,
    apply_batch_bytes: usize,
    control_log: String,
    bin: PathBuf,
    out: PathBuf,
    pidfile: Option<PathBuf>,
    command: String,
    commit: String,
}

fn env_num(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Knobs {
    fn from_env() -> Result<Knobs, String> {
        let services = env_num("BENCH_SERVICES", 1000)?.max(1);
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let bin = env_str("TRELLIS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_trellis")));
        Ok(Knobs {
            services,
            endpoints: env_num("BENCH_ENDPOINTS_PER_SERVICE", 10)?.max(1),
            proxies: env_num("BENCH_PROXIES", 200)?.max(1),
            rounds: env_num("BENCH_ROUNDS", 30)?,
            virtual_services: env_num("BENCH_VIRTUAL_SERVICES", 200)?.min(services),
            endpoint_rounds: env_num("BENCH_ENDPOINT_ROUNDS", 2)?,
            mesh_rounds: env_num("BENCH_MESH_ROUNDS", 1)?,
            sim_threads: env_num("BENCH_SIM_THREADS", 1)?.max(1),
            apps: env_num("BENCH_APPS", 50)?.max(1),
            source_labels: env_num("BENCH_SOURCE_LABELS", 0)? != 0,
            verify: env_num("BENCH_VERIFY", 1)? != 0,
            round_timeout: Duration::from_secs(env_num("BENCH_ROUND_TIMEOUT", 60)? as u64),
            sync_timeout: Duration::from_secs(env_num("BENCH_SYNC_TIMEOUT", 300)? as u64),
            apply_batch_bytes: env_num("BENCH_APPLY_BATCH_BYTES", 8 << 20)?.max(1),
            control_log: env_str("BENCH_CONTROL_LOG")
                .unwrap_or_else(|| "info,trellis_control::push::epoch=debug".into()),
            bin,
            out: env_str("BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("bench/results/control-latest.md")),
            pidfile: env_str("BENCH_PIDFILE").map(PathBuf::from),
            command: env_str("BENCH_COMMAND")
                .unwrap_or_else(|| "cargo bench -p trellis-control --bench convergence".into()),
            commit: env_str("BENCH_COMMIT").unwrap_or_else(|| "unknown".into()),
        })
    }
}

fn main() -> ExitCode {
    let knobs = match Knobs::from_env() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("convergence: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(knobs.sim_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("convergence: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Dropping `run` (on a signal) drops the control process handle, which stops it.
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(&knobs) => r,
            s = interrupted() => Err(format!("interrupted by {s}")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("convergence: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

/// A measured stretch of the run.
struct Phase {
    name: String,
    wall: Duration,
    control: (ProcSample, ProcSample),
    own: (ProcSample, ProcSample),
    peak_rss_kib: u64,
}

#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    control: ProcSample,
    own: ProcSample,
}

/// What every proxy did between a change and its convergence.
struct Collected {
    /// Per proxy, the update that brought the change.
    done: Vec<Applied>,
    /// Every update received meanwhile (normally one per proxy).
    updates: Vec<Applied>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RoundKind {
    Route,
    Endpoint,
    Sidecar,
    AllRules,
}

impl RoundKind {
    fn title(self) -> &'static str {
        match self {
            RoundKind::Route => "one VirtualService's weights",
            RoundKind::Endpoint => "one endpoint added to a ServiceEntry",
            RoundKind::Sidecar => "mesh-wide Sidecar (outboundTrafficPolicy of every proxy)",
            RoundKind::AllRules => "every DestinationRule (every cluster of every proxy)",
        }
    }
}

struct Round {
    kind: RoundKind,
    label: String,
    revision: u64,
    body_bytes: usize,
    apply: Duration,
    /// Per proxy: t0 -> its ACK of the update carrying the change.
    acks: Vec<f64>,
    /// Per proxy: t0 -> that update received.
    received: Vec<f64>,
    updates: Vec<Applied>,
    control_ticks: u64,
    /// The bench process's own CPU over the same stretch (the simulated proxies' decoding).
    own_ticks: u64,
    /// t0 -> every proxy SYNCED in `GET /api/v1/proxies`.
    status_synced: Duration,
    stray: usize,
}

impl Round {
    fn last_ack(&self) -> f64 {
        self.acks.iter().copied().fold(0.0, f64::max)
    }
}

struct Bench<'k> {
    k: &'k Knobs,
    control: ProxyProcess,
    pid: String,
    console: SocketAddr,
    push: SocketAddr,
    rest: HttpClient,
    tck: f64,
    sampler: Sampler,
    mesh: Mesh,
    fleet: Arc<Fleet>,
    events: mpsc::UnboundedReceiver<Event>,
    sims: Vec<Sim>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    probe_id: u64,
    phases: Vec<Phase>,
    rounds: Vec<Round>,
    notes: Vec<String>,
}

async fn run(k: &Knobs) -> Result<(), String> {
    if !k.bin.exists() {
        return Err(format!(
            "{} does not exist: build it with `cargo build --release -p trellis-control --bin trellis` or set TRELLIS_BIN",
            k.bin.display()
        ));
    }
    let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let addrs = testkit::free_addrs(2);
    let (push, console) = (addrs[0], addrs[1]);
    let args = [
        "control".to_string(),
        "--push".into(),
        push.to_string(),
        "--console".into(),
        console.to_string(),
        "--data-dir".into(),
        data.path().display().to_string(),
    ];
    let started = Instant::now();
    let control = ProxyProcess::spawn(&k.bin, &args, &[("RUST_LOG", k.control_log.as_str())])
        .map_err(|e| format!("cannot start {}: {e}", k.bin.display()))?;
    let pid = control.pid();
    if let Some(file) = &k.pidfile {
        let _ = std::fs::write(file, pid.to_string());
    }
    let (fleet, events) = Fleet::new();
    let mut bench = Bench {
        k,
        control,
        pid: pid.to_string(),
        console,
        push,
        rest: HttpClient::http1(console).with_timeout(Duration::from_secs(300)),
        tck: measure::clock_ticks(),
        sampler: Sampler::start(pid, Duration::from_millis(50)),
        mesh: Mesh::new(k.services, k.endpoints, k.virtual_services, k.source_labels),
        fleet,
        events,
        sims: (0..k.proxies).map(|i| Sim::new(i, k.apps)).collect(),
        tasks: Vec::new(),
        probe_id: 0,
        phases: Vec::new(),
        rounds: Vec::new(),
        notes: Vec::new(),
    };
    let result = bench.run_all(started).await;
    for t in &bench.tasks {
        t.abort();
    }
    if let Err(e) = &result {
        let log = bench.control.stderr_lines();
        let tail = &log[log.len().saturating_sub(30)..];
        eprintln!(
            "--- trellis control stderr (last {} lines) ---\n{}",
            tail.len(),
            tail.join("\n")
        );
        eprintln!("convergence: {e}");
    }
    result
}

impl Bench<'_> {
    fn mark(&self) -> Mark {
        Mark {
            at: Instant::now(),
            control: read_proc(&self.pid).unwrap_or_default(),
            own: read_proc("self").unwrap_or_default(),
        }
    }

    fn end_phase(&mut self, name: &str, from: Mark) {
        let to = self.mark();
        self.phases.push(Phase {
            name: name.to_string(),
            wall: to.at - from.at,
            control: (from.control, to.control),
            own: (from.own, to.own),
            peak_rss_kib: self.sampler.peak(from.at, to.at).max(to.control.rss_kib),
        });
    }

    async fn run_all(&mut self, started: Instant) -> Result<(), String> {
        let k = self.k;
        let start = Mark {
            at: started,
            control: ProcSample::default(),
            own: read_proc("self").unwrap_or_default(),
        };
        let healthy = {
            let rest = self.rest.clone().with_timeout(Duration::from_secs(1));
            testkit::client::wait_until(Duration::from_secs(20), || {
                let rest = rest.clone();
                async move {
                    rest.get("control", "/healthz", &[])
                        .await
                        .is_ok_and(|r| r.status == 200)
                }
            })
            .await
        };
        if !healthy {
            return Err("trellis control did not answer /healthz within 20 s".into());
        }
        self.end_phase("start (empty store)", start);
        eprintln!(
            "convergence: control plane pid {} up (push {}, console {}); applying {} services",
            self.pid, self.push, self.console, k.services
        );

        // 1. The mesh.
        let m = self.mark();
        let docs = self.mesh.initial_documents();
        let mut batches: Vec<String> = Vec::new();
        let mut body = String::new();
        for d in &docs {
            if !body.is_empty() && body.len() + d.len() + 4 > k.apply_batch_bytes {
                batches.push(std::mem::take(&mut body));
            }
            body.push_str("---\n");
            body.push_str(d);
        }
        batches.push(body);
        let yaml_bytes: usize = batches.iter().map(String::len).sum();
        let mut revision = 0;
        let mut apply_times = Vec::new();
        for (n, b) in batches.into_iter().enumerate() {
            let (r, t) = self
                .apply(b, &format!("bench: initial mesh, batch {}", n + 1))
                .await?;
            revision = r;
            apply_times.push(t);
        }
        let applied = m.at.elapsed();
        self.end_phase("apply the mesh (no proxies yet)", m);
        // Let the control plane publish the epoch before proxies connect.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_loaded = read_proc(&self.pid).unwrap_or_default();
        self.notes.push(format!(
            "Initial apply: {} documents ({} ServiceEntries, {} DestinationRules, {} VirtualServices), {:.2} MiB of YAML in {} request(s), {:.0} ms (revision {revision}); RSS afterwards, before any proxy: {:.1} MiB.",
            docs.len(),
            k.services,
            k.services,
            k.virtual_services,
            yaml_bytes as f64 / 1048576.0,
            apply_times.len(),
            ms(applied),
            mib(idle_loaded.rss_kib),
        ));
        let initial_apply = applied;

        // 2. The proxies connect and take their full config.
        eprintln!("convergence: connecting {} simulated proxies", k.proxies);
        let m = self.mark();
        let id = self.next_probe(Probe::Initial {
            virtual_hosts: k.services,
        });
        let t0 = Instant::now();
        for s in &self.sims {
            self.tasks.push(s.spawn(self.push, self.fleet.clone()));
        }
        let sync = self.collect(id, t0, k.sync_timeout).await?;
        let sync_status = self.check_proxies(revision, t0).await?;
        self.end_phase("initial sync (all proxies connect)", m);
        let initial = InitialSync {
            apply: initial_apply,
            acks: sync.done.iter().map(|a| ms(a.acked - t0)).collect(),
            received: sync.done.iter().map(|a| ms(a.received - t0)).collect(),
            full_bytes: sync.done.iter().map(|a| a.bytes as f64).collect(),
            full_resources: sync.done.iter().map(|a| a.resources as f64).collect(),
            full_parts: sync.done.iter().map(|a| a.parts as f64).collect(),
            updates: sync.updates.len(),
            status_synced: sync_status,
            yaml_bytes,
        };
        if sync.done.iter().any(|a| !a.full) {
            return Err("a proxy's first update was not a full update".into());
        }
        let verified_initial = if k.verify { Some(self.verify()?) } else { None };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let connected_idle = read_proc(&self.pid).unwrap_or_default();
        self.notes.push(format!(
            "With all {} proxies connected and idle: RSS {:.1} MiB, {} threads.",
            k.proxies,
            mib(connected_idle.rss_kib),
            connected_idle.threads
        ));

        // 3. Single-resource changes: one VirtualService's weights.
        if k.rounds > 0 && k.virtual_services == 0 {
            return Err("BENCH_ROUNDS needs BENCH_VIRTUAL_SERVICES > 0".into());
        }
        eprintln!("convergence: {} VirtualService rounds", k.rounds);
        let m = self.mark();
        for r in 0..k.rounds {
            let i = r % k.virtual_services.max(1);
            let current = self.mesh.services[i].weight_v1.unwrap_or(mesh::WEIGHT_V1);
            let mut w = 10 + (r as u32 * 7 + 3) % 81;
            if w == current {
                w = if w < 90 { w + 1 } else { w - 1 };
            }
            let body = self.mesh.set_weight(i, w);
            let probe = Probe::Weights {
                vhost: mesh::vhost(i),
                v1: w,
            };
            self.round(
                RoundKind::Route,
                format!("{} v1={w}", mesh::name(i)),
                body,
                probe,
            )
            .await?;
        }
        self.end_phase("VirtualService rounds", m);

        // 4. Endpoint changes.
        let m = self.mark();
        for r in 0..k.endpoint_rounds {
            let i = if k.virtual_services > 0 {
                (k.virtual_services / 2 + r) % k.virtual_services
            } else {
                (k.services / 2 + r) % k.services
            };
            let body = self.mesh.add_endpoint(i);
            let s = &self.mesh.services[i];
            let probe = Probe::Endpoints {
                cluster: mesh::cluster(i, None),
                n: s.endpoints + s.added.len(),
            };
            self.round(
                RoundKind::Endpoint,
                format!("{} +1 endpoint", mesh::name(i)),
                body,
                probe,
            )
            .await?;
        }
        if k.endpoint_rounds > 0 {
            self.end_phase("endpoint rounds", m);
        }

        // 5. Changes that reach every proxy.
        let m = self.mark();
        for r in 0..k.mesh_rounds {
            let registry_only = r % 2 == 0;
            let body = self.mesh.set_sidecar(registry_only);
            let policy = if registry_only {
                OutboundTrafficPolicy::RegistryOnly
            } else {
                OutboundTrafficPolicy::AllowAny
            };
            self.round(
                RoundKind::Sidecar,
                format!("istio-system/default {policy:?}"),
                body,
                Probe::Outbound(policy),
            )
            .await?;
            let n = mesh::MAX_CONNECTIONS + 1 + r as u32;
            let body = mesh::join(&self.mesh.set_max_connections(n));
            let probe = Probe::MaxConnections {
                cluster: mesh::cluster(k.services - 1, None),
                n,
            };
            self.round(
                RoundKind::AllRules,
                format!("{} DestinationRules maxConnections={n}", k.services),
                body,
                probe,
            )
            .await?;
        }
        if k.mesh_rounds > 0 {
            self.end_phase("mesh-wide rounds", m);
        }

        let verified_final = if k.verify { Some(self.verify()?) } else { None };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let end = read_proc(&self.pid).unwrap_or_default();
        let whole = Phase {
            name: "whole run".into(),
            wall: started.elapsed(),
            control: (ProcSample::default(), end),
            own: (start.own, read_proc("self").unwrap_or_default()),
            peak_rss_kib: self.sampler.peak(started, Instant::now()).max(end.rss_kib),
        };
        let compiles = compile_log(&self.control.stderr_lines());
        let report = self.report(
            &initial,
            verified_initial,
            verified_final,
            whole,
            end,
            &compiles,
        );
        println!("{report}");
        if let Some(dir) = k.out.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&k.out, &report)
            .map_err(|e| format!("cannot write {}: {e}", k.out.display()))?;
        eprintln!("convergence: report written to {}", k.out.display());
        Ok(())
    }

    fn next_probe(&mut self, probe: Probe) -> u64 {
        self.probe_id += 1;
        self.fleet.set_probe(self.probe_id, probe);
        self.probe_id
    }

    async fn apply(&self, body: String, message: &str) -> Result<(u64, Duration), String> {
        let t = Instant::now();
        let url = format!("http://{}/api/v1/apply", self.console);
        let resp = self
            .rest
            .request(
                http::Method::POST,
                &url,
                &[
                    ("content-type", "application/yaml"),
                    ("x-trellis-author", "bench"),
                    ("x-trellis-message", message),
                ],
                body,
            )
            .await
            .map_err(|e| format!("POST /api/v1/apply: {e}"))?;
        let took = t.elapsed();
        if resp.status != 200 {
            let text: String = resp.body.chars().take(2000).collect();
            return Err(format!("POST /api/v1/apply: HTTP {}: {text}", resp.status));
        }
        let v: serde_json::Value = serde_json::from_str(&resp.body)
            .map_err(|e| format!("POST /api/v1/apply: bad JSON: {e}"))?;
        let revision = v["revision"]
            .as_u64()
            .ok_or_else(|| format!("apply {message:?} changed nothing: {}", resp.body))?;
        Ok((revision, took))
    }

    /// Waits until every proxy applied an update that makes probe `id` hold.
    async fn collect(
        &mut self,
        id: u64,
        t0: Instant,
        timeout: Duration,
    ) -> Result<Collected, String> {
        let n = self.sims.len();
        let mut done: Vec<Option<Applied>> = vec![None; n];
        let mut count = 0;
        let mut updates = Vec::new();
        let deadline = tokio::time::Instant::from_std(t0 + timeout);
        while count < n {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => {
                    let missing: Vec<String> = done
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.is_none())
                        .take(10)
                        .map(|(i, _)| format!("sim-{i}"))
                        .collect();
                    return Err(format!(
                        "only {count} of {n} proxies converged within {timeout:?}; missing: {}{}",
                        missing.join(", "),
                        if n - count > 10 { ", ..." } else { "" }
                    ));
                }
                Ok(None) => return Err("event channel closed".into()),
                Ok(Some(Event::Failed { proxy, error })) => {
                    return Err(format!("proxy sim-{proxy}: {error}"));
                }
                Ok(Some(Event::Connected)) => {}
                Ok(Some(Event::Applied(a))) => {
                    if a.probe == Some(id) && done[a.proxy].is_none() {
                        done[a.proxy] = Some(a.clone());
                        count += 1;
                    }
                    updates.push(a);
                }
            }
        }
        Ok(Collected {
            done: done.into_iter().flatten().collect(),
            updates,
        })
    }

    /// Cross-checks with the control plane's own view: every proxy connected, SYNCED, and having
    /// acknowledged a version compiled from `revision` or later. Returns when that was first seen.
    async fn check_proxies(&self, revision: u64, t0: Instant) -> Result<Duration, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let resp = self
                .rest
                .get("control", "/api/v1/proxies", &[])
                .await
                .map_err(|e| format!("GET /api/v1/proxies: {e}"))?;
            let v: serde_json::Value = serde_json::from_str(&resp.body)
                .map_err(|e| format!("GET /api/v1/proxies: bad JSON: {e}"))?;
            let proxies = v["proxies"].as_array().cloned().unwrap_or_default();
            let nacked: Vec<String> = proxies
                .iter()
                .filter(|p| !p["error"].is_null() || p["status"] == "NACKED")
                .map(|p| format!("{} ({})", p["id"], p["error"]))
                .collect();
            if !nacked.is_empty() {
                return Err(format!("proxies refused config: {}", nacked.join(", ")));
            }
            let behind: Vec<String> = proxies
                .iter()
                .filter(|p| {
                    p["status"] != "SYNCED" || p["revision_acked"].as_u64().unwrap_or(0) < revision
                })
                .map(|p| format!("{} {} rev {}", p["id"], p["status"], p["revision_acked"]))
                .collect();
            if proxies.len() == self.sims.len() && behind.is_empty() {
                return Ok(t0.elapsed());
            }
            let last = format!(
                "{} proxies listed, {} not SYNCED at revision {revision}: {}",
                proxies.len(),
                behind.len(),
                behind
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            if Instant::now() >= deadline {
                return Err(format!("GET /api/v1/proxies after convergence: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn round(
        &mut self,
        kind: RoundKind,
        label: String,
        body: String,
        probe: Probe,
    ) -> Result<(), String> {
        let mut stray = 0;
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                Event::Failed { proxy, error } => {
                    return Err(format!("proxy sim-{proxy}: {error}"));
                }
                Event::Applied(_) => stray += 1,
                Event::Connected => {}
            }
        }
        let id = self.next_probe(probe);
        let body_bytes = body.len();
        let c0 = read_proc(&self.pid).unwrap_or_default();
        let o0 = read_proc("self").unwrap_or_default();
        let t0 = Instant::now();
        let (revision, apply) = self.apply(body, &format!("bench: {label}")).await?;
        let collected = self.collect(id, t0, self.k.round_timeout).await?;
        let c1 = read_proc(&self.pid).unwrap_or_default();
        let o1 = read_proc("self").unwrap_or_default();
        let status_synced = self.check_proxies(revision, t0).await?;
        let round = Round {
            kind,
            label,
            revision,
            body_bytes,
            apply,
            acks: collected.done.iter().map(|a| ms(a.acked - t0)).collect(),
            received: collected.done.iter().map(|a| ms(a.received - t0)).collect(),
            updates: collected.updates,
            control_ticks: c1.ticks().saturating_sub(c0.ticks()),
            own_ticks: o1.ticks().saturating_sub(o0.ticks()),
            status_synced,
            stray,
        };
        eprintln!(
            "convergence: {:<10} {:<40} rev {:>4}: apply {:>7.1} ms, last ACK {:>8.1} ms, {} updates",
            match kind {
                RoundKind::Route => "route",
                RoundKind::Endpoint => "endpoint",
                RoundKind::Sidecar => "sidecar",
                RoundKind::AllRules => "all-DR",
            },
            round.label,
            round.revision,
            ms(round.apply),
            round.last_ack(),
            round.updates.len()
        );
        self.rounds.push(round);
        Ok(())
    }

    /// Checks every proxy's held config against the compiler's output for the resources the
    /// bench applied: same content version, and the held resources hash to it.
    fn verify(&self) -> Result<String, String> {
        let t = Instant::now();
        let text = self.mesh.all_yaml();
        let resources = trellis_api::load_str(&text, "bench").map_err(|d| {
            format!(
                "the bench's own YAML does not load: {}",
                d.iter()
                    .take(3)
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let set = trellis_api::ConfigSet::from_resources(resources)
            .map_err(|_| "the bench's own YAML has duplicates".to_string())?;
        let mut expected: HashMap<Vec<(String, String)>, (String, usize, usize)> = HashMap::new();
        let mut versions = BTreeMap::new();
        for s in &self.sims {
            let key: Vec<(String, String)> = s.node.labels.clone().into_iter().collect();
            let (version, vhs, clusters) = expected
                .entry(key)
                .or_insert_with(|| {
                    let c = trellis_api::compile_standalone(&set, &s.node);
                    (c.version, c.virtual_hosts.len(), c.clusters.len())
                })
                .clone();
            let held = s.held.lock().unwrap_or_else(|e| e.into_inner());
            if held.version != version {
                return Err(format!(
                    "{} holds version {:?}; compiling the applied resources gives {version:?}",
                    s.workload, held.version
                ));
            }
            let actual = held.config().content_version();
            if actual != held.version {
                return Err(format!(
                    "{}: the resources it holds hash to {actual:?}, not to the version it acknowledged ({:?})",
                    s.workload, held.version
                ));
            }
            if held.virtual_hosts.len() != vhs || held.clusters.len() != clusters {
                return Err(format!("{}: resource counts differ", s.workload));
            }
            *versions.entry(version).or_insert(0usize) += 1;
        }
        let (_, vhs, clusters) = expected.values().next().cloned().unwrap_or_default();
        Ok(format!(
            "all {} proxies hold exactly the compiler's config for the applied resources ({} distinct version(s) across {} distinct label set(s); {vhs} virtual hosts, {clusters} clusters each; checked in {:.1} s)",
            self.sims.len(),
            versions.len(),
            expected.len(),
            t.elapsed().as_secs_f64()
        ))
    }

    fn report(
        &self,
        initial: &InitialSync,
        verified_initial: Option<String>,
        verified_final: Option<String>,
        whole: Phase,
        end: ProcSample,
        compiles: &CompileLog,
    ) -> String {
        let k = self.k;
        let mut o = String::new();
        let route: Vec<&Round> = self
            .rounds
            .iter()
            .filter(|r| r.kind == RoundKind::Route)
            .collect();
        let route_last: Vec<f64> = route.iter().map(|r| r.last_ack()).collect();
        let route_per_proxy: Vec<f64> = route.iter().flat_map(|r| r.acks.iter().copied()).collect();
        let p99 = percentile(&route_last, 99.0);
        let hwm = mib(end.hwm_kib);
        let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };

        let _ = writeln!(o, "# Control plane: config push convergence\n");
        let _ = writeln!(o, "{} · commit {} · `{}`\n", today(), k.commit, k.command);
        let _ = writeln!(
            o,
            "{} services × {} endpoints ({} endpoints), {} with a VirtualService, {} simulated proxies; {} route rounds, {} endpoint rounds, {} × 2 mesh-wide rounds.\n",
            k.services,
            k.endpoints,
            k.services * k.endpoints,
            k.virtual_services,
            k.proxies,
            k.rounds,
            k.endpoint_rounds,
            k.mesh_rounds
        );
        let _ = writeln!(o, "Machine: {}.\n", machine());

        let _ = writeln!(o, "## Against the targets\n");
        let _ = writeln!(o, "| metric | measured | target | |");
        let _ = writeln!(o, "|---|---:|---:|---|");
        if !route.is_empty() {
            let _ = writeln!(
                o,
                "| apply → last ACK, one VirtualService changed (p99 over {} rounds) | {:.0} ms | < 1 s | {} |",
                route.len(),
                p99,
                verdict(p99 < TARGET_P99_MS)
            );
        }
        let _ = writeln!(
            o,
            "| control plane peak RSS (VmHWM, whole run) | {:.1} MiB | < 300 MiB | {} |",
            hwm,
            verdict(hwm < TARGET_RSS_MIB)
        );
        let cpu_s = end.ticks() as f64 / self.tck;
        let _ = writeln!(
            o,
            "| control plane CPU, whole run ({:.0} s wall) | {:.1} s ({:.0}% of one core) | (istiod: 1 vCPU) | |",
            whole.wall.as_secs_f64(),
            cpu_s,
            100.0 * cpu_s / whole.wall.as_secs_f64()
        );
        let _ = writeln!(o);

        // Initial sync.
        let _ = writeln!(o, "## Initial load and sync\n");
        let _ = writeln!(o, "| | value |");
        let _ = writeln!(o, "|---|---:|");
        let _ = writeln!(
            o,
            "| apply the mesh over REST ({:.2} MiB YAML, no proxies connected) | {:.0} ms |",
            initial.yaml_bytes as f64 / 1048576.0,
            ms(initial.apply)
        );
        let _ = writeln!(
            o,
            "| all {} proxies connect → last ACK of the full update | {:.0} ms |",
            k.proxies,
            percentile(&initial.acks, 100.0)
        );
        let _ = writeln!(
            o,
            "| per proxy, connect start → full update received (p50 / max) | {:.0} / {:.0} ms |",
            percentile(&initial.received, 50.0),
            percentile(&initial.received, 100.0)
        );
        let _ = writeln!(
            o,
            "| per proxy, connect start → ACK (p50 / p99) | {:.0} / {:.0} ms |",
            percentile(&initial.acks, 50.0),
            percentile(&initial.acks, 99.0)
        );
        let _ = writeln!(
            o,
            "| … every proxy SYNCED in `GET /api/v1/proxies` | {:.0} ms |",
            ms(initial.status_synced)
        );
        let _ = writeln!(
            o,
            "| full update: resources / size / gRPC messages | {:.0} / {:.2} MiB / {:.0} |",
            mean(&initial.full_resources),
            mean(&initial.full_bytes) / 1048576.0,
            mean(&initial.full_parts)
        );
        let _ = writeln!(
            o,
            "| updates received during the sync (one each expected) | {} |",
            initial.updates
        );
        if let Some(p) = self
            .phases
            .iter()
            .find(|p| p.name.starts_with("initial sync"))
        {
            let _ = writeln!(
                o,
                "| CPU during the sync: control plane / bench process (simulated proxies decoding) | {:.2} s / {:.2} s |",
                p.control.1.ticks().saturating_sub(p.control.0.ticks()) as f64 / self.tck,
                p.own.1.ticks().saturating_sub(p.own.0.ticks()) as f64 / self.tck
            );
        }
        let _ = writeln!(o);

        // Rounds by kind.
        let _ = writeln!(o, "## Changes: apply → ACK\n");
        let _ = writeln!(
            o,
            "t0 is taken just before the `POST /api/v1/apply` request; a proxy's time is when it sent the ACK of the update carrying the change (after decoding and applying it). \"last ACK\" is the round's slowest proxy. Percentiles are nearest-rank, so with {} rounds the p99 is the slowest round.\n",
            k.rounds
        );
        let _ = writeln!(
            o,
            "| change | rounds | apply → last ACK p50 / p99 / max (ms) | per-proxy apply → ACK p50 / p99 (ms) | apply request (ms, p50) | control CPU per round (ms, mean) | bench CPU per round (ms, mean) | updates per proxy per round |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for kind in [
            RoundKind::Route,
            RoundKind::Endpoint,
            RoundKind::Sidecar,
            RoundKind::AllRules,
        ] {
            let rs: Vec<&Round> = self.rounds.iter().filter(|r| r.kind == kind).collect();
            if rs.is_empty() {
                continue;
            }
            let last: Vec<f64> = rs.iter().map(|r| r.last_ack()).collect();
            let per: Vec<f64> = rs.iter().flat_map(|r| r.acks.iter().copied()).collect();
            let apply: Vec<f64> = rs.iter().map(|r| ms(r.apply)).collect();
            let cpu: Vec<f64> = rs
                .iter()
                .map(|r| 1000.0 * r.control_ticks as f64 / self.tck)
                .collect();
            let own: Vec<f64> = rs
                .iter()
                .map(|r| 1000.0 * r.own_ticks as f64 / self.tck)
                .collect();
            let updates = rs.iter().map(|r| r.updates.len()).sum::<usize>() as f64
                / (rs.len() * k.proxies) as f64;
            let _ = writeln!(
                o,
                "| {} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
                kind.title(),
                rs.len(),
                percentile(&last, 50.0),
                percentile(&last, 99.0),
                percentile(&last, 100.0),
                percentile(&per, 50.0),
                percentile(&per, 99.0),
                percentile(&apply, 50.0),
                mean(&cpu),
                mean(&own),
                updates
            );
        }
        let _ = writeln!(o);
        if !route_per_proxy.is_empty() {
            let first: Vec<f64> = route
                .iter()
                .map(|r| r.acks.iter().copied().fold(f64::MAX, f64::min))
                .collect();
            let recv_last: Vec<f64> = route
                .iter()
                .map(|r| r.received.iter().copied().fold(0.0, f64::max))
                .collect();
            let status: Vec<f64> = route.iter().map(|r| ms(r.status_synced)).collect();
            let _ = writeln!(
                o,
                "VirtualService rounds in detail (p50 over rounds): first ACK {:.0} ms, last update received {:.0} ms, last ACK {:.0} ms, all SYNCED in `GET /api/v1/proxies` {:.0} ms.\n",
                percentile(&first, 50.0),
                percentile(&recv_last, 50.0),
                percentile(&route_last, 50.0),
                percentile(&status, 50.0)
            );
        }

        // Delta sizes.
        let _ = writeln!(o, "## Update sizes: deltas against the full update\n");
        let _ = writeln!(
            o,
            "| update | resources (mean) | removed (mean) | meta included | bytes (mean) | vs full | messages (mean) |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
        let full_bytes = mean(&initial.full_bytes);
        let _ = writeln!(
            o,
            "| full (initial) | {:.0} | 0 | all | {:.0} | 1 | {:.1} |",
            mean(&initial.full_resources),
            full_bytes,
            mean(&initial.full_parts)
        );
        for kind in [
            RoundKind::Route,
            RoundKind::Endpoint,
            RoundKind::Sidecar,
            RoundKind::AllRules,
        ] {
            let ups: Vec<&Applied> = self
                .rounds
                .iter()
                .filter(|r| r.kind == kind)
                .flat_map(|r| r.updates.iter())
                .collect();
            if ups.is_empty() {
                continue;
            }
            let res: Vec<f64> = ups.iter().map(|u| u.resources as f64).collect();
            let rem: Vec<f64> = ups.iter().map(|u| u.removed as f64).collect();
            let bytes: Vec<f64> = ups.iter().map(|u| u.bytes as f64).collect();
            let metas = ups.iter().filter(|u| u.meta).count();
            let parts: Vec<f64> = ups.iter().map(|u| u.parts as f64).collect();
            let fulls = ups.iter().filter(|u| u.full).count();
            let _ = writeln!(
                o,
                "| {}{} | {:.1} | {:.1} | {}/{} | {:.0} | {:.4} | {:.1} |",
                kind.title(),
                if fulls > 0 {
                    format!(" ({fulls} FULL updates!)")
                } else {
                    String::new()
                },
                mean(&res),
                mean(&rem),
                metas,
                ups.len(),
                mean(&bytes),
                mean(&bytes) / full_bytes.max(1.0),
                mean(&parts)
            );
        }
        let _ = writeln!(o);

        // Resources.
        let _ = writeln!(o, "## Control plane resources\n");
        let _ = writeln!(
            o,
            "From /proc/PID of `trellis control` only (the simulated proxies run in the bench process). CPU % is of one core, averaged over the phase; peak RSS is sampled every 50 ms.\n"
        );
        let _ = writeln!(
            o,
            "| phase | wall (s) | control CPU (s) | control CPU % | control peak RSS (MiB) | RSS at end (MiB) | bench process CPU (s) |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
        for p in self.phases.iter().chain(std::iter::once(&whole)) {
            let cpu = p.control.1.ticks().saturating_sub(p.control.0.ticks()) as f64 / self.tck;
            let own = p.own.1.ticks().saturating_sub(p.own.0.ticks()) as f64 / self.tck;
            let wall = p.wall.as_secs_f64();
            let _ = writeln!(
                o,
                "| {} | {:.1} | {:.2} | {:.0}% | {:.1} | {:.1} | {:.2} |",
                p.name,
                wall,
                cpu,
                100.0 * cpu / wall.max(1e-9),
                mib(p.peak_rss_kib),
                mib(p.control.1.rss_kib),
                own
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "At the end: VmRSS {:.1} MiB, VmHWM {:.1} MiB, {} threads; CPU user {:.1} s + system {:.1} s. Bench process ({} simulated proxies holding decoded configs): VmHWM {:.0} MiB.\n",
            mib(end.rss_kib),
            hwm,
            end.threads,
            end.utime as f64 / self.tck,
            end.stime as f64 / self.tck,
            k.proxies,
            mib(whole.own.1.hwm_kib)
        );
        for n in &self.notes {
            let _ = writeln!(o, "- {n}");
        }
        if !compiles.per_epoch.is_empty() {
            let _ = writeln!(
                o,
                "- Compiles (control plane debug log): {} compiles over {} epochs; per compile p50 {:.0} ms, max {:.0} ms; largest {} resources.",
                compiles.per_epoch.values().map(Vec::len).sum::<usize>(),
                compiles.epochs,
                percentile(&compiles.all_ms(), 50.0),
                percentile(&compiles.all_ms(), 100.0),
                compiles.max_resources
            );
        }
        let _ = writeln!(o);

        let _ = writeln!(o, "## Correctness\n");
        for v in [verified_initial, verified_final].into_iter().flatten() {
            let _ = writeln!(o, "- {v}");
        }
        let stray: usize = self.rounds.iter().map(|r| r.stray).sum();
        let _ = writeln!(
            o,
            "- Every update applied on the base version the proxy held; no update was refused; after every round `GET /api/v1/proxies` showed all {} proxies SYNCED at the new revision. Updates outside any round: {stray}.",
            k.proxies
        );
        let _ = writeln!(o);

        let _ = writeln!(o, "## Every round\n");
        let _ = writeln!(
            o,
            "| # | change | revision | body (bytes) | apply (ms) | first / p50 / last ACK (ms) | compile (ms) | control CPU (ms) | bench CPU (ms) | updates | versions | resources per update |"
        );
        let _ = writeln!(
            o,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (n, r) in self.rounds.iter().enumerate() {
            let res = mean(
                &r.updates
                    .iter()
                    .map(|u| u.resources as f64)
                    .collect::<Vec<_>>(),
            );
            let compile = compiles
                .for_revision(r.revision)
                .map_or_else(|| "–".to_string(), |v| format!("{v:.0}"));
            let versions: std::collections::BTreeSet<&str> =
                r.updates.iter().map(|u| u.version.as_str()).collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.1} | {:.0} / {:.0} / {:.0} | {} | {:.0} | {:.0} | {} | {} | {:.1} |",
                n + 1,
                r.label,
                r.revision,
                r.body_bytes,
                ms(r.apply),
                r.acks.iter().copied().fold(f64::MAX, f64::min),
                percentile(&r.acks, 50.0),
                r.last_ack(),
                compile,
                1000.0 * r.control_ticks as f64 / self.tck,
                1000.0 * r.own_ticks as f64 / self.tck,
                r.updates.len(),
                versions.len(),
                res
            );
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "## Method\n");
        let _ = writeln!(
            o,
            "- `trellis control` is the release binary, a separate process, on loopback ports with a fresh SQLite store in a temp dir, `RUST_LOG={}`; nothing is pinned. The {} simulated proxies run in the bench process on {} tokio worker thread(s) on the same {}-CPU machine, so their decoding competes with the control plane for CPU; the bench process's CPU is shown beside the control plane's, per phase and per round.",
            k.control_log,
            k.proxies,
            k.sim_threads,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let _ = writeln!(
            o,
            "- Each simulated proxy opens its own gRPC connection (`ConfigPush/Stream`, 64 MiB max message), sends a Hello (`sim-N.default`, labels app=sim-(N mod {}), version=v1, no inbound address, so it registers no service), and for every update gathers its parts (`continued`), checks the base version, decodes every resource with `trellis_api::push::decode`, applies it to its held virtual hosts and clusters, and sends the ACK.{}",
            k.apps,
            if k.source_labels {
                " A `sourceLabels` rule on `app` makes every app value its own compile class."
            } else {
                " No resource selects on workload labels, so all proxies share one compile class."
            }
        );
        let _ = writeln!(
            o,
            "- Mesh: ServiceEntries (MESH_INTERNAL, STATIC, one HTTP port 8080, a VIP, {} endpoints on distinct 10.x.y.z addresses labelled version v1/v2) over {} namespaces, a DestinationRule per service (connection pool, outlier detection, subsets v1/v2), and for the first {} services a VirtualService with a 2-way weighted split, a timeout and retries.",
            k.endpoints,
            mesh::NAMESPACES,
            k.virtual_services
        );
        let _ = writeln!(
            o,
            "- Rounds run one after another; the next starts once every proxy ACKed and the control plane's `GET /api/v1/proxies` agrees. Route rounds change the weights of VirtualService `r mod {}`; endpoint rounds add a v1 endpoint to one ServiceEntry; the mesh-wide rounds apply a root-namespace Sidecar that flips outboundTrafficPolicy (every proxy's config version changes, no resource does) and re-apply every DestinationRule with a new maxConnections (every cluster of every proxy changes).",
            k.virtual_services.max(1)
        );
        o
    }
}

struct InitialSync {
    apply: Duration,
    acks: Vec<f64>,
    received: Vec<f64>,
    full_bytes: Vec<f64>,
    full_resources: Vec<f64>,
    full_parts: Vec<f64>,
    updates: usize,
    status_synced: Duration,
    yaml_bytes: usize,
}

/// Compile timings from the control plane's debug log (`trellis_control::push::epoch`).
#[derive(Default)]
struct CompileLog {
    epochs: usize,
    /// epoch -> revision
    revision_of: BTreeMap<u64, u64>,
    /// epoch -> elapsed_ms of each compile
    per_epoch: BTreeMap<u64, Vec<f64>>,
    max_resources: u64,
}

impl CompileLog {
    fn all_ms(&self) -> Vec<f64> {
        self.per_epoch.values().flatten().copied().collect()
    }

    /// Total compile time of the epochs built from `revision`.
    fn for_revision(&self, revision: u64) -> Option<f64> {
        let v: Vec<f64> = self
            .revision_of
            .iter()
            .filter(|(_, r)| **r == revision)
            .filter_map(|(e, _)| self.per_epoch.get(e))
            .flatten()
            .copied()
            .collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }
}

fn compile_log(lines: &[String]) -> CompileLog {
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|t| t.strip_prefix(key))
            .and_then(|v| v.trim_matches('"').parse().ok())
    };
    let mut log = CompileLog::default();
    for l in lines {
        if l.contains("new epoch") {
            if let (Some(e), Some(r)) = (field(l, "epoch="), field(l, "revision=")) {
                log.revision_of.insert(e, r);
                log.epochs += 1;
            }
        } else if l.contains(" compiled")
            && let (Some(e), Some(t)) = (field(l, "epoch="), field(l, "elapsed_ms="))
        {
            log.per_epoch.entry(e).or_default().push(t as f64);
            log.max_resources = log.max_resources.max(field(l, "resources=").unwrap_or(0));
        }
    }
    log
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} × {model}, {:.0} GiB RAM, Linux {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_kib as f64 / 1048576.0,
        kernel.trim()
    )
}
