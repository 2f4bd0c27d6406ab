//! The trust bundle: the roots a proxy trusts peers' certificates to chain to.
//!
//! While a root is being replaced, the bundle holds both: the new one, which signs every new
//! certificate, and the old one until its grace period ends, so certificates issued before the
//! rotation keep verifying until proxies have renewed them. (How long the old root stays is the
//! CA's business: see the control plane's `ca` module.)

use rustls_pki_types::CertificateDer;

use crate::pem::{self, PemError};

/// The set of roots trusted at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBundle {
    roots: Vec<CertificateDer<'static>>,
}

/// Why a trust bundle received as PEM was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("trust bundle: not PEM certificates: {0}")]
    NotPem(#[from] PemError),
    #[error("trust bundle: root {index} is not a readable X.509 certificate: {detail}")]
    BadRoot { index: usize, detail: String },
}

impl TrustBundle {
    /// A bundle of roots already parsed and checked by the caller (the CA), newest first.
    pub fn new(roots: Vec<CertificateDer<'static>>) -> TrustBundle {
        TrustBundle { roots }
    }

    /// Reads a bundle received as PEM (what the proxy gets from the control plane), checking that
    /// every root is a whole X.509 certificate.
    pub fn from_pem(pem: &[u8]) -> Result<TrustBundle, BundleError> {
        let roots = pem::certs_from_pem(pem)?;
        for (index, root) in roots.iter().enumerate() {
            let bad = |detail: String| BundleError::BadRoot { index, detail };
            let (rest, _) =
                x509_parser::parse_x509_certificate(root).map_err(|e| bad(e.to_string()))?;
            if !rest.is_empty() {
                return Err(bad("trailing bytes after the certificate".into()));
            }
        }
        Ok(TrustBundle { roots })
    }

    /// The roots, newest first.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The bundle as concatenated PEM certificates, newest root first.
    pub fn pem(&self) -> String {
        self.roots.iter().map(|r| pem::cert_pem(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_pem_that_is_not_a_certificate() {
        let err = TrustBundle::from_pem(b"").unwrap_err();
        assert_eq!(err, BundleError::NotPem(PemError::NoCertificate));
        let not_x509 = pem::cert_pem(&[0x30, 0x03, 0x02, 0x01, 0x05]);
        let err = TrustBundle::from_pem(not_x509.as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("trust bundle: root 0 is not a readable X.509 certificate"),
            "{err}"
        );
    }
}
