//! The inbound side: a server config that verifies client certificates by SPIFFE identity.

use std::sync::Arc;

use rustls::server::NoServerSessionStorage;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, ServerConfig};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::credentials::Credentials;
use super::peer::{PeerCheck, delegate_signatures};
use super::{MeshProtocol, TlsConfigError, provider};
use crate::PeerRole;

/// Whether a client must present a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// PeerAuthentication STRICT: a client without a certificate fails the handshake.
    Required,
    /// PERMISSIVE: a client may come without a certificate (then [`super::peer_identity`] is
    /// `None` and the caller decides); a certificate it does present must still verify.
    Optional,
}

/// The server config for a proxy's inbound mesh listener: presents `creds`' current certificate,
/// verifies clients against `creds`' current bundle, TLS 1.3 only, and accepts the inner
/// protocols `accept` (see [`MeshProtocol`] for the ALPN values).
pub fn server_config(
    creds: Arc<Credentials>,
    client_auth: ClientAuth,
    accept: &[MeshProtocol],
) -> Result<ServerConfig, TlsConfigError> {
    if accept.is_empty() {
        return Err(TlsConfigError::NoProtocol);
    }
    let provider = provider();
    let verifier = Arc::new(SpiffeClientVerifier {
        check: PeerCheck::new(creds.clone(), provider.signature_verification_algorithms),
        client_auth,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(creds);
    config.alpn_protocols = accept.iter().map(|p| p.alpn().to_vec()).collect();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Verifies a client's chain against the bundle held in [`Credentials`] at handshake time.
#[derive(Debug)]
struct SpiffeClientVerifier {
    check: PeerCheck,
    client_auth: ClientAuth,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.client_auth == ClientAuth::Required
    }

    // No hints: the roots change with rotation, and a Trellis client has one certificate anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check
            .chain(end_entity, intermediates, now, PeerRole::Client)?;
        Ok(ClientCertVerified::assertion())
    }

    delegate_signatures!(check);
}
