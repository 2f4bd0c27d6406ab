//! HTTP echo upstream: HTTP/1.1 and HTTP/2 (prior knowledge) on one port, WebSocket and raw
//! HTTP/1 upgrades.
//!
//! Every response carries `x-upstream: <name>`; normal responses have a JSON [`EchoInfo`] body.
//! Per request headers:
//! - `x-echo-status: 503`: answer with that status;
//! - `x-echo-delay-ms: 200`: sleep before answering;
//! - `x-echo-set-header: k=v` (repeatable): add a response header.
//!
//! Upgrades: `Upgrade: websocket` (any path, conventionally `/ws`) starts a WebSocket that echoes
//! text and binary messages prefixed with `"<name>: "`. Any other `Upgrade: p` gets `101` with
//! `upgrade: p`, then the server writes `"<name>\n"` and echoes raw bytes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::server::{ConnCtx, Running, echo_bytes, serve_http};

/// The JSON body of an echo response: what the upstream saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoInfo {
    /// The echo server's name.
    pub server: String,
    pub method: String,
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    /// The URI authority (HTTP/2 `:authority`, HTTP/1 absolute-form) or else the `Host` header.
    pub authority: Option<String>,
    /// `"HTTP/1.1"` or `"HTTP/2.0"`.
    pub version: String,
    /// Lower-case header name -> value; repeated headers joined with `,`.
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
}

impl EchoInfo {
    /// A request header as the upstream saw it (name is case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

struct State {
    name: String,
    requests: AtomicUsize,
    status: Mutex<Option<u16>>,
    delay: Mutex<Option<Duration>>,
    last: Mutex<Option<(HeaderMap, EchoInfo)>>,
}

/// A running echo upstream; stops (closing all connections) when dropped.
pub struct EchoServer {
    state: Arc<State>,
    running: Running,
}

impl EchoServer {
    /// Starts on `127.0.0.1:0`.
    pub async fn start(name: &str) -> EchoServer {
        Self::start_at(name, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind echo server")
    }

    /// Starts on a given address, e.g. to bring a stopped upstream back on its old port.
    pub async fn start_at(name: &str, addr: SocketAddr) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind(addr).await?;
        let state = Arc::new(State {
            name: name.to_string(),
            requests: AtomicUsize::new(0),
            status: Mutex::new(None),
            delay: Mutex::new(None),
            last: Mutex::new(None),
        });
        let st = state.clone();
        let running = serve_http(listener, move |ctx: ConnCtx| {
            let st = st.clone();
            hyper::service::service_fn(move |req| handle(st.clone(), ctx.clone(), req))
        });
        Ok(EchoServer { state, running })
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Forces every response's status (overrides `x-echo-status`); `None` restores normal.
    pub fn set_status(&self, status: Option<u16>) {
        *lock(&self.state.status) = status;
    }

    /// Delays every response (`x-echo-delay-ms` takes precedence when present).
    pub fn set_delay(&self, delay: Option<Duration>) {
        *lock(&self.state.delay) = delay;
    }

    /// Requests received (counted on arrival, including upgrades).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Headers of the last request received.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        lock(&self.state.last).as_ref().map(|(h, _)| h.clone())
    }

    /// What the last request looked like, as in the JSON body.
    pub fn last_request(&self) -> Option<EchoInfo> {
        lock(&self.state.last).as_ref().map(|(_, i)| i.clone())
    }

    /// Zeroes the request and total-connection counters.
    pub fn reset_counts(&self) {
        self.state.requests.store(0, Ordering::SeqCst);
        self.running.reset_total();
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.running.open_connections()
    }

    /// Connections accepted since start (or [`reset_counts`](Self::reset_counts)).
    pub fn total_connections(&self) -> usize {
        self.running.total_connections()
    }

    /// Stops and waits until the port refuses connections.
    pub async fn shutdown(mut self) {
        self.running.shutdown().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn describe<B>(name: &str, req: &Request<B>) -> EchoInfo {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes());
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| header_str(req.headers(), "host").map(str::to_string));
    EchoInfo {
        server: name.to_string(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        authority,
        version: format!("{:?}", req.version()),
        headers,
        body_len: 0,
    }
}

async fn handle(
    st: Arc<State>,
    ctx: ConnCtx,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let upgrade = header_str(req.headers(), "upgrade").map(str::to_ascii_lowercase);
    if let Some(proto) = upgrade.filter(|_| req.version() == Version::HTTP_11) {
        let info = describe(&st.name, &req);
        *lock(&st.last) = Some((req.headers().clone(), info));
        return Ok(upgrade_response(&st, ctx, &mut req, &proto));
    }

    let delay = header_str(req.headers(), "x-echo-delay-ms")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .or(*lock(&st.delay));
    let status = (*lock(&st.status)).or_else(|| {
        header_str(req.headers(), "x-echo-status").and_then(|v| v.trim().parse::<u16>().ok())
    });
    let status = status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let set_headers: Vec<(HeaderName, HeaderValue)> = req
        .headers()
        .get_all("x-echo-set-header")
        .iter()
        .filter_map(|v| {
            let (k, v) = v.to_str().ok()?.split_once('=')?;
            Some((k.trim().parse().ok()?, v.trim().parse().ok()?))
        })
        .collect();

    let headers = req.headers().clone();
    let mut info = describe(&st.name, &req);
    info.body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    *lock(&st.last) = Some((headers, info.clone()));

    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let body = serde_json::to_vec(&info).expect("serialize echo info");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("x-upstream", header_value(&st.name));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in set_headers {
        h.append(k, v);
    }
    Ok(resp)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid-name"))
}

fn upgrade_response(
    st: &Arc<State>,
    ctx: ConnCtx,
    req: &mut Request<Incoming>,
    proto: &str,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    resp.headers_mut()
        .insert("x-upstream", header_value(&st.name));
    let websocket = proto == "websocket";
    let accept = if websocket {
        match req.headers().get("sec-websocket-key") {
            Some(key) => Some(derive_accept_key(key.as_bytes())),
            None => {
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                return resp;
            }
        }
    } else {
        None
    };
    let on_upgrade = hyper::upgrade::on(req);
    let name = st.name.clone();
    tokio::spawn(async move {
        // Holding the guard keeps the upgraded connection counted as open.
        let ConnCtx { shutdown, guard } = ctx;
        let _guard = guard;
        let work = async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let io = TokioIo::new(upgraded);
            if websocket {
                ws_echo(&name, io).await;
            } else {
                echo_bytes(format!("{name}\n").as_bytes(), io).await;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = shutdown.wait() => {}
        }
    });
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, header_value(proto));
    if let Some(accept) = accept {
        h.insert("sec-websocket-accept", header_value(&accept));
    }
    resp
}

async fn ws_echo<S>(name: &str, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(t) => Message::text(format!("{name}: {}", t.as_str())),
            Message::Binary(b) => {
                let mut v = format!("{name}: ").into_bytes();
                v.extend_from_slice(&b);
                Message::binary(v)
            }
            Message::Close(_) => break,
            // Pings are answered by tungstenite itself.
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
    let _ = ws.close(None).await;
}
