//! Verifying a peer's certificate chain against a trust bundle and reading its SPIFFE ID.
//!
//! Path building, signatures, validity and extended key usage are checked by rustls-webpki (the
//! library rustls uses). webpki only matches DNS names and IP addresses against a server name, so
//! the identity is read here from the leaf's single URI SAN instead.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::extensions::GeneralName;

use crate::bundle::TrustBundle;
use crate::pem;
use crate::spiffe::{SpiffeId, SpiffeIdError};

/// Which side of a TLS connection presented the certificate: decides the EKU required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer is a TLS client (inbound connection): needs clientAuth.
    Client,
    /// The peer is a TLS server (outbound connection): needs serverAuth.
    Server,
}

/// Why a peer's certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no certificate presented")]
    NoCertificate,
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("certificate expired")]
    Expired,
    #[error("certificate not yet valid")]
    NotYetValid,
    #[error("certificate not issued by a trusted CA (foreign or removed root)")]
    UnknownIssuer,
    #[error("certificate refused: {0}")]
    Rejected(String),
    #[error("certificate carries no SPIFFE ID (no URI SAN)")]
    NoSpiffeId,
    #[error("certificate carries {0} URI SANs; a SPIFFE certificate has exactly one")]
    ManyUris(usize),
    #[error("certificate's URI SAN is not a workload SPIFFE ID: {0}")]
    BadSpiffeId(SpiffeIdError),
}

impl VerifyError {
    /// A short, stable name for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::NoCertificate => "no_certificate",
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::UnknownIssuer => "unknown_issuer",
            VerifyError::Rejected(_) => "rejected",
            VerifyError::NoSpiffeId => "no_spiffe_id",
            VerifyError::ManyUris(_) => "many_uris",
            VerifyError::BadSpiffeId(_) => "bad_spiffe_id",
        }
    }
}

/// Verifies a PEM chain (leaf first, then intermediates) against `bundle` now and returns the
/// leaf's SPIFFE ID. Whether that identity is the expected one is the caller's decision.
pub fn verify_leaf(
    chain_pem: &[u8],
    bundle: &TrustBundle,
    role: PeerRole,
) -> Result<SpiffeId, VerifyError> {
    verify_leaf_at(chain_pem, bundle, role, SystemTime::now())
}

/// [`verify_leaf`] at a given time.
pub fn verify_leaf_at(
    chain_pem: &[u8],
    bundle: &TrustBundle,
    role: PeerRole,
    at: SystemTime,
) -> Result<SpiffeId, VerifyError> {
    let chain = pem::certs_from_pem(chain_pem)
        .map_err(|e| VerifyError::Malformed(format!("chain: {e}")))?;
    verify_chain_der(&chain, bundle, role, at)
}

/// Verifies a DER chain as a TLS handshake delivers it (leaf first).
pub fn verify_chain_der(
    chain: &[CertificateDer<'_>],
    bundle: &TrustBundle,
    role: PeerRole,
    at: SystemTime,
) -> Result<SpiffeId, VerifyError> {
    let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::NoCertificate)?;
    let anchors = bundle
        .roots()
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect::<Vec<_>>();
    let end_entity =
        EndEntityCert::try_from(leaf).map_err(|e| VerifyError::Malformed(format!("{e:?}")))?;
    let usage = match role {
        PeerRole::Client => KeyUsage::client_auth(),
        PeerRole::Server => KeyUsage::server_auth(),
    };
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            intermediates,
            UnixTime::since_unix_epoch(since_epoch),
            usage,
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => VerifyError::Expired,
            webpki::Error::CertNotValidYet { .. } => VerifyError::NotYetValid,
            // A root with the issuer's name but another key is a foreign CA too.
            webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
                VerifyError::UnknownIssuer
            }
            other => VerifyError::Rejected(format!("{other:?}")),
        })?;
    spiffe_id_of(leaf)
}

/// The SPIFFE ID in a certificate's one URI SAN.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, VerifyError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| VerifyError::Malformed(format!("subjectAltName: {e}")))?
        .ok_or(VerifyError::NoSpiffeId)?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(VerifyError::NoSpiffeId),
        [uri] => uri.parse().map_err(VerifyError::BadSpiffeId),
        many => Err(VerifyError::ManyUris(many.len())),
    }
}
