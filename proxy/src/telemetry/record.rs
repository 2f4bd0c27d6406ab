//! The per-request record: filled in along the request path, finished when the response body ends
//! (or the client goes away), then handed to the sinks without blocking traffic.

use super::ResponseFlags;
use super::metrics::grpc_frames::GrpcFrames;
use super::peer::PeerMeta;
use super::trace::SpanContext;
use crate::body::{BoxError, ProxyBody};
use crate::forward::InFlight;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

/// Which side of the workload the traffic crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Everything known about one request (or one TCP connection) once it is over.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Whether the proxy reports this request at all (`--telemetry off`: no metrics, spans,
    /// logs or peer metadata, and none of the work to gather them).
    pub reported: bool,
    pub direction: Direction,
    pub start_time: SystemTime,
    pub started: Instant,
    pub duration_ms: u64,
    /// Time from sending upstream to the upstream's response headers.
    pub upstream_service_time_ms: Option<u64>,
    pub downstream_remote: Option<SocketAddr>,
    pub downstream_local: Option<SocketAddr>,
    /// `HTTP/1.1`, `HTTP/2` or `TCP`.
    pub protocol: &'static str,
    pub method: Option<http::Method>,
    pub path: Option<http::uri::PathAndQuery>,
    pub authority: String,
    pub user_agent: Option<http::HeaderValue>,
    pub request_id: Option<http::HeaderValue>,
    pub status: u16,
    /// gRPC status from the response headers or trailers, when the request was gRPC.
    pub grpc_status: Option<u32>,
    pub flags: ResponseFlags,
    /// Why the proxy answered itself, in Envoy's words (`route_not_found`, ...).
    pub details: &'static str,
    pub route_name: Option<Arc<str>>,
    pub upstream_cluster: Option<Arc<str>>,
    pub upstream_host: Option<Arc<str>>,
    pub attempts: u32,
    /// Request body bytes from the client (TCP: bytes from the client).
    pub bytes_received: u64,
    /// Response body bytes to the client (TCP: bytes to the client).
    pub bytes_sent: u64,
    /// The request is gRPC (`content-type: application/grpc*`).
    pub grpc: bool,
    /// gRPC messages the client sent and the server answered with.
    pub request_messages: u64,
    pub response_messages: u64,
    /// Counts the request body as it streams upstream; read when the record is finished.
    pub request_body: Option<Arc<BodyMeter>>,
    /// The workload on the other side, as the peer proxy told it (None: not in the mesh).
    pub peer: Option<Arc<PeerMeta>>,
    /// Inbound: the service host the source's proxy routed to (`x-trellis-peer-service`).
    pub destination_service: Option<Arc<str>>,
    /// Outbound TCP: what the chosen endpoint's labels say about the destination, when the
    /// peer cannot tell (no headers on opaque TCP).
    pub endpoint_peer: Option<Arc<PeerMeta>>,
    /// SPIFFE identities of this side and of the peer, once mutual TLS authenticated them;
    /// `connection_security_policy` is `mutual_tls` when both are known.
    pub local_principal: Option<Arc<str>>,
    pub peer_principal: Option<Arc<str>>,
    /// The span this request reports, when its trace is sampled.
    pub span: Option<SpanContext>,
}

impl RequestRecord {
    pub fn new(direction: Direction, protocol: &'static str) -> RequestRecord {
        RequestRecord {
            reported: true,
            direction,
            start_time: SystemTime::now(),
            started: Instant::now(),
            duration_ms: 0,
            upstream_service_time_ms: None,
            downstream_remote: None,
            downstream_local: None,
            protocol,
            method: None,
            path: None,
            authority: String::new(),
            user_agent: None,
            request_id: None,
            status: 0,
            grpc_status: None,
            flags: ResponseFlags::NONE,
            details: "",
            route_name: None,
            upstream_cluster: None,
            upstream_host: None,
            attempts: 0,
            bytes_received: 0,
            bytes_sent: 0,
            grpc: false,
            request_messages: 0,
            response_messages: 0,
            request_body: None,
            peer: None,
            destination_service: None,
            endpoint_peer: None,
            local_principal: None,
            peer_principal: None,
            span: None,
        }
    }
}

/// Where finished records go. Implementations must not block: queue boundedly, drop and count.
pub trait RecordSink: Send + Sync {
    fn record(&self, record: &RequestRecord);
}

/// The sinks a proxy reports to, in order.
#[derive(Clone, Default)]
pub struct Sinks(Arc<Vec<Arc<dyn RecordSink>>>);

impl Sinks {
    pub fn new(sinks: Vec<Arc<dyn RecordSink>>) -> Sinks {
        Sinks(Arc::new(sinks))
    }

    pub fn finish(&self, mut record: RequestRecord) {
        record.duration_ms = record.started.elapsed().as_millis() as u64;
        if let Some(meter) = record.request_body.take() {
            record.bytes_received = meter.bytes();
            record.request_messages = meter.messages();
        }
        for sink in self.0.iter() {
            sink.record(&record);
        }
    }
}

/// Response body that counts bytes sent and finishes the record at end of stream, or on drop
/// (the client went away: flag DC).
/// It also holds the request's load-balancer and circuit-breaker slots until then.
pub struct RecordedBody {
    inner: ProxyBody,
    record: Option<Box<RequestRecord>>,
    sinks: Sinks,
    in_flight: Option<InFlight>,
    /// Response gRPC messages, when the request is gRPC.
    frames: Option<GrpcFrames>,
}

impl RecordedBody {
    pub fn new(
        inner: ProxyBody,
        record: RequestRecord,
        sinks: Sinks,
        in_flight: Option<InFlight>,
    ) -> RecordedBody {
        let frames = record.grpc.then(GrpcFrames::default);
        RecordedBody {
            inner,
            record: Some(Box::new(record)),
            sinks,
            in_flight,
            frames,
        }
    }

    fn finish(&mut self, complete: bool) {
        self.in_flight = None;
        if let Some(mut record) = self.record.take() {
            if !complete {
                record
                    .flags
                    .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            }
            self.sinks.finish(*record);
        }
    }
}

impl Body for RecordedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(record) = this.record.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        record.bytes_sent += data.len() as u64;
                        if let Some(frames) = this.frames.as_mut() {
                            record.response_messages += frames.feed(data);
                        }
                    } else if let Some(trailers) = frame.trailers_ref()
                        && let Some(code) = grpc_status(trailers)
                    {
                        record.grpc_status = Some(code);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => {
                if let Some(record) = this.record.as_mut() {
                    record.flags.insert(ResponseFlags::UPSTREAM_RESET);
                }
                this.finish(true)
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RecordedBody {
    fn drop(&mut self) {
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

/// Counts a request body's bytes (and gRPC messages) as it streams upstream, where the record
/// cannot follow it: the upstream connection may read the body on another task.
#[derive(Debug, Default)]
pub struct BodyMeter {
    bytes: AtomicU64,
    messages: AtomicU64,
}

impl BodyMeter {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Wraps `body` so that what passes through is counted here.
    pub fn wrap(self: &Arc<Self>, body: ProxyBody, grpc: bool) -> ProxyBody {
        crate::body::boxed(MeteredBody {
            inner: body,
            meter: self.clone(),
            frames: grpc.then(GrpcFrames::default),
        })
    }
}

struct MeteredBody {
    inner: ProxyBody,
    meter: Arc<BodyMeter>,
    frames: Option<GrpcFrames>,
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.meter
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            if let Some(frames) = this.frames.as_mut() {
                let n = frames.feed(data);
                if n > 0 {
                    this.meter.messages.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` of a header or trailer block.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
