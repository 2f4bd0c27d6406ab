//! Replaced roots the CA keeps trusting for a grace period, persisted in the CA directory so a
//! restart keeps the window. The bundle type itself is [`trellis_identity::TrustBundle`].

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::cert::{self, CertInfo};
use super::error::CaError;
use super::files;

/// A root that was replaced and is still trusted until `trusted_until`.
#[derive(Clone, Debug)]
pub(crate) struct PreviousRoot {
    pub cert: CertInfo,
    pub trusted_until: SystemTime,
}

/// The file that keeps replaced roots and the end of their grace, so a restart keeps the window.
pub const PREVIOUS_ROOTS_FILE: &str = "previous-roots.json";

#[derive(Serialize, Deserialize)]
struct PreviousRootsFile {
    roots: Vec<PreviousRootEntry>,
}

#[derive(Serialize, Deserialize)]
struct PreviousRootEntry {
    /// Seconds since the Unix epoch after which the root is no longer trusted.
    trusted_until_unix: u64,
    cert_pem: String,
}

/// Reads the replaced roots still trusted at `now` (none if the file does not exist).
pub(crate) fn load_previous(dir: &Path, now: SystemTime) -> Result<Vec<PreviousRoot>, CaError> {
    let path = dir.join(PREVIOUS_ROOTS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = files::read(&path)?;
    let file: PreviousRootsFile =
        serde_json::from_slice(&bytes).map_err(|e| CaError::BadState {
            path: path.clone(),
            detail: format!("not the expected JSON: {e}"),
        })?;
    let mut roots = Vec::new();
    for entry in file.roots {
        let trusted_until = UNIX_EPOCH + Duration::from_secs(entry.trusted_until_unix);
        if trusted_until <= now {
            continue;
        }
        let der = files::certs_from_pem(&path, entry.cert_pem.as_bytes())?
            .into_iter()
            .next()
            .ok_or_else(|| CaError::BadState {
                path: path.clone(),
                detail: "an entry without a certificate".into(),
            })?;
        roots.push(PreviousRoot {
            cert: cert::inspect(&path, der)?,
            trusted_until,
        });
    }
    Ok(roots)
}

/// Writes the replaced roots (or removes the file when there are none).
pub(crate) fn store_previous(dir: &Path, roots: &[PreviousRoot]) -> Result<(), CaError> {
    let path = dir.join(PREVIOUS_ROOTS_FILE);
    if roots.is_empty() {
        return files::remove_if_present(&path);
    }
    let file = PreviousRootsFile {
        roots: roots
            .iter()
            .map(|r| PreviousRootEntry {
                trusted_until_unix: r
                    .trusted_until
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                cert_pem: files::cert_pem(&r.cert.der),
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| CaError::BadState {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    files::write_public(&path, &json)
}
