//! What the CA needs to know about a certificate it loads: names, validity, whether it may sign
//! certificates, its public key; and whether one certificate was signed by another.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::time::ASN1Time;

use super::error::CaError;

/// A parsed certificate, owning its DER.
#[derive(Clone, Debug)]
pub(crate) struct CertInfo {
    pub der: CertificateDer<'static>,
    pub subject: String,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    not_before_text: String,
    not_after_text: String,
    is_ca: bool,
    key_cert_sign: bool,
    public_key: Vec<u8>,
}

/// Parses `der`, read from `path` (named in errors).
pub(crate) fn inspect(path: &Path, der: CertificateDer<'static>) -> Result<CertInfo, CaError> {
    let bad = |detail: String| CaError::BadCert {
        path: path.to_path_buf(),
        detail,
    };
    let (rest, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the certificate".into()));
    }
    let key_cert_sign = match cert.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true, // no keyUsage extension: any usage is allowed (RFC 5280 4.2.1.3)
        Err(e) => return Err(bad(format!("keyUsage: {e}"))),
    };
    let is_ca = match cert.basic_constraints() {
        Ok(bc) => bc.is_some_and(|bc| bc.value.ca),
        Err(e) => return Err(bad(format!("basicConstraints: {e}"))),
    };
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        subject_raw: cert.subject().as_raw().to_vec(),
        issuer_raw: cert.issuer().as_raw().to_vec(),
        not_before: system_time(validity.not_before),
        not_after: system_time(validity.not_after),
        not_before_text: validity.not_before.to_string(),
        not_after_text: validity.not_after.to_string(),
        is_ca,
        key_cert_sign,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        der,
    })
}

fn system_time(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH
    }
}

fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c)
}

impl CertInfo {
    /// Refuses a certificate that may not sign other certificates.
    pub fn check_ca(&self, path: &Path) -> Result<(), CaError> {
        let why = if !self.is_ca {
            "basicConstraints lacks CA:TRUE"
        } else if !self.key_cert_sign {
            "keyUsage lacks keyCertSign"
        } else {
            return Ok(());
        };
        Err(CaError::NotCa {
            path: path.to_path_buf(),
            subject: self.subject.clone(),
            why,
        })
    }

    /// Refuses a certificate outside its validity period at `now`.
    pub fn check_valid_at(&self, path: &Path, now: SystemTime) -> Result<(), CaError> {
        if now > self.not_after {
            return Err(CaError::Expired {
                path: path.to_path_buf(),
                subject: self.subject.clone(),
                not_after: self.not_after_text.clone(),
            });
        }
        if now < self.not_before {
            return Err(CaError::NotYetValid {
                path: path.to_path_buf(),
                subject: self.subject.clone(),
                not_before: self.not_before_text.clone(),
            });
        }
        Ok(())
    }

    /// Refuses a key that is not this certificate's.
    pub fn check_key(
        &self,
        cert_path: &Path,
        key_path: &Path,
        key: &KeyPair,
    ) -> Result<(), CaError> {
        if key.public_key_raw() == self.public_key.as_slice() {
            Ok(())
        } else {
            Err(CaError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
    }

    /// Whether `issuer` names and signed this certificate.
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        if self.issuer_raw != issuer.subject_raw {
            return false;
        }
        match (parse(&self.der), parse(&issuer.der)) {
            (Some(cert), Some(issuer)) => cert.verify_signature(Some(issuer.public_key())).is_ok(),
            _ => false,
        }
    }

    /// Whether the certificate is self-issued and self-signed (a root).
    pub fn is_self_signed(&self) -> bool {
        self.is_signed_by(self)
    }
}

/// Walks from `cert` through `intermediates` to one of `roots`, checking names and signatures.
/// Returns the certificates between `cert` and the root (exclusive of both), in order.
pub(crate) fn chain_to_root<'a>(
    cert: &'a CertInfo,
    intermediates: &'a [CertInfo],
    roots: &[CertInfo],
) -> Result<Vec<&'a CertInfo>, String> {
    let mut path = Vec::new();
    let mut current = cert;
    // A CA chain deeper than this is a loop or a mistake.
    for _ in 0..8 {
        if roots.iter().any(|root| current.is_signed_by(root)) {
            return Ok(path);
        }
        match intermediates
            .iter()
            .find(|c| !std::ptr::eq(*c, current) && !c.is_self_signed() && current.is_signed_by(c))
        {
            Some(next) => {
                path.push(next);
                current = next;
            }
            None => {
                return Err(format!(
                    "no certificate in the chain or the roots signed {:?}",
                    current.subject
                ));
            }
        }
    }
    Err("the chain is longer than 8 certificates".into())
}
