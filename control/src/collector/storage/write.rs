//! Batched writes: one transaction per batch, multi-row `INSERT`s of at most
//! [`ROWS_PER_STATEMENT`] rows. Statement sizes are powers of two, so a handful of prepared
//! statements serve every batch size (sqlx caches them per connection).

use super::{StorageError, TelemetryStore, failed};
use crate::collector::logs::LogRow;
use crate::collector::spans::SpanRow;
use sqlx::AssertSqlSafe;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Most rows in one `INSERT` (spans have 17 columns: 4,352 parameters, far below SQLite's and
/// PostgreSQL's limits).
const ROWS_PER_STATEMENT: usize = 256;

const SPAN_COLUMNS: &[&str] = &[
    "trace_id",
    "span_id",
    "parent_id",
    "service",
    "operation",
    "kind",
    "start_us",
    "duration_us",
    "status_code",
    "status_message",
    "flags",
    "scope_name",
    "scope_version",
    "attributes",
    "process_id",
    "events",
    "links",
];

const LOG_COLUMNS: &[&str] = &[
    "time_us",
    "observed_us",
    "severity_number",
    "severity_text",
    "body",
    "attributes",
    "resource",
    "service",
    "scope_name",
    "trace_id",
    "span_id",
];

/// `INSERT INTO table (columns) VALUES ($1, ...), (...)` for `rows` rows; with `anonymous`,
/// `?` placeholders (for SQLite, where they bind in order without a name lookup).
fn insert_sql(table: &str, columns: &[&str], rows: usize, anonymous: bool) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns.len() {
            if column > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if anonymous {
                sql.push('?');
            } else {
                let _ = write!(sql, "${n}");
            }
        }
        sql.push(')');
    }
    sql
}

/// Chunk sizes for `total` rows: full statements, then the remainder in powers of two.
fn chunk_sizes(total: usize) -> Vec<usize> {
    let mut sizes = vec![ROWS_PER_STATEMENT; total / ROWS_PER_STATEMENT];
    let mut rest = total % ROWS_PER_STATEMENT;
    let mut size = ROWS_PER_STATEMENT / 2;
    while rest > 0 {
        if rest >= size {
            sizes.push(size);
            rest -= size;
        }
        size /= 2;
    }
    sizes
}

/// Binds a span's columns in [`SPAN_COLUMNS`] order (a macro: the same chain serves the native
/// SQLite query and the `Any` one).
macro_rules! bind_span {
    ($query:expr, $row:expr) => {{
        let row = $row;
        $query
            .bind(row.trace_id)
            .bind(row.span_id)
            .bind(row.parent_id)
            .bind(row.service)
            .bind(row.operation)
            .bind(row.kind)
            .bind(row.start_us)
            .bind(row.duration_us)
            .bind(row.status_code)
            .bind(row.status_message)
            .bind(row.flags)
            .bind(row.scope_name)
            .bind(row.scope_version)
            .bind(row.attributes)
            .bind(row.process_id)
            .bind(row.events)
            .bind(row.links)
    }};
}

/// Binds a log record's columns in [`LOG_COLUMNS`] order.
macro_rules! bind_log {
    ($query:expr, $row:expr) => {{
        let row = $row;
        $query
            .bind(row.time_us)
            .bind(row.observed_us)
            .bind(row.severity_number)
            .bind(row.severity_text)
            .bind(row.body)
            .bind(row.attributes)
            .bind(row.resource)
            .bind(row.service)
            .bind(row.scope_name)
            .bind(row.trace_id)
            .bind(row.span_id)
    }};
}

/// Inserts `$rows` into `$table` inside transaction `$tx`, in statements of [`chunk_sizes`].
macro_rules! insert_all {
    ($tx:expr, $anonymous:expr, $table:expr, $columns:expr, $rows:expr, $bind:ident) => {{
        let mut rows = $rows.into_iter();
        for size in chunk_sizes(rows.len()) {
            let sql = insert_sql($table, $columns, size, $anonymous);
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for row in rows.by_ref().take(size) {
                query = $bind!(query, row);
            }
            query
                .execute(&mut *$tx)
                .await
                .map_err(failed(format!("inserting {size} rows into {}", $table)))?;
        }
    }};
}

/// One batch in one transaction on `$pool` (a `SqlitePool` or an `AnyPool`).
macro_rules! write_tx {
    ($pool:expr, $anonymous:expr, $spans:expr, $logs:expr, $operations:expr, $processes:expr) => {{
        let mut tx = $pool
            .begin()
            .await
            .map_err(failed("starting a telemetry transaction"))?;
        insert_all!(tx, $anonymous, "spans", SPAN_COLUMNS, $spans, bind_span);
        insert_all!(tx, $anonymous, "logs", LOG_COLUMNS, $logs, bind_log);
        for (service, operation, kind, last_seen) in $operations {
            sqlx::query(
                "INSERT INTO span_operations (service, operation, kind, last_seen_us) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (service, operation, kind) DO UPDATE SET last_seen_us = \
                 CASE WHEN excluded.last_seen_us > span_operations.last_seen_us \
                 THEN excluded.last_seen_us ELSE span_operations.last_seen_us END",
            )
            .bind(service)
            .bind(operation)
            .bind(kind)
            .bind(last_seen)
            .execute(&mut *tx)
            .await
            .map_err(failed("recording an operation name"))?;
        }
        for (id, service, tags, last_seen) in $processes {
            sqlx::query(
                "INSERT INTO span_processes (process_id, service, tags, last_seen_us) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (process_id) DO UPDATE SET last_seen_us = \
                 CASE WHEN excluded.last_seen_us > span_processes.last_seen_us \
                 THEN excluded.last_seen_us ELSE span_processes.last_seen_us END",
            )
            .bind(id)
            .bind(service)
            .bind(tags)
            .bind(last_seen)
            .execute(&mut *tx)
            .await
            .map_err(failed("recording a span resource"))?;
        }
        tx.commit()
            .await
            .map_err(failed("committing telemetry rows"))
    }};
}

