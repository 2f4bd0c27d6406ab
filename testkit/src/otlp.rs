//! An OTLP receiver for tests: the gRPC trace, logs and metrics services (opentelemetry-proto's
//! tonic servers) on one port, and OTLP/HTTP (`POST /v1/traces`, `/v1/logs`, `/v1/metrics`, with
//! protobuf or JSON bodies) on another. It keeps everything it receives and can be told to
//! fail ([`Behaviour::Fail`]: gRPC `UNAVAILABLE`, HTTP 503), to hang ([`Behaviour::Stall`]) or
//! to stop listening ([`OtlpReceiver::stop`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Status, service::Routes};

use crate::server::{Running, serve_http};

pub use opentelemetry_proto::tonic as proto;

/// How the receiver answers exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Keep the data and answer success.
    Accept,
    /// Keep nothing; answer gRPC `UNAVAILABLE` / HTTP 503.
    Fail,
    /// Never answer (until the behaviour changes, then answer as the new one says).
    Stall,
}

/// Which OTLP transport an export came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

/// A received span with the attributes of the resource it came with.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub resource: Vec<KeyValue>,
    pub span: Span,
}

impl ReceivedSpan {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Empty when the span is a root.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// A string resource attribute (`service.name`, `trellis.proxy`, ...).
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        string_attr(&self.resource, key)
    }

    /// A string span attribute.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        string_attr(&self.span.attributes, key)
    }

    /// An integer span attribute.
    pub fn attr_int(&self, key: &str) -> Option<i64> {
        int_attr(&self.span.attributes, key)
    }
}

/// A received log record with the attributes of its resource.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    pub resource: Vec<KeyValue>,
    pub record: LogRecord,
}

impl ReceivedLog {
    pub fn trace_id(&self) -> String {
        hex(&self.record.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.record.span_id)
    }

    pub fn resource_str(&self, key: &str) -> Option<&str> {
        string_attr(&self.resource, key)
    }

    pub fn attr_str(&self, key: &str) -> Option<&str> {
        string_attr(&self.record.attributes, key)
    }

    pub fn attr_int(&self, key: &str) -> Option<i64> {
        int_attr(&self.record.attributes, key)
    }

    /// The body when it is a string.
    pub fn body_str(&self) -> Option<&str> {
        match self.record.body.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }
}

/// A received metric with the attributes of its resource.
#[derive(Debug, Clone)]
pub struct ReceivedMetric {
    pub resource: Vec<KeyValue>,
    pub metric: Metric,
}

impl ReceivedMetric {
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        string_attr(&self.resource, key)
    }
}

pub fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

pub fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
struct Store {
    spans: Vec<ReceivedSpan>,
    logs: Vec<ReceivedLog>,
    metrics: Vec<ReceivedMetric>,
}

struct State {
    store: Mutex<Store>,
    behaviour: watch::Sender<Behaviour>,
    grpc_requests: AtomicUsize,
    http_requests: AtomicUsize,
}

impl State {
    /// Waits while stalled; `Err` when the answer is a failure.
    async fn admit(&self) -> Result<(), ()> {
        let mut rx = self.behaviour.subscribe();
        let behaviour = match rx.wait_for(|b| *b != Behaviour::Stall).await {
            Ok(b) => *b,
            // The receiver is gone: fail.
            Err(_) => Behaviour::Fail,
        };
        match behaviour {
            Behaviour::Fail => Err(()),
            _ => Ok(()),
        }
    }

    fn keep_traces(&self, req: ExportTraceServiceRequest) {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        for rs in req.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    store.spans.push(ReceivedSpan {
                        resource: resource.clone(),
                        span,
                    });
                }
            }
        }
    }

    fn keep_logs(&self, req: ExportLogsServiceRequest) {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        for rl in req.resource_logs {
            let resource = rl.resource.map(|r| r.attributes).unwrap_or_default();
            for sl in rl.scope_logs {
                for record in sl.log_records {
                    store.logs.push(ReceivedLog {
                        resource: resource.clone(),
                        record,
                    });
                }
            }
        }
    }

    fn keep_metrics(&self, req: ExportMetricsServiceRequest) {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        for rm in req.resource_metrics {
            let resource = rm.resource.map(|r| r.attributes).unwrap_or_default();
            for sm in rm.scope_metrics {
                for metric in sm.metrics {
                    store.metrics.push(ReceivedMetric {
                        resource: resource.clone(),
                        metric,
                    });
                }
            }
        }
    }
}

#[derive(Clone)]
struct Grpc(Arc<State>);

