//! The outbound side: a client config that verifies the server by the SPIFFE identities expected
//! for the destination.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};

use super::credentials::Credentials;
use super::peer::{PeerCheck, delegate_signatures};
use super::refusal::{PeerRefusal, refused};
use super::{MeshProtocol, TlsConfigError, provider};
use crate::{PeerRole, SpiffeId};

/// The client config for connections to one mesh destination: presents `creds`' current
/// certificate, verifies the server against `creds`' current bundle and requires its SPIFFE ID
/// to be one of `expected` (the identities of the destination's workloads, from the control
/// plane), TLS 1.3 only, offering `protocol` in ALPN.
///
/// Build one per destination (cluster) and expected-identity set when config arrives, and reuse
/// it for every connection there; the server name given to the connector is only sent as SNI
/// (use [`mesh_server_name`]).
pub fn client_config(
    creds: Arc<Credentials>,
    expected: impl IntoIterator<Item = SpiffeId>,
    protocol: MeshProtocol,
) -> Result<ClientConfig, TlsConfigError> {
    let mut expected: Vec<SpiffeId> = expected.into_iter().collect();
    expected.sort();
    expected.dedup();
    if expected.is_empty() {
        return Err(TlsConfigError::NoExpectedIdentity);
    }
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        check: PeerCheck::new(creds.clone(), provider.signature_verification_algorithms),
        expected,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(creds);
    config.alpn_protocols = vec![protocol.alpn().to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The SNI a proxy sends to a mesh destination, in Istio's form
/// `outbound_.<port>_.<subset>_.<host>` (an empty subset for none, as Istio writes it), e.g.
/// `outbound_.9080_._.reviews.default.svc.cluster.local`: it names the cluster for whoever reads
/// the ClientHello (a gateway routing by SNI); identity is checked by SPIFFE ID, never by it.
pub fn mesh_server_name(
    port: u16,
    subset: Option<&str>,
    host: &str,
) -> Result<ServerName<'static>, InvalidDnsNameError> {
    let subset = subset.unwrap_or("");
    ServerName::try_from(format!("outbound_.{port}_.{subset}_.{host}"))
}

/// Verifies a server's chain against the bundle held in [`Credentials`] at handshake time, then
/// its identity against the expected set.
#[derive(Debug)]
struct SpiffeServerVerifier {
    check: PeerCheck,
    /// Sorted, without duplicates, never empty.
    expected: Vec<SpiffeId>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = self
            .check
            .chain(end_entity, intermediates, now, PeerRole::Server)?;
        if self.expected.binary_search(&got).is_err() {
            return Err(refused(PeerRefusal::UnexpectedIdentity {
                expected: self.expected.clone(),
                got,
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    delegate_signatures!(check);
}
