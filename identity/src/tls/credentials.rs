//! A workload's credentials: its key, its certificate chain and the trust bundle, swapped whole
//! on rotation while handshakes in progress and connections already made keep what they took.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::provider;
use crate::pem::{self, PemError};
use crate::{SpiffeId, TrustBundle, VerifyError};

/// Why a key and certificate chain cannot serve as a workload's credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("workload certificate chain: {0}")]
    Chain(#[from] PemError),
    #[error("workload certificate chain is empty")]
    EmptyChain,
    #[error("workload private key: {0}")]
    Key(String),
    #[error("workload private key does not belong to the certificate's public key")]
    KeyMismatch,
    #[error("workload certificate: {0}")]
    Certificate(String),
    #[error("workload certificate has no usable identity: {0}")]
    Identity(VerifyError),
    #[error("new certificate is for {offered}, but this workload is {held}")]
    IdentityChanged {
        held: Box<SpiffeId>,
        offered: Box<SpiffeId>,
    },
}

/// A workload's key and certificate chain (leaf first), checked to belong together and to carry
/// one SPIFFE ID.
pub struct WorkloadCert {
    key: Arc<CertifiedKey>,
    identity: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl WorkloadCert {
    /// From a DER chain (leaf first, then intermediates) and the leaf's private key (PKCS#8,
    /// SEC1 or PKCS#1; ECDSA, Ed25519 or RSA).
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<WorkloadCert, CredentialsError> {
        let leaf = chain.first().ok_or(CredentialsError::EmptyChain)?;
        let identity = crate::spiffe_id_of(leaf).map_err(CredentialsError::Identity)?;
        let (not_before, not_after) = validity(leaf)?;
        let signing_key = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| CredentialsError::Key(e.to_string()))?;
        let key = CertifiedKey::new(chain, signing_key);
        match key.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(CredentialsError::KeyMismatch);
            }
            Err(e) => return Err(CredentialsError::Certificate(e.to_string())),
        }
        Ok(WorkloadCert {
            key: Arc::new(key),
            identity,
            not_before,
            not_after,
        })
    }

    /// From PEM: the chain as the CA issues it (leaf first) and the key the proxy made.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<WorkloadCert, CredentialsError> {
        let chain = pem::certs_from_pem(chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            CredentialsError::Key(match e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    "no -----BEGIN PRIVATE KEY----- block found".into()
                }
                e => e.to_string(),
            })
        })?;
        WorkloadCert::new(chain, key)
    }

    /// The SPIFFE ID the certificate carries.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// The chain presented in handshakes, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// When the leaf becomes valid.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// When the leaf expires: peers refuse it from then on.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Half way through the leaf's lifetime: when to renew it (Istio's default grace ratio).
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime / 2
    }
}

impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("identity", &self.identity.to_string())
            .field("chain_len", &self.key.cert.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn validity(leaf: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), CredentialsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| CredentialsError::Certificate(e.to_string()))?;
    let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    let v = cert.validity();
    Ok((at(v.not_before.timestamp()), at(v.not_after.timestamp())))
}

/// The workload's current certificate and trust bundle, read by every handshake and replaced
/// atomically on rotation. Share it as `Arc<Credentials>` between the server config, every client
/// config and the rotation task.
pub struct Credentials {
    state: ArcSwap<State>,
}

struct State {
    cert: Arc<WorkloadCert>,
    bundle: Arc<TrustBundle>,
}

impl Credentials {
    /// Credentials starting with `cert` and `bundle`.
    pub fn new(cert: WorkloadCert, bundle: TrustBundle) -> Credentials {
        Credentials {
            state: ArcSwap::from_pointee(State {
                cert: Arc::new(cert),
                bundle: Arc::new(bundle),
            }),
        }
    }

    /// The certificate new handshakes present.
    pub fn cert(&self) -> Arc<WorkloadCert> {
        self.state.load().cert.clone()
    }

    /// The roots new handshakes verify peers against.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.state.load().bundle.clone()
    }

    /// This workload's SPIFFE ID.
    pub fn identity(&self) -> SpiffeId {
        self.state.load().cert.identity.clone()
    }

    /// Presents `cert` from the next handshake on (rotation). A certificate for another identity
    /// is refused and the current one kept: a workload's identity does not change.
    pub fn replace_cert(&self, cert: WorkloadCert) -> Result<(), CredentialsError> {
        self.replace(cert, None)
    }

    /// Verifies peers against `bundle` from the next handshake on (root rotation).
    pub fn replace_bundle(&self, bundle: TrustBundle) {
        let bundle = Arc::new(bundle);
        self.state.rcu(|s| State {
            cert: s.cert.clone(),
            bundle: bundle.clone(),
        });
    }

    /// Replaces the certificate and, if given, the bundle in one step, so no handshake sees a
    /// certificate from a new root with a bundle that does not hold it yet.
    pub fn replace(
        &self,
        cert: WorkloadCert,
        bundle: Option<TrustBundle>,
    ) -> Result<(), CredentialsError> {
        let held = self.identity();
        if cert.identity != held {
            return Err(CredentialsError::IdentityChanged {
                held: Box::new(held),
                offered: Box::new(cert.identity.clone()),
            });
        }
        let cert = Arc::new(cert);
        let bundle = bundle.map(Arc::new);
        self.state.rcu(|s| State {
            cert: cert.clone(),
            bundle: bundle.clone().unwrap_or_else(|| s.bundle.clone()),
        });
        Ok(())
    }

    fn certified_key(&self) -> Arc<CertifiedKey> {
        self.state.load().cert.key.clone()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load();
        f.debug_struct("Credentials")
            .field("cert", &state.cert)
            .field("roots", &state.bundle.roots().len())
            .finish()
    }
}

impl ResolvesServerCert for Credentials {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

impl ResolvesClientCert for Credentials {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