fn unavailable() -> Status {
    Status::unavailable("test receiver told to fail")
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        self.0.grpc_requests.fetch_add(1, Ordering::SeqCst);
        self.0.admit().await.map_err(|_| unavailable())?;
        self.0.keep_traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, Status> {
        self.0.grpc_requests.fetch_add(1, Ordering::SeqCst);
        self.0.admit().await.map_err(|_| unavailable())?;
        self.0.keep_logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, Status> {
        self.0.grpc_requests.fetch_add(1, Ordering::SeqCst);
        self.0.admit().await.map_err(|_| unavailable())?;
        self.0.keep_metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A running OTLP receiver on loopback; stops when dropped.
pub struct OtlpReceiver {
    state: Arc<State>,
    grpc: Running,
    http: Running,
}

impl OtlpReceiver {
    /// Starts both listeners on `127.0.0.1:0`.
    pub async fn start() -> OtlpReceiver {
        let bind = || async {
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind OTLP receiver")
        };
        let state = Arc::new(State {
            store: Mutex::new(Store::default()),
            behaviour: watch::channel(Behaviour::Accept).0,
            grpc_requests: AtomicUsize::new(0),
            http_requests: AtomicUsize::new(0),
        });
        let handler = Grpc(state.clone());
        let routes = Routes::new(TraceServiceServer::new(handler.clone()))
            .add_service(LogsServiceServer::new(handler.clone()))
            .add_service(MetricsServiceServer::new(handler));
        let grpc = serve_http(bind().await, move |_| {
            TowerToHyperService::new(routes.clone())
        });
        let http_state = state.clone();
        let http = serve_http(bind().await, move |_| {
            let state = http_state.clone();
            hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(serve_otlp_http(&state, req).await) }
            })
        });
        OtlpReceiver { state, grpc, http }
    }

    /// `http://127.0.0.1:PORT` of the gRPC services.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc.addr())
    }

    /// `http://127.0.0.1:PORT` of OTLP/HTTP (signal paths are appended by clients).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http.addr())
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.addr()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.state.behaviour.send_replace(behaviour);
    }

    /// Export requests received so far over `transport` (answered or not).
    pub fn requests(&self, transport: Transport) -> usize {
        match transport {
            Transport::Grpc => self.state.grpc_requests.load(Ordering::SeqCst),
            Transport::Http => self.state.http_requests.load(Ordering::SeqCst),
        }
    }

    /// Stops listening and closes every connection (the endpoint is then refused).
    pub async fn stop(&mut self) {
        self.state.behaviour.send_replace(Behaviour::Fail);
        self.grpc.shutdown().await;
        self.http.shutdown().await;
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.lock().logs.clone()
    }

    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.lock().metrics.clone()
    }

    /// Forgets everything received so far.
    pub fn clear(&self) {
        *self.lock() = Store::default();
    }

    /// Polls `pick` over what was received until it returns `Some`, or `timeout` passes.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut pick: impl FnMut(&OtlpReceiver) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = pick(self) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.state.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Largest OTLP/HTTP body accepted.
const MAX_BODY: usize = 16 << 20;

async fn serve_otlp_http(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    state.http_requests.fetch_add(1, Ordering::SeqCst);
    if req.method() != http::Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "POST only");
    }
    let path = req.uri().path().to_string();
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("body: {e}")),
    };
    if state.admit().await.is_err() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "test receiver told to fail",
        );
    }
    fn decode<T: Message + Default + serde::de::DeserializeOwned>(
        body: &[u8],
        json: bool,
    ) -> Result<T, String> {
        if json {
            serde_json::from_slice(body).map_err(|e| e.to_string())
        } else {
            T::decode(body).map_err(|e| e.to_string())
        }
    }
    let answer = match path.as_str() {
        "/v1/traces" => decode::<ExportTraceServiceRequest>(&body, json).map(|r| {
            state.keep_traces(r);
            ExportTraceServiceResponse::default().encode_to_vec()
        }),
        "/v1/logs" => decode::<ExportLogsServiceRequest>(&body, json).map(|r| {
            state.keep_logs(r);
            ExportLogsServiceResponse::default().encode_to_vec()
        }),
        "/v1/metrics" => decode::<ExportMetricsServiceRequest>(&body, json).map(|r| {
            state.keep_metrics(r);
            ExportMetricsServiceResponse::default().encode_to_vec()
        }),
        _ => return plain(StatusCode::NOT_FOUND, "not an OTLP path"),
    };
    match answer {
        Ok(bytes) => {
            let mut resp = Response::new(Full::new(Bytes::from(bytes)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-protobuf"),
            );
            resp
        }
        Err(e) => plain(StatusCode::BAD_REQUEST, &format!("bad payload: {e}")),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(text.to_string())));
    *resp.status_mut() = status;
    resp
}

/// Builders of OTLP requests for tests.
pub mod build {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    /// An attribute.
    pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    /// A string attribute.
    pub fn string_kv(key: &str, value: &str) -> KeyValue {
        kv(key, any_value::Value::StringValue(value.into()))
    }

    /// A SERVER span of trace `trace` (every byte that value) with id `id` (likewise), child of
    /// `parent`, at `start_us` (µs since the epoch) for `duration_us`.
    pub fn span(
        trace: u8,
        id: u8,
        parent: Option<u8>,
        name: &str,
        start_us: i64,
        duration_us: i64,
    ) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind: 2,
            start_time_unix_nano: start_us as u64 * 1000,
            end_time_unix_nano: (start_us + duration_us) as u64 * 1000,
            ..Default::default()
        }
    }

    /// One export request of `spans` from the service `service`.
    pub fn traces(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_kv("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}
