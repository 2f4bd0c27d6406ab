//! Obtaining the workload certificate from the control plane and renewing it.
//!
//! Decisions (Istio's agent does the same unless said otherwise):
//! - Every request carries a new key: nothing old is reused, and a leaked key dies with its
//!   certificate.
//! - Renewal is at half of the lifetime left when the certificate arrived, less up to 1 % of it
//!   as jitter. That is [`WorkloadCert::renew_at`] for a certificate issued now; counting from
//!   arrival rather than `not_before` keeps a CA's backdated `not_before` (clock-skew allowance)
//!   from pulling renewals forward.
//! - While the control plane is away or refuses, the current certificate stays in use and the
//!   request is retried with jittered back-off (100 ms to 5 s). The first failure of a kind is a
//!   warning carrying the control plane's message; repeats are debug logs; every attempt is
//!   counted by result.
//! - An expired certificate is kept (peers refuse it, which is what they must do) and logged as
//!   an error once; `/certs` shows it as expired. Readiness does not change: like Istio, the
//!   proxy keeps serving what does not need mutual TLS.

use super::WorkloadIdentity;
use super::csr::KeyAndCsr;
use super::response::{self, Refusal};
use super::status::{Mode, Status, rfc3339};
use crate::config::control::backoff::Backoff;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use trellis_api::push::CertifyRequest;
use trellis_api::push::identity_client::IdentityClient;
use trellis_identity::tls::{Credentials, WorkloadCert};
use trellis_identity::{SpiffeId, TrustBundle};

/// How long one Certify call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest wait before a renewal, whatever the lifetime.
const MIN_RENEWAL_DELAY: Duration = Duration::from_millis(500);
/// A response larger than this is refused unread (a chain and a bundle are a few KiB).
const MAX_RESPONSE: usize = 1 << 20;

/// What the certificate manager needs to know.
#[derive(Debug, Clone)]
pub struct CertManagerSettings {
    /// The control plane (made by `config::control::endpoint`, the push client's own).
    pub endpoint: Endpoint,
    /// The address as the user gave it, for `/certs`.
    pub address: String,
    /// The identity to ask for.
    pub identity: SpiffeId,
    /// The bootstrap credential.
    pub join_token: String,
    /// The push stream's proxy id, for the control plane's logs.
    pub proxy_id: String,
    /// Lifetime to ask for; `None` for the CA's default.
    pub ttl: Option<Duration>,
}

/// Obtains and renews the workload certificate for the life of the process.
pub struct CertManager {
    client: IdentityClient<Channel>,
    settings: CertManagerSettings,
    publish: watch::Sender<Option<Arc<Credentials>>>,
    credentials: Option<Arc<Credentials>>,
    status: Arc<Status>,
    backoff: Backoff,
    /// The kind of the failure last logged as a warning, until a success.
    failing: Option<&'static str>,
    /// Whether the expiry of the certificate in use was logged.
    expiry_logged: bool,
}

impl CertManager {
    /// Starts the manager on the current runtime and returns what it publishes. It stops once
    /// every clone of the returned identity is dropped.
    pub fn start(settings: CertManagerSettings) -> WorkloadIdentity {
        let (publish, credentials) = watch::channel(None);
        let status = Arc::new(Status::new(
            Mode::Control {
                address: settings.address.clone(),
            },
            settings.identity.to_string(),
        ));
        let client = IdentityClient::new(settings.endpoint.connect_lazy())
            .max_decoding_message_size(MAX_RESPONSE);
        tracing::info!(
            control = %settings.address, identity = %settings.identity,
            "requesting a workload certificate from the control plane"
        );
        let manager = CertManager {
            client,
            settings,
            publish,
            credentials: None,
            status: status.clone(),
            backoff: Backoff::default(),
            failing: None,
            expiry_logged: false,
        };
        tokio::spawn(manager.run());
        WorkloadIdentity {
            credentials,
            status,
        }
    }

