//! The proxy's own key and the certificate signing request that asks the CA to certify it.
//!
//! A fresh ECDSA P-256 key is made for every request (first certificate and every renewal), as
//! Istio's agent does: a key that leaked can only be used until the certificate it belongs to
//! expires. The key lives in this process's memory only; it is never written to disk or sent.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use trellis_identity::SpiffeId;

/// A key made for one certificate request, and the request.
pub struct KeyAndCsr {
    key_pkcs8: Vec<u8>,
    /// PKCS#10 in PEM: no subject, one URI SAN (the SPIFFE ID), signed by the key.
    pub csr_pem: String,
}

impl KeyAndCsr {
    /// Makes a new key and a CSR for `identity`.
    pub fn new(identity: &SpiffeId) -> Result<KeyAndCsr, String> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot make a P-256 key: {e}"))?;
        let uri = rcgen::string::Ia5String::try_from(identity.to_string())
            .map_err(|e| format!("SPIFFE ID {identity} cannot go in a certificate: {e}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(uri)];
        let csr_pem = params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(|e| format!("cannot make the certificate request: {e}"))?;
        Ok(KeyAndCsr {
            key_pkcs8: key.serialize_der(),
            csr_pem,
        })
    }

    /// The private key, for the certificate the CA returns.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

impl Drop for KeyAndCsr {
    /// Overwrites the key bytes, so a refused response leaves no copy of an unused key behind.
    fn drop(&mut self) {
        self.key_pkcs8.iter_mut().for_each(|b| *b = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateSigningRequestDer;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;

    #[test]
    fn csr_names_the_identity_and_each_key_is_new() {
        let id = SpiffeId::new("cluster.local", "shop", "reviews").unwrap();
        let a = KeyAndCsr::new(&id).unwrap();
        let b = KeyAndCsr::new(&id).unwrap();
        assert!(a.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert_ne!(a.key_pkcs8, b.key_pkcs8);
        let der = CertificateSigningRequestDer::from_pem_slice(a.csr_pem.as_bytes()).unwrap();
        let (_, req) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
        req.verify_signature().unwrap();
        let uris: Vec<String> = req
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                ParsedExtension::SubjectAlternativeName(san) => Some(san),
                _ => None,
            })
            .flat_map(|san| san.general_names.iter())
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            uris,
            vec!["spiffe://cluster.local/ns/shop/sa/reviews".to_string()]
        );
    }
}
