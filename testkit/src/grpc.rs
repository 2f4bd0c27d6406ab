//! gRPC echo upstream (`trellis.test.Echo`, see `testkit/proto/echo.proto`) and client helpers.
//!
//! Replies carry the server name (`EchoReply.server`) and response metadata `x-upstream`.
//! A nonzero `fail_with_code` (or [`GrpcEchoServer::set_fail_code`]) answers with that status.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::server::{Running, serve_http};

/// Generated protobuf and tonic code for `trellis.test`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("trellis.test");
}

pub use pb::echo_client::EchoClient;
pub use pb::{EchoReply, EchoRequest};

/// Messages sent by `ServerStream`: `"<message> 0"`, `"<message> 1"`, ...
pub const STREAM_LEN: usize = 3;

struct Svc {
    name: String,
    requests: AtomicUsize,
    fail_code: AtomicI32,
    last_metadata: Mutex<Option<MetadataMap>>,
}

impl Svc {
    fn check(&self, req: &Request<EchoRequest>) -> Result<(), Status> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        *self.last_metadata.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(req.metadata().clone());
        let code = match self.fail_code.load(Ordering::SeqCst) {
            0 => req.get_ref().fail_with_code,
            forced => forced,
        };
        if code == 0 {
            return Ok(());
        }
        let mut status = Status::new(
            Code::from_i32(code),
            format!("{}: failing with code {code}", self.name),
        );
        self.tag(status.metadata_mut());
        Err(status)
    }

    fn tag(&self, md: &mut MetadataMap) {
        if let Ok(v) = MetadataValue::try_from(self.name.as_str()) {
            md.insert("x-upstream", v);
        }
    }

    fn reply(&self, message: String) -> EchoReply {
        EchoReply {
            message,
            server: self.name.clone(),
        }
    }
}

#[derive(Clone)]
struct Handler(Arc<Svc>);

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::echo_server::Echo for Handler {
    async fn unary(&self, req: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.0.check(&req)?;
        let mut resp = Response::new(self.0.reply(req.into_inner().message));
        self.0.tag(resp.metadata_mut());
        Ok(resp)
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        req: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        self.0.check(&req)?;
        let msg = req.into_inner().message;
        let replies: Vec<Result<EchoReply, Status>> = (0..STREAM_LEN)
            .map(|i| Ok(self.0.reply(format!("{msg} {i}"))))
            .collect();
        let mut resp = Response::new(Box::pin(futures_util::stream::iter(replies)) as ReplyStream);
        self.0.tag(resp.metadata_mut());
        Ok(resp)
    }
}

/// A running gRPC echo upstream (HTTP/2 only); stops when dropped.
pub struct GrpcEchoServer {
    svc: Arc<Svc>,
    running: Running,
}

impl GrpcEchoServer {
    /// Starts on `127.0.0.1:0`.
    pub async fn start(name: &str) -> GrpcEchoServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind grpc echo server");
        let svc = Arc::new(Svc {
            name: name.to_string(),
            requests: AtomicUsize::new(0),
            fail_code: AtomicI32::new(0),
            last_metadata: Mutex::new(None),
        });
        let server = pb::echo_server::EchoServer::new(Handler(svc.clone()));
        let running = serve_http(listener, move |_| TowerToHyperService::new(server.clone()));
        GrpcEchoServer { svc, running }
    }

    pub fn name(&self) -> &str {
        &self.svc.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// RPCs received.
    pub fn requests(&self) -> usize {
        self.svc.requests.load(Ordering::SeqCst)
    }

    pub fn reset_counts(&self) {
        self.svc.requests.store(0, Ordering::SeqCst);
        self.running.reset_total();
    }

    /// Fail every RPC with this gRPC code (`None` or `Some(0)`: behave normally).
    pub fn set_fail_code(&self, code: Option<i32>) {
        self.svc
            .fail_code
            .store(code.unwrap_or(0), Ordering::SeqCst);
    }

    /// Request metadata (headers) of the last RPC.
    pub fn last_metadata(&self) -> Option<MetadataMap> {
        self.svc
            .last_metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn open_connections(&self) -> usize {
        self.running.open_connections()
    }

    pub fn total_connections(&self) -> usize {
        self.running.total_connections()
    }

    /// Stops and waits until the port refuses connections.
    pub async fn shutdown(mut self) {
        self.running.shutdown().await;
    }
}

/// A lazily connecting channel to `addr` whose requests carry `:authority` = `authority`.
///
/// E.g. `channel(proxy.outbound_addr(), "echo.default.svc.cluster.local:9000")`: tonic connects
/// to the proxy and sends `:authority: echo.default.svc.cluster.local:9000` (via
/// [`Endpoint::origin`]). Connect timeout 5 s, per-request timeout 10 s.
pub fn channel(addr: SocketAddr, authority: &str) -> Result<Channel, crate::Error> {
    let origin: http::Uri = format!("http://{authority}").parse()?;
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .origin(origin)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy())
}

/// An [`EchoClient`] over [`channel`].
pub fn client(addr: SocketAddr, authority: &str) -> Result<EchoClient<Channel>, crate::Error> {
    Ok(EchoClient::new(channel(addr, authority)?))
}

/// A gRPC codec that passes message bytes through unchanged: for sending pre-encoded messages
/// (benchmarks keep encoding out of the measurement) or malformed ones (tests of error answers).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self {
        RawCodec
    }
    fn decoder(&mut self) -> Self {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = Status;
    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}
