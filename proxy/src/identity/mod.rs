//! The workload's identity: the SPIFFE certificate it presents to other proxies and the trust
//! bundle it verifies them against (issue 5's identity flow, proxy side).
//!
//! - With `--control` and a join token, [`CertManager`] makes a key in memory ([`csr`]), asks the
//!   control plane's `Identity.Certify` for a certificate, checks the answer ([`response`]),
//!   publishes the [`Credentials`], and renews them at half-life with a new key, keeping the
//!   current ones through a control-plane outage until they expire.
//! - In standalone mode, [`load_files`] reads a certificate, key and bundle from PEM files.
//! - Without either, mutual TLS is unavailable and nothing else changes.
//!
//! Everything is published through [`WorkloadIdentity`], which the data path holds: the
//! credentials behind a `watch` (so a listener can wait for the first certificate) and the
//! [`Status`] shown on the admin port's `/certs` and in `/stats/prometheus`.

pub mod bundle;
pub mod csr;
mod files;
mod manager;
pub mod response;
mod status;

pub use bundle::BundleOutcome;
pub use files::load_files;
pub use manager::{CertManager, CertManagerSettings};
pub use response::Refusal;
pub use status::{Mode, Status, rfc3339};

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use trellis_identity::SpiffeId;
use trellis_identity::tls::Credentials;

/// The longest join token accepted (tokens are a few dozen characters).
const MAX_TOKEN_LEN: usize = 4096;

/// The workload's credentials as the rest of the proxy sees them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WorkloadIdentity {
    credentials: watch::Receiver<Option<Arc<Credentials>>>,
    status: Arc<Status>,
}

impl WorkloadIdentity {
    /// No identity: mutual TLS is unavailable.
    pub fn disabled() -> WorkloadIdentity {
        let (_, credentials) = watch::channel(None);
        WorkloadIdentity {
            credentials,
            status: Arc::new(Status::new(Mode::Disabled, String::new())),
        }
    }

    /// The credentials in use, `None` until the first certificate arrives (or ever, when
    /// disabled). Rotation replaces what is inside the returned `Credentials`, so a holder sees
    /// every renewal without asking again.
    pub fn credentials(&self) -> Option<Arc<Credentials>> {
        self.credentials.borrow().clone()
    }

    /// A receiver told when the first certificate arrives and at every renewal.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Credentials>>> {
        self.credentials.clone()
    }

    /// Waits up to `timeout` for the first certificate.
    pub async fn wait_ready(&self, timeout: Duration) -> Option<Arc<Credentials>> {
        let mut rx = self.credentials.clone();
        match tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await {
            Ok(Ok(c)) => c.clone(),
            _ => None,
        }
    }

    /// What `/certs` and the metrics report.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Takes a trust bundle the control plane pushed (root rotation): checked against this
    /// proxy's own certificate, then used by new handshakes at once. Counted and logged; never
    /// fails the caller. Ignored unless the certificate comes from the control plane (files
    /// mode keeps the bundle the operator gave).
    pub fn apply_bundle(&self, pem: &str) -> BundleOutcome {
        if !matches!(self.status.mode(), Mode::Control { .. }) {
            return BundleOutcome::Unchanged;
        }
        let credentials = self.credentials();
        let (outcome, applied) = bundle::apply(
            pem.as_bytes(),
            credentials.as_deref(),
            std::time::SystemTime::now(),
        );
        self.status.count_bundle(&outcome);
        match (&outcome, applied) {
            (BundleOutcome::Applied, Some(bundle)) => {
                self.status.set_bundle(&bundle);
                tracing::info!(
                    roots = bundle.roots().len(),
                    "trust bundle updated by the control plane; new handshakes trust its roots"
                );
            }
            (BundleOutcome::Invalid(_) | BundleOutcome::Refused(_), _) => {
                tracing::warn!(
                    result = outcome.kind(),
                    "pushed trust bundle refused: {outcome}"
                );
            }
            _ => tracing::debug!(result = outcome.kind(), "pushed trust bundle: {outcome}"),
        }
        outcome
    }
}

/// The SPIFFE ID this workload asks for, from the flags that name its parts.
pub fn spiffe_id(
    trust_domain: &str,
    namespace: &str,
    service_account: &str,
) -> Result<SpiffeId, String> {
    SpiffeId::new(trust_domain, namespace, service_account).map_err(|e| {
        format!("--trust-domain/--namespace/--service-account do not make a workload identity: {e}")
    })
}

/// The join token from `--join-token` or the file `--join-token-file` names (read once, at
/// start: a Kubernetes secret mounted as a file); `None` when neither is given.
pub fn join_token(flag: Option<&str>, file: Option<&Path>) -> Result<Option<String>, String> {
    let (token, what) = match (flag, file) {
        (Some(_), Some(_)) => {
            return Err(
                "--join-token and --join-token-file are mutually exclusive: give the token one way"
                    .into(),
            );
        }
        (None, None) => return Ok(None),
        (Some(token), None) => (token.to_string(), "--join-token".to_string()),
        (None, Some(path)) => {
            let what = format!("--join-token-file {}", path.display());
            let text = std::fs::read(path).map_err(|e| format!("{what}: cannot read: {e}"))?;
            let text = String::from_utf8(text).map_err(|_| format!("{what}: not UTF-8 text"))?;
            (text, what)
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("{what}: the join token is empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(format!(
            "{what}: the join token is {} bytes long; at most {MAX_TOKEN_LEN} are accepted",
            token.len()
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what}: the join token must be one word (no spaces or line breaks inside)"
        ));
    }
    Ok(Some(token.to_string()))
}

/// An error and its causes: tonic's transport errors say little without their sources.
fn error_text(e: &(dyn Error + 'static)) -> String {
    crate::config::control::with_sources(e.to_string(), e.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_token_comes_from_one_place_and_is_one_word() {
        assert_eq!(join_token(None, None), Ok(None));
        assert_eq!(join_token(Some(" abc\n"), None), Ok(Some("abc".into())));
        let dir = std::env::temp_dir().join(format!("trellis-token-{}", fastrand::u64(..)));
        std::fs::write(&dir, "tok-123\n").unwrap();
        assert_eq!(join_token(None, Some(&dir)), Ok(Some("tok-123".into())));
        assert!(
            join_token(Some("x"), Some(&dir))
                .unwrap_err()
                .contains("mutually exclusive")
        );
        std::fs::write(&dir, "\n").unwrap();
        assert!(
            join_token(None, Some(&dir))
                .unwrap_err()
                .ends_with("the join token is empty")
        );
        std::fs::write(&dir, "two words").unwrap();
        assert!(
            join_token(None, Some(&dir))
                .unwrap_err()
                .contains("one word")
        );
        std::fs::remove_file(&dir).unwrap();
        let err = join_token(None, Some(&dir)).unwrap_err();
        assert!(
            err.starts_with("--join-token-file ") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn spiffe_id_errors_name_the_flags() {
        assert_eq!(
            spiffe_id("cluster.local", "shop", "reviews")
                .unwrap()
                .to_string(),
            "spiffe://cluster.local/ns/shop/sa/reviews"
        );
        let err = spiffe_id("Bad Domain", "shop", "reviews").unwrap_err();
        assert!(
            err.starts_with("--trust-domain/--namespace/--service-account"),
            "{err}"
        );
    }
}