    async fn run(mut self) {
        loop {
            let delay = match self.certify().await {
                Ok(delay) => delay,
                Err(refusal) => self.failed(refusal),
            };
            self.status
                .set_next_renewal(Some(SystemTime::now() + delay));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.publish.closed() => return,
            }
        }
    }

    /// One request; on success, how long until the next.
    async fn certify(&mut self) -> Result<Duration, Refusal> {
        let identity = &self.settings.identity;
        let key = KeyAndCsr::new(identity).map_err(Refusal::Malformed)?;
        let request = CertifyRequest {
            csr_pem: key.csr_pem.clone(),
            join_token: self.settings.join_token.clone(),
            proxy_id: self.settings.proxy_id.clone(),
            ttl_seconds: self.settings.ttl.map_or(0, |t| t.as_secs().max(1)),
        };
        let response = match tokio::time::timeout(CALL_TIMEOUT, self.client.certify(request)).await
        {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(Refusal::from_status(&status)),
            Err(_) => {
                return Err(Refusal::Unavailable(format!(
                    "no answer in {CALL_TIMEOUT:?}"
                )));
            }
        };
        let received = SystemTime::now();
        let (cert, bundle) = response::accept(&response, &key, identity, received)?;
        let not_after = cert.not_after();
        self.publish_cert(cert, bundle)?;
        self.status.count("success");
        self.status.set_error(None);
        self.backoff.reset();
        self.failing = None;
        self.expiry_logged = false;
        Ok(renewal_delay(received, not_after))
    }

    /// Puts `cert` in use: the first one is published, later ones replace what the published
    /// credentials hold, so whoever took them presents the new certificate from the next handshake.
    fn publish_cert(&mut self, cert: WorkloadCert, bundle: TrustBundle) -> Result<(), Refusal> {
        let previous = self.status.serial();
        let (identity, not_after) = (cert.identity().clone(), cert.not_after());
        match self.credentials.clone() {
            None => {
                self.status.set_held(&cert, &bundle);
                let fresh = Arc::new(Credentials::new(cert, bundle));
                self.credentials = Some(fresh.clone());
                self.publish.send_replace(Some(fresh));
            }
            Some(held) => {
                // `accept` checked the identity already; a workload's identity never changes.
                if held.identity() != identity {
                    return Err(Refusal::WrongIdentity {
                        got: identity.to_string(),
                        want: held.identity().to_string(),
                    });
                }
                self.status.set_held(&cert, &bundle);
                held.replace(cert, Some(bundle))
                    .map_err(|e| Refusal::Malformed(e.to_string()))?;
                self.publish.send_modify(|_| {});
            }
        }
        let serial = self.status.serial().unwrap_or_default();
        match previous {
            None => tracing::info!(
                %identity, %serial, expires = %rfc3339(not_after),
                "workload certificate issued; mutual TLS available"
            ),
            Some(previous) => tracing::info!(
                %identity, %serial, %previous, expires = %rfc3339(not_after),
                "workload certificate renewed"
            ),
        }
        Ok(())
    }

    /// Counts and logs a failed request; the delay before the next.
    fn failed(&mut self, refusal: Refusal) -> Duration {
        let kind = refusal.kind();
        self.status.count(kind);
        self.status.set_error(Some(refusal.to_string()));
        let held = self.credentials.as_ref().map(|c| c.cert());
        if self.failing == Some(kind) {
            tracing::debug!(error = %refusal, "workload certificate request failed again");
        } else if let Some(cert) = &held {
            tracing::warn!(
                error = %refusal, result = kind, valid_until = %rfc3339(cert.not_after()),
                "workload certificate renewal failed; keeping the current certificate and retrying"
            );
        } else {
            tracing::warn!(
                error = %refusal, result = kind,
                "no workload certificate: mutual TLS is unavailable until the control plane issues one; retrying"
            );
        }
        self.failing = Some(kind);
        if let Some(cert) = held
            && SystemTime::now() >= cert.not_after()
            && !self.expiry_logged
        {
            self.expiry_logged = true;
            tracing::error!(
                identity = %cert.identity(), expired = %rfc3339(cert.not_after()), last_error = %refusal,
                "workload certificate EXPIRED and could not be renewed: peers refuse mutual TLS with this proxy until the control plane issues a new one"
            );
        }
        self.backoff.next_delay()
    }
}

/// Half of the lifetime left at arrival, less up to 1 % of it as jitter.
fn renewal_delay(received: SystemTime, not_after: SystemTime) -> Duration {
    let left = not_after.duration_since(received).unwrap_or_default();
    let jitter = left.mul_f64(fastrand::f64() * 0.01);
    (left / 2).saturating_sub(jitter).max(MIN_RENEWAL_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_half_of_what_was_left_at_arrival() {
        let now = SystemTime::now();
        let d = renewal_delay(now, now + Duration::from_secs(100));
        assert!(
            d <= Duration::from_secs(50) && d >= Duration::from_secs(49),
            "{d:?}"
        );
        assert_eq!(renewal_delay(now, now), MIN_RENEWAL_DELAY);
        assert_eq!(
            renewal_delay(now, now - Duration::from_secs(5)),
            MIN_RENEWAL_DELAY
        );
    }
}
