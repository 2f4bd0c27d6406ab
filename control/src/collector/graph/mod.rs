//! The live service graph (petgraph): nodes for workloads, apps, versioned apps, services and
//! unknown sources; edges with rolling rates, errors, latency quantiles, bytes and mTLS share.
//!
//! - [`ingest`] turns the cumulative Istio metrics proxies push into deltas per edge ([`istio`]
//!   says which series make which edge, as Kiali reads them); [`traces`] adds edges between
//!   services outside the mesh from their spans.
//! - [`window`] keeps the deltas in 10-second and minute slots (an hour in memory); [`history`]
//!   stores closed minutes in the telemetry database so older windows can be replayed.
//! - [`view`] builds a graph type's nodes and edges for a window; [`api`] serves it as JSON;
//!   [`export`] adds mesh-wide Istio series and edge series to the control plane's `/metrics`.
//!
//! Telemetry never waits on the graph for long: each push is folded in under one short lock, and
//! everything kept is bounded (series, edges, spans), beyond which new items are dropped and
//! counted in `trellis_graph_dropped_total`.

pub mod api;
pub mod export;
pub mod health;
pub mod history;
mod ingest;
pub mod istio;
pub mod model;
pub mod quantile;
mod traces;
pub mod view;
pub mod window;

pub use view::{GraphJson, GraphType, ViewOptions};

use ingest::Ingest;
use model::{EdgeKey, Stats};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use traces::SpanIndex;
use view::{Fronting, WindowSource};
use window::{MinuteBatch, Plan, Windows};

/// Where the graph reads the time: the system clock, or a clock tests and benchmarks move.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A clock that stays at `start_ms` (unix milliseconds) until moved.
    pub fn manual(start_ms: i64) -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => trellis_api::time::now_millis(),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// Moves a manual clock forward (the system clock moves by itself).
    pub fn advance_ms(&self, ms: i64) {
        if let Clock::Manual(t) = self {
            t.fetch_add(ms, Ordering::Relaxed);
        }
    }
}

/// A graph query: what to draw, over how long, ending when (default now).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphQuery {
    pub view: ViewOptions,
    pub duration_ms: i64,
    /// Unix milliseconds; `None` for now.
    pub query_time_ms: Option<i64>,
}

/// Series, edges and windows, under one lock.
#[derive(Default)]
struct State {
    ingest: Ingest,
    windows: Windows,
}

/// The live graph, shared by the OTLP receivers, the graph API, the history writer and `/metrics`.
pub struct LiveGraph {
    clock: Clock,
    state: Mutex<State>,
    spans: Mutex<SpanIndex>,
    /// Closed minutes the history writer took but could not store yet.
    unwritten: Mutex<Vec<MinuteBatch>>,
}

/// Minutes kept for a history writer that keeps failing (then the oldest are dropped).
const MAX_UNWRITTEN_MINUTES: usize = 120;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveGraph {
    pub fn new() -> LiveGraph {
        LiveGraph::with_clock(Clock::System)
    }

    pub fn with_clock(clock: Clock) -> LiveGraph {
        LiveGraph {
            clock,
            state: Mutex::new(State::default()),
            spans: Mutex::new(SpanIndex::default()),
            unwritten: Mutex::new(Vec::new()),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Folds in metrics pushed by proxies (Istio's standard metrics, cumulative).
    pub fn observe_metrics(&self, request: &ExportMetricsServiceRequest) {
        let now = self.clock.now_ms();
        let mut state = lock(&self.state);
        let State { ingest, windows } = &mut *state;
        ingest.observe(windows, request, now);
    }

    /// Folds in spans: edges between services not in the mesh (graph from traces).
    pub fn observe_spans(&self, request: &ExportTraceServiceRequest) {
        let calls = lock(&self.spans).observe(request);
        if calls.is_empty() {
            return;
        }
        let now = self.clock.now_ms();
        let mut state = lock(&self.state);
        let State { ingest, windows } = &mut *state;
        for (key, stats) in calls {
            match windows.edges.intern(key) {
                Some(id) => windows.add(now, id, &stats),
                None => ingest.dropped.edge_limit += 1,
            }
        }
    }

    /// Where a query is answered from.
    pub fn plan(&self, query: &GraphQuery) -> Plan {
        window::plan(self.clock.now_ms(), query.query_time_ms, query.duration_ms)
    }

    /// Answers a query from memory; `None` when its window reaches past what memory keeps (see
    /// [`history::query`]).
    pub fn query(&self, query: &GraphQuery) -> Option<GraphJson> {
        let plan = self.plan(query);
        if let Plan::History(_) = plan {
            return None;
        }
        let (edges, fronting) = self.window_edges(plan, self.clock.now_ms());
        Some(view::build(
            &edges,
            &fronting,
            &query.view,
            plan.span(),
            WindowSource::Memory,
        ))
    }

    /// Per-edge sums of a memory plan, and which services front which workloads.
    fn window_edges(&self, plan: Plan, now: i64) -> (Vec<(Arc<EdgeKey>, Stats)>, Fronting) {
        let state = lock(&self.state);
        (
            state.windows.sum(plan, now),
            state.windows.edges.fronting.clone(),
        )
    }

    /// The services in front of each workload, as seen since start.
    fn fronting(&self) -> Fronting {
        lock(&self.state).windows.edges.fronting.clone()
    }

    /// Minutes that closed since the last call (and any a failed write gave back), oldest first.
    pub fn take_closed_minutes(&self) -> Vec<MinuteBatch> {
        let now = self.clock.now_ms();
        let fresh = lock(&self.state).windows.take_closed_minutes(now);
        let mut batches = std::mem::take(&mut *lock(&self.unwritten));
        batches.extend(fresh);
        batches
    }

    /// Gives back minutes a write failed to store, to retry; the oldest beyond a bound are lost.
    pub fn give_back(&self, batches: Vec<MinuteBatch>) {
        let mut unwritten = lock(&self.unwritten);
        let mut all = batches;
        all.append(&mut unwritten);
        all.sort_by_key(|b| b.minute_ms);
        let excess = all.len().saturating_sub(MAX_UNWRITTEN_MINUTES);
        if excess > 0 {
            tracing::warn!(
                minutes = excess,
                "graph history: dropping minutes that could not be stored"
            );
        }
        *unwritten = all.split_off(excess);
    }

    /// Adds the mesh-wide aggregates and graph edge series to the control plane's `/metrics`.
    pub fn register_metrics(
        self: &Arc<Self>,
        registry: &mut prometheus_client::registry::Registry,
    ) {
        registry.register_collector(Box::new(export::GraphCollector::new(self.clone())));
    }
}

impl Default for LiveGraph {
    fn default() -> Self {
        Self::new()
    }
}
