//! Outbound mutual TLS to another proxy (DestinationRule `ISTIO_MUTUAL`, or auto mTLS to an
//! endpoint with a sidecar): which transport an endpoint gets, the TLS client handshake with the
//! workload's certificate, the server's SPIFFE ID checked against what the config expects, and
//! the handshake counters on `/stats/prometheus` (shared with TLS origination, `origination.rs`).

use crate::identity::WorkloadIdentity;
use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use trellis_identity::SpiffeId;
use trellis_identity::tls::{self, Credentials, MeshProtocol};

/// How connections to one endpoint are made; part of the pool key, so a plaintext and a mutual
/// TLS connection to the same address never share a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain TCP.
    #[default]
    Plain,
    /// Mesh mutual TLS to a proxy.
    Mesh(MeshTarget),
    /// TLS origination to a server outside the mesh (DestinationRule SIMPLE/MUTUAL).
    Originate(super::origination::OriginationTarget),
}

/// What a mesh mutual TLS connection to one endpoint needs, decided when config arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MeshTarget {
    /// SPIFFE IDs the server may present (sorted; empty when the config named none, which fails
    /// the connection).
    pub expected: Vec<SpiffeId>,
    /// Sent as SNI: Istio's `outbound_.PORT_.SUBSET_.HOST`, or the rule's `sni`.
    pub sni: String,
    /// Explicit ISTIO_MUTUAL: without local credentials the connection fails (UF), as in Istio.
    /// Auto mTLS instead falls back to plaintext while the workload has no certificate.
    pub required: bool,
}

/// The identities a finished mesh handshake authenticated: this workload's and the server's.
/// Attached to upstream responses (as an extension) so the request record can carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshPeer {
    pub local: Arc<str>,
    pub peer: Arc<str>,
}

/// An upstream connection, plaintext or inside mutual TLS.
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a mesh or originated TLS connection could not be set up (all are connect failures: 503
/// UF).
#[derive(Debug, thiserror::Error)]
pub enum MeshTlsError {
    #[error(
        "ISTIO_MUTUAL destination but this workload has no certificate yet (no identity configured, or not issued)"
    )]
    NoCredentials,
    #[error("mutual TLS setup: {0}")]
    Config(String),
    #[error("invalid SNI `{0}`")]
    ServerName(String),
    #[error("mutual TLS handshake failed ({kind}): {error}")]
    Handshake {
        kind: &'static str,
        error: io::Error,
    },
    #[error("TLS origination certificate files: {0}")]
    Files(Arc<str>),
    #[error("TLS origination handshake failed ({kind}): {error}")]
    OriginationHandshake {
        kind: &'static str,
        error: io::Error,
    },
}

/// Client configs of one pool, one per (credentials object, inner protocol). Rotation happens
/// inside [`Credentials`], so a config stays valid until the credentials object itself changes.
#[derive(Default)]
pub(super) struct Connectors(Mutex<Vec<(Arc<Credentials>, MeshProtocol, TlsConnector)>>);

impl Connectors {
    fn get(
        &self,
        target: &MeshTarget,
        creds: &Arc<Credentials>,
        protocol: MeshProtocol,
    ) -> Result<TlsConnector, MeshTlsError> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cached.retain(|(c, _, _)| Arc::ptr_eq(c, creds));
        if let Some((_, _, connector)) = cached.iter().find(|(_, p, _)| *p == protocol) {
            return Ok(connector.clone());
        }
        let config = tls::client_config(creds.clone(), target.expected.iter().cloned(), protocol)
            .map_err(|e| MeshTlsError::Config(e.to_string()))?;
        let connector = TlsConnector::from(Arc::new(config));
        cached.push((creds.clone(), protocol, connector.clone()));
        Ok(connector)
    }
}

