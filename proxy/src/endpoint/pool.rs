use super::origination;
use super::tls::{self, Connectors, MeshPeer, MeshTlsError, Transport, UpstreamIo};
use crate::body::{BoxError, ProxyBody};
use crate::identity::WorkloadIdentity;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use trellis_identity::tls::MeshProtocol;

/// Idle HTTP/1 connections kept per endpoint at most.
const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// Which HTTP version to speak to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

/// How one request travels to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// HTTP/1.1 on a connection of its own.
    Http1,
    /// HTTP/1.1 for the application, multiplexed over the HTTP/2 mutual TLS connection to its
    /// proxy: the request is in HTTP/2 form.
    Http1OverH2,
    Http2,
}

/// Connection settings from the cluster's `connectionPool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed instead of reused (Envoy default: 1 h).
    pub idle_timeout: Duration,
    /// Requests per connection before it is retired; `None` is unlimited.
    pub max_requests_per_connection: Option<u32>,
    /// Plaintext or mesh mutual TLS.
    pub transport: Transport,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            max_requests_per_connection: None,
            transport: Transport::Plain,
        }
    }
}

/// Why an exchange with an upstream failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection failure: {0}")]
    Connect(std::io::Error),
    #[error("connection timeout")]
    ConnectTimeout,
    #[error("connection termination: {0}")]
    Reset(hyper::Error),
    #[error("{0}")]
    Tls(MeshTlsError),
}

impl UpstreamError {
    /// Failed to establish the connection (Envoy's `connect-failure`, flag UF).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_) | UpstreamError::ConnectTimeout | UpstreamError::Tls(_)
        )
    }
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority())
    }
}

struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    used: u32,
    since: Instant,
    /// Who mutual TLS authenticated on this connection; `None` for plaintext.
    mesh: Option<MeshPeer>,
}

/// The shared HTTP/2 connection of one worker.
struct H2 {
    sender: http2::SendRequest<ProxyBody>,
    mesh: Option<MeshPeer>,
}

/// Connections to one endpoint (`host:port`), shared by every cluster that contains it and kept
/// across config reloads.
///
/// Connections belong to the worker thread that opened them (their task runs there), so idle
/// HTTP/1 connections and the HTTP/2 connection are kept per worker.
pub struct ConnPool {
    host: String,
    port: u16,
    settings: PoolSettings,
    idle: Box<[Mutex<Vec<Idle>>]>,
    h2: Box<[tokio::sync::Mutex<Option<H2>>]>,
    /// Mesh HTTP/2 connections carrying requests the application speaks HTTP/1.1 for.
    h2_http1: Box<[tokio::sync::Mutex<Option<H2>>]>,
    /// Mutual TLS client configs, built on first use.
    connectors: Connectors,
}

impl ConnPool {
    pub fn new(host: &str, port: u16, settings: PoolSettings) -> ConnPool {
        ConnPool {
            host: host.to_string(),
            port,
            settings,
            idle: (0..crate::worker::count())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            h2: (0..crate::worker::count())
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            h2_http1: (0..crate::worker::count())
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            connectors: Connectors::default(),
        }
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// `host:port` of the endpoint.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Opens a TCP connection (also used for opaque TCP proxying).
    pub async fn connect(&self) -> Result<TcpStream, UpstreamError> {
        let connect = async {
            let stream = match self.host.parse::<std::net::IpAddr>() {
                Ok(ip) => TcpStream::connect((ip, self.port)).await,
                Err(_) => TcpStream::connect((self.host.as_str(), self.port)).await,
            }
            .map_err(UpstreamError::Connect)?;
            let _ = stream.set_nodelay(true);
            Ok(stream)
        };
        match tokio::time::timeout(self.settings.connect_timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::ConnectTimeout),
        }
    }

