//! Inbound mutual TLS, as PeerAuthentication asks for the connection's port.
//!
//! The first bytes decide, as Envoy's TLS inspector and Istio's inbound filter chains do: a TLS
//! ClientHello whose ALPN offers a `trellis-*` protocol is a mesh proxy's mutual TLS and is
//! terminated here (client certificate required and verified against the trust bundle); any
//! other TLS is the application's own and, like plaintext, passes through untouched.
//!
//! | mode       | mesh TLS   | other TLS, plaintext |
//! |------------|------------|----------------------|
//! | STRICT     | terminated | refused (closed)     |
//! | PERMISSIVE | terminated | passed through       |
//! | DISABLE    | passed through | passed through   |
//!
//! In STRICT any TLS client goes through the mesh handshake, so one without a trusted
//! certificate or a mesh ALPN fails it (counted by why). Without a certificate yet (no join
//! token, or not issued yet), PERMISSIVE ports behave as DISABLE and STRICT ports refuse
//! everything: an Istio sidecar is not ready to serve STRICT traffic before it has its
//! certificate either.
//!
//! The ClientHello is only peeked at, never consumed, so a connection that is not mesh traffic
//! reaches the application byte for byte. Handshakes run on the connection's own task with a
//! deadline, so a slow or silent client holds nothing but its own connection.

use crate::identity::WorkloadIdentity;
use crate::server::{ConnInfo, Proxy};
use arc_swap::ArcSwapOption;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use trellis_api::model::MtlsMode;
use trellis_identity::tls::{self, ClientAuth, Credentials, MeshProtocol};

/// How long a client has from its first byte to a finished handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A ClientHello must fit in one TLS record (header + at most 16 KiB).
const MAX_HELLO: usize = 5 + 16 * 1024;

/// What to do with an inbound connection.
pub enum Admission {
    /// Not for mutual TLS: serve it as before (protocol detection, then HTTP or opaque TCP).
    PassThrough,
    /// Not for mutual TLS, and the client has been silent for the detection time already: a
    /// server-first protocol, opaque TCP.
    Silent,
    /// Mesh mutual TLS to terminate with this server.
    Terminate(Arc<MeshServer>),
    /// Close it: refused, or the client went away.
    Refuse,
}

/// Decides, from the port's mode and the connection's first bytes, whether `stream` is mesh TLS
/// to terminate. Nothing is read from the stream; refusals are counted.
pub async fn admit(proxy: &Proxy, stream: &TcpStream, info: &ConnInfo) -> Admission {
    let mode = {
        let snapshot = proxy.store.load();
        let mtls = &snapshot.config.inbound_mtls;
        proxy
            .inbound
            .port_for(info)
            .map_or(mtls.mode, |port| mtls.mode_for(port))
    };
    let tls = &proxy.inbound_tls;
    let server = match mode {
        MtlsMode::Disable => return Admission::PassThrough,
        MtlsMode::Permissive => match tls.server(&proxy.identity) {
            Some(server) => Some(server),
            None => return Admission::PassThrough,
        },
        MtlsMode::Strict => {
            let server = tls.server(&proxy.identity);
            if server.is_none() && !tls.warned_no_credentials.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "PeerAuthentication STRICT but this workload has no certificate yet: \
                     inbound connections are refused until it has one"
                );
            }
            server
        }
    };
    let strict = mode == MtlsMode::Strict;
    match first_bytes(stream, proxy.detection_timeout).await {
        First::Closed => Admission::Refuse,
        First::Plain | First::Silent if strict => {
            tls.plaintext_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %info.peer, "plaintext refused: PeerAuthentication STRICT");
            Admission::Refuse
        }
        First::Plain => Admission::PassThrough,
        First::Silent => Admission::Silent,
        First::Tls => {
            let Some(server) = server else {
                tls.count("no_credentials");
                return Admission::Refuse;
            };
            if strict {
                return Admission::Terminate(server);
            }
            match offers_mesh_alpn(stream).await {
                Ok(true) => Admission::Terminate(server),
                // The application's own TLS (or something we cannot read as a ClientHello):
                // PERMISSIVE hands it to the application as it came.
                Ok(false) | Err(_) => Admission::PassThrough,
            }
        }
    }
}

