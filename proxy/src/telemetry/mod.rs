//! What the proxy reports about traffic: Envoy's response flags, the per-request record, Istio's
//! standard metrics, spans with W3C/B3 propagation, the access log, the peer metadata exchanged
//! with other proxies, and OTLP export of all of it.

pub mod access_log;
pub mod export;
pub mod flags;
pub mod metrics;
pub mod peer;
pub mod record;
pub mod trace;

pub use flags::ResponseFlags;
pub use record::{RecordSink, RequestRecord};

use record::{Direction, Sinks};
use std::sync::Arc;
use std::time::Duration;
use trellis_api::model::NodeIdentity;

/// Where the access log's JSON lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(std::path::PathBuf),
}

/// What the proxy's telemetry is configured from (flags of `trellis-proxy`).
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// The workload this proxy runs beside: the `source_*`/`destination_*` labels it reports.
    pub node: NodeIdentity,
    /// Istio's `cluster` label (`source_cluster`, `destination_cluster`).
    pub cluster: String,
    /// OTLP endpoint given by flag; when absent, the control plane's collector (if connected).
    pub otlp_endpoint: Option<String>,
    /// Percentage of new traces sampled (0–100), as Istio's `sampling`.
    pub trace_sampling: f64,
    /// How often metrics are pushed over OTLP.
    pub metrics_push_interval: Duration,
    pub access_log: AccessLogTarget,
    /// Also send access log records over OTLP (logs signal).
    pub otlp_access_log: bool,
}

/// The proxy's telemetry: the request-path hooks and the sinks finished records go to.
pub struct Telemetry {
    pub sinks: Sinks,
    pub peer: peer::PeerExchange,
    pub tracer: trace::Tracer,
    pub metrics: Arc<metrics::Metrics>,
}

impl Telemetry {
    /// Starts the access log writer and the exporters.
    pub fn start(settings: &TelemetrySettings) -> Result<Telemetry, String> {
        let metrics = Arc::new(metrics::Metrics::new(settings));
        let mut sinks: Vec<Arc<dyn RecordSink>> = vec![metrics.clone()];
        let out: Option<Box<dyn std::io::Write + Send>> = match &settings.access_log {
            AccessLogTarget::Off => None,
            AccessLogTarget::Stdout => Some(Box::new(std::io::stdout())),
            AccessLogTarget::File(path) => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--access-log {}: {e}", path.display()))?,
            )),
        };
        if let Some(out) = out {
            let log = access_log::AccessLog::start(out, metrics.dropped_counter("access_log"));
            sinks.push(Arc::new(log));
        }
        sinks.extend(export::start(settings, metrics.clone())?);
        Ok(Telemetry {
            sinks: Sinks::new(sinks),
            peer: peer::PeerExchange::new(settings),
            tracer: trace::Tracer::new(settings),
            metrics,
        })
    }

    /// Telemetry that reports nothing (tests of the request path).
    pub fn disabled() -> Telemetry {
        let settings = TelemetrySettings {
            node: NodeIdentity::default(),
            cluster: String::new(),
            otlp_endpoint: None,
            trace_sampling: 0.0,
            metrics_push_interval: Duration::from_secs(5),
            access_log: AccessLogTarget::Off,
            otlp_access_log: false,
        };
        Telemetry {
            sinks: Sinks::default(),
            peer: peer::PeerExchange::new(&settings),
            tracer: trace::Tracer::new(&settings),
            metrics: Arc::new(metrics::Metrics::new(&settings)),
        }
    }

    /// Called with the request's headers as they arrive, before routing: reads (and strips) the
    /// peer's metadata and trace context, and writes what the next hop should see.
    pub fn on_request(
        &self,
        direction: Direction,
        headers: &mut http::HeaderMap,
        rec: &mut RequestRecord,
    ) {
        self.peer.on_request(direction, headers, rec);
        self.tracer.on_request(direction, headers, rec);
    }

    /// Called with the response headers before they go back to the client.
    pub fn on_response(
        &self,
        direction: Direction,
        headers: &mut http::HeaderMap,
        rec: &mut RequestRecord,
    ) {
        self.peer.on_response(direction, headers, rec);
    }
}
