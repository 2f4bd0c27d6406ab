//! Planning and committing changes: validation, what each resource's action is, the merged set,
//! and the warnings to report. Runs with the write lock held (see [`super::Store`]).

use super::db::{self, CurrentRow, WriteOp};
use super::{Action, ApplyOutcome, Change, ChangeInfo, Inner, Snapshot, StoreError, Stored};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use trellis_api::diagnostics;
use trellis_api::validate::cross_check;
use trellis_api::{ConfigSet, Diagnostic, Kind, Resource, ResourceKey, Severity, load_str};

/// Interprets the stored rows: every body that parses (for comparisons and history), and the
/// active set of those that still load. A row that does not load stays in the database.
pub(super) fn load_rows(rows: Vec<CurrentRow>) -> (BTreeMap<ResourceKey, Value>, ConfigSet) {
    let mut bodies = BTreeMap::new();
    let mut config = ConfigSet::new();
    for row in rows {
        let shown = format!("{} {}/{}", row.kind, row.namespace, row.name);
        let Some(kind) = Kind::from_name(&row.kind) else {
            tracing::warn!("stored {shown} is not loaded: unknown kind (kept in the database)");
            continue;
        };
        let body: Value = match serde_json::from_str(&row.body) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(
                    "stored {shown} is not loaded: corrupt JSON: {e} (kept in the database)"
                );
                continue;
            }
        };
        let key = ResourceKey {
            kind,
            namespace: row.namespace,
            name: row.name,
        };
        match reload(&key, &body, &format!("stored {key}")) {
            Ok(resource) => {
                config.insert(resource);
            }
            Err(diags) => tracing::warn!(
                "stored {key} is not loaded, it no longer validates (kept in the database):\n{}",
                diagnostics::render(&diags)
            ),
        }
        bodies.insert(key, body);
    }
    (bodies, config)
}

/// Loads a stored body back into a resource, as happens at every start: what is written must
/// read back as exactly that resource.
fn reload(key: &ResourceKey, body: &Value, file_name: &str) -> Result<Resource, Vec<Diagnostic>> {
    let mut resources = load_str(&body.to_string(), file_name)?;
    match (resources.pop(), resources.is_empty()) {
        (Some(resource), true) if resource.key() == *key => Ok(resource),
        _ => Err(vec![
            Diagnostic::error(format!("the document does not read back as {key}"))
                .with_file(file_name)
                .with_resource(key.to_string()),
        ]),
    }
}

/// Warnings for an outcome: those of the resources written, plus cross-resource findings that
/// concern them or that the change newly causes elsewhere.
fn outcome_warnings(
    before: &ConfigSet,
    after: &ConfigSet,
    touched: &[&Resource],
) -> Vec<Diagnostic> {
    let names: BTreeSet<String> = touched.iter().map(|r| r.key().to_string()).collect();
    let old = cross_check(before);
    let mut out: Vec<Diagnostic> = touched.iter().flat_map(|r| r.warnings.clone()).collect();
    out.extend(
        cross_check(after)
            .into_iter()
            .filter(|d| d.resource.as_ref().is_some_and(|r| names.contains(r)) || !old.contains(d)),
    );
    diagnostics::sort(&mut out);
    out.dedup();
    out
}

/// Errors found by checks on the merged set (none today; future cross-resource errors apply).
fn merged_errors(after: &ConfigSet) -> Vec<Diagnostic> {
    cross_check(after)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect()
}

fn invalid(mut diags: Vec<Diagnostic>) -> StoreError {
    diagnostics::sort(&mut diags);
    StoreError::Invalid(diags)
}

fn unwritten(dry_run: bool, changes: Vec<Change>, warnings: Vec<Diagnostic>) -> ApplyOutcome {
    ApplyOutcome {
        revision: None,
        dry_run,
        changes,
        warnings,
    }
}

/// Each resource's own validation (refreshing its warnings), that its document reads back, and
/// that no key is given twice. Errors and the warnings that go with them.
fn validate_each(resources: &mut [Resource]) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for r in resources.iter_mut() {
        let (errors, warnings): (Vec<_>, Vec<_>) = trellis_api::validate::validate(r)
            .into_iter()
            .partition(Diagnostic::is_error);
        if !errors.is_empty() {
            problems.extend(errors);
            problems.extend(warnings);
            continue;
        }
        r.warnings = warnings;
        // What is stored is `raw`; it must load as it will at the next start. (Only a
        // resource built by hand, whose `raw` and typed value disagree, can fail here.)
        let file = r.source.file.as_deref().unwrap_or("<apply>");
        if let Err(diags) = reload(&r.key(), &r.raw, file) {
            // Positions would be in the JSON rendering, not in the caller's file.
            problems.extend(diags.into_iter().map(|mut d| {
                (d.line, d.column) = (None, None);
                d
            }));
        }
    }
    let mut seen = BTreeSet::new();
    for r in resources.iter() {
        if !seen.insert(r.key()) {
            problems.push(r.source.diagnostic(
                Severity::Error,
                Some(&r.key()),
                "metadata.name",
                format!("{} is given twice in one apply", r.key()),
            ));
        }
    }
    problems
}

