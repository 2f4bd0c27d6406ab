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

/// Headers telemetry may add to a request: `traceparent`, `tracestate`, four `x-b3-*`, `b3`,
/// `x-trellis-peer` and `x-trellis-peer-service`.
const ADDED_REQUEST_HEADERS: usize = 9;

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
    /// This proxy's id, exported as the resource attribute `trellis.proxy` so the collector
    /// tells the mesh's own spans, logs and metrics from the applications'.
    pub proxy_id: String,
    /// OTLP endpoint given by flag; when absent, the control plane's collector (if connected).
    pub otlp_endpoint: Option<String>,
    /// How `otlp_endpoint` is spoken to (the control plane's collector is always gRPC).
    pub otlp_protocol: export::OtlpProtocol,
    /// How long one export may take before it counts as failed (its items are dropped).
    pub otlp_timeout: Duration,
    /// Without `otlp_endpoint`: take the endpoint the control plane names (`--control` mode).
    /// With neither, nothing is exported or queued.
    pub follow_control_collector: bool,
    /// Percentage of new traces sampled (0–100), as Istio's `sampling`.
    pub trace_sampling: f64,
    /// How often metrics are pushed over OTLP.
    pub metrics_push_interval: Duration,
    pub access_log: AccessLogTarget,
    /// Also send access log records over OTLP (logs signal).
    pub otlp_access_log: bool,
}

impl Default for TelemetrySettings {
    /// The flags' defaults, with no access log and nowhere to export to.
    fn default() -> TelemetrySettings {
        TelemetrySettings {
            node: NodeIdentity::default(),
            cluster: String::new(),
            proxy_id: String::new(),
            otlp_endpoint: None,
            otlp_protocol: export::OtlpProtocol::Grpc,
            otlp_timeout: export::DEFAULT_TIMEOUT,
            follow_control_collector: false,
            trace_sampling: 1.0,
            metrics_push_interval: Duration::from_secs(5),
            access_log: AccessLogTarget::Off,
            otlp_access_log: false,
        }
    }
}

/// The proxy's telemetry: the request-path hooks and the sinks finished records go to.
pub struct Telemetry {
    pub sinks: Sinks,
    pub peer: peer::PeerExchange,
    pub tracer: trace::Tracer,
    pub metrics: Arc<metrics::Metrics>,
    /// Where the push client hands the control plane's collector endpoint; `None` when
    /// `--otlp-endpoint` decides or there is no control plane.
    pub control_collector: Option<export::Destination>,
    /// False with `--telemetry off`: the request path skips every telemetry hook.
    pub enabled: bool,
    flusher: Option<export::Flusher>,
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
        let exporter = export::start(settings, metrics.clone())?;
        sinks.extend(exporter.sinks);
        Ok(Telemetry {
            sinks: Sinks::new(sinks),
            peer: peer::PeerExchange::new(settings),
            tracer: trace::Tracer::new(settings),
            metrics,
            control_collector: exporter.control_collector,
            enabled: true,
            flusher: exporter.flusher,
        })
    }

    /// Telemetry that reports nothing and does no work per request (`--telemetry off`).
    pub fn disabled() -> Telemetry {
        let settings = TelemetrySettings {
            trace_sampling: 0.0,
            ..TelemetrySettings::default()
        };
        Telemetry {
            sinks: Sinks::default(),
            peer: peer::PeerExchange::new(&settings),
            tracer: trace::Tracer::new(&settings),
            metrics: Arc::new(metrics::Metrics::new(&settings)),
            control_collector: None,
            enabled: false,
            flusher: None,
        }
    }

    /// At shutdown, once traffic has stopped: exports what is still queued, waiting at most
    /// `timeout`; `false` when items were left behind.
    pub async fn flush(&self, timeout: Duration) -> bool {
        match &self.flusher {
            Some(f) => f.flush(timeout).await,
            None => true,
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
        if !self.enabled {
            rec.reported = false;
            return;
        }
        // Room for what telemetry adds (trace context, peer metadata) in one growth of the map,
        // not several as headers are inserted one by one.
        headers.reserve(ADDED_REQUEST_HEADERS);
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
        if !self.enabled {
            return;
        }
        self.peer.on_response(direction, headers, rec);
    }
}
