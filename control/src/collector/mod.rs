//! The collector: OTLP in (gRPC and HTTP), the live service graph, storage of spans, logs and
//! graph history, and the exports (Prometheus `/metrics`, the Jaeger query API, OTLP forwarding).
//!
//! Data path: a receiver ([`receiver`]) decodes a request and hands it to [`Ingest`], which
//! validates it into rows ([`spans`], [`logs`]), feeds the [`LiveGraph`], queues the rows for
//! the one storage [`writer`] (bounded: a full queue refuses the request as retryable) and, with
//! `--otlp-forward`, queues the request for the [`forward`]er. The [`jaeger`] API and the graph
//! read back from [`storage`]; `/metrics` serves [`self_metrics`] and the graph's series.

pub mod forward;
pub mod graph;
pub mod ingest;
pub mod jaeger;
mod json;
pub mod logs;
pub mod prometheus_text;
pub mod receiver;
pub mod self_metrics;
pub mod spans;
pub mod storage;
pub mod writer;

pub use graph::LiveGraph;
pub use ingest::Ingest;
pub use storage::{Retention, TelemetryStore};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use receiver::grpc::GrpcReceiver;
use self_metrics::CollectorMetrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the collector is set up (from `trellis control`'s flags).
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// The telemetry database (see [`storage::telemetry_url`]).
    pub database_url: String,
    pub retention: Retention,
    /// How often retention runs.
    pub prune_interval: Duration,
    /// Most spans and log records waiting for the writer before requests are refused.
    pub max_queued_items: usize,
    /// Most rows written in one transaction.
    pub batch_rows: usize,
    /// Forward every trace request to this OTLP/gRPC endpoint.
    pub otlp_forward: Option<String>,
}

impl CollectorSettings {
    /// Defaults for everything but where the data goes.
    pub fn new(database_url: String) -> CollectorSettings {
        CollectorSettings {
            database_url,
            retention: Retention {
                max_age: Duration::from_secs(24 * 3600),
                max_spans: 10_000_000,
                max_logs: 10_000_000,
            },
            prune_interval: Duration::from_secs(10),
            max_queued_items: 65_536,
            batch_rows: 16_384,
            otlp_forward: None,
        }
    }
}

/// The collector's listening sockets, bound before anything is served so that a port in use is
/// reported at start ("cannot listen on --otlp-grpc ADDR: ...").
pub struct Listeners {
    pub otlp_grpc: TcpListener,
    pub otlp_http: TcpListener,
    pub jaeger: TcpListener,
    pub metrics: TcpListener,
}

/// Binds `addr`, naming the flag in the error.
pub async fn bind(flag: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {flag} {addr}: {e}"))
}

impl Listeners {
    pub async fn bind(
        otlp_grpc: SocketAddr,
        otlp_http: SocketAddr,
        jaeger: SocketAddr,
        metrics: SocketAddr,
    ) -> Result<Listeners, String> {
        Ok(Listeners {
            otlp_grpc: bind("--otlp-grpc", otlp_grpc).await?,
            otlp_http: bind("--otlp-http", otlp_http).await?,
            jaeger: bind("--jaeger", jaeger).await?,
            metrics: bind("--metrics", metrics).await?,
        })
    }
}

/// The running collector: the graph and the telemetry store for whoever reads them (the REST
/// API, the console), and the tasks behind ingest.
pub struct Collector {
    graph: Arc<LiveGraph>,
    store: Arc<TelemetryStore>,
    ingest: Arc<Ingest>,
    registry: Arc<Registry>,
    writer: JoinHandle<()>,
    forwarder: Option<JoinHandle<()>>,
}

/// The servers of a collector, stopping when `stopped` resolves.
pub struct Servers {
    tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

impl Collector {
    /// Opens storage and starts the writer (and the forwarder, if any).
    pub async fn start(settings: &CollectorSettings) -> Result<Collector, String> {
        Self::start_with_metrics(settings, |_| {}).await
    }

