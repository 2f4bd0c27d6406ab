//! Sending one OTLP export request: gRPC through opentelemetry-proto's tonic clients, or
//! OTLP/HTTP (a protobuf body POSTed to `/v1/traces`, `/v1/logs`, `/v1/metrics`).

use super::endpoint::{OtlpProtocol, Target};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from an OTLP/HTTP receiver (answers are a few bytes).
const MAX_RESPONSE: usize = 64 * 1024;

/// One export request of one signal.
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Payload {
    fn http_path(&self) -> &'static str {
        match self {
            Payload::Traces(_) => "v1/traces",
            Payload::Logs(_) => "v1/logs",
            Payload::Metrics(_) => "v1/metrics",
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Payload::Traces(r) => r.encode_to_vec(),
            Payload::Logs(r) => r.encode_to_vec(),
            Payload::Metrics(r) => r.encode_to_vec(),
        }
    }

    /// Items the receiver said it rejected (OTLP partial success), from its answer's bytes.
    fn rejected_in(&self, answer: &[u8]) -> Result<u64, prost::DecodeError> {
        Ok(match self {
            Payload::Traces(_) => traces_rejected(ExportTraceServiceResponse::decode(answer)?),
            Payload::Logs(_) => logs_rejected(ExportLogsServiceResponse::decode(answer)?),
            Payload::Metrics(_) => metrics_rejected(ExportMetricsServiceResponse::decode(answer)?),
        })
    }
}

fn traces_rejected(r: ExportTraceServiceResponse) -> u64 {
    r.partial_success
        .map_or(0, |p| p.rejected_spans.max(0) as u64)
}

fn logs_rejected(r: ExportLogsServiceResponse) -> u64 {
    r.partial_success
        .map_or(0, |p| p.rejected_log_records.max(0) as u64)
}

fn metrics_rejected(r: ExportMetricsServiceResponse) -> u64 {
    r.partial_success
        .map_or(0, |p| p.rejected_data_points.max(0) as u64)
}

/// A connection to one endpoint; reconnects by itself after failures.
pub enum Transport {
    Grpc(Channel),
    Http(Box<HttpTransport>),
}

/// OTLP/HTTP: a pooled HTTP/1.1 client and the endpoint it posts to.
pub struct HttpTransport {
    client: Client<HttpConnector, Full<Bytes>>,
    target: Target,
}

impl Transport {
    /// Prepares (without connecting yet) a transport to `target`; needs a tokio runtime.
    pub fn new(target: &Target) -> Transport {
        match target.protocol {
            OtlpProtocol::Grpc => {
                let channel = Endpoint::from(target.base.clone())
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy();
                Transport::Grpc(channel)
            }
            OtlpProtocol::HttpProtobuf => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
                connector.set_nodelay(true);
                Transport::Http(Box::new(HttpTransport {
                    client: Client::builder(TokioExecutor::new()).build(connector),
                    target: target.clone(),
                }))
            }
        }
    }

    /// Sends `payload`; `Ok(rejected)` when the receiver took it (rejecting that many items).
    pub async fn send(&self, payload: Payload) -> Result<u64, String> {
        match self {
            Transport::Grpc(channel) => send_grpc(channel.clone(), payload).await,
            Transport::Http(http) => send_http(&http.client, &http.target, payload).await,
        }
    }
}

async fn send_grpc(channel: Channel, payload: Payload) -> Result<u64, String> {
    let status = |s: tonic::Status| format!("gRPC {:?}: {}", s.code(), s.message());
    match payload {
        Payload::Traces(r) => TraceServiceClient::new(channel)
            .export(r)
            .await
            .map(|a| traces_rejected(a.into_inner()))
            .map_err(status),
        Payload::Logs(r) => LogsServiceClient::new(channel)
            .export(r)
            .await
            .map(|a| logs_rejected(a.into_inner()))
            .map_err(status),
        Payload::Metrics(r) => MetricsServiceClient::new(channel)
            .export(r)
            .await
            .map(|a| metrics_rejected(a.into_inner()))
            .map_err(status),
    }
}

async fn send_http(
    client: &Client<HttpConnector, Full<Bytes>>,
    target: &Target,
    payload: Payload,
) -> Result<u64, String> {
    let url = target.http_url(payload.http_path());
    let request = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .header(
            http::header::USER_AGENT,
            concat!("trellis-proxy/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(payload.encode())))
        .map_err(|e| format!("POST {url}: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("POST {url}: {}", chain(&e)))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(format!("POST {url}: HTTP {status}"));
    }
    // An answer that is not protobuf still means the receiver took the data.
    Ok(payload.rejected_in(&body).unwrap_or(0))
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
