//! The `Identity` gRPC service on the push port: proxies send a CSR for their own key with their
//! bootstrap credential (a join token) and get back their SPIFFE certificate and the trust bundle.
//!
//! The token decides the identity (namespace and service account); the CSR must ask for exactly
//! that one. Refusals map to gRPC codes (a bad token is UNAUTHENTICATED, a CSR for someone else
//! PERMISSION_DENIED, a malformed CSR INVALID_ARGUMENT, a CA failure INTERNAL), are logged once
//! with the proxy's id and counted by reason on `/metrics`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, Semaphore, watch};
use tonic::{Code, Request, Response, Status};
use trellis_api::push::identity_server::{Identity, IdentityServer};
use trellis_api::push::{CertifyRequest, CertifyResponse};
use trellis_identity::{SpiffeId, TrustBundle};

use super::authority::{Authority, IssuedCert, RootView, unix_seconds};
use super::error::{CaError, CsrError};
use super::tokens::{JoinTokens, TokenError};

/// Largest `Certify` request accepted: the CA refuses CSRs over 64 KiB, and a token and a proxy
/// id are small.
const MAX_REQUEST_BYTES: usize = 80 * 1024;
/// Longest proxy id shown in logs (it comes from the network).
const MAX_LOGGED_ID: usize = 128;

/// How long a new root is trusted before it signs unless the operator says otherwise: long
/// enough for every connected proxy to receive the new bundle over its push stream.
pub const DEFAULT_PROPAGATION: Duration = Duration::from_secs(30);
/// The longest propagation delay accepted.
const MAX_PROPAGATION: Duration = Duration::from_secs(24 * 3600);
/// The schedule looks again at least this often (the clock may jump).
const SCHEDULE_IDLE: Duration = Duration::from_secs(60);

/// A rotation just started.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The new root: in the bundle now, signing from `activates_at`.
    pub new_root: RootView,
    /// The roots that signed until now.
    pub replaced: Vec<RootView>,
    pub activates_at: SystemTime,
    /// When the replaced roots leave the bundle.
    pub old_trusted_until: SystemTime,
}

/// Why a rotation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "grace {} is shorter than the certificate lifetime {} (--cert-ttl): certificates the old root signed must expire before it leaves the bundle; use at least {}",
        show(*grace), show(*cert_ttl), show(*cert_ttl)
    )]
    GraceTooShort { grace: Duration, cert_ttl: Duration },
    #[error("propagation delay {} is too long: at most 24h", show(*.0))]
    PropagationTooLong(Duration),
    #[error("{0}")]
    Ca(#[from] CaError),
}

impl RotateError {
    /// Whether the operator asked for something impossible (rather than the CA failing).
    pub fn is_request_error(&self) -> bool {
        matches!(
            self,
            RotateError::GraceTooShort { .. }
                | RotateError::PropagationTooLong(_)
                | RotateError::Ca(CaError::RotationNotPossible { .. })
                | RotateError::Ca(CaError::RotationInProgress { .. })
        )
    }
}

