//! Checking a proxy's certificate signing request before anything of it goes into a certificate.
//!
//! A CSR is accepted only when it is well formed, signed by the key it carries (proof that the
//! proxy holds that key), signed with an algorithm still considered safe, carries a key of an
//! allowed type and size, and asks for exactly one name: the SPIFFE ID the caller is entitled to.
//! Only its public key is used for the certificate; every other field (subject, key usages,
//! basic constraints) is decided by the CA, never copied from the request.

use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use trellis_identity::SpiffeId;

use super::error::CsrError;

/// Larger requests are refused unread: a CSR with one key and one name is well under 8 KiB.
const MAX_CSR_LEN: usize = 64 * 1024;
/// The smallest RSA modulus accepted.
const MIN_RSA_BITS: usize = 2048;

/// Checks `csr` (PEM or DER) and returns the public key to certify, as rcgen takes it.
pub(crate) fn check(
    csr: &[u8],
    allowed: &SpiffeId,
) -> Result<rcgen::SubjectPublicKeyInfo, CsrError> {
    if csr.len() > MAX_CSR_LEN {
        return Err(CsrError::Malformed(format!(
            "{} bytes; at most {MAX_CSR_LEN} are accepted",
            csr.len()
        )));
    }
    let der = decode(csr)?;
    let (rest, req) = X509CertificationRequest::from_der(&der)
        .map_err(|e| CsrError::Malformed(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(
            "trailing bytes after the request".into(),
        ));
    }
    check_signature_algorithm(&req)?;
    check_key_type(&req)?;
    req.verify_signature().map_err(|_| CsrError::BadSignature)?;
    check_names(&req, allowed)?;
    rcgen::SubjectPublicKeyInfo::from_der(req.certification_request_info.subject_pki.raw)
        .map_err(|e| CsrError::KeyType(format!("public key not usable: {e}")))
}

fn decode(csr: &[u8]) -> Result<Vec<u8>, CsrError> {
    let text_start = csr
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if csr[text_start..].starts_with(b"-----BEGIN") {
        CertificateSigningRequestDer::from_pem_slice(csr)
            .map(|der| der.as_ref().to_vec())
            .map_err(|e| {
                CsrError::Malformed(match e {
                    rustls_pki_types::pem::Error::NoItemsFound => {
                        "no -----BEGIN CERTIFICATE REQUEST----- block found".into()
                    }
                    e => format!("bad PEM: {e}"),
                })
            })
    } else {
        Ok(csr.to_vec())
    }
}

fn check_signature_algorithm(req: &X509CertificationRequest<'_>) -> Result<(), CsrError> {
    let oid = &req.signature_algorithm.algorithm;
    let allowed = [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ED25519,
    ];
    if allowed.contains(oid) {
        Ok(())
    } else {
        Err(CsrError::SignatureAlgorithm(oid.to_id_string()))
    }
}

fn check_key_type(req: &X509CertificationRequest<'_>) -> Result<(), CsrError> {
    let spki = &req.certification_request_info.subject_pki;
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            Some(c) => Err(CsrError::KeyType(format!(
                "ECDSA on curve {}",
                c.to_id_string()
            ))),
            None => Err(CsrError::KeyType("ECDSA without a named curve".into())),
        };
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err(CsrError::Malformed("unreadable RSA public key".into())),
        };
        return if bits >= MIN_RSA_BITS {
            Ok(())
        } else {
            Err(CsrError::KeyType(format!("RSA of {bits} bits")))
        };
    }
    if *alg == OID_SIG_ED25519 {
        return Ok(());
    }
    Err(CsrError::KeyType(format!(
        "public key algorithm {}",
        alg.to_id_string()
    )))
}

fn check_names(req: &X509CertificationRequest<'_>, allowed: &SpiffeId) -> Result<(), CsrError> {
    let allowed_text = allowed.to_string();
    let mut uris = Vec::new();
    let mut others = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::URI(uri) => uris.push(uri.to_string()),
                        other => others.push(describe(other)),
                    }
                }
            }
            ParsedExtension::ParseError { error } => {
                return Err(CsrError::Malformed(format!(
                    "unreadable requested extension: {error}"
                )));
            }
            _ => {}
        }
    }
    if !others.is_empty() || uris.len() > 1 {
        let mut names: Vec<String> = uris.iter().map(|u| format!("URI {u:?}")).collect();
        names.extend(others);
        return Err(CsrError::ExtraNames {
            names: names.join(", "),
            allowed: allowed_text,
        });
    }
    match uris.first() {
        None => Err(CsrError::NoIdentity {
            allowed: allowed_text,
        }),
        Some(uri) if *uri == allowed_text => Ok(()),
        Some(uri) => Err(CsrError::WrongIdentity {
            asked: uri.clone(),
            allowed: allowed_text,
        }),
    }
}

fn describe(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(d) => format!("DNS name {d:?}"),
        GeneralName::RFC822Name(e) => format!("email {e:?}"),
        GeneralName::IPAddress(ip) => match ip.len() {
            4 => format!(
                "IP address {}",
                std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
            ),
            16 => format!(
                "IP address {}",
                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
            ),
            _ => "a malformed IP address".into(),
        },
        GeneralName::DirectoryName(n) => format!("directory name {:?}", n.to_string()),
        GeneralName::OtherName(oid, _) => format!("other name {}", oid.to_id_string()),
        GeneralName::RegisteredID(oid) => format!("registered ID {}", oid.to_id_string()),
        GeneralName::X400Address(_) => "an X.400 address".into(),
        GeneralName::EDIPartyName(_) => "an EDI party name".into(),
        GeneralName::URI(u) => format!("URI {u:?}"),
        GeneralName::Invalid(_, _) => "an invalid name".into(),
    }
}