/// Which operations (`span_operations`) and resources (`span_processes`) storage already has,
/// and since when, so the writer only writes them when new (and once a minute while still in
/// use, to keep `last_seen_us` fresh for retention).
#[derive(Debug, Default)]
pub struct OperationsSeen {
    operations: HashMap<(String, String, i64), i64>,
    processes: HashMap<String, i64>,
}

/// An operation to upsert: service, name, kind, newest start.
type OperationRow = (String, String, i64, i64);
/// A resource to upsert: id, service, tags, newest start.
type ProcessRow = (String, String, String, i64);

/// How stale a written `last_seen_us` may get before it is refreshed.
const REFRESH_US: i64 = 60_000_000;
/// Forget the caches past this many names (a flood of unique names must not grow memory).
const REMEMBERED: usize = 100_000;

/// Whether `newest` is worth writing given when the key was last written; records it if so.
fn is_due<K: std::hash::Hash + Eq>(written: &mut HashMap<K, i64>, key: K, newest: i64) -> bool {
    match written.get(&key) {
        Some(seen) if newest < seen + REFRESH_US => false,
        _ => {
            written.insert(key, newest);
            true
        }
    }
}

impl OperationsSeen {
    /// The operations and resources of `rows` to upsert, with the newest start time of each.
    fn take_new(&mut self, rows: &[SpanRow]) -> (Vec<OperationRow>, Vec<ProcessRow>) {
        if self.operations.len() > REMEMBERED {
            self.operations.clear();
        }
        if self.processes.len() > REMEMBERED {
            self.processes.clear();
        }
        let mut operations: HashMap<(&str, &str, i64), i64> = HashMap::new();
        let mut processes: HashMap<&str, (&SpanRow, i64)> = HashMap::new();
        for row in rows {
            let newest = operations
                .entry((&row.service, &row.operation, row.kind))
                .or_insert(row.start_us);
            *newest = (*newest).max(row.start_us);
            let newest = processes
                .entry(&row.process_id)
                .or_insert((row, row.start_us));
            newest.1 = newest.1.max(row.start_us);
        }
        let operations = operations
            .into_iter()
            .filter(|((service, operation, kind), newest)| {
                let key = (service.to_string(), operation.to_string(), *kind);
                is_due(&mut self.operations, key, *newest)
            })
            .map(|((s, o, k), newest)| (s.to_string(), o.to_string(), k, newest))
            .collect();
        let processes = processes
            .into_iter()
            .filter(|(id, (_, newest))| is_due(&mut self.processes, id.to_string(), *newest))
            .map(|(id, (row, newest))| {
                (
                    id.to_string(),
                    row.service.clone(),
                    row.process.to_string(),
                    newest,
                )
            })
            .collect();
        (operations, processes)
    }

    /// Forgets everything (after a failed write, whose upserts were rolled back).
    fn forget(&mut self) {
        self.operations.clear();
        self.processes.clear();
    }
}

impl TelemetryStore {
    /// Writes spans and logs in one transaction; nothing is written if any statement fails.
    pub async fn write(
        &self,
        spans: Vec<SpanRow>,
        logs: Vec<LogRow>,
        seen: &mut OperationsSeen,
    ) -> Result<(), StorageError> {
        let (operations, processes) = seen.take_new(&spans);
        let result = self.write_tx(spans, logs, operations, processes).await;
        if result.is_err() {
            seen.forget();
        }
        result
    }

    async fn write_tx(
        &self,
        spans: Vec<SpanRow>,
        logs: Vec<LogRow>,
        operations: Vec<OperationRow>,
        processes: Vec<ProcessRow>,
    ) -> Result<(), StorageError> {
        match &self.sqlite_writer {
            Some(pool) => write_tx!(pool, true, spans, logs, operations, processes),
            None => write_tx!(self.pool, false, spans, logs, operations, processes),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_with_few_distinct_sizes() {
        for total in [0, 1, 255, 256, 257, 1000, 4097] {
            let sizes = chunk_sizes(total);
            assert_eq!(sizes.iter().sum::<usize>(), total, "{total}");
            assert!(sizes.iter().all(|s| s.is_power_of_two()), "{sizes:?}");
        }
    }

    #[test]
    fn insert_sql_numbers_every_parameter() {
        assert_eq!(
            insert_sql("t", &["a", "b"], 2, false),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            insert_sql("t", &["a", "b"], 2, true),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
    }
}
