//! Mutual TLS between proxies, on rustls 0.23 with the *ring* provider only.
//!
//! Both ends are Trellis proxies, so the configs speak TLS 1.3 only and authenticate each other by
//! SPIFFE ID rather than by DNS name:
//! - [`Credentials`] holds the workload's key, certificate chain and trust bundle behind an atomic
//!   swap; the configs resolve the certificate and the bundle per handshake, so a rotation
//!   applies to the next handshake while established connections carry on.
//! - [`server_config`] verifies clients ([`PeerRole::Client`](crate::PeerRole)) against the
//!   current bundle; [`ClientAuth`] says whether a certificate is required (STRICT) or optional
//!   (PERMISSIVE lets the caller decide what a client without one may do).
//! - [`client_config`] verifies the server ([`PeerRole::Server`](crate::PeerRole)) and requires
//!   its SPIFFE ID to be one of those expected for the destination; the TLS server name plays no
//!   part in that (see [`mesh_server_name`] for what is sent).
//! - [`MeshProtocol`] is the inner protocol, carried in ALPN.
//!
//! Session resumption is off on both sides: every handshake checks the peer's chain against the
//! bundle and the expected identities of that moment, so a rotated-out root or an expired
//! certificate is refused on the next connection, and [`peer_identity`] always reads the
//! certificate of this handshake. Connections between proxies are pooled and multiplexed, so
//! full handshakes are rare.

mod alpn;
mod client;
mod credentials;
mod peer;
mod refusal;
mod server;

use std::sync::Arc;

use rustls::CommonState;
use rustls::crypto::CryptoProvider;

pub use alpn::{MESH_ALPN_PREFIX, MeshProtocol};
pub use client::{client_config, mesh_server_name};
pub use credentials::{Credentials, CredentialsError, WorkloadCert};
pub use refusal::{PeerRefusal, failure_kind};
pub use server::{ClientAuth, server_config};

use crate::SpiffeId;

/// Why a TLS config could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    #[error(
        "no expected server identity: a mesh destination must name the SPIFFE IDs it may present"
    )]
    NoExpectedIdentity,
    #[error("no inner protocol to accept: give at least one ALPN protocol")]
    NoProtocol,
    #[error("TLS setup: {0}")]
    Rustls(String),
}

/// The crypto provider every config here uses: *ring* (never aws-lc-rs), given explicitly so no
/// process-wide default needs installing.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SPIFFE ID of the peer's leaf certificate once the handshake is done, on either side
/// (`&ServerConnection` and `&ClientConnection` both deref to [`CommonState`]). `None` when the
/// peer presented no certificate (a PERMISSIVE client without one) or before the handshake.
pub fn peer_identity(conn: &CommonState) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    crate::spiffe_id_of(leaf).ok()
}