/// Runs the client handshake on `tcp` and returns the stream with the identities it proved. A
/// refusal is logged at warn (once per attempt, with the endpoint) and counted by reason.
pub(super) async fn handshake(
    target: &MeshTarget,
    connectors: &Connectors,
    creds: &Arc<Credentials>,
    protocol: MeshProtocol,
    tcp: TcpStream,
    endpoint: &str,
) -> Result<(UpstreamIo, MeshPeer), MeshTlsError> {
    let result = async {
        let connector = connectors.get(target, creds, protocol)?;
        let name = rustls_pki_types::ServerName::try_from(target.sni.clone())
            .map_err(|_| MeshTlsError::ServerName(target.sni.clone()))?;
        let stream =
            connector
                .connect(name, tcp)
                .await
                .map_err(|error| MeshTlsError::Handshake {
                    kind: tls::failure_kind(&error),
                    error,
                })?;
        let (_, conn) = stream.get_ref();
        // The verifier accepted only an expected SPIFFE ID, so there is one to read.
        let peer = tls::peer_identity(conn).ok_or_else(|| MeshTlsError::Handshake {
            kind: "no_certificate",
            error: io::Error::other("the server presented no SPIFFE certificate"),
        })?;
        Ok((
            UpstreamIo::Tls(Box::new(stream)),
            MeshPeer {
                local: Arc::from(creds.identity().to_string()),
                peer: Arc::from(peer.to_string()),
            },
        ))
    }
    .await;
    match &result {
        Ok(_) => count(MESH, "success"),
        Err(e) => {
            let reason = match e {
                MeshTlsError::NoCredentials => "no_credentials",
                MeshTlsError::Handshake { kind, .. }
                | MeshTlsError::OriginationHandshake { kind, .. } => kind,
                MeshTlsError::Config(_) | MeshTlsError::ServerName(_) | MeshTlsError::Files(_) => {
                    "config"
                }
            };
            count(MESH, reason);
            tracing::warn!(%endpoint, sni = %target.sni, expected = ?target.expected, reason, error = %e, "outbound mTLS handshake refused");
        }
    }
    result
}

/// The local credentials for a mesh connection: `Ok(None)` means plaintext (auto mTLS while the
/// workload has no certificate), an error that the connection must fail.
pub(super) fn credentials(
    target: &MeshTarget,
    identity: &WorkloadIdentity,
) -> Result<Option<Arc<Credentials>>, MeshTlsError> {
    match identity.credentials() {
        Some(creds) => Ok(Some(creds)),
        None if target.required => {
            count(MESH, "no_credentials");
            if !WARNED_NO_CREDENTIALS.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    sni = %target.sni,
                    "ISTIO_MUTUAL destination but this workload has no certificate: connections fail (503 UF) until it has one"
                );
            }
            Err(MeshTlsError::NoCredentials)
        }
        None => Ok(None),
    }
}

static WARNED_NO_CREDENTIALS: AtomicBool = AtomicBool::new(false);

/// The `mode` label of mesh mutual TLS (explicit ISTIO_MUTUAL and auto mTLS alike).
const MESH: &str = "istio_mutual";

/// Outbound handshakes by (mode, result), for the whole process (one proxy per process).
static HANDSHAKES: Mutex<BTreeMap<(&'static str, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts one outbound handshake of `mode` (`istio_mutual`, `simple`, `mutual`).
pub(super) fn count(mode: &'static str, result: &'static str) {
    let mut counts = HANDSHAKES.lock().unwrap_or_else(|p| p.into_inner());
    *counts.entry((mode, result)).or_default() += 1;
}

/// Appends `trellis_outbound_tls_handshakes_total{mode,result}` in Prometheus text format.
pub fn encode_prometheus(out: &mut String) {
    use std::fmt::Write;
    const NAME: &str = "trellis_outbound_tls_handshakes_total";
    let _ = writeln!(
        out,
        "# HELP {NAME} Outbound TLS handshakes by mode (istio_mutual: mesh mTLS to another proxy; simple, mutual: TLS origination) and result: success, or why it failed (unexpected_identity, unknown_issuer, name_mismatch, expired, alert_received, timeout, no_credentials, file_error, ...)."
    );
    let _ = writeln!(out, "# TYPE {NAME} counter");
    let counts = HANDSHAKES.lock().unwrap_or_else(|p| p.into_inner());
    for ((mode, result), count) in counts.iter() {
        let _ = writeln!(out, "{NAME}{{mode=\"{mode}\",result=\"{result}\"}} {count}");
    }
}

/// Counts and logs a handshake that did not finish within the connect timeout.
pub(super) fn timed_out(transport: &Transport, endpoint: &str) {
    let mode = match transport {
        Transport::Originate(target) => target.mode(),
        _ => MESH,
    };
    count(mode, "timeout");
    tracing::warn!(%endpoint, mode, "outbound TLS handshake timed out");
}
