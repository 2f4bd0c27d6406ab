//! What every accepted OTLP request goes through, whichever receiver it came from: validation into
//! storage rows, the live graph, the bounded queue to the storage writer, and forwarding.
//!
//! The queue is bounded in items (spans + log records waiting to be written). A request whose
//! items do not fit is refused as a whole with a retryable answer (gRPC UNAVAILABLE, HTTP 503),
//! as OTLP prescribes for an overloaded server, and counted as dropped; nothing of it reaches the
//! graph either, so a retry is not counted twice. Metrics are not stored raw: they only feed the
//! graph (which keeps the aggregates), so they are never refused for storage load.

use super::forward::Forwarder;
use super::graph::LiveGraph;
use super::logs::{self, LogRow};
use super::self_metrics::{CollectorMetrics, Signal};
use super::spans::{self, SpanRow};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Rows on their way to the writer.
#[derive(Debug)]
pub enum Rows {
    Spans(Vec<SpanRow>),
    Logs(Vec<LogRow>),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Spans(r) => r.len(),
            Rows::Logs(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request taken in; some items may have been invalid (OTLP partial success).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: usize,
    /// Why (the first invalid item), empty when nothing was rejected.
    pub message: String,
}

/// A request refused as a whole because the collector is overloaded; the client should retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Overloaded(pub String);

/// The items waiting for the writer, bounded.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<Rows>,
    waiting: Arc<AtomicUsize>,
    capacity: usize,
}

/// The writer's end of the queue.
pub struct QueueReceiver {
    pub rx: mpsc::Receiver<Rows>,
    /// Items queued or being written; the writer subtracts what it has written.
    pub waiting: Arc<AtomicUsize>,
}

/// A queue holding at most `capacity` items.
pub fn queue(capacity: usize) -> (Queue, QueueReceiver) {
    let (tx, rx) = mpsc::channel(4096);
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Queue {
            tx,
            waiting: waiting.clone(),
            capacity,
        },
        QueueReceiver { rx, waiting },
    )
}

impl Queue {
    /// Queues `rows` unless that would pass the capacity (one batch larger than the whole
    /// capacity still goes into an empty queue, so no valid request is refused forever).
    fn push(&self, rows: Rows) -> Result<(), Overloaded> {
        let n = rows.len();
        let before = self.waiting.fetch_add(n, Ordering::AcqRel);
        if let Some(overloaded) = self.refusal(before, n) {
            self.waiting.fetch_sub(n, Ordering::AcqRel);
            return Err(overloaded);
        }
        self.tx.try_send(rows).map_err(|_| {
            self.waiting.fetch_sub(n, Ordering::AcqRel);
            Overloaded("the collector's storage queue is full; retry later".into())
        })
    }

    /// Whether `n` more items would be refused now (checked before the work of converting a
    /// request, so an overloaded collector spends little on what it refuses).
    fn is_full_for(&self, n: usize) -> Option<Overloaded> {
        self.refusal(self.waiting(), n)
    }

    /// The refusal of `n` more items when `waiting` are queued, if they do not fit.
    fn refusal(&self, waiting: usize, n: usize) -> Option<Overloaded> {
        (waiting > 0 && waiting + n > self.capacity).then(|| {
            Overloaded(format!(
                "the collector's storage queue is full ({waiting} of {} items waiting); retry later",
                self.capacity
            ))
        })
    }

    /// Items waiting or being written.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// The shared pipeline behind the gRPC and HTTP receivers.
pub struct Ingest {
    graph: Arc<LiveGraph>,
    queue: Queue,
    forward: Option<Forwarder>,
    metrics: Arc<CollectorMetrics>,
}

impl Ingest {
    pub fn new(
        graph: Arc<LiveGraph>,
        queue: Queue,
        forward: Option<Forwarder>,
        metrics: Arc<CollectorMetrics>,
    ) -> Ingest {
        Ingest {
            graph,
            queue,
            forward,
            metrics,
        }
    }

    pub fn metrics(&self) -> &CollectorMetrics {
        &self.metrics
    }

    /// Spans: stored, folded into the graph, forwarded.
    pub fn traces(&self, request: ExportTraceServiceRequest) -> Result<Accepted, Overloaded> {
        let received = spans::count(&request);
        CollectorMetrics::signal(&self.metrics.received, Signal::Traces, received);
        self.refuse_early(Signal::Traces, received)?;
        let out = spans::rows(&request);
        let valid = out.rows.len();
        self.store(Signal::Traces, Rows::Spans(out.rows), out.rejected)?;
        self.graph.observe_spans(&request);
        if let Some(forward) = &self.forward {
            forward.send(request, received);
        }
        Ok(self.accepted(Signal::Traces, valid, out.rejected, out.first_error))
    }

    /// Log records: stored.
    pub fn logs(&self, request: ExportLogsServiceRequest) -> Result<Accepted, Overloaded> {
        let received = logs::count(&request);
        CollectorMetrics::signal(&self.metrics.received, Signal::Logs, received);
        self.refuse_early(Signal::Logs, received)?;
        let out = logs::rows(&request);
        let valid = out.rows.len();
        self.store(Signal::Logs, Rows::Logs(out.rows), out.rejected)?;
        Ok(self.accepted(Signal::Logs, valid, out.rejected, out.first_error))
    }

    /// Metrics: folded into the graph (never stored raw).
    pub fn metrics_request(&self, request: ExportMetricsServiceRequest) -> Accepted {
        let points = data_points(&request);
        CollectorMetrics::signal(&self.metrics.received, Signal::Metrics, points);
        self.graph.observe_metrics(&request);
        self.accepted(Signal::Metrics, points, 0, None)
    }

    /// Refuses `n` items before any conversion when they could not be queued anyway.
    fn refuse_early(&self, signal: Signal, n: usize) -> Result<(), Overloaded> {
        match self.queue.is_full_for(n) {
            Some(overloaded) => {
                CollectorMetrics::signal(&self.metrics.dropped, signal, n);
                Err(overloaded)
            }
            None => Ok(()),
        }
    }

    fn store(&self, signal: Signal, rows: Rows, rejected: usize) -> Result<(), Overloaded> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        self.queue.push(rows).inspect_err(|_| {
            CollectorMetrics::signal(&self.metrics.dropped, signal, n);
            CollectorMetrics::signal(&self.metrics.rejected, signal, rejected);
        })?;
        self.metrics.queued.set(self.queue.waiting() as i64);
        Ok(())
    }

    fn accepted(
        &self,
        signal: Signal,
        valid: usize,
        rejected: usize,
        first_error: Option<String>,
    ) -> Accepted {
        CollectorMetrics::signal(&self.metrics.accepted, signal, valid);
        CollectorMetrics::signal(&self.metrics.rejected, signal, rejected);
        Accepted {
            rejected,
            message: first_error
                .map(|e| {
                    if rejected > 1 {
                        format!("{rejected} items rejected; the first: {e}")
                    } else {
                        e
                    }
                })
                .unwrap_or_default(),
        }
    }
}

/// Counts the data points of a metrics request.
pub fn data_points(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum()
}
