//! HTTP and WebSocket clients aimed at a fixed address, tallies and bounded polling.
//!
//! [`HttpClient`] always connects to its fixed address (the proxy or an upstream) while the request
//! names whatever host the test wants in `Host` / `:authority`. Connections are pooled, so reuse a
//! client for load; the free functions make a one-shot client.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::Error;
use crate::echo::EchoInfo;
/// WebSocket message type used by [`WsClient`].
pub use tokio_tungstenite::tungstenite::Message;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    /// Parses the body as an echo server's [`EchoInfo`].
    pub fn json(&self) -> Result<EchoInfo, serde_json::Error> {
        serde_json::from_str(&self.body)
    }

    /// The `x-upstream` header: which echo server answered.
    pub fn upstream(&self) -> Option<&str> {
        self.header("x-upstream")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// HTTP client whose connections all go to one address.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<FixedConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// HTTP/1.1, origin-form requests (`GET /path`, `Host: host`).
    pub fn http1(addr: SocketAddr) -> HttpClient {
        Self::build(addr, false, false)
    }

    /// HTTP/2 with prior knowledge (`:authority: host`).
    pub fn http2(addr: SocketAddr) -> HttpClient {
        Self::build(addr, true, false)
    }

    /// HTTP/1.1 absolute-form requests (`GET http://host/path`), as a client using `HTTP_PROXY`.
    pub fn proxy(addr: SocketAddr) -> HttpClient {
        Self::build(addr, false, true)
    }

    fn build(addr: SocketAddr, h2: bool, proxied: bool) -> HttpClient {
        let client = Client::builder(TokioExecutor::new())
            .http2_only(h2)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(FixedConnector { addr, proxied });
        HttpClient {
            client,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the per-request timeout (whole exchange including the body).
    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    /// `GET http://{host}{path}` with extra headers.
    pub async fn get(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, Error> {
        self.request(
            Method::GET,
            &format!("http://{host}{path}"),
            headers,
            Bytes::new(),
        )
        .await
    }

    /// Any request. `url` is absolute (`http://host[:port]/path?q`); its authority becomes
    /// `Host`/`:authority`, but the connection goes to the client's address.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Response, Error> {
        let uri: Uri = url.parse()?;
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::new(body.into()))?).await
    }

    /// Sends a prepared request (URI must be absolute) with the client's timeout.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response, Error> {
        let exchange = async {
            let resp = self.client.request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Error>(Response {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("request timed out after {:?}", self.timeout).into()),
        }
    }
}

/// One-shot HTTP/1.1 `GET` to `addr` with `Host: host`.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, Error> {
    HttpClient::http1(addr).get(host, path, headers).await
}

/// One-shot HTTP/2 prior-knowledge `GET` to `addr` with `:authority: host`.
pub async fn get_h2(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, Error> {
    HttpClient::http2(addr).get(host, path, headers).await
}

/// One-shot absolute-form `GET absolute_url` sent to `proxy_addr` (an `HTTP_PROXY` client).
pub async fn proxy_get(
    proxy_addr: SocketAddr,
    absolute_url: &str,
    headers: &[(&str, &str)],
) -> Result<Response, Error> {
    HttpClient::proxy(proxy_addr)
        .request(Method::GET, absolute_url, headers, Bytes::new())
        .await
}

/// Writes `request` as-is to `addr` and reads until the peer closes or `timeout` passes.
///
/// For malformed or hand-built requests; send `Connection: close` to get a prompt answer.
pub async fn raw_http(addr: SocketAddr, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(request).await?;
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A reset after the response still leaves the response to look at.
                Err(_) if !out.is_empty() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r.map(|()| out),
        Err(_) => Ok(out),
    }
}

/// Connector that ignores the URI's host and dials a fixed address.
#[derive(Clone)]
struct FixedConnector {
    addr: SocketAddr,
    proxied: bool,
}

impl tower_service::Service<Uri> for FixedConnector {
    type Response = Conn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (addr, proxied) = (self.addr, self.proxied);
        Box::pin(async move {
            let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            s.set_nodelay(true)?;
            Ok(Conn {
                io: TokioIo::new(s),
                proxied,
            })
        })
    }
}

