//! Telemetry storage: spans and logs through sqlx's `AnyPool`, SQLite or PostgreSQL, schema in
//! `control/migrations-telemetry/`.
//!
//! Where it lives (see [`telemetry_url`]): with PostgreSQL, the same database as the config
//! store (one database to run and back up; the two migration sets share its migrations table);
//! with SQLite, its own file `telemetry.db` beside `trellis.db` in `--data-dir`, so span ingest
//! (a steady stream of large write transactions) never holds the lock a config apply waits for.
//! `--telemetry-database-url` puts it anywhere else.
//!
//! Rows are written by one writer ([`super::writer`]) in batched multi-row inserts inside one
//! transaction per batch; retention ([`retention`]) deletes the oldest rows by age and count.

mod read;
mod retention;
mod write;

pub use read::{Dependency, LogQuery, Operation, SpanScan};
pub use retention::{Pruned, Retention};
pub use write::OperationsSeen;

use crate::store::{Store, redact};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::path::Path;

/// A storage failure, with what was being done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

/// A database error with what was being done when it happened.
pub(crate) fn failed(context: impl std::fmt::Display) -> impl FnOnce(sqlx::Error) -> StorageError {
    move |e| StorageError(format!("{context}: {e}"))
}

/// The telemetry database: `explicit` when given; else the config database when that is
/// PostgreSQL; else `telemetry.db` in `data_dir`.
pub fn telemetry_url(
    explicit: Option<&str>,
    config_url: Option<&str>,
    data_dir: &Path,
) -> Result<String, StorageError> {
    if let Some(url) = explicit {
        return Ok(url.to_string());
    }
    if let Some(url) = config_url.filter(|u| u.starts_with("postgres")) {
        return Ok(url.to_string());
    }
    // The config store's own default URL (directory created, path encoded), for another file.
    let config_default = Store::default_url(data_dir).map_err(|e| StorageError(e.to_string()))?;
    let prefix = config_default
        .strip_suffix("trellis.db?mode=rwc")
        .ok_or_else(|| StorageError(format!("unexpected default URL {config_default}")))?;
    Ok(format!("{prefix}telemetry.db?mode=rwc"))
}

/// Spans and logs in SQLite or PostgreSQL.
pub struct TelemetryStore {
    pool: AnyPool,
    shown: String,
    /// With SQLite, the writer's own native connection: sqlx's `Any` layer copies every bound
    /// string once more on the way to SQLite, a large share of ingest's cost. Its inserts take
    /// `?` placeholders (SQLite looks `$N` names up linearly per parameter, which makes binding a
    /// 4,000-parameter statement quadratic).
    sqlite_writer: Option<SqlitePool>,
}

impl TelemetryStore {
    /// Connects and brings the telemetry schema up to date. A `sqlite:` URL creates its file.
    pub async fn open(url: &str) -> Result<TelemetryStore, StorageError> {
        sqlx::any::install_default_drivers();
        let shown = redact(url);
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}mode=rwc")
        } else {
            url.to_string()
        };
        let mut options = AnyPoolOptions::new().max_connections(4);
        if sqlite {
            // Telemetry may lose the last moments on a power cut, never its consistency; the
            // larger page cache keeps the indexes of recent spans in memory.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    // page_size only takes effect while the file is new (before WAL mode).
                    conn.execute(
                        "PRAGMA page_size = 16384; PRAGMA synchronous = NORMAL; \
                         PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
                    )
                    .await
                    .map(|_| ())
                })
            });
        }
        let pool = options
            .connect(&url)
            .await
            .map_err(failed(format!("cannot open {shown}")))?;
        if sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await
                .map_err(failed(format!("setting WAL mode on {shown}")))?;
        }
        // Shares the migrations table with the config store on PostgreSQL (see store::db).
        let mut migrator = sqlx::migrate!("./migrations-telemetry");
        migrator.set_ignore_missing(true);
        migrator
            .run(&pool)
            .await
            .map_err(|e| StorageError(format!("migrating the telemetry schema in {shown}: {e}")))?;
        let sqlite_writer = if sqlite {
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(
                    url.parse::<SqliteConnectOptions>()
                        .map_err(failed(format!("cannot open {shown}")))?
                        .pragma("synchronous", "NORMAL")
                        .pragma("cache_size", "-65536")
                        .pragma("temp_store", "MEMORY"),
                )
                .await
                .map_err(failed(format!("cannot open {shown} for writing")))?;
            Some(writer)
        } else {
            None
        };
        Ok(TelemetryStore {
            pool,
            shown,
            sqlite_writer,
        })
    }

    /// The pool, for other telemetry tables (the graph's per-minute history).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The URL without its password, for logs.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// Waits for queries in flight and closes every connection.
    pub async fn close(&self) {
        if let Some(writer) = &self.sqlite_writer {
            writer.close().await;
        }
        self.pool.close().await;
    }
}
