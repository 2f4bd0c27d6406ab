//! OTLP receivers: gRPC ([`grpc`], port 4317) and HTTP with protobuf or JSON bodies ([`http`],
//! port 4318), for traces, metrics and logs. Both decode, hand the request to the shared
//! [`Ingest`] pipeline and answer as the OTLP specification says: success with partial success
//! when some items were invalid; a malformed payload is refused (gRPC INVALID_ARGUMENT, HTTP 400
//! with a `google.rpc.Status` body) and changes nothing; overload is retryable (gRPC
//! UNAVAILABLE, HTTP 503).

pub mod grpc;
pub mod http;

use super::ingest::{Accepted, Ingest, Overloaded};
use super::self_metrics::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// Largest request accepted, on the wire and after decompression.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// One OTLP signal's messages and how the pipeline takes them.
pub trait OtlpSignal: Send + Sync + 'static {
    type Request: prost::Message + Default + serde::de::DeserializeOwned + Send + 'static;
    type Response: prost::Message + serde::Serialize + Send + 'static;
    const SIGNAL: Signal;
    /// `opentelemetry.proto.collector.<signal>.v1.<Signal>Service`.
    const GRPC_SERVICE: &'static str;
    const GRPC_PATH: &'static str;
    /// The message name, for error messages.
    const REQUEST_NAME: &'static str;

    fn ingest(ingest: &Ingest, request: Self::Request) -> Result<Accepted, Overloaded>;
    fn response(accepted: Accepted) -> Self::Response;
}

/// Traces.
pub struct Traces;
/// Metrics.
pub struct Metrics;
/// Logs.
pub struct Logs;

/// The OTLP rule: partial success is left unset when everything was accepted.
fn partial(accepted: &Accepted) -> bool {
    accepted.rejected > 0 || !accepted.message.is_empty()
}

impl OtlpSignal for Traces {
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    const SIGNAL: Signal = Signal::Traces;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const REQUEST_NAME: &'static str = "ExportTraceServiceRequest";

    fn ingest(ingest: &Ingest, request: Self::Request) -> Result<Accepted, Overloaded> {
        ingest.traces(request)
    }

    fn response(accepted: Accepted) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: partial(&accepted).then_some(ExportTracePartialSuccess {
                rejected_spans: accepted.rejected as i64,
                error_message: accepted.message,
            }),
        }
    }
}

impl OtlpSignal for Metrics {
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    const SIGNAL: Signal = Signal::Metrics;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const GRPC_PATH: &'static str =
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const REQUEST_NAME: &'static str = "ExportMetricsServiceRequest";

    fn ingest(ingest: &Ingest, request: Self::Request) -> Result<Accepted, Overloaded> {
        Ok(ingest.metrics_request(request))
    }

    fn response(accepted: Accepted) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: partial(&accepted).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: accepted.rejected as i64,
                error_message: accepted.message,
            }),
        }
    }
}

impl OtlpSignal for Logs {
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    const SIGNAL: Signal = Signal::Logs;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const REQUEST_NAME: &'static str = "ExportLogsServiceRequest";

    fn ingest(ingest: &Ingest, request: Self::Request) -> Result<Accepted, Overloaded> {
        ingest.logs(request)
    }

    fn response(accepted: Accepted) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: partial(&accepted).then_some(ExportLogsPartialSuccess {
                rejected_log_records: accepted.rejected as i64,
                error_message: accepted.message,
            }),
        }
    }
}

/// The request-counter outcome of an answer.
fn outcome(result: &Result<Accepted, Overloaded>) -> &'static str {
    match result {
        Ok(a) if a.rejected > 0 => "partial",
        Ok(_) => "ok",
        Err(_) => "overloaded",
    }
}
