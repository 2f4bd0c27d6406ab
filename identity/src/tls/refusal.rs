//! How a refused peer certificate travels through rustls, and the short kind of a failed handshake
//! for logs and metric labels.

use std::fmt;
use std::sync::Arc;

use rustls::{CertificateError, OtherError};

use crate::{PeerRole, SpiffeId, VerifyError};

/// Why a verifier refused the peer's certificate; carried inside
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))` where rustls has no variant
/// of its own, so the handshake error names what was wrong.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("{} certificate refused: {error}", role_name(*.role))]
    Verify { role: PeerRole, error: VerifyError },
    #[error(
        "server identity {got} is not one expected for this destination (expected {})",
        list(.expected)
    )]
    UnexpectedIdentity {
        expected: Vec<SpiffeId>,
        got: SpiffeId,
    },
}

// rustls prints `CertificateError::Other` with `{:?}`: make that the readable message.
impl fmt::Debug for PeerRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl PeerRefusal {
    /// A short, stable name for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerRefusal::Verify { error, .. } => error.kind(),
            PeerRefusal::UnexpectedIdentity { .. } => "unexpected_identity",
        }
    }
}

fn role_name(role: PeerRole) -> &'static str {
    match role {
        PeerRole::Client => "client",
        PeerRole::Server => "server",
    }
}

fn list(ids: &[SpiffeId]) -> String {
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The rustls error for a certificate refused by [`crate::verify_chain_der`]: rustls's own
/// variant where one exists (so the alert sent to the peer says it: `certificate_expired`,
/// `unknown_ca`, `bad_certificate`), else the [`PeerRefusal`] itself.
pub(super) fn verify_failure(role: PeerRole, error: VerifyError) -> rustls::Error {
    let cert_error = match error {
        VerifyError::NoCertificate => return rustls::Error::NoCertificatesPresented,
        VerifyError::Expired => CertificateError::Expired,
        VerifyError::NotYetValid => CertificateError::NotValidYet,
        VerifyError::UnknownIssuer => CertificateError::UnknownIssuer,
        VerifyError::Malformed(_) => CertificateError::BadEncoding,
        error => return refused(PeerRefusal::Verify { role, error }),
    };
    rustls::Error::InvalidCertificate(cert_error)
}

pub(super) fn refused(refusal: PeerRefusal) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(refusal))))
}

/// A short, stable name for why a mesh handshake failed, from the `io::Error` tokio-rustls
/// returns: `expired`, `unknown_issuer`, `unexpected_identity`, `no_certificate`, `not_tls`
/// (plaintext on a TLS port), `alert_received` (the peer refused us), ... or `io`.
pub fn failure_kind(err: &std::io::Error) -> &'static str {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "io";
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::UnknownIssuer => "unknown_issuer",
            CertificateError::BadEncoding => "malformed",
            CertificateError::Other(OtherError(other)) => other
                .downcast_ref::<PeerRefusal>()
                .map_or("bad_certificate", PeerRefusal::kind),
            _ => "bad_certificate",
        },
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => "not_tls",
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::NoApplicationProtocol => "no_application_protocol",
        _ => "handshake",
    }
}