    /// [`Collector::start`], with `register` adding the rest of the control plane's series
    /// (the CA's counters) to the one `/metrics`.
    pub async fn start_with_metrics(
        settings: &CollectorSettings,
        register: impl FnOnce(&mut Registry),
    ) -> Result<Collector, String> {
        let store = Arc::new(
            TelemetryStore::open(&settings.database_url)
                .await
                .map_err(|e| {
                    format!(
                        "cannot open telemetry storage at {}: {e}",
                        crate::store::redact(&settings.database_url)
                    )
                })?,
        );
        let metrics = Arc::new(CollectorMetrics::default());
        let graph = Arc::new(LiveGraph::new());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        graph.register_metrics(&mut registry);
        register(&mut registry);

        let (forward, forwarder) = match &settings.otlp_forward {
            Some(url) => {
                let (f, task) = forward::start(url, metrics.clone())?;
                (Some(f), Some(task))
            }
            None => (None, None),
        };
        let (queue, queue_rx) = ingest::queue(settings.max_queued_items);
        let writer = writer::start(
            store.clone(),
            queue_rx,
            writer::WriterSettings {
                batch_rows: settings.batch_rows,
                retention: settings.retention,
                prune_interval: settings.prune_interval,
            },
            metrics.clone(),
        )
        .await
        .map_err(|e| format!("cannot start the telemetry writer: {e}"))?;
        let ingest = Arc::new(Ingest::new(graph.clone(), queue, forward, metrics));
        Ok(Collector {
            graph,
            store,
            ingest,
            registry: Arc::new(registry),
            writer,
            forwarder,
        })
    }

    /// The live service graph.
    pub fn graph(&self) -> &Arc<LiveGraph> {
        &self.graph
    }

    /// Span and log storage; its `pool()` is where other telemetry tables live.
    pub fn telemetry(&self) -> &Arc<TelemetryStore> {
        &self.store
    }

    /// The ingest pipeline (what the receivers call), e.g. for in-process producers.
    pub fn ingest(&self) -> &Arc<Ingest> {
        &self.ingest
    }

    /// `/metrics`: the collector's counters and the graph's series, in Prometheus' text format
    /// 0.0.4 (see [`prometheus_text`]).
    pub fn metrics_router(&self) -> Router {
        let registry = self.registry.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut text = String::new();
                    match prometheus_client::encoding::text::encode(&mut text, &registry) {
                        Ok(()) => (
                            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
                            prometheus_text::to_prometheus(&text),
                        )
                            .into_response(),
                        Err(e) => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            format!("encoding metrics: {e}"),
                        )
                            .into_response(),
                    }
                }
            }),
        )
    }

    /// The Jaeger query API.
    pub fn jaeger_router(&self) -> Router {
        jaeger::router(self.store.clone())
    }

    /// Serves OTLP/gRPC, OTLP/HTTP, the Jaeger API and `/metrics` on `listeners` until
    /// `stopped()` resolves.
    pub fn serve<F, Fut>(&self, listeners: Listeners, stopped: F) -> Servers
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let ingest = self.ingest.clone();
        let grpc = {
            let stopped = stopped();
            let ingest = ingest.clone();
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(GrpcReceiver::<receiver::Traces>::new(ingest.clone()))
                    .add_service(GrpcReceiver::<receiver::Metrics>::new(ingest.clone()))
                    .add_service(GrpcReceiver::<receiver::Logs>::new(ingest))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listeners.otlp_grpc),
                        stopped,
                    )
                    .await
                    .map_err(|e| format!("OTLP gRPC server: {e}"))
            })
        };
        let mut tasks = vec![("OTLP gRPC", grpc)];
        for (name, listener, app) in [
            (
                "OTLP HTTP",
                listeners.otlp_http,
                receiver::http::router(ingest),
            ),
            ("Jaeger query", listeners.jaeger, self.jaeger_router()),
            ("metrics", listeners.metrics, self.metrics_router()),
        ] {
            let stopped = stopped();
            let task = tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
                    .map_err(|e| format!("{name} server: {e}"))
            });
            tasks.push((name, task));
        }
        Servers { tasks }
    }

    /// After the servers have stopped: writes what is queued, lets the forwarder send what it
    /// holds (each within `grace`), and closes storage.
    pub async fn shutdown(self, grace: Duration) {
        let Collector {
            store,
            ingest,
            mut writer,
            forwarder,
            ..
        } = self;
        // The writer and the forwarder end once the last sender (held by Ingest) is gone.
        drop(ingest);
        if tokio::time::timeout(grace, &mut writer).await.is_err() {
            tracing::warn!("telemetry writer did not finish within {grace:?}; queued rows lost");
            writer.abort();
        }
        if let Some(mut forwarder) = forwarder
            && tokio::time::timeout(grace, &mut forwarder).await.is_err()
        {
            tracing::warn!("OTLP forwarding did not finish within {grace:?}");
            forwarder.abort();
        }
        store.close().await;
    }
}

impl Servers {
    /// Waits for every server to stop; the first error wins.
    pub async fn join(self) -> Result<(), String> {
        let mut result = Ok(());
        for (name, task) in self.tasks {
            let outcome = match task.await {
                Ok(r) => r,
                Err(e) => Err(format!("{name} server task: {e}")),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}
