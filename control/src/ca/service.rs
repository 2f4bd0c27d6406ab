//! The `Identity` gRPC service on the push port: proxies send a CSR for their own key with their
//! bootstrap credential (a join token) and get back their SPIFFE certificate and the trust bundle.
//!
//! The token decides the identity (namespace and service account); the CSR must ask for exactly
//! that one. Refusals map to gRPC codes (a bad token is UNAUTHENTICATED, a CSR for someone else
//! PERMISSION_DENIED, a malformed CSR INVALID_ARGUMENT, a CA failure INTERNAL), are logged once
//! with the proxy's id and counted by reason on `/metrics`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};
use trellis_api::push::identity_server::{Identity, IdentityServer};
use trellis_api::push::{CertifyRequest, CertifyResponse};
use trellis_identity::{SpiffeId, TrustBundle};

use super::authority::{Authority, IssuedCert};
use super::error::{CaError, CsrError};
use super::tokens::{JoinTokens, TokenError};

/// Largest `Certify` request accepted: the CA refuses CSRs over 64 KiB, and a token and a proxy
/// id are small.
const MAX_REQUEST_BYTES: usize = 80 * 1024;
/// Longest proxy id shown in logs (it comes from the network).
const MAX_LOGGED_ID: usize = 128;

/// Counters of the CA on the control plane's `/metrics`.
#[derive(Debug, Default)]
pub struct CaMetrics {
    issued: Counter,
    refused: Family<ReasonLabel, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    /// The refusal's `kind()`: `unknown`, `expired`, `malformed`, `csr_wrong_identity`, ...
    reason: &'static str,
}

impl CaMetrics {
    /// Registers `trellis_ca_certificates_issued_total` and `trellis_ca_refusals_total{reason}`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("trellis_ca");
        sub.register(
            "certificates_issued",
            "Workload certificates issued to proxies",
            self.issued.clone(),
        );
        sub.register(
            "refusals",
            "Certificate requests refused, by reason",
            self.refused.clone(),
        );
    }
}