/// A duration as an operator writes it: `2m`, `90s`, `48h`.
fn show(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if d.subsec_millis() == 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Counters of the CA on the control plane's `/metrics`.
#[derive(Debug, Default)]
pub struct CaMetrics {
    issued: Counter,
    refused: Family<ReasonLabel, Counter>,
    rotations: Counter,
    bundle_roots: Gauge,
    bundle_expiry: Gauge,
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
        sub.register(
            "root_rotations",
            "Root rotations started (trellis ca rotate)",
            self.rotations.clone(),
        );
        sub.register(
            "trust_bundle_roots",
            "Roots in the trust bundle proxies are told to trust (two or more during a rotation)",
            self.bundle_roots.clone(),
        );
        sub.register(
            "trust_bundle_expiry_seconds",
            "When the first root in the trust bundle stops being trusted (its expiry or the end of its rotation grace), seconds since the Unix epoch",
            self.bundle_expiry.clone(),
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
    /// How long a new root is only trusted before it signs (proxies learn it meanwhile).
    propagation: Duration,
    /// The trust bundle (PEM) as it is now, for the push server to send to every proxy.
    bundle: watch::Sender<String>,
    /// Wakes the rotation schedule when a rotation changes it.
    rescheduled: Notify,
    metrics: CaMetrics,
    /// Signing runs on blocking threads; at most this many at once, so a burst of requests
    /// queues instead of taking every blocking thread.
    signing: Semaphore,
}

impl IdentityService {
    /// `max_ttl` caps the lifetime a proxy may ask for (and is what it gets when it asks for none).
    pub fn new(authority: Authority, tokens: JoinTokens, max_ttl: Duration) -> IdentityService {
        Self::with_propagation(authority, tokens, max_ttl, DEFAULT_PROPAGATION)
    }

    /// [`IdentityService::new`] with the delay between a new root joining the bundle and it
    /// signing, the default of `trellis ca rotate` (`--root-propagation`).
    pub fn with_propagation(
        authority: Authority,
        tokens: JoinTokens,
        max_ttl: Duration,
        propagation: Duration,
    ) -> IdentityService {
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (bundle, _) = watch::channel(authority.trust_bundle().pem());
        let service = IdentityService {
            inner: Arc::new(Inner {
                authority: RwLock::new(authority),
                tokens: Arc::new(Mutex::new(tokens)),
                max_ttl,
                propagation,
                bundle,
                rescheduled: Notify::new(),
                metrics: CaMetrics::default(),
                signing: Semaphore::new(parallel),
            }),
        };
        service.refresh_bundle();
        service
    }

    /// The trust bundle (PEM), told of every change: a rotation staging a root, a replaced
    /// root's grace ending. The push server sends it to every connected proxy.
    pub fn subscribe_bundle(&self) -> watch::Receiver<String> {
        self.inner.bundle.subscribe()
    }

    /// The default grace of a rotation: twice the longest certificate lifetime.
    pub fn default_grace(&self) -> Duration {
        self.inner.max_ttl * 2
    }

    /// Starts a root rotation (see [`Authority::stage_root`]). `grace` defaults to twice the
    /// certificate lifetime and must be at least that lifetime (the old root must outlive every
    /// certificate it signed); `propagation` defaults to the configured one.
    pub fn rotate(
        &self,
        grace: Option<Duration>,
        propagation: Option<Duration>,
    ) -> Result<Rotation, RotateError> {
        let grace = grace.unwrap_or_else(|| self.default_grace());
        if grace < self.inner.max_ttl {
            return Err(RotateError::GraceTooShort {
                grace,
                cert_ttl: self.inner.max_ttl,
            });
        }
        let propagation = propagation.unwrap_or(self.inner.propagation);
        if propagation > MAX_PROPAGATION {
            return Err(RotateError::PropagationTooLong(propagation));
        }
        let now = SystemTime::now();
        let (before, after, activates_at) = {
            let mut authority = write(&self.inner.authority);
            let before = authority.roots_at(now);
            let activates_at = authority.stage_root(grace, propagation, now)?;
            (before, authority.roots_at(now), activates_at)
        };
        self.inner.metrics.rotations.inc();
        self.refresh_bundle();
        self.inner.rescheduled.notify_one();
        let new_root = after
            .into_iter()
            .find(|r| !before.iter().any(|b| b.der == r.der))
            .ok_or_else(|| RotateError::Ca(CaError::Generate("no new root was made".into())))?;
        let replaced: Vec<RootView> = before
            .into_iter()
            .filter(|r| matches!(r.role, super::RootRole::Signing))
            .collect();
        tracing::info!(
            new_root = %new_root.subject,
            sha256 = %new_root.sha256,
            replaced = ?replaced.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>(),
            signs_from = unix_seconds(activates_at),
            grace = ?grace,
            "root rotation started: the new root is in the trust bundle now and signs after the propagation delay"
        );
        Ok(Rotation {
            new_root,
            replaced,
            activates_at,
            old_trusted_until: activates_at + grace,
        })
    }

    /// Every root in the bundle now and its part in it.
    pub fn roots(&self) -> Vec<RootView> {
        read(&self.inner.authority).roots_at(SystemTime::now())
    }

    /// Runs the rotation schedule until the service is dropped: a staged root starts signing on
    /// time, and the bundle shrinks when a replaced root's grace ends (pushed to every proxy).
    pub fn start_schedule(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let (wait, wake) = {
                    let Some(inner) = weak.upgrade() else { return };
                    let now = SystemTime::now();
                    let next = read(&inner.authority).next_change(now);
                    let wait = next.map_or(SCHEDULE_IDLE, |t| {
                        t.duration_since(now).unwrap_or_default().min(SCHEDULE_IDLE)
                    });
                    (wait, inner)
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.rescheduled.notified() => {}
                }
                let service = IdentityService { inner: wake };
                service.run_due();
            }
        });
    }

    /// Activates a staged root whose time came and publishes the bundle as it is now.
    fn run_due(&self) {
        let now = SystemTime::now();
        let activated = write(&self.inner.authority).activate_due(now);
        match activated {
            Ok(true) => {
                let signer = self
                    .roots()
                    .into_iter()
                    .find(|r| r.role == super::RootRole::Signing);
                tracing::info!(
                    root = signer.as_ref().map_or("", |r| r.subject.as_str()),
                    "the new root signs workload certificates from now on"
                );
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "could not complete the root rotation; retrying"),
        }
        self.refresh_bundle();
    }

    /// Publishes the bundle and its gauges when it changed.
    fn refresh_bundle(&self) {
        let now = SystemTime::now();
        let (pem, roots) = {
            let authority = read(&self.inner.authority);
            (
                authority.trust_bundle_at(now).pem(),
                authority.roots_at(now),
            )
        };
        let metrics = &self.inner.metrics;
        metrics.bundle_roots.set(roots.len() as i64);
        let first_out = roots
            .iter()
            .map(|r| match r.role {
                super::RootRole::Previous { trusted_until } => trusted_until.min(r.not_after),
                _ => r.not_after,
            })
            .min();
        metrics
            .bundle_expiry
            .set(first_out.map_or(0, |t| unix_seconds(t) as i64));
        self.inner.bundle.send_if_modified(|held| {
            if *held == pem {
                return false;
            }
            tracing::info!(
                roots = ?roots.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>(),
                "trust bundle changed; pushing it to every connected proxy"
            );
            *held = pem;
            true
        });
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

/// The authority for a rotation, even if a writer panicked.
fn write(lock: &RwLock<Authority>) -> std::sync::RwLockWriteGuard<'_, Authority> {
    lock.write().unwrap_or_else(|e| e.into_inner())
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
