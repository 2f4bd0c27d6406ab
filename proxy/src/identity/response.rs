//! Checking what the control plane returned before any of it is used.
//!
//! A certificate is taken only when its chain parses, belongs to the key this proxy just made,
//! verifies against the trust bundle returned with it (for both client and server use: the same
//! certificate serves inbound and outbound mutual TLS), and names exactly this workload.

use super::csr::KeyAndCsr;
use std::time::SystemTime;
use trellis_api::push::CertifyResponse;
use trellis_identity::tls::{CredentialsError, WorkloadCert};
use trellis_identity::{PeerRole, SpiffeId, TrustBundle, VerifyError, verify_leaf_at};

/// Why a certificate was not obtained; `kind()` is the `result` label of
/// `trellis_identity_certificate_renewals_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not reached, or no answer in time: the control plane is away.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    /// The join token was refused.
    #[error("control plane refused the join token (UNAUTHENTICATED): {0}")]
    Unauthenticated(String),
    /// The token does not entitle this workload to the identity asked for.
    #[error("control plane refused the identity (PERMISSION_DENIED): {0}")]
    PermissionDenied(String),
    /// Any other error status.
    #[error("control plane refused the request ({code}): {message}")]
    Rejected { code: String, message: String },
    /// The response does not parse, or its certificate is not for the key sent.
    #[error("unusable response: {0}")]
    Malformed(String),
    /// The chain does not verify against the returned bundle.
    #[error("certificate does not verify against the returned trust bundle: {0}")]
    Untrusted(VerifyError),
    /// The certificate is for another workload.
    #[error("certificate is for {got}, but this workload is {want}")]
    WrongIdentity { got: String, want: String },
}

impl Refusal {
    /// Every `kind()`, for metrics that start at zero.
    pub const KINDS: &'static [&'static str] = &[
        "unavailable",
        "unauthenticated",
        "permission_denied",
        "rejected",
        "malformed",
        "untrusted",
        "wrong_identity",
    ];

    /// A short, stable name for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Unavailable(_) => "unavailable",
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::PermissionDenied(_) => "permission_denied",
            Refusal::Rejected { .. } => "rejected",
            Refusal::Malformed(_) => "malformed",
            Refusal::Untrusted(_) => "untrusted",
            Refusal::WrongIdentity { .. } => "wrong_identity",
        }
    }

    /// The refusal a gRPC status stands for.
    pub fn from_status(status: &tonic::Status) -> Refusal {
        let message = status.message().to_string();
        match status.code() {
            tonic::Code::Unauthenticated => Refusal::Unauthenticated(message),
            tonic::Code::PermissionDenied => Refusal::PermissionDenied(message),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                let mut text = status.message().to_string();
                if let Some(cause) = std::error::Error::source(status) {
                    let cause = super::error_text(cause);
                    if cause.contains(&text) {
                        text = cause;
                    } else if !text.contains(&cause) {
                        text = format!("{text}: {cause}");
                    }
                }
                Refusal::Unavailable(text)
            }
            code => Refusal::Rejected {
                code: format!("{code:?}"),
                message,
            },
        }
    }
}

/// Checks `response` for the request made with `key` and turns it into the workload's
/// certificate and the bundle peers are verified against.
pub fn accept(
    response: &CertifyResponse,
    key: &KeyAndCsr,
    expected: &SpiffeId,
    now: SystemTime,
) -> Result<(WorkloadCert, TrustBundle), Refusal> {
    let bundle = TrustBundle::from_pem(response.trust_bundle_pem.as_bytes())
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    let chain = response.cert_chain_pem.as_bytes();
    let certs = trellis_identity::pem::certs_from_pem(chain)
        .map_err(|e| Refusal::Malformed(format!("certificate chain: {e}")))?;
    let cert = WorkloadCert::new(certs, key.private_key()).map_err(|e| match e {
        CredentialsError::KeyMismatch => {
            Refusal::Malformed("the certificate is not for the key this proxy sent".into())
        }
        other => Refusal::Malformed(other.to_string()),
    })?;
    for role in [PeerRole::Server, PeerRole::Client] {
        verify_leaf_at(chain, &bundle, role, now).map_err(Refusal::Untrusted)?;
    }
    let got = cert.identity();
    if got != expected {
        return Err(Refusal::WrongIdentity {
            got: got.to_string(),
            want: expected.to_string(),
        });
    }
    Ok((cert, bundle))
}
