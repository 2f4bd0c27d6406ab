//! The SQL behind the store, written once for SQLite and PostgreSQL: `$N` placeholders, BIGINT
//! and TEXT columns, revision numbers and times assigned here, no database-specific functions.
//! Rows are ordered in Rust, since the two databases collate text differently.

use super::{Action, Change, ChangedResource, Revision, RevisionDetail, StoreError};
use serde_json::Value;
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use std::collections::BTreeMap;
use std::path::Path;
use trellis_api::time::{now_millis, rfc3339_millis};
use trellis_api::{Kind, ResourceKey};

/// A database error with what was being done when it happened.
fn failed(context: impl std::fmt::Display) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Database(format!("{context}: {e}"))
}

/// Connects and brings the schema up to date.
pub(super) async fn connect(url: &str) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    let shown = redact(url);
    let url = &create_if_missing(url);
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .map_err(failed(format!("cannot open {shown}")))?;
    if url.starts_with("sqlite:") {
        // Readers (history, diffs) then never wait for a write to commit. Persistent per file.
        sqlx::query("PRAGMA journal_mode = WAL")
            .fetch_optional(&pool)
            .await
            .map_err(failed(format!("setting WAL mode on {shown}")))?;
    }
    // With PostgreSQL the collector's telemetry tables (control/migrations-telemetry) share the
    // database and the migrations table: each migrator ignores versions that are the other's.
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
        .run(&pool)
        .await
        .map_err(|e| StoreError::Database(format!("migrating {shown}: {e}")))?;
    Ok(pool)
}

/// A `sqlite:` URL that creates its file when missing (as `--database-url sqlite://PATH` is
/// expected to), unless it says otherwise with its own `mode=`.
fn create_if_missing(url: &str) -> String {
    if !url.starts_with("sqlite:") || url.contains("mode=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `sqlite://<abs dir>/trellis.db?mode=rwc`, creating the directory.
pub(super) fn default_url(data_dir: &Path) -> Result<String, StoreError> {
    let io = |what: &str, e: std::io::Error| {
        StoreError::Database(format!("{what} {}: {e}", data_dir.display()))
    };
    std::fs::create_dir_all(data_dir).map_err(|e| io("cannot create data directory", e))?;
    let dir = data_dir
        .canonicalize()
        .map_err(|e| io("cannot resolve data directory", e))?;
    let path = dir.join("trellis.db");
    let Some(path) = path.to_str() else {
        return Err(StoreError::Database(format!(
            "data directory {} is not valid UTF-8",
            dir.display()
        )));
    };
    // sqlx percent-decodes the path and splits the query at `?`.
    let mut encoded = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            c => encoded.push(c),
        }
    }
    Ok(format!("sqlite://{encoded}?mode=rwc"))
}

fn to_db(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision)
        .map_err(|_| StoreError::Database(format!("revision {revision} is out of range")))
}

fn from_db(revision: i64) -> Result<u64, StoreError> {
    u64::try_from(revision)
        .map_err(|_| StoreError::Database(format!("stored revision {revision} is negative")))
}

fn get<'r, T>(row: &'r AnyRow, column: &str, table: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column)
        .map_err(failed(format!("reading {table}.{column}")))
}

fn parse_json(text: &str, what: impl std::fmt::Display) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Database(format!("stored JSON of {what} is corrupt: {e}")))
}

/// Orders keys as `ConfigSet` does: by kind (in `Kind` order), namespace, name.
fn key_order(kind: &str, namespace: &str, name: &str) -> (usize, String, String, String) {
    let rank = Kind::ALL
        .iter()
        .position(|k| k.as_str() == kind)
        .unwrap_or(Kind::ALL.len());
    (rank, kind.into(), namespace.into(), name.into())
}

pub(super) async fn latest_revision(pool: &AnyPool) -> Result<u64, StoreError> {
    let row = sqlx::query("SELECT COALESCE(MAX(revision), 0) AS latest FROM revisions")
        .fetch_one(pool)
        .await
        .map_err(failed("reading the latest revision"))?;
    from_db(get(&row, "latest", "revisions")?)
}

/// A row of the `resources` table, not yet interpreted.
pub(super) struct CurrentRow {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub body: String,
}

pub(super) async fn current_rows(pool: &AnyPool) -> Result<Vec<CurrentRow>, StoreError> {
    let rows = sqlx::query("SELECT kind, namespace, name, body FROM resources")
        .fetch_all(pool)
        .await
        .map_err(failed("reading the current resources"))?;
    rows.iter()
        .map(|row| {
            Ok(CurrentRow {
                kind: get(row, "kind", "resources")?,
                namespace: get(row, "namespace", "resources")?,
                name: get(row, "name", "resources")?,
                body: get(row, "body", "resources")?,
            })
        })
        .collect()
}