/// Runs the mesh handshake on `stream` (bounded by [`HANDSHAKE_TIMEOUT`]), then serves what its
/// ALPN names with the verified identities in `info`.
pub async fn terminate(
    proxy: Arc<Proxy>,
    mut info: ConnInfo,
    stream: TcpStream,
    server: Arc<MeshServer>,
) {
    let counters = &proxy.inbound_tls;
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, server.acceptor.accept(stream)).await;
    let stream = match handshake {
        Err(_) => {
            counters.count("timeout");
            tracing::warn!(peer = %info.peer, kind = "timeout", "inbound mTLS handshake refused: timed out");
            return;
        }
        Ok(Err(e)) => {
            let kind = tls::failure_kind(&e);
            counters.count(kind);
            tracing::warn!(peer = %info.peer, kind, error = %e, "inbound mTLS handshake refused");
            return;
        }
        Ok(Ok(stream)) => stream,
    };
    let (_, conn) = stream.get_ref();
    let (Some(peer), Some(protocol)) = (tls::peer_identity(conn), MeshProtocol::negotiated(conn))
    else {
        // The verifier requires a certificate and the config only offers mesh protocols, so
        // rustls should never finish without both; refuse rather than serve unauthenticated.
        counters.count("no_certificate");
        return;
    };
    counters.count("success");
    info.peer_identity = Some(Arc::from(peer.to_string()));
    info.local_identity = Some(server.local.clone());
    match protocol {
        MeshProtocol::Http2 | MeshProtocol::Http1 => super::serve_http(proxy, info, stream).await,
        MeshProtocol::Http1OverH2 => {
            info.app_speaks_http1 = true;
            super::serve_http(proxy, info, stream).await
        }
        MeshProtocol::Tcp => super::tcp::proxy(proxy, info, stream).await,
    }
}

/// The mesh TLS server for one set of credentials.
pub struct MeshServer {
    credentials: Arc<Credentials>,
    acceptor: TlsAcceptor,
    /// This workload's SPIFFE ID.
    local: Arc<str>,
}

/// Inbound TLS state shared by every worker: the server config (rebuilt only when the
/// credentials object changes; rotation happens inside it) and the counters on
/// `/stats/prometheus`.
#[derive(Default)]
pub struct InboundTls {
    server: ArcSwapOption<MeshServer>,
    /// Handshakes by result: `success`, `timeout`, `no_credentials`, or why it failed
    /// ([`tls::failure_kind`]).
    handshakes: Mutex<BTreeMap<&'static str, u64>>,
    plaintext_refused: AtomicU64,
    warned_no_credentials: AtomicBool,
}

impl InboundTls {
    /// The server for the workload's current credentials, `None` while it has none.
    fn server(&self, identity: &WorkloadIdentity) -> Option<Arc<MeshServer>> {
        let credentials = identity.credentials()?;
        if let Some(server) = self.server.load_full()
            && Arc::ptr_eq(&server.credentials, &credentials)
        {
            return Some(server);
        }
        let config = match tls::server_config(
            credentials.clone(),
            ClientAuth::Required,
            &MeshProtocol::ALL,
        ) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the inbound mTLS server config");
                return None;
            }
        };
        let server = Arc::new(MeshServer {
            local: Arc::from(credentials.identity().to_string()),
            credentials,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        });
        self.server.store(Some(server.clone()));
        Some(server)
    }

    fn count(&self, result: &'static str) {
        let mut counts = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(result).or_default() += 1;
    }

    /// Appends the counters in Prometheus text format.
    pub fn encode_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        const HANDSHAKES: &str = "trellis_inbound_tls_handshakes_total";
        const REFUSED: &str = "trellis_inbound_plaintext_refused_total";
        let _ = writeln!(
            out,
            "# HELP {HANDSHAKES} Inbound mutual TLS handshakes by result: success, or why the client was refused (unknown_issuer, no_certificate, timeout, no_credentials, ...)."
        );
        let _ = writeln!(out, "# TYPE {HANDSHAKES} counter");
        let counts = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        for (result, count) in counts.iter() {
            let _ = writeln!(out, "{HANDSHAKES}{{result=\"{result}\"}} {count}");
        }
        drop(counts);
        let _ = writeln!(
            out,
            "# HELP {REFUSED} Inbound plaintext connections closed because PeerAuthentication is STRICT on their port."
        );
        let _ = writeln!(out, "# TYPE {REFUSED} counter");
        let _ = writeln!(
            out,
            "{REFUSED} {}",
            self.plaintext_refused.load(Ordering::Relaxed)
        );
    }
}

