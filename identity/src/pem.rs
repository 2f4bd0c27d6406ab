//! PEM certificates in and out: what bundles, chains and CA files are exchanged as.

use base64::Engine;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a PEM text yielded no certificates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("no -----BEGIN CERTIFICATE----- block found")]
    NoCertificate,
    #[error("{0}")]
    Malformed(String),
}

/// Every certificate in a PEM text, in order; at least one. Other PEM blocks (keys) are skipped.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certs)
}

/// PEM text of one DER certificate (64-column base64, as OpenSSL writes it).
pub fn cert_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_text_without_certificates() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let pem = cert_pem(&der);
        let back = certs_from_pem(pem.as_bytes()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref(), der.as_slice());
        assert_eq!(
            certs_from_pem(b"hello").unwrap_err(),
            PemError::NoCertificate
        );
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            certs_from_pem(broken.as_bytes()),
            Err(PemError::Malformed(_))
        ));
    }
}
