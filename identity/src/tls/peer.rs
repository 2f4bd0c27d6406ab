//! What the client and server verifiers share: checking the peer's chain against the bundle held
//! at handshake time, and its handshake signatures with the provider's algorithms.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::credentials::Credentials;
use super::refusal::verify_failure;
use crate::{PeerRole, SpiffeId, verify_chain_der};

#[derive(Debug)]
pub(super) struct PeerCheck {
    creds: Arc<Credentials>,
    pub(super) algorithms: WebPkiSupportedAlgorithms,
}

impl PeerCheck {
    pub(super) fn new(creds: Arc<Credentials>, algorithms: WebPkiSupportedAlgorithms) -> Self {
        PeerCheck { creds, algorithms }
    }

    /// The peer's SPIFFE ID if its chain verifies for `role` against the current bundle at `now`.
    pub(super) fn chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
    ) -> Result<SpiffeId, rustls::Error> {
        let chain: Vec<CertificateDer<'_>> = std::iter::once(end_entity.clone())
            .chain(intermediates.iter().cloned())
            .collect();
        let at = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        verify_chain_der(&chain, &self.creds.bundle(), role, at)
            .map_err(|e| verify_failure(role, e))
    }
}

/// The handshake-signature methods every rustls verifier has, answered by the `PeerCheck` in
/// field `$check` with the provider's algorithms (the same for client and server verifiers).
macro_rules! delegate_signatures {
    ($check:ident) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.$check.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.$check.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$check.algorithms.supported_schemes()
        }
    };
}
pub(super) use delegate_signatures;
