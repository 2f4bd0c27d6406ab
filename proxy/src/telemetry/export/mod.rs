//! OTLP export of spans, access logs and metrics: batched, asynchronous and bounded.
//!
//! The request path only offers a finished record to a bounded queue per signal (8192 items);
//! a full queue drops the item and counts it in `trellis_telemetry_dropped_total{signal}`, so
//! traffic never waits for telemetry. A thread of its own (`otlp-export`) turns the records
//! into OTLP and sends them (see [`worker`]); a failed export is dropped and counted too.
//!
//! Where it goes: `--otlp-endpoint` (gRPC, or OTLP/HTTP with `--otlp-protocol http/protobuf`);
//! else, under `--control`, the collector the control plane names in its updates (followed
//! across reconnects, [`Destination`]); else nowhere, and nothing is queued.

mod endpoint;
mod logs;
mod resource;
mod spans;
mod transport;
mod worker;

pub use endpoint::{OtlpProtocol, Target};
pub use resource::Source;

use super::TelemetrySettings;
use super::metrics::Metrics;
use super::record::{RecordSink, RequestRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use transport::Payload;

/// Items waiting per signal; more are dropped and counted.
pub const QUEUE: usize = 8192;
/// How long one export may take by default (as `OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A finished request waiting for export, with the time it ended.
#[derive(Debug)]
pub struct Finished {
    pub record: RequestRecord,
    pub end: SystemTime,
}

/// What [`start`] gives the proxy.
#[derive(Default)]
pub struct Exporter {
    /// Feed these every finished record.
    pub sinks: Vec<Arc<dyn RecordSink>>,
    /// Set when the endpoint is the control plane's to name.
    pub control_collector: Option<Destination>,
    /// Sends what is queued when the proxy stops.
    pub flusher: Option<Flusher>,
}

/// Starts the export thread when there is (or may be) somewhere to export to.
pub fn start(settings: &TelemetrySettings, metrics: Arc<Metrics>) -> Result<Exporter, String> {
    let fixed = match &settings.otlp_endpoint {
        Some(e) => Some(
            Target::parse(e, settings.otlp_protocol)
                .map_err(|e| format!("--otlp-endpoint: {e}"))?,
        ),
        None if settings.follow_control_collector => None,
        None => return Ok(Exporter::default()),
    };
    match &fixed {
        Some(target) => tracing::info!(%target, "exporting telemetry over OTLP"),
        None => tracing::info!(
            "exporting telemetry to the control plane's collector, once it names one"
        ),
    }
    let active = Arc::new(AtomicBool::new(fixed.is_some()));
    let (destination_tx, destination) = watch::channel(fixed.clone());
    let (flush_tx, flushing) = watch::channel(false);
    let pending = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(worker::Shared {
        source: Arc::new(Source::new(settings)),
        destination,
        timeout: settings.otlp_timeout,
        flushing,
        pending: pending.clone(),
    });
    let (spans_tx, spans_rx) = mpsc::channel(QUEUE);
    let (logs_tx, logs_rx) = if settings.otlp_access_log {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let sink = ExportSink {
        active: active.clone(),
        pending: pending.clone(),
        spans: spans_tx,
        logs: logs_tx,
        dropped_spans: metrics.dropped_counter("spans"),
        dropped_logs: metrics.dropped_counter("logs"),
    };
    let dropped_spans = sink.dropped_spans.clone();
    let dropped_logs = sink.dropped_logs.clone();
    let dropped_metrics = metrics.dropped_counter("metrics");
    let interval = settings.metrics_push_interval;
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the OTLP export runtime; telemetry is not exported");
                    return;
                }
            };
            runtime.block_on(async move {
                let spans = worker::batches(
                    "spans",
                    spans_rx,
                    |s, b| Payload::Traces(spans::request(s, b)),
                    shared.clone(),
                    dropped_spans,
                );
                let logs = async {
                    if let Some(rx) = logs_rx {
                        let convert: worker::Convert = |s, b| Payload::Logs(logs::request(s, b));
                        worker::batches("logs", rx, convert, shared.clone(), dropped_logs).await;
                    }
                };
                let pushed = worker::metrics(metrics, interval, shared.clone(), dropped_metrics);
                tokio::join!(spans, logs, pushed);
            });
        })
        .map_err(|e| format!("cannot start the OTLP export thread: {e}"))?;
    Ok(Exporter {
        sinks: vec![Arc::new(sink)],
        control_collector: fixed.is_none().then(|| Destination {
            tx: Arc::new(destination_tx),
            active,
        }),
        flusher: Some(Flusher {
            flush: flush_tx,
            pending,
        }),
    })
}

