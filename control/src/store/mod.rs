//! The config store: every applied resource, with its revision history, in SQLite (default) or
//! PostgreSQL through sqlx's `AnyPool`.
//!
//! Every change (apply, delete, rollback) is one revision in one transaction: who, when, why, and
//! each resource's body before and after. History is never rewritten; a rollback is a new revision
//! restoring an earlier state. The current resources are kept in memory as an immutable
//! [`ConfigSet`] snapshot that readers (the push server, the REST API) load without locking; it is
//! replaced only after the transaction commits, and subscribers are told the new revision.
//!
//! Writes are serialised by a mutex (one control process owns the database) and run in their own
//! task, so a caller that goes away mid-write cannot leave the snapshot behind the database.

mod db;
mod diff;
mod write;
mod yaml_out;

#[cfg(test)]
mod tests;

pub use db::redact;
pub use trellis_api::time::rfc3339_millis;
pub use yaml_out::{to_yaml, to_yaml_documents};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyPool;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{Mutex, watch};
use trellis_api::{ConfigSet, Diagnostic, Resource, ResourceKey};

/// Who made a change and why; recorded with the revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeInfo {
    pub author: String,
    pub message: String,
}

/// The result of an apply, delete or rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// The revision written; `None` when nothing changed or for a dry run.
    pub revision: Option<u64>,
    pub dry_run: bool,
    pub changes: Vec<Change>,
    /// Warnings about the resources written and those the change newly causes elsewhere (a
    /// route to a subset whose DestinationRule was just deleted).
    pub warnings: Vec<Diagnostic>,
}

/// What happened to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub action: Action,
}

impl Change {
    fn new(key: &ResourceKey, action: Action) -> Change {
        Change {
            kind: key.kind.as_str().to_string(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            action,
        }
    }
}

/// kubectl's words for what an apply did to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl Action {
    /// What going from `before` to `after` does to a resource; `None` when nothing changes.
    pub fn between(before: Option<&Value>, after: Option<&Value>) -> Option<Action> {
        match (before, after) {
            (Some(b), Some(a)) if a == b => None,
            (Some(_), Some(_)) => Some(Action::Configured),
            (None, Some(_)) => Some(Action::Created),
            (Some(_), None) => Some(Action::Deleted),
            (None, None) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
        }
    }

