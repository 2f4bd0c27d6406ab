//! The export thread's loops: spans and logs in batches (up to [`MAX_BATCH`] items, or what
//! arrived within [`BATCH_DELAY`] of the first), metrics every push interval. One export per
//! signal is in flight at a time; a failed or timed-out export drops its items (counted) and
//! the signal backs off (100 ms doubling to 5 s) while the queue in front of it stays bounded.

use super::Finished;
use super::endpoint::Target;
use super::resource::Source;
use super::transport::{Payload, Transport};
use crate::config::control::backoff::Backoff;
use crate::telemetry::metrics::Metrics;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Most items in one export request.
pub const MAX_BATCH: usize = 512;
/// How long a batch waits to fill after its first item.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);

/// How often a filling batch looks whether the queue already holds a full one.
const FILL_CHECK: Duration = Duration::from_millis(100);

/// Builds a signal's export request from a batch.
pub type Convert = fn(&Source, &[Arc<Finished>]) -> Payload;

/// What every loop shares: what it exports as, where, and how long an export may take.
pub struct Shared {
    pub source: Arc<Source>,
    pub destination: watch::Receiver<Option<Target>>,
    pub timeout: Duration,
    /// Set when the proxy stops: send what is queued without waiting for batches to fill.
    pub flushing: watch::Receiver<bool>,
    /// Items queued or being exported, over all signals (counted up by the sink).
    pub pending: Arc<AtomicUsize>,
}

/// The current endpoint and a transport to it, rebuilt when the endpoint changes.
struct Link {
    destination: watch::Receiver<Option<Target>>,
    current: Option<(Target, Transport)>,
}

impl Link {
    /// Must be made on the export runtime (a gRPC channel starts a task).
    fn new(mut destination: watch::Receiver<Option<Target>>) -> Link {
        let target = destination.borrow_and_update().clone();
        let mut link = Link {
            destination,
            current: None,
        };
        link.connect(target);
        link
    }

    fn connect(&mut self, target: Option<Target>) {
        self.current = target.map(|t| {
            let transport = Transport::new(&t);
            (t, transport)
        });
    }

    fn transport(&mut self) -> Option<(&Target, &Transport)> {
        if self.destination.has_changed().unwrap_or(false) {
            let target = self.destination.borrow_and_update().clone();
            self.connect(target);
        }
        self.current.as_ref().map(|(t, tr)| (t, tr))
    }
}

/// Logs an outage once when it starts and once when it ends, not once per failed export.
struct Health {
    signal: &'static str,
    failing_since: Option<Instant>,
    backoff: Backoff,
}

impl Health {
    fn new(signal: &'static str) -> Health {
        Health {
            signal,
            failing_since: None,
            backoff: Backoff::default(),
        }
    }

    fn succeeded(&mut self, target: &Target, rejected: u64) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(signal = self.signal, %target, after = ?since.elapsed(), "OTLP export works again");
        }
        if rejected > 0 {
            tracing::debug!(signal = self.signal, %target, rejected, "OTLP receiver rejected items");
        }
        self.backoff.reset();
    }

    /// Records a failure; returns how long to wait before the next attempt.
    fn failed(&mut self, target: &Target, error: &str, dropped: u64) -> Duration {
        if self.failing_since.is_none() {
            tracing::warn!(
                signal = self.signal, %target, %error, dropped,
                "OTLP export failed; dropping and retrying with back-off"
            );
            self.failing_since = Some(Instant::now());
        } else {
            tracing::debug!(signal = self.signal, %target, %error, dropped, "OTLP export failed again");
        }
        self.backoff.next_delay()
    }
}

/// Sends one payload: `Ok(rejected)` or why it failed (including taking longer than `timeout`).
async fn send(transport: &Transport, payload: Payload, timeout: Duration) -> Result<u64, String> {
    match tokio::time::timeout(timeout, transport.send(payload)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Exports batches of `rx`'s items as `convert` makes them, until the queue closes.
pub async fn batches(
    signal: &'static str,
    mut rx: mpsc::Receiver<Arc<Finished>>,
    convert: Convert,
    shared: Arc<Shared>,
    dropped: Arc<AtomicU64>,
) {
    let mut link = Link::new(shared.destination.clone());
    let mut health = Health::new(signal);
    let mut flushing = shared.flushing.clone();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Waits for the batch to fill without listening to the queue, so the request path's
        // sends do not wake this thread (which may share the workers' CPU) item by item; the
        // queue's length is looked at every FILL_CHECK instead.
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        loop {
            let now = tokio::time::Instant::now();
            if batch.len() + rx.len() >= MAX_BATCH || now >= deadline {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.min(now + FILL_CHECK)) => {}
                _ = flushing.wait_for(|f| *f) => break,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let items = batch.len();
        let pause = match link.transport() {
            // The endpoint went away while these waited.
            None => {
                dropped.fetch_add(items as u64, Ordering::Relaxed);
                None
            }
            Some((target, transport)) => {
                let payload = convert(&shared.source, &batch);
                match send(transport, payload, shared.timeout).await {
                    Ok(rejected) => {
                        dropped.fetch_add(rejected, Ordering::Relaxed);
                        health.succeeded(target, rejected);
                        None
                    }
                    Err(e) => {
                        dropped.fetch_add(items as u64, Ordering::Relaxed);
                        Some(health.failed(&target.clone(), &e, items as u64))
                    }
                }
            }
        };
        batch.clear();
        shared.pending.fetch_sub(items, Ordering::Relaxed);
        if let Some(pause) = pause.filter(|_| !*flushing.borrow()) {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Pushes `metrics.to_otlp()` (cumulative) every `interval` while there is an endpoint.
pub async fn metrics(
    metrics: Arc<Metrics>,
    interval: Duration,
    shared: Arc<Shared>,
    dropped: Arc<AtomicU64>,
) {
    let mut link = Link::new(shared.destination.clone());
    let mut health = Health::new("metrics");
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some((target, transport)) = link.transport() else {
            continue;
        };
        let list = metrics.to_otlp();
        if list.is_empty() {
            continue;
        }
        let points = data_points(&list);
        let payload = Payload::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(shared.source.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(shared.source.scope.clone()),
                    metrics: list,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        });
        match send(transport, payload, shared.timeout).await {
            Ok(rejected) => {
                dropped.fetch_add(rejected, Ordering::Relaxed);
                health.succeeded(target, rejected);
            }
            Err(e) => {
                dropped.fetch_add(points, Ordering::Relaxed);
                let target = target.clone();
                // Ticks missed while backing off are skipped: the next push is cumulative.
                tokio::time::sleep(health.failed(&target, &e, points)).await;
            }
        }
    }
}

/// Data points in `metrics` (what a failed metrics push drops).
fn data_points(metrics: &[Metric]) -> u64 {
    metrics
        .iter()
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}
