//! The errors of the certificate authority: every one names the file or the request that was
//! wrong and what was wrong with it, and has a short `kind` for metric labels.

use std::path::PathBuf;

/// Why the CA could not load, create, rotate or sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PEM file with a {what}: {detail}", path.display())]
    NotPem {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("{}: unreadable certificate: {detail}", path.display())]
    BadCert { path: PathBuf, detail: String },
    #[error("{}: unusable private key: {detail}", path.display())]
    BadKey { path: PathBuf, detail: String },
    #[error("{}: this private key does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: certificate {subject:?} is not a CA certificate ({why})", path.display())]
    NotCa {
        path: PathBuf,
        subject: String,
        why: &'static str,
    },
    #[error("{}: certificate {subject:?} expired at {not_after}", path.display())]
    Expired {
        path: PathBuf,
        subject: String,
        not_after: String,
    },
    #[error("{}: certificate {subject:?} is not valid before {not_before}", path.display())]
    NotYetValid {
        path: PathBuf,
        subject: String,
        not_before: String,
    },
    #[error("{}: certificate {subject:?} does not chain to a root in {}: {detail}", path.display(), roots.display())]
    BrokenChain {
        path: PathBuf,
        roots: PathBuf,
        subject: String,
        detail: String,
    },
    #[error("{}: incomplete CA directory: {present} present but {missing} missing", dir.display())]
    IncompleteLayout {
        dir: PathBuf,
        present: String,
        missing: String,
    },
    #[error("{}: {detail}", path.display())]
    BadState { path: PathBuf, detail: String },
    #[error("bad trust domain {domain:?}: {why}")]
    TrustDomain { domain: String, why: String },
    #[error(
        "{}: the root can only be rotated when Trellis holds the root key (root-cert.pem + root-key.pem); this directory holds a plugged-in intermediate: replace its files instead", dir.display()
    )]
    RotationNotPossible { dir: PathBuf },
    #[error(
        "{}: a root rotation is already under way (the new root starts signing at {activates_unix}, seconds since the Unix epoch); wait for it", dir.display()
    )]
    RotationInProgress { dir: PathBuf, activates_unix: u64 },
    #[error("{0}")]
    Csr(#[from] CsrError),
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

impl CaError {
    /// A short, stable name for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CaError::Io { .. } => "io",
            CaError::NotPem { .. } => "not_pem",
            CaError::BadCert { .. } => "bad_cert",
            CaError::BadKey { .. } => "bad_key",
            CaError::KeyMismatch { .. } => "key_mismatch",
            CaError::NotCa { .. } => "not_ca",
            CaError::Expired { .. } => "expired",
            CaError::NotYetValid { .. } => "not_yet_valid",
            CaError::BrokenChain { .. } => "broken_chain",
            CaError::IncompleteLayout { .. } => "incomplete_layout",
            CaError::BadState { .. } => "bad_state",
            CaError::TrustDomain { .. } => "trust_domain",
            CaError::RotationNotPossible { .. } => "rotation_not_possible",
            CaError::RotationInProgress { .. } => "rotation_in_progress",
            CaError::Csr(e) => e.kind(),
            CaError::Generate(_) => "generate",
        }
    }
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> CaError {
        CaError::Generate(e.to_string())
    }
}

/// Why a certificate signing request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("malformed CSR: {0}")]
    Malformed(String),
    #[error("CSR signature does not verify: the request was altered or not signed by its own key")]
    BadSignature,
    #[error(
        "CSR signed with {0}, which is not accepted (RSA PKCS#1 with SHA-256/384/512, ECDSA with SHA-256/384, Ed25519)"
    )]
    SignatureAlgorithm(String),
    #[error(
        "CSR key type not allowed: {0} (allowed: ECDSA P-256 or P-384, RSA of at least 2048 bits, Ed25519)"
    )]
    KeyType(String),
    #[error("CSR asks for identity {asked}; this caller may only ask for {allowed}")]
    WrongIdentity { asked: String, allowed: String },
    #[error("CSR asks for no SPIFFE ID; it must carry exactly one URI SAN, {allowed}")]
    NoIdentity { allowed: String },
    #[error("CSR asks for {names}; only one URI SAN, {allowed}, is allowed")]
    ExtraNames { names: String, allowed: String },
}

impl CsrError {
    /// A short, stable name for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CsrError::Malformed(_) => "csr_malformed",
            CsrError::BadSignature => "csr_bad_signature",
            CsrError::SignatureAlgorithm(_) => "csr_signature_algorithm",
            CsrError::KeyType(_) => "csr_key_type",
            CsrError::WrongIdentity { .. } => "csr_wrong_identity",
            CsrError::NoIdentity { .. } => "csr_no_identity",
            CsrError::ExtraNames { .. } => "csr_extra_names",
        }
    }
}
