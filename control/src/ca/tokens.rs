//! Join tokens: the bootstrap credential of local mode. A token entitles whoever presents it to
//! certificates for one namespace and service account until it expires or is revoked.
//!
//! Only SHA-256 hashes of tokens are stored (in `join-tokens.json` in the CA directory, mode
//! 0600), so the file does not let anyone join. Tokens are 32 random bytes, base64url, prefixed
//! `trellis-join.` so they are recognisable in logs and by secret scanners.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use trellis_identity::spiffe;

use super::error::CaError;
use super::files;

/// The file holding the token hashes, in the CA directory.
pub const TOKENS_FILE: &str = "join-tokens.json";
/// Every join token starts with this.
pub const TOKEN_PREFIX: &str = "trellis-join.";
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;
/// Expired tokens are kept this long so presenting one is reported as expired, not unknown.
const KEEP_EXPIRED: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a token was refused (each a distinct metric label) or could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed join token: {0}")]
    Malformed(&'static str),
    #[error("unknown join token (never issued, or revoked)")]
    Unknown,
    #[error("join token for {namespace}/{service_account} expired")]
    Expired {
        namespace: String,
        service_account: String,
    },
    #[error("bad join token scope: {0}")]
    Scope(String),
    #[error("{0}")]
    Store(#[from] CaError),
}

impl TokenError {
    /// A short, stable name for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::Unknown => "unknown",
            TokenError::Expired { .. } => "expired",
            TokenError::Scope(_) => "scope",
            TokenError::Store(_) => "store",
        }
    }
}

/// A stored token, as listed to operators (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The first 12 hex digits of the token's hash: enough to tell tokens apart.
    pub id: String,
    pub namespace: String,
    pub service_account: String,
    pub expires: SystemTime,
}

#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    sha256: String,
    namespace: String,
    service_account: String,
    created_unix: u64,
    expires_unix: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct TokensFile {
    tokens: Vec<Entry>,
}

/// The join tokens of one control plane.
#[derive(Debug)]
pub struct JoinTokens {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)
    }
}

impl JoinTokens {
    /// Opens the token store in `dir` (empty if the file does not exist yet).
    pub fn open(dir: &Path) -> Result<JoinTokens, CaError> {
        let path = dir.join(TOKENS_FILE);
        let entries = if path.exists() {
            let bytes = files::read(&path)?;
            let file: TokensFile =
                serde_json::from_slice(&bytes).map_err(|e| CaError::BadState {
                    path: path.clone(),
                    detail: format!("not the expected JSON: {e}"),
                })?;
            for entry in &file.tokens {
                if hex::decode(&entry.sha256).map(|h| h.len()) != Ok(32) {
                    return Err(CaError::BadState {
                        path: path.clone(),
                        detail: format!("bad hash {:?}", entry.sha256),
                    });
                }
            }
            file.tokens
        } else {
            Vec::new()
        };
        Ok(JoinTokens { path, entries })
    }

    /// Creates a token for `namespace`/`service_account` valid for `ttl`, stores its hash and
    /// returns the token: the only time it is ever seen.
    pub fn create(
        &mut self,
        namespace: &str,
        service_account: &str,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        for (what, value) in [
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            spiffe::check_segment(value)
                .map_err(|why| TokenError::Scope(format!("{what} {value:?}: {why}")))?;
        }
        let mut secret = [0u8; TOKEN_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| CaError::Generate("no randomness for a join token".into()))?;
        let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
        let now = SystemTime::now();
        let mut entries = self.live_entries(now);
        entries.push(Entry {
            sha256: hex::encode(hash(&secret)),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            created_unix: unix(now),
            expires_unix: unix(now + ttl),
        });
        self.store(entries)?;
        Ok(token)
    }

    /// The namespace and service account a token entitles to, if it is valid now.
    pub fn verify(&self, token: &str) -> Result<(String, String), TokenError> {
        self.verify_at(token, SystemTime::now())
    }

    /// [`verify`](Self::verify) at a given time.
    pub fn verify_at(&self, token: &str, at: SystemTime) -> Result<(String, String), TokenError> {
        let digest = hash(&decode(token)?);
        // Every entry is compared, in constant time, so timing tells nothing about the hashes.
        let mut found = None;
        for (i, entry) in self.entries.iter().enumerate() {
            let stored = hex::decode(&entry.sha256).unwrap_or_default();
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(i);
            }
        }
        let entry = &self.entries[found.ok_or(TokenError::Unknown)?];
        if unix(at) >= entry.expires_unix {
            return Err(TokenError::Expired {
                namespace: entry.namespace.clone(),
                service_account: entry.service_account.clone(),
            });
        }
        Ok((entry.namespace.clone(), entry.service_account.clone()))
    }

    /// Revokes a token: it is refused as unknown from now on. Returns whether it existed.
    pub fn revoke(&mut self, token: &str) -> Result<bool, TokenError> {
        let digest = hex::encode(hash(&decode(token)?));
        Ok(self.remove(|e| e.sha256 == digest)?)
    }

    /// Revokes a token by the id [`list`](Self::list) shows. Returns whether it existed.
    pub fn revoke_id(&mut self, id: &str) -> Result<bool, TokenError> {
        if id.len() < 12 {
            return Ok(false);
        }
        Ok(self.remove(|e| e.sha256.starts_with(id))?)
    }

    /// Removes the entries `revoked` selects; returns whether there were any.
    fn remove(&mut self, revoked: impl Fn(&Entry) -> bool) -> Result<bool, CaError> {
        let kept: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| !revoked(e))
            .cloned()
            .collect();
        let existed = kept.len() != self.entries.len();
        if existed {
            self.store(kept)?;
        }
        Ok(existed)
    }

    /// The stored tokens, oldest first.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.entries
            .iter()
            .map(|e| TokenInfo {
                id: e.sha256[..12].to_string(),
                namespace: e.namespace.clone(),
                service_account: e.service_account.clone(),
                expires: UNIX_EPOCH + Duration::from_secs(e.expires_unix),
            })
            .collect()
    }

    /// Entries not expired for longer than [`KEEP_EXPIRED`].
    fn live_entries(&self, now: SystemTime) -> Vec<Entry> {
        let cutoff = unix(now).saturating_sub(KEEP_EXPIRED.as_secs());
        self.entries
            .iter()
            .filter(|e| e.expires_unix > cutoff)
            .cloned()
            .collect()
    }

    fn store(&mut self, entries: Vec<Entry>) -> Result<(), CaError> {
        let file = TokensFile { tokens: entries };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| CaError::BadState {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        files::write_private(&self.path, &json)?;
        self.entries = file.tokens;
        Ok(())
    }
}

fn decode(token: &str) -> Result<Vec<u8>, TokenError> {
    let body = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Malformed(
            "it does not start with trellis-join.",
        ))?;
    let secret = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Malformed("it is not base64url"))?;
    if secret.len() != TOKEN_BYTES {
        return Err(TokenError::Malformed("wrong length"));
    }
    Ok(secret)
}

fn hash(secret: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret)
        .as_ref()
        .to_vec()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