    fn from_name(name: &str) -> Option<Action> {
        [
            Action::Created,
            Action::Configured,
            Action::Unchanged,
            Action::Deleted,
        ]
        .into_iter()
        .find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub revision: u64,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-21T10:00:00.123Z`.
    pub time: String,
    pub time_unix_ms: i64,
    pub author: String,
    pub message: String,
    pub changes: Vec<Change>,
}

/// A revision with the bodies it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionDetail {
    #[serde(flatten)]
    pub revision: Revision,
    pub resources: Vec<ChangedResource>,
}

/// One resource changed by a revision: its body before and after (absent when created/deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedResource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub action: Action,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// What changed between two revisions, per resource and as a unified diff of the YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    pub from: u64,
    pub to: u64,
    pub changes: Vec<Change>,
    pub diff: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The change was rejected; nothing was written.
    #[error("invalid configuration")]
    Invalid(Vec<Diagnostic>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("revision {0} does not exist (latest is {1})")]
    NoSuchRevision(u64, u64),
    #[error("database: {0}")]
    Database(String),
}

/// The current resources with the revision they are the state of.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub config: Arc<ConfigSet>,
}

/// See the module documentation. Share it as `Arc<Store>` (or clone it: clones share everything).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    /// Held for the whole of every write; holds what the database holds.
    stored: Mutex<Stored>,
    snapshot: ArcSwap<Snapshot>,
    notify: watch::Sender<u64>,
}

/// The `resources` table as of the last commit, including rows that no longer validate (they
/// are kept, and can be replaced, deleted or rolled back, but are not in the active set).
struct Stored {
    bodies: BTreeMap<ResourceKey, Value>,
}

impl Store {
    /// Opens (creating if needed) the database, applies migrations, loads the current resources.
    /// A stored resource that no longer loads (e.g. after an upgrade tightened validation) is kept
    /// in the database, logged with `tracing::warn!`, and left out of the active set — never
    /// deleted.
    pub async fn open(database_url: &str) -> Result<Store, StoreError> {
        let pool = db::connect(database_url).await?;
        let revision = db::latest_revision(&pool).await?;
        let rows = db::current_rows(&pool).await?;
        let (bodies, config) = write::load_rows(rows);
        tracing::info!(
            database = %db::redact(database_url),
            revision,
            resources = config.len(),
            "config store opened"
        );
        let (notify, _) = watch::channel(revision);
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                stored: Mutex::new(Stored { bodies }),
                snapshot: ArcSwap::from_pointee(Snapshot {
                    revision,
                    config: Arc::new(config),
                }),
                notify,
            }),
        })
    }

    /// The default URL for a data dir: the SQLite file `<dir>/trellis.db`, creating the dir.
    pub fn default_url(data_dir: &Path) -> Result<String, StoreError> {
        db::default_url(data_dir)
    }

    /// Current resources (an immutable snapshot, cheap to clone).
    pub fn current(&self) -> Arc<ConfigSet> {
        self.inner.snapshot.load().config.clone()
    }

    /// Current resources together with their revision, read atomically.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Latest revision number (0 before any change).
    pub fn revision(&self) -> u64 {
        self.inner.snapshot.load().revision
    }

    /// Notified (with the new revision) after every committed change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.notify.subscribe()
    }

    /// Adds or replaces resources as one revision. Validated first: each resource on its own,
    /// then the merged set; any error rejects the whole apply and changes nothing
    /// ([`StoreError::Invalid`]). Resources equal to what is stored (their `raw` documents) are
    /// unchanged; if nothing changed no revision is created. `dry_run` validates and reports
    /// without writing.
    pub async fn apply(
        &self,
        resources: Vec<Resource>,
        change: &ChangeInfo,
        dry_run: bool,
    ) -> Result<ApplyOutcome, StoreError> {
        let change = change.clone();
        self.spawn_write(move |inner| async move { inner.apply(resources, change, dry_run).await })
            .await
    }

    /// Deletes resources as one revision; an unknown key is [`StoreError::NotFound`] and deletes
    /// nothing.
    pub async fn delete(
        &self,
        keys: &[ResourceKey],
        change: &ChangeInfo,
    ) -> Result<ApplyOutcome, StoreError> {
        let (keys, change) = (keys.to_vec(), change.clone());
        self.spawn_write(move |inner| async move { inner.delete(keys, change).await })
            .await
    }

    /// Makes the state of `revision` current again, as a new revision whose message says
    /// "rollback to N" (history is never rewritten). Resources that would be restored are
    /// re-validated, so the result is a valid set. Rolling back to the current state creates no
    /// revision.
    pub async fn rollback(
        &self,
        revision: u64,
        change: &ChangeInfo,
    ) -> Result<ApplyOutcome, StoreError> {
        let change = change.clone();
        self.spawn_write(move |inner| async move { inner.rollback(revision, change).await })
            .await
    }

    /// Newest first, at most `limit`.
    pub async fn history(&self, limit: usize) -> Result<Vec<Revision>, StoreError> {
        db::history(&self.inner.pool, limit).await
    }

    /// One revision with the bodies it wrote (before/after per change).
    pub async fn revision_detail(&self, revision: u64) -> Result<RevisionDetail, StoreError> {
        let latest = db::latest_revision(&self.inner.pool).await?;
        if revision == 0 || revision > latest {
            return Err(StoreError::NoSuchRevision(revision, latest));
        }
        db::revision_detail(&self.inner.pool, revision).await
    }

    /// The resources (raw JSON) as they were right after `revision` (0 = empty).
    pub async fn state_at(
        &self,
        revision: u64,
    ) -> Result<BTreeMap<ResourceKey, Value>, StoreError> {
        let latest = db::latest_revision(&self.inner.pool).await?;
        if revision > latest {
            return Err(StoreError::NoSuchRevision(revision, latest));
        }
        db::state_at(&self.inner.pool, revision).await
    }

    /// What changed from `from` to `to` (either order): per resource created, configured or
    /// deleted, and a unified diff of the YAML renderings.
    pub async fn diff(&self, from: u64, to: u64) -> Result<Diff, StoreError> {
        let latest = db::latest_revision(&self.inner.pool).await?;
        for r in [from, to] {
            if r > latest {
                return Err(StoreError::NoSuchRevision(r, latest));
            }
        }
        let before = db::state_at(&self.inner.pool, from).await?;
        let after = db::state_at(&self.inner.pool, to).await?;
        Ok(diff::diff(from, &before, to, &after))
    }

    /// Closes the database connections (waiting for queries in flight).
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Runs a write in its own task: if the caller's future is dropped (a client hung up), the
    /// write still finishes or rolls back as a whole, and the snapshot follows the database.
    async fn spawn_write<F, Fut>(&self, write: F) -> Result<ApplyOutcome, StoreError>
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<ApplyOutcome, StoreError>> + Send + 'static,
    {
        let task = tokio::spawn(write(self.inner.clone()));
        task.await
            .map_err(|e| StoreError::Database(format!("write task failed: {e}")))?
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}
