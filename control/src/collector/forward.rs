//! OTLP forwarding (`--otlp-forward URL`): every trace request received is sent on, as received,
//! to an external OTLP/gRPC endpoint (Jaeger, Tempo, an OpenTelemetry Collector). Asynchronous
//! and bounded: a full queue drops the request and counts its spans; a slow or absent endpoint
//! never holds up ingest.

use super::self_metrics::CollectorMetrics;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

/// Requests waiting to be forwarded.
const QUEUE_REQUESTS: usize = 512;
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending side, held by the ingest pipeline.
#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::Sender<(ExportTraceServiceRequest, usize)>,
    metrics: Arc<CollectorMetrics>,
}

/// Checks `url` (`http://host:port`; an OTLP/gRPC endpoint) and starts the sending task, which
/// ends once the [`Forwarder`] is dropped and its queue is sent.
pub fn start(
    url: &str,
    metrics: Arc<CollectorMetrics>,
) -> Result<(Forwarder, JoinHandle<()>), String> {
    if !url.starts_with("http://") {
        return Err(format!(
            "--otlp-forward {url:?}: expected an OTLP/gRPC endpoint like http://host:4317 \
             (https is not supported)"
        ));
    }
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("--otlp-forward {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(EXPORT_TIMEOUT);
    let mut client = TraceServiceClient::new(endpoint.connect_lazy());
    let (tx, mut rx) = mpsc::channel::<(ExportTraceServiceRequest, usize)>(QUEUE_REQUESTS);
    let task_metrics = metrics.clone();
    let target = url.to_string();
    let task = tokio::spawn(async move {
        let mut failing = false;
        while let Some((request, spans)) = rx.recv().await {
            match client.export(request).await {
                Ok(_) => {
                    if failing {
                        tracing::info!("forwarding spans to {target} works again");
                        failing = false;
                    }
                    task_metrics.forward("sent", spans);
                }
                Err(status) => {
                    if !failing {
                        tracing::warn!("forwarding spans to {target} failed: {status}");
                        failing = true;
                    }
                    task_metrics.forward("failed", spans);
                }
            }
        }
    });
    Ok((Forwarder { tx, metrics }, task))
}

impl Forwarder {
    /// Queues a request of `spans` spans, or drops and counts it when the queue is full.
    pub fn send(&self, request: ExportTraceServiceRequest, spans: usize) {
        if self.tx.try_send((request, spans)).is_err() {
            self.metrics.forward("dropped", spans);
        }
    }
}
