//! The storage writer: the one task that writes telemetry rows. It takes whatever is queued (up
//! to a batch) and writes it in one transaction, so under load batches grow and per-row cost
//! falls; between batches it prunes by age and count. When every sender is gone (shutdown) it
//! writes what is left and ends.

use super::ingest::{QueueReceiver, Rows};
use super::self_metrics::{CollectorMetrics, TableLabel};
use super::storage::{OperationsSeen, Retention, TelemetryStore};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;
use trellis_api::time::now_millis;

/// How the writer batches and prunes.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Most rows written in one transaction.
    pub batch_rows: usize,
    pub retention: Retention,
    /// How often retention runs (sooner while a prune has more to delete).
    pub prune_interval: Duration,
}

/// Starts the writer; it ends once the queue's senders are all dropped and it is drained.
pub async fn start(
    store: Arc<TelemetryStore>,
    queue: QueueReceiver,
    settings: WriterSettings,
    metrics: Arc<CollectorMetrics>,
) -> Result<JoinHandle<()>, String> {
    let (spans, logs) = store.row_counts().await.map_err(|e| e.to_string())?;
    let writer = Writer {
        store,
        queue,
        settings,
        metrics,
        seen: OperationsSeen::default(),
        spans,
        logs,
    };
    writer.publish_counts();
    Ok(tokio::spawn(writer.run()))
}

struct Writer {
    store: Arc<TelemetryStore>,
    queue: QueueReceiver,
    settings: WriterSettings,
    metrics: Arc<CollectorMetrics>,
    seen: OperationsSeen,
    /// Rows in storage (counted at start, then kept up to date).
    spans: u64,
    logs: u64,
}

impl Writer {
    async fn run(mut self) {
        let mut next_prune = tokio::time::Instant::now();
        loop {
            tokio::select! {
                first = self.queue.rx.recv() => {
                    let Some(first) = first else { break };
                    self.write_batch(first).await;
                }
                _ = tokio::time::sleep_until(next_prune) => {
                    let more = self.prune().await;
                    let wait = if more { Duration::from_millis(50) } else { self.settings.prune_interval };
                    next_prune = tokio::time::Instant::now() + wait;
                }
            }
        }
        tracing::debug!("telemetry writer drained");
    }

    /// Writes `first` and whatever else is queued, up to a batch.
    async fn write_batch(&mut self, first: Rows) {
        let mut spans = Vec::new();
        let mut logs = Vec::new();
        let mut count = 0;
        let mut next = Some(first);
        while let Some(rows) = next {
            count += rows.len();
            match rows {
                Rows::Spans(mut r) => spans.append(&mut r),
                Rows::Logs(mut r) => logs.append(&mut r),
            }
            next = if count < self.settings.batch_rows {
                self.queue.rx.try_recv().ok()
            } else {
                None
            };
        }
        let (n_spans, n_logs) = (spans.len() as u64, logs.len() as u64);
        match self.store.write(spans, logs, &mut self.seen).await {
            Ok(()) => {
                self.spans += n_spans;
                self.logs += n_logs;
                CollectorMetrics::table(&self.metrics.stored, "spans", n_spans);
                CollectorMetrics::table(&self.metrics.stored, "logs", n_logs);
            }
            Err(e) => {
                tracing::warn!("telemetry rows lost ({n_spans} spans, {n_logs} logs): {e}");
                CollectorMetrics::table(&self.metrics.write_failed, "spans", n_spans);
                CollectorMetrics::table(&self.metrics.write_failed, "logs", n_logs);
            }
        }
        let left = self
            .queue
            .waiting
            .fetch_sub((n_spans + n_logs) as usize, Ordering::AcqRel)
            - (n_spans + n_logs) as usize;
        self.metrics.queued.set(left as i64);
        self.publish_counts();
    }

    /// One prune step; true when more is due.
    async fn prune(&mut self) -> bool {
        let now_us = now_millis().saturating_mul(1000);
        match self
            .store
            .prune(&self.settings.retention, now_us, self.spans, self.logs)
            .await
        {
            Ok(pruned) => {
                self.spans = self.spans.saturating_sub(pruned.spans);
                self.logs = self.logs.saturating_sub(pruned.logs);
                CollectorMetrics::table(&self.metrics.pruned, "spans", pruned.spans);
                CollectorMetrics::table(&self.metrics.pruned, "logs", pruned.logs);
                if pruned.spans + pruned.logs > 0 {
                    tracing::debug!(spans = pruned.spans, logs = pruned.logs, "pruned telemetry");
                }
                self.publish_counts();
                pruned.more
            }
            Err(e) => {
                tracing::warn!("pruning telemetry failed: {e}");
                false
            }
        }
    }

    fn publish_counts(&self) {
        for (table, n) in [("spans", self.spans), ("logs", self.logs)] {
            self.metrics
                .rows
                .get_or_create(&TableLabel { table })
                .set(n as i64);
        }
    }
}
