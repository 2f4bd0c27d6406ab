//! Reading PEM certificates and keys from the CA directory and writing them back safely: keys
//! with mode 0600, every file replaced atomically (written beside, then renamed) so a crash never
//! leaves half a key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::CaError;

/// Reads a whole file, naming it on error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    std::fs::read(path).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, in file order; at least one.
pub(crate) fn certs_from_pem(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CaError> {
    trellis_identity::pem::certs_from_pem(pem).map_err(|e| CaError::NotPem {
        path: path.to_path_buf(),
        what: "certificate",
        detail: e.to_string(),
    })
}

/// The private key in a PEM file: PKCS#8 (`PRIVATE KEY`) or PKCS#1 RSA (`RSA PRIVATE KEY`, as in
/// Istio's sample plug-in certificates).
pub(crate) fn key_from_pem(path: &Path, pem: &[u8]) -> Result<KeyPair, CaError> {
    let bad = |detail: String| CaError::BadKey {
        path: path.to_path_buf(),
        detail,
    };
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| CaError::NotPem {
        path: path.to_path_buf(),
        what: "private key",
        detail: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no -----BEGIN PRIVATE KEY----- block found".into()
            }
            e => e.to_string(),
        },
    })?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(k) => pkcs1_to_pkcs8(k.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(_) => {
            return Err(bad(format!(
                "an EC PRIVATE KEY (SEC1) is not supported; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in {0} -out {0}.pk8`",
                path.display()
            )));
        }
        _ => return Err(bad("unknown private key format".into())),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| {
        bad(format!(
            "{e} (supported: ECDSA P-256/P-384, RSA, Ed25519 in PKCS#8)"
        ))
    })
}

/// Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo (the only form *ring* reads).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    // version 0, AlgorithmIdentifier { rsaEncryption, NULL }
    const HEAD: &[u8] = &[
        0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00,
    ];
    let octets = der_tlv(0x04, pkcs1);
    der_tlv(0x30, &[HEAD, octets.as_slice()].concat())
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Writes a file others may read (certificates, bundles).
pub(crate) fn write_public(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    write_atomic(path, contents, 0o644)
}

/// Writes a file only the owner may read (private keys, token hashes).
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    write_atomic(path, contents, 0o600)
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Removes a file if it exists.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), CaError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CaError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

pub(crate) use trellis_identity::pem::cert_pem;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_use_the_short_and_long_forms() {
        assert_eq!(der_tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der_tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }
}