impl Inner {
    pub(super) async fn apply(
        &self,
        mut resources: Vec<Resource>,
        change: ChangeInfo,
        dry_run: bool,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut stored = self.stored.lock().await;
        let active = self.snapshot.load_full().config.clone();

        let problems = validate_each(&mut resources);
        if problems.iter().any(Diagnostic::is_error) {
            return Err(invalid(problems));
        }

        let mut merged = (*active).clone();
        let mut ops = Vec::new();
        let mut changes = Vec::new();
        for r in &resources {
            let key = r.key();
            let before = stored.bodies.get(&key);
            let action = match (active.get(&key), before) {
                (Some(current), _) if current.raw == r.raw => Action::Unchanged,
                (_, Some(_)) => Action::Configured,
                (_, None) => Action::Created,
            };
            changes.push(Change::new(&key, action));
            if action != Action::Unchanged {
                ops.push(WriteOp {
                    key,
                    action,
                    before: before.cloned(),
                    after: Some(r.raw.clone()),
                });
            }
            // Unchanged ones too, so findings about them point at the caller's file.
            merged.insert(r.clone());
        }
        let errors = merged_errors(&merged);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let touched: Vec<&Resource> = resources.iter().collect();
        let warnings = outcome_warnings(&active, &merged, &touched);
        if dry_run || ops.is_empty() {
            return Ok(unwritten(dry_run, changes, warnings));
        }
        let revision = self
            .commit(&mut stored, ops, merged, &change.author, &change.message)
            .await?;
        Ok(ApplyOutcome {
            revision: Some(revision),
            dry_run,
            changes,
            warnings,
        })
    }

    pub(super) async fn delete(
        &self,
        keys: Vec<ResourceKey>,
        change: ChangeInfo,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut stored = self.stored.lock().await;
        let active = self.snapshot.load_full().config.clone();
        let mut unique = BTreeSet::new();
        let keys: Vec<ResourceKey> = keys
            .into_iter()
            .filter(|k| unique.insert(k.clone()))
            .collect();
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| !stored.bodies.contains_key(k))
            .map(ToString::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::NotFound(missing.join(", ")));
        }
        let mut merged = (*active).clone();
        let mut ops = Vec::new();
        for key in &keys {
            merged.remove(key);
            ops.push(WriteOp {
                key: key.clone(),
                action: Action::Deleted,
                before: stored.bodies.get(key).cloned(),
                after: None,
            });
        }
        let changes = keys
            .iter()
            .map(|k| Change::new(k, Action::Deleted))
            .collect();
        let warnings = outcome_warnings(&active, &merged, &[]);
        if ops.is_empty() {
            return Ok(unwritten(false, changes, warnings));
        }
        let revision = self
            .commit(&mut stored, ops, merged, &change.author, &change.message)
            .await?;
        Ok(ApplyOutcome {
            revision: Some(revision),
            dry_run: false,
            changes,
            warnings,
        })
    }

    pub(super) async fn rollback(
        &self,
        target: u64,
        change: ChangeInfo,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut stored = self.stored.lock().await;
        let active = self.snapshot.load_full().config.clone();
        let latest = db::latest_revision(&self.pool).await?;
        if target > latest {
            return Err(StoreError::NoSuchRevision(target, latest));
        }
        let state = db::state_at(&self.pool, target).await?;

        let keys: BTreeSet<&ResourceKey> = state.keys().chain(stored.bodies.keys()).collect();
        let mut ops = Vec::new();
        let mut restored = Vec::new();
        let mut problems = Vec::new();
        for key in keys {
            let before = stored.bodies.get(key);
            let after = state.get(key);
            let Some(action) = Action::between(before, after) else {
                continue;
            };
            if let Some(body) = after {
                match reload(key, body, &format!("revision {target}: {key}")) {
                    Ok(resource) => restored.push(resource),
                    Err(diags) => problems.extend(diags),
                }
            }
            ops.push(WriteOp {
                key: key.clone(),
                action,
                before: before.cloned(),
                after: after.cloned(),
            });
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let mut merged = (*active).clone();
        for op in ops.iter().filter(|op| op.after.is_none()) {
            merged.remove(&op.key);
        }
        for r in &restored {
            merged.insert(r.clone());
        }
        let errors = merged_errors(&merged);
        if !errors.is_empty() {
            return Err(invalid(errors));
        }
        let changes: Vec<Change> = ops
            .iter()
            .map(|op| Change::new(&op.key, op.action))
            .collect();
        let touched: Vec<&Resource> = restored.iter().collect();
        let warnings = outcome_warnings(&active, &merged, &touched);
        if ops.is_empty() {
            return Ok(unwritten(false, changes, warnings));
        }
        let message = if change.message.is_empty() {
            format!("rollback to {target}")
        } else {
            format!("rollback to {target}: {}", change.message)
        };
        let revision = self
            .commit(&mut stored, ops, merged, &change.author, &message)
            .await?;
        Ok(ApplyOutcome {
            revision: Some(revision),
            dry_run: false,
            changes,
            warnings,
        })
    }

    /// Writes the revision, then (only once it is committed) updates what memory holds and tells
    /// subscribers.
    async fn commit(
        &self,
        stored: &mut Stored,
        ops: Vec<WriteOp>,
        merged: ConfigSet,
        author: &str,
        message: &str,
    ) -> Result<u64, StoreError> {
        let revision = db::commit(&self.pool, &ops, author, message).await?;
        tracing::info!(
            revision,
            author,
            message,
            changes = ops.len(),
            "config revision committed"
        );
        for op in ops {
            match op.after {
                Some(body) => stored.bodies.insert(op.key, body),
                None => stored.bodies.remove(&op.key),
            };
        }
        self.snapshot.store(Arc::new(Snapshot {
            revision,
            config: Arc::new(merged),
        }));
        self.notify.send_replace(revision);
        Ok(revision)
    }
}