/// Empties the export queues when the proxy stops, so its last requests are reported.
pub struct Flusher {
    flush: watch::Sender<bool>,
    pending: Arc<AtomicUsize>,
}

impl Flusher {
    /// Exports what is queued now without waiting for batches to fill; `true` once every item
    /// was sent (or dropped), `false` if `timeout` passed first.
    pub async fn flush(&self, timeout: Duration) -> bool {
        self.flush.send_replace(true);
        let deadline = std::time::Instant::now() + timeout;
        while self.pending.load(Ordering::Relaxed) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// The control plane's collector endpoint, handed over by the push client.
#[derive(Clone)]
pub struct Destination {
    tx: Arc<watch::Sender<Option<Target>>>,
    active: Arc<AtomicBool>,
}

impl Destination {
    /// The control plane named its collector's OTLP gRPC endpoint (`""`: it has none). An
    /// unspecified host in it means `control_host`, the host the control plane was reached at.
    pub fn follow_control(&self, endpoint: &str, control_host: &str) {
        let target = if endpoint.trim().is_empty() {
            None
        } else {
            match Target::pushed(endpoint, control_host) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "the control plane named an unusable OTLP endpoint; not exporting");
                    None
                }
            }
        };
        self.active.store(target.is_some(), Ordering::Relaxed);
        let changed = self.tx.send_if_modified(|current| {
            let changed = *current != target;
            if changed {
                current.clone_from(&target);
            }
            changed
        });
        if changed {
            match &target {
                Some(t) => {
                    tracing::info!(target = %t, "exporting telemetry to the control plane's collector")
                }
                None => tracing::info!(
                    "the control plane names no collector; telemetry is not exported"
                ),
            }
        }
    }

    /// Where telemetry goes now.
    pub fn current(&self) -> Option<Target> {
        self.tx.borrow().clone()
    }
}

/// The request path's side: offers finished records to the queues, never waiting.
struct ExportSink {
    /// False while there is no endpoint: nothing is queued.
    active: Arc<AtomicBool>,
    /// Items queued and not yet exported or dropped by the worker.
    pending: Arc<AtomicUsize>,
    spans: mpsc::Sender<Arc<Finished>>,
    logs: Option<mpsc::Sender<Arc<Finished>>>,
    dropped_spans: Arc<AtomicU64>,
    dropped_logs: Arc<AtomicU64>,
}

impl RecordSink for ExportSink {
    fn record(&self, r: &RequestRecord) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let sampled = r.span.is_some();
        if !sampled && self.logs.is_none() {
            return;
        }
        let finished = Arc::new(Finished {
            record: r.clone(),
            end: r.start_time + r.started.elapsed(),
        });
        if sampled {
            self.offer(&self.spans, finished.clone(), &self.dropped_spans);
        }
        if let Some(logs) = &self.logs {
            self.offer(logs, finished, &self.dropped_logs);
        }
    }
}

impl ExportSink {
    fn offer(&self, queue: &mpsc::Sender<Arc<Finished>>, item: Arc<Finished>, dropped: &AtomicU64) {
        // Counted before it is queued, so the worker never takes off more than was put on.
        self.pending.fetch_add(1, Ordering::Relaxed);
        if queue.try_send(item).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