/// A TCP connection that may tell hyper-util it talks to a proxy (absolute-form requests).
struct Conn {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A WebSocket client connection with bounded send/receive.
pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
    timeout: Duration,
}

impl WsClient {
    /// Connects to `addr` and upgrades `GET ws://{host}{path}` (e.g. path `/ws`).
    pub async fn connect(addr: SocketAddr, host: &str, path: &str) -> Result<WsClient, Error> {
        let req = format!("ws://{host}{path}").into_client_request()?;
        let handshake = async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (ws, _resp) = tokio_tungstenite::client_async(req, stream).await?;
            Ok::<_, Error>(ws)
        };
        let ws = tokio::time::timeout(DEFAULT_TIMEOUT, handshake)
            .await
            .map_err(|_| "websocket handshake timed out")??;
        Ok(WsClient {
            ws,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sends a text message and waits for the next text reply.
    pub async fn roundtrip(&mut self, text: &str) -> Result<String, Error> {
        self.send(Message::text(text)).await?;
        match self.recv().await? {
            Message::Text(t) => Ok(t.as_str().to_string()),
            other => Err(format!("expected a text message, got {other:?}").into()),
        }
    }

    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        tokio::time::timeout(self.timeout, self.ws.send(msg))
            .await
            .map_err(|_| "websocket send timed out")??;
        Ok(())
    }

    /// The next data message (text or binary), skipping pings and pongs.
    pub async fn recv(&mut self) -> Result<Message, Error> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .map_err(|_| "websocket receive timed out")?
                .ok_or("websocket closed")??;
            match msg {
                Message::Text(_) | Message::Binary(_) => return Ok(msg),
                Message::Close(f) => return Err(format!("websocket closed: {f:?}").into()),
                _ => continue,
            }
        }
    }

    /// Sends a close frame and waits (bounded) for the peer's.
    pub async fn close(mut self) -> Result<(), Error> {
        tokio::time::timeout(self.timeout, self.ws.close(None))
            .await
            .map_err(|_| "websocket close timed out")??;
        Ok(())
    }
}

/// Outcome of many requests: who answered and with which status.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// `x-upstream` value -> responses; responses without one count under `"-"`.
    pub by_upstream: BTreeMap<String, usize>,
    /// Status code -> responses.
    pub by_status: BTreeMap<u16, usize>,
    /// Requests that got no response (error or timeout).
    pub errors: usize,
    /// The first such error, for assertion messages.
    pub first_error: Option<String>,
}

impl Tally {
    pub fn upstream(&self, name: &str) -> usize {
        self.by_upstream.get(name).copied().unwrap_or(0)
    }

    pub fn status(&self, code: u16) -> usize {
        self.by_status.get(&code).copied().unwrap_or(0)
    }

    /// Responses plus errors.
    pub fn total(&self) -> usize {
        self.by_status.values().sum::<usize>() + self.errors
    }

    /// Fraction of all requests answered by `name`.
    pub fn share(&self, name: &str) -> f64 {
        match self.total() {
            0 => 0.0,
            t => self.upstream(name) as f64 / t as f64,
        }
    }
}

/// Runs `make()` `n` times, at most `concurrency` at once, and tallies the outcomes.
///
/// `make` is typically `|| client.get("svc", "/", &[])` with a cloned [`HttpClient`].
pub async fn count_by_upstream<F, Fut>(n: usize, concurrency: usize, make: F) -> Tally
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Response, Error>>,
{
    let mut tally = Tally::default();
    let mut results =
        futures_util::stream::iter((0..n).map(|_| make())).buffer_unordered(concurrency.max(1));
    while let Some(r) = results.next().await {
        match r {
            Ok(resp) => {
                let up = resp.upstream().unwrap_or("-").to_string();
                *tally.by_upstream.entry(up).or_default() += 1;
                *tally.by_status.entry(resp.status.as_u16()).or_default() += 1;
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    tally
}

/// Polls `cond` every 25 ms until it returns true (-> `true`) or `timeout` passes (-> `false`).
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Ok(true) = tokio::time::timeout(remaining, cond()).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