    /// Opens a connection for `protocol` with the pool's transport: plain TCP, mesh mutual TLS
    /// (with the identities it authenticated), or originated TLS. Auto mTLS without local
    /// credentials yet connects in plaintext.
    pub async fn connect_with(
        &self,
        identity: &WorkloadIdentity,
        protocol: MeshProtocol,
    ) -> Result<(UpstreamIo, Option<MeshPeer>), UpstreamError> {
        let started = Instant::now();
        let endpoint = self.authority();
        type Handshake<'a> = Pin<
            Box<
                dyn Future<Output = Result<(UpstreamIo, Option<MeshPeer>), MeshTlsError>>
                    + Send
                    + 'a,
            >,
        >;
        let handshake: Handshake<'_> = match &self.settings.transport {
            Transport::Plain => return Ok((UpstreamIo::Plain(self.connect().await?), None)),
            Transport::Originate(target) => {
                target.connectors(&endpoint).map_err(UpstreamError::Tls)?;
                let tcp = self.connect().await?;
                let handshake = origination::handshake(target, protocol, tcp, &endpoint);
                Box::pin(async move { handshake.await.map(|io| (io, None)) })
            }
            Transport::Mesh(target) => {
                let Some(creds) = tls::credentials(target, identity).map_err(UpstreamError::Tls)?
                else {
                    return Ok((UpstreamIo::Plain(self.connect().await?), None));
                };
                let tcp = self.connect().await?;
                let endpoint = &endpoint;
                Box::pin(async move {
                    tls::handshake(target, &self.connectors, &creds, protocol, tcp, endpoint)
                        .await
                        .map(|(io, peer)| (io, Some(peer)))
                })
            }
        };
        let left = self
            .settings
            .connect_timeout
            .saturating_sub(started.elapsed());
        match tokio::time::timeout(left, handshake).await {
            Ok(result) => result.map_err(UpstreamError::Tls),
            Err(_) => {
                tls::timed_out(&self.settings.transport, &endpoint);
                Err(UpstreamError::ConnectTimeout)
            }
        }
    }

    /// Whether connections here should be mutual TLS but are plaintext for want of local
    /// credentials, which have arrived since: such a connection is replaced.
    fn upgradable(&self, mesh: &Option<MeshPeer>, identity: &WorkloadIdentity) -> bool {
        mesh.is_none()
            && matches!(self.settings.transport, Transport::Mesh(_))
            && identity.credentials().is_some()
    }

    /// How a request for `protocol` goes to this endpoint; the request must then be built in
    /// that form (HTTP/2's has the authority in the URI, HTTP/1.1's a `Host` header).
    pub fn wire(
        &self,
        protocol: UpstreamProtocol,
        method: &http::Method,
        headers: &http::HeaderMap,
        identity: &WorkloadIdentity,
    ) -> Wire {
        match protocol {
            UpstreamProtocol::Http2 => Wire::Http2,
            UpstreamProtocol::Http1 if self.multiplexes_http1(method, headers, identity) => {
                Wire::Http1OverH2
            }
            UpstreamProtocol::Http1 => Wire::Http1,
        }
    }

    /// Sends one request, built for `wire` (see [`ConnPool::wire`]), and returns the response
    /// headers; the body streams afterwards. Over mesh mutual TLS the response carries the
    /// [`MeshPeer`] as an extension.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
        wire: Wire,
        identity: &WorkloadIdentity,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        match wire {
            Wire::Http1 => self.send_http1(req, identity).await,
            Wire::Http1OverH2 => {
                self.send_http2(req, MeshProtocol::Http1OverH2, identity)
                    .await
            }
            Wire::Http2 => self.send_http2(req, MeshProtocol::Http2, identity).await,
        }
    }

    /// Whether an HTTP/1.1 request goes multiplexed over HTTP/2 to the next proxy, as Linkerd
    /// does between its proxies: only over mesh mutual TLS (the ALPN tells the server's proxy to
    /// reach its application over HTTP/1.1), never for an upgrade or CONNECT (HTTP/2 cannot
    /// carry them here), and not when `maxRequestsPerConnection` limits connections.
    fn multiplexes_http1(
        &self,
        method: &http::Method,
        headers: &http::HeaderMap,
        identity: &WorkloadIdentity,
    ) -> bool {
        matches!(self.settings.transport, Transport::Mesh(_))
            && self.settings.max_requests_per_connection.is_none()
            && method != http::Method::CONNECT
            && !headers.contains_key(http::header::UPGRADE)
            && identity.credentials().is_some()
    }

    async fn send_http1(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
        identity: &WorkloadIdentity,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        // A pooled connection may have been closed by the server just now; hyper hands the request
        // back when it was never written, and it then goes on a fresh one.
        while let Some(mut idle) = self.checkout() {
            if self.upgradable(&idle.mesh, identity) {
                continue;
            }
            match idle.sender.try_send_request(req).await {
                Ok(resp) => {
                    idle.used += 1;
                    return Ok(self.wrap_http1(resp, idle));
                }
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(UpstreamError::Reset(e.into_error())),
                },
            }
        }
        let (io, mesh) = self.connect_with(identity, MeshProtocol::Http1).await?;
        let (mut sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(UpstreamError::Reset)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        Ok(self.wrap_http1(
            resp,
            Idle {
                sender,
                used: 1,
                since: Instant::now(),
                mesh,
            },
        ))
    }

    fn idle_list(&self) -> &Mutex<Vec<Idle>> {
        &self.idle[crate::worker::current() % self.idle.len()]
    }

    fn checkout(&self) -> Option<Idle> {
        let mut idle = self.idle_list().lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.sender.is_ready() && conn.since.elapsed() < self.settings.idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, mut conn: Idle) {
        if conn.sender.is_closed()
            || self
                .settings
                .max_requests_per_connection
                .is_some_and(|max| conn.used >= max)
        {
            return;
        }
        conn.since = Instant::now();
        let mut idle = self.idle_list().lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push(conn);
        }
    }

    fn wrap_http1(self: &Arc<Self>, resp: Response<Incoming>, conn: Idle) -> Response<ProxyBody> {
        let reusable = resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
            && !resp
                .headers()
                .get(http::header::CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mesh = conn.mesh.clone();
        let (parts, body) = resp.into_parts();
        let mut returning = ReturnOnEnd {
            body,
            conn: reusable.then_some(conn),
            pool: self.clone(),
        };
        returning.maybe_return();
        let mut resp = Response::from_parts(parts, crate::body::boxed(returning));
        if let Some(mesh) = mesh {
            resp.extensions_mut().insert(mesh);
        }
        resp
    }

    async fn send_http2(
        &self,
        req: Request<ProxyBody>,
        protocol: MeshProtocol,
        identity: &WorkloadIdentity,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let (mut sender, mesh) = self.h2_sender(protocol, identity).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        let mut resp = resp.map(crate::body::boxed);
        if let Some(mesh) = mesh {
            resp.extensions_mut().insert(mesh);
        }
        Ok(resp)
    }

    async fn h2_sender(
        &self,
        protocol: MeshProtocol,
        identity: &WorkloadIdentity,
    ) -> Result<(http2::SendRequest<ProxyBody>, Option<MeshPeer>), UpstreamError> {
        let slots = match protocol {
            MeshProtocol::Http1OverH2 => &self.h2_http1,
            _ => &self.h2,
        };
        let mut slot = slots[crate::worker::current() % slots.len()].lock().await;
        if let Some(h2) = slot.as_ref()
            && !h2.sender.is_closed()
            && !self.upgradable(&h2.mesh, identity)
        {
            return Ok((h2.sender.clone(), h2.mesh.clone()));
        }
        let (io, mesh) = self.connect_with(identity, protocol).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .handshake(TokioIo::new(io))
            .await
            .map_err(UpstreamError::Reset)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        *slot = Some(H2 {
            sender: sender.clone(),
            mesh: mesh.clone(),
        });
        Ok((sender, mesh))
    }
}

/// Response body that gives its HTTP/1 connection back to the pool once the body is read.
struct ReturnOnEnd {
    body: Incoming,
    conn: Option<Idle>,
    pool: Arc<ConnPool>,
}

impl ReturnOnEnd {
    fn maybe_return(&mut self) {
        if self.body.is_end_stream()
            && let Some(conn) = self.conn.take()
        {
            self.pool.checkin(conn);
        }
    }
}

impl Body for ReturnOnEnd {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {
                if let Some(conn) = this.conn.take() {
                    this.pool.checkin(conn);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.maybe_return();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