/// One resource written by a revision.
#[derive(Debug, Clone)]
pub(super) struct WriteOp {
    pub key: ResourceKey,
    pub action: Action,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Writes one revision (number = latest + 1; the caller holds the write lock) in one transaction
/// and returns its number. Nothing is written if any statement fails.
pub(super) async fn commit(
    pool: &AnyPool,
    ops: &[WriteOp],
    author: &str,
    message: &str,
) -> Result<u64, StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(failed("starting a transaction"))?;
    let row = sqlx::query("SELECT COALESCE(MAX(revision), 0) + 1 AS next FROM revisions")
        .fetch_one(&mut *tx)
        .await
        .map_err(failed("reading the latest revision"))?;
    let revision: i64 = get(&row, "next", "revisions")?;
    sqlx::query(
        "INSERT INTO revisions (revision, time_ms, author, message) VALUES ($1, $2, $3, $4)",
    )
    .bind(revision)
    .bind(now_millis())
    .bind(author)
    .bind(message)
    .execute(&mut *tx)
    .await
    .map_err(failed(format!("writing revision {revision}")))?;
    for op in ops {
        let key = &op.key;
        let context = |what: &str| format!("{what} {key} in revision {revision}");
        let before = op.before.as_ref().map(Value::to_string);
        let after = op.after.as_ref().map(Value::to_string);
        sqlx::query(
            "INSERT INTO changes (revision, kind, namespace, name, action, before_json, after_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(revision)
        .bind(key.kind.as_str())
        .bind(key.namespace.as_str())
        .bind(key.name.as_str())
        .bind(op.action.as_str())
        .bind(before)
        .bind(after.clone())
        .execute(&mut *tx)
        .await
        .map_err(failed(context("recording the change of")))?;
        let statement = match after {
            Some(body) => sqlx::query(
                "INSERT INTO resources (kind, namespace, name, revision, body) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (kind, namespace, name) \
                 DO UPDATE SET revision = excluded.revision, body = excluded.body",
            )
            .bind(key.kind.as_str())
            .bind(key.namespace.as_str())
            .bind(key.name.as_str())
            .bind(revision)
            .bind(body),
            None => sqlx::query(
                "DELETE FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3",
            )
            .bind(key.kind.as_str())
            .bind(key.namespace.as_str())
            .bind(key.name.as_str()),
        };
        statement
            .execute(&mut *tx)
            .await
            .map_err(failed(context("storing")))?;
    }
    tx.commit()
        .await
        .map_err(failed(format!("committing revision {revision}")))?;
    from_db(revision)
}

/// A `changes` row, interpreted.
struct ChangeRow {
    revision: u64,
    kind: String,
    namespace: String,
    name: String,
    action: Action,
    before: Option<String>,
    after: Option<String>,
}

impl ChangeRow {
    fn change(&self) -> Change {
        Change {
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            action: self.action,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {}/{} in revision {}",
            self.kind, self.namespace, self.name, self.revision
        )
    }
}

/// The changes of revisions `first..=last`, by revision and key.
async fn change_rows(
    pool: &AnyPool,
    first: u64,
    last: u64,
    with_bodies: bool,
) -> Result<Vec<ChangeRow>, StoreError> {
    let sql = if with_bodies {
        "SELECT revision, kind, namespace, name, action, before_json, after_json FROM changes \
         WHERE revision >= $1 AND revision <= $2"
    } else {
        "SELECT revision, kind, namespace, name, action FROM changes \
         WHERE revision >= $1 AND revision <= $2"
    };
    let rows = sqlx::query(sql)
        .bind(to_db(first)?)
        .bind(to_db(last)?)
        .fetch_all(pool)
        .await
        .map_err(failed(format!(
            "reading the changes of revisions {first}..{last}"
        )))?;
    let mut out = rows
        .iter()
        .map(|row| {
            let action: String = get(row, "action", "changes")?;
            let revision = from_db(get(row, "revision", "changes")?)?;
            Ok(ChangeRow {
                revision,
                kind: get(row, "kind", "changes")?,
                namespace: get(row, "namespace", "changes")?,
                name: get(row, "name", "changes")?,
                action: Action::from_name(&action).ok_or_else(|| {
                    StoreError::Database(format!(
                        "unknown action `{action}` stored in revision {revision}"
                    ))
                })?,
                before: if with_bodies {
                    get(row, "before_json", "changes")?
                } else {
                    None
                },
                after: if with_bodies {
                    get(row, "after_json", "changes")?
                } else {
                    None
                },
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by_cached_key(|c| (c.revision, key_order(&c.kind, &c.namespace, &c.name)));
    Ok(out)
}

fn revision_from_row(row: &AnyRow) -> Result<Revision, StoreError> {
    let time_unix_ms: i64 = get(row, "time_ms", "revisions")?;
    Ok(Revision {
        revision: from_db(get(row, "revision", "revisions")?)?,
        time: rfc3339_millis(time_unix_ms),
        time_unix_ms,
        author: get(row, "author", "revisions")?,
        message: get(row, "message", "revisions")?,
        changes: Vec::new(),
    })
}

pub(super) async fn history(pool: &AnyPool, limit: usize) -> Result<Vec<Revision>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT revision, time_ms, author, message FROM revisions ORDER BY revision DESC LIMIT $1",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(failed("reading the history"))?;
    let mut revisions = rows
        .iter()
        .map(revision_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let (Some(last), Some(first)) = (revisions.first(), revisions.last()) else {
        return Ok(revisions);
    };
    let changes = change_rows(pool, first.revision, last.revision, false).await?;
    let mut by_revision: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
    for c in &changes {
        by_revision.entry(c.revision).or_default().push(c.change());
    }
    for r in &mut revisions {
        r.changes = by_revision.remove(&r.revision).unwrap_or_default();
    }
    Ok(revisions)
}

pub(super) async fn revision_detail(
    pool: &AnyPool,
    revision: u64,
) -> Result<RevisionDetail, StoreError> {
    let row =
        sqlx::query("SELECT revision, time_ms, author, message FROM revisions WHERE revision = $1")
            .bind(to_db(revision)?)
            .fetch_optional(pool)
            .await
            .map_err(failed(format!("reading revision {revision}")))?
            .ok_or_else(|| StoreError::Database(format!("revision {revision} is missing")))?;
    let mut header = revision_from_row(&row)?;
    let rows = change_rows(pool, revision, revision, true).await?;
    let mut resources = Vec::with_capacity(rows.len());
    for c in &rows {
        let body = |text: &Option<String>| {
            text.as_deref()
                .map(|t| parse_json(t, c.describe()))
                .transpose()
        };
        resources.push(ChangedResource {
            kind: c.kind.clone(),
            namespace: c.namespace.clone(),
            name: c.name.clone(),
            action: c.action,
            before: body(&c.before)?,
            after: body(&c.after)?,
        });
    }
    header.changes = rows.iter().map(ChangeRow::change).collect();
    Ok(RevisionDetail {
        revision: header,
        resources,
    })
}

/// Every resource's body right after `revision`: its latest change at or before it. Rows of
/// kinds this version does not know are left out (with a warning).
pub(super) async fn state_at(
    pool: &AnyPool,
    revision: u64,
) -> Result<BTreeMap<ResourceKey, Value>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.revision, c.kind, c.namespace, c.name, c.after_json FROM changes c \
         WHERE c.revision = (SELECT MAX(l.revision) FROM changes l \
           WHERE l.kind = c.kind AND l.namespace = c.namespace AND l.name = c.name \
           AND l.revision <= $1)",
    )
    .bind(to_db(revision)?)
    .fetch_all(pool)
    .await
    .map_err(failed(format!("reading the state at revision {revision}")))?;
    let mut state = BTreeMap::new();
    for row in &rows {
        let Some(after) = get::<Option<String>>(row, "after_json", "changes")? else {
            continue;
        };
        let kind: String = get(row, "kind", "changes")?;
        let namespace: String = get(row, "namespace", "changes")?;
        let name: String = get(row, "name", "changes")?;
        let changed_in = from_db(get(row, "revision", "changes")?)?;
        let Some(kind) = Kind::from_name(&kind) else {
            tracing::warn!(
                "ignoring stored {kind} {namespace}/{name} (revision {changed_in}): unknown kind"
            );
            continue;
        };
        let key = ResourceKey {
            kind,
            namespace,
            name,
        };
        let body = parse_json(&after, format_args!("{key} in revision {changed_in}"))?;
        state.insert(key, body);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://trellis:s3cret@db:5432/mesh?sslmode=require"),
            "postgres://trellis:***@db:5432/mesh?sslmode=require"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5/p"),
            "postgres://postgres@127.0.0.1:5/p"
        );
        assert_eq!(
            redact("sqlite:///var/lib/t/trellis.db?mode=rwc"),
            "sqlite:///var/lib/t/trellis.db?mode=rwc"
        );
    }
}