/// Why a `Certify` request was refused.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("{0}")]
    Ca(#[from] CaError),
    #[error("the token's scope is not a valid identity: {0}")]
    Identity(String),
    #[error("the certificate authority is unavailable: {0}")]
    Unavailable(&'static str),
}

impl Refusal {
    fn kind(&self) -> &'static str {
        match self {
            Refusal::Token(e) => e.kind(),
            Refusal::Ca(e) => e.kind(),
            Refusal::Identity(_) => "identity",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    fn code(&self) -> Code {
        match self {
            Refusal::Token(TokenError::Store(_)) => Code::Internal,
            Refusal::Token(_) => Code::Unauthenticated,
            Refusal::Ca(CaError::Csr(CsrError::WrongIdentity { .. })) => Code::PermissionDenied,
            Refusal::Ca(CaError::Csr(_)) => Code::InvalidArgument,
            Refusal::Ca(_) | Refusal::Identity(_) | Refusal::Unavailable(_) => Code::Internal,
        }
    }
}

/// The CA as the server shares it: the authority (read-locked to sign, so a future root rotation
/// can take it exclusively), the one join-token store (also used by the REST API), the longest
/// lifetime issued, and the counters. Cheap to clone.
#[derive(Clone)]
pub struct IdentityService {
    inner: Arc<Inner>,
}

struct Inner {
    authority: RwLock<Authority>,
    tokens: Arc<Mutex<JoinTokens>>,
    max_ttl: Duration,
    metrics: CaMetrics,
    /// Signing runs on blocking threads; at most this many at once, so a burst of requests
    /// queues instead of taking every blocking thread.
    signing: Semaphore,
}

impl IdentityService {
    /// `max_ttl` caps the lifetime a proxy may ask for (and is what it gets when it asks for none).
    pub fn new(authority: Authority, tokens: JoinTokens, max_ttl: Duration) -> IdentityService {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        IdentityService {
            inner: Arc::new(Inner {
                authority: RwLock::new(authority),
                tokens: Arc::new(Mutex::new(tokens)),
                max_ttl,
                metrics: CaMetrics::default(),
                signing: Semaphore::new(parallel),
            }),
        }
    }

    /// The join tokens, shared with the REST API that creates, lists and revokes them.
    pub fn tokens(&self) -> Arc<Mutex<JoinTokens>> {
        self.inner.tokens.clone()
    }

    /// The counters, to register on `/metrics`.
    pub fn metrics(&self) -> &CaMetrics {
        &self.inner.metrics
    }

    /// The roots proxies trust now.
    pub fn trust_bundle(&self) -> TrustBundle {
        read(&self.inner.authority).trust_bundle()
    }

    /// The gRPC service to add to the push server.
    pub fn into_server(self) -> IdentityServer<IdentityService> {
        IdentityServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// Issues a certificate for the request, or says why not.
    fn certify(&self, request: &CertifyRequest) -> Result<(CertifyResponse, SpiffeId), Refusal> {
        let (namespace, service_account) = self
            .inner
            .tokens
            .lock()
            .map_err(|_| Refusal::Unavailable("the join-token store is poisoned"))?
            .verify(request.join_token.trim())?;
        let authority = read(&self.inner.authority);
        let identity = SpiffeId::new(authority.trust_domain(), &namespace, &service_account)
            .map_err(|e| Refusal::Identity(e.to_string()))?;
        let ttl = match request.ttl_seconds {
            0 => self.inner.max_ttl,
            asked => Duration::from_secs(asked).min(self.inner.max_ttl),
        };
        let issued = authority.sign_csr(request.csr_pem.as_bytes(), &identity, Some(ttl))?;
        Ok((response(&issued, &authority.trust_bundle()), identity))
    }
}

fn response(issued: &IssuedCert, bundle: &TrustBundle) -> CertifyResponse {
    let not_after = issued
        .not_after
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    CertifyResponse {
        cert_chain_pem: issued.full_chain_pem(),
        trust_bundle_pem: bundle.pem(),
        not_after_unix: not_after,
    }
}

/// The authority, even if a writer panicked (it is only replaced whole).
fn read(lock: &RwLock<Authority>) -> std::sync::RwLockReadGuard<'_, Authority> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let peer = request.remote_addr();
        let request = request.into_inner();
        let proxy_id = shown_id(&request.proxy_id);
        let permit = self
            .inner
            .signing
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the certificate authority is shutting down"))?;
        let service = self.clone();
        let outcome = tokio::task::spawn_blocking(move || service.certify(&request))
            .await
            .unwrap_or(Err(Refusal::Unavailable("the signing task failed")));
        drop(permit);
        match outcome {
            Ok((response, identity)) => {
                self.inner.metrics.issued.inc();
                tracing::info!(
                    proxy = %proxy_id,
                    identity = %identity,
                    peer = ?peer,
                    not_after = response.not_after_unix,
                    "issued a workload certificate"
                );
                Ok(Response::new(response))
            }
            Err(refusal) => {
                self.inner
                    .metrics
                    .refused
                    .get_or_create(&ReasonLabel {
                        reason: refusal.kind(),
                    })
                    .inc();
                tracing::warn!(
                    proxy = %proxy_id,
                    peer = ?peer,
                    reason = refusal.kind(),
                    "refused a certificate request: {refusal}"
                );
                Err(Status::new(
                    refusal.code(),
                    format!("certificate refused: {refusal}"),
                ))
            }
        }
    }
}

/// A proxy id fit for a log line: control characters replaced, cut to [`MAX_LOGGED_ID`].
fn shown_id(id: &str) -> String {
    if id.is_empty() {
        return "(no proxy id)".to_string();
    }
    let mut shown: String = id
        .chars()
        .take(MAX_LOGGED_ID)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if id.chars().count() > MAX_LOGGED_ID {
        shown.push('…');
    }
    shown
}

/// One line per root for the start-up log: subject, SHA-256 fingerprint and expiry.
pub fn describe_roots(bundle: &TrustBundle) -> Vec<String> {
    bundle
        .roots()
        .iter()
        .map(|der| {
            let fingerprint = hex::encode(ring::digest::digest(&ring::digest::SHA256, der));
            match x509_parser::parse_x509_certificate(der) {
                Ok((_, cert)) => format!(
                    "{} (sha256 {fingerprint}, expires {})",
                    cert.subject(),
                    cert.validity().not_after
                ),
                Err(_) => format!("sha256 {fingerprint}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_grpc_codes() {
        let cases = [
            (Refusal::Token(TokenError::Unknown), Code::Unauthenticated),
            (
                Refusal::Token(TokenError::Malformed("x")),
                Code::Unauthenticated,
            ),
            (
                Refusal::Ca(CaError::Csr(CsrError::WrongIdentity {
                    asked: "a".into(),
                    allowed: "b".into(),
                })),
                Code::PermissionDenied,
            ),
            (
                Refusal::Ca(CaError::Csr(CsrError::Malformed("x".into()))),
                Code::InvalidArgument,
            ),
            (Refusal::Ca(CaError::Generate("x".into())), Code::Internal),
        ];
        for (refusal, code) in cases {
            assert_eq!(refusal.code(), code, "{refusal}");
        }
    }

    #[test]
    fn proxy_ids_are_safe_to_log() {
        assert_eq!(shown_id("a\nb"), "a?b");
        assert_eq!(shown_id(""), "(no proxy id)");
        assert_eq!(
            shown_id(&"x".repeat(200)).chars().count(),
            MAX_LOGGED_ID + 1
        );
    }
}