/// What a connection starts with.
#[derive(Debug, PartialEq, Eq)]
enum First {
    /// A TLS handshake record.
    Tls,
    /// Anything else.
    Plain,
    /// Nothing within the patience (a server-first protocol).
    Silent,
    /// The client closed before sending anything.
    Closed,
}

/// Whether bytes start a TLS handshake record (content type 22, protocol major version 3);
/// `None` when too few have arrived to tell.
fn is_tls_record(buf: &[u8]) -> Option<bool> {
    match buf {
        [] => None,
        [0x16] => None,
        [0x16, 0x03, ..] => Some(true),
        _ => Some(false),
    }
}

async fn first_bytes(stream: &TcpStream, patience: Duration) -> First {
    let deadline = tokio::time::Instant::now() + patience;
    let mut buf = [0u8; 2];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return First::Silent,
            Ok(Err(_)) | Ok(Ok(0)) => return First::Closed,
            Ok(Ok(n)) => match is_tls_record(&buf[..n]) {
                Some(true) => return First::Tls,
                Some(false) => return First::Plain,
                None if tokio::time::Instant::now() >= deadline => return First::Plain,
                None => tokio::time::sleep(Duration::from_millis(1)).await,
            },
        }
    }
}

/// Peeks at the ClientHello (waiting up to [`HANDSHAKE_TIMEOUT`] for all of it) and tells
/// whether its ALPN offers a mesh protocol. An error means it is not a ClientHello rustls can
/// read, or it did not arrive in time.
async fn offers_mesh_alpn(stream: &TcpStream) -> Result<bool, String> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut buf = vec![0u8; MAX_HELLO];
    let mut seen = 0;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Err(_) => return Err("ClientHello incomplete".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(0)) => return Err("closed during ClientHello".into()),
            Ok(Ok(n)) => n,
        };
        if n > seen {
            seen = n;
            if let Some(mesh) = client_hello_offers_mesh(&buf[..n])? {
                return Ok(mesh);
            }
            if n == buf.len() {
                return Err("ClientHello larger than one TLS record".into());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err("ClientHello incomplete".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether the ClientHello at the start of `bytes` offers a mesh ALPN; `None` when it is not
/// complete yet.
fn client_hello_offers_mesh(mut bytes: &[u8]) -> Result<Option<bool>, String> {
    let mut acceptor = rustls::server::Acceptor::default();
    while !bytes.is_empty() {
        match acceptor.read_tls(&mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    match acceptor.accept() {
        Ok(None) => Ok(None),
        Ok(Some(accepted)) => Ok(Some(
            accepted
                .client_hello()
                .alpn()
                .is_some_and(MeshProtocol::is_mesh_offer),
        )),
        Err((e, _)) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_tls_records_from_plaintext() {
        assert_eq!(is_tls_record(b""), None);
        assert_eq!(is_tls_record(b"\x16"), None);
        assert_eq!(is_tls_record(b"\x16\x03\x01"), Some(true));
        assert_eq!(is_tls_record(b"GET / HTTP/1.1"), Some(false));
        assert_eq!(is_tls_record(b"PRI * HTTP/2.0"), Some(false));
        assert_eq!(is_tls_record(b"\x16\x01"), Some(false));
    }

    #[test]
    fn garbage_after_a_record_header_is_an_error_not_a_panic() {
        let mut bytes = vec![0x16, 0x03, 0x01, 0x00, 0x08];
        bytes.extend_from_slice(&[0xff; 8]);
        assert!(client_hello_offers_mesh(&bytes).is_err());
        // A header alone is incomplete.
        assert_eq!(client_hello_offers_mesh(&bytes[..5]), Ok(None));
    }
}
