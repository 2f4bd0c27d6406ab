//! A root staged by a rotation but not yet signing: it is already in the trust bundle (so every
//! proxy learns it first) and starts signing at `activate_at`. Persisted in the CA directory with
//! its key (mode 0600), so a restart keeps the schedule.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::cert::{self, CertInfo};
use super::error::CaError;
use super::files;

/// The file holding the staged root, its key and when it starts signing.
pub const PENDING_ROOT_FILE: &str = "pending-root.json";

/// A new root in the bundle that signs from `activate_at`; the roots it replaces stay trusted
/// for `grace` after that.
#[derive(Clone, Debug)]
pub(crate) struct PendingRoot {
    pub cert: CertInfo,
    pub key_pem: String,
    pub activate_at: SystemTime,
    pub grace: Duration,
}

#[derive(Serialize, Deserialize)]
struct PendingRootFile {
    /// Seconds since the Unix epoch when the root starts signing.
    activate_at_unix: u64,
    /// How long the replaced roots stay trusted after that.
    grace_seconds: u64,
    cert_pem: String,
    key_pem: String,
}

/// Reads the staged root, if any.
pub(crate) fn load_pending(dir: &Path) -> Result<Option<PendingRoot>, CaError> {
    let path = dir.join(PENDING_ROOT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bad = |detail: String| CaError::BadState {
        path: path.clone(),
        detail,
    };
    let file: PendingRootFile = serde_json::from_slice(&files::read(&path)?)
        .map_err(|e| bad(format!("not the expected JSON: {e}")))?;
    let der = files::certs_from_pem(&path, file.cert_pem.as_bytes())?
        .into_iter()
        .next()
        .ok_or_else(|| bad("no certificate in cert_pem".into()))?;
    let cert = cert::inspect(&path, der)?;
    cert.check_ca(&path)?;
    let key = files::key_from_pem(&path, file.key_pem.as_bytes())?;
    cert.check_key(&path, &path, &key)?;
    Ok(Some(PendingRoot {
        cert,
        key_pem: file.key_pem,
        activate_at: UNIX_EPOCH + Duration::from_secs(file.activate_at_unix),
        grace: Duration::from_secs(file.grace_seconds),
    }))
}

/// Writes the staged root (private: it holds the key), or removes the file when there is none.
pub(crate) fn store_pending(dir: &Path, pending: Option<&PendingRoot>) -> Result<(), CaError> {
    let path = dir.join(PENDING_ROOT_FILE);
    let Some(pending) = pending else {
        return files::remove_if_present(&path);
    };
    let file = PendingRootFile {
        activate_at_unix: pending
            .activate_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        grace_seconds: pending.grace.as_secs(),
        cert_pem: files::cert_pem(&pending.cert.der),
        key_pem: pending.key_pem.clone(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| CaError::BadState {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    files::write_private(&path, &json)
}
