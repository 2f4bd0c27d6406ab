//! Standalone mode's credentials: a certificate chain, its key and a trust bundle read once from
//! PEM files (`--cert-chain`, `--key`, `--trust-bundle`), for tests and for users with their own
//! PKI. They are never renewed; their expiry is logged as an error when it comes.

use super::WorkloadIdentity;
use super::status::{Mode, Status, rfc3339};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;
use trellis_identity::tls::{Credentials, WorkloadCert};
use trellis_identity::{PeerRole, SpiffeId, TrustBundle, verify_leaf};

/// Reads and checks the files: the key must be the certificate's, the chain must verify against
/// the bundle now, and the certificate must name `expected`. Call it on the runtime that should
/// log the expiry.
pub fn load_files(
    cert_chain: &Path,
    key: &Path,
    trust_bundle: &Path,
    expected: &SpiffeId,
) -> Result<WorkloadIdentity, String> {
    let read = |flag: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))
    };
    let chain_pem = read("--cert-chain", cert_chain)?;
    let key_pem = read("--key", key)?;
    let bundle_pem = read("--trust-bundle", trust_bundle)?;
    let cert = WorkloadCert::from_pem(&chain_pem, &key_pem).map_err(|e| {
        format!(
            "--cert-chain {} / --key {}: {e}",
            cert_chain.display(),
            key.display()
        )
    })?;
    let bundle = TrustBundle::from_pem(&bundle_pem)
        .map_err(|e| format!("--trust-bundle {}: {e}", trust_bundle.display()))?;
    for role in [PeerRole::Server, PeerRole::Client] {
        verify_leaf(&chain_pem, &bundle, role).map_err(|e| {
            format!(
                "--cert-chain {} does not verify against --trust-bundle {}: {e}",
                cert_chain.display(),
                trust_bundle.display()
            )
        })?;
    }
    if cert.identity() != expected {
        return Err(format!(
            "--cert-chain {} is for {}, but this proxy is {expected} (--trust-domain, --namespace, --service-account)",
            cert_chain.display(),
            cert.identity()
        ));
    }
    let status = Arc::new(Status::new(
        Mode::Files {
            cert_chain: cert_chain.display().to_string(),
            key: key.display().to_string(),
            trust_bundle: trust_bundle.display().to_string(),
        },
        expected.to_string(),
    ));
    status.set_held(&cert, &bundle);
    let not_after = cert.not_after();
    tracing::info!(
        identity = %expected, expires = %rfc3339(not_after), file = %cert_chain.display(),
        "workload certificate read from files; mutual TLS available (not renewed)"
    );
    let (publish, credentials) = watch::channel(Some(Arc::new(Credentials::new(cert, bundle))));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let identity = expected.clone();
        runtime.spawn(async move {
            let left = not_after
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(left) => tracing::error!(
                    %identity, expired = %rfc3339(not_after),
                    "workload certificate from --cert-chain EXPIRED: peers refuse mutual TLS with this proxy; replace the files and restart"
                ),
                _ = publish.closed() => {}
            }
        });
    }
    Ok(WorkloadIdentity {
        credentials,
        status,
    })
}
