//! Retention: spans and logs older than the age limit, and the oldest beyond the count limits,
//! are deleted, a bounded chunk per statement so a prune never holds the write lock for long
//! (the writer interleaves ingest batches between chunks).

use super::{StorageError, TelemetryStore, failed};
use sqlx::AssertSqlSafe;
use std::time::Duration;

/// Most rows one prune statement deletes.
const CHUNK: i64 = 20_000;

/// How long and how many spans and logs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_spans: u64,
    pub max_logs: u64,
}

/// What one prune step deleted, and whether more is due.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub spans: u64,
    pub logs: u64,
    pub operations: u64,
    /// A chunk limit was hit: prune again soon.
    pub more: bool,
}

/// A table pruned by a time column.
struct Table {
    name: &'static str,
    time: &'static str,
}

const SPANS: Table = Table {
    name: "spans",
    time: "start_us",
};
const LOGS: Table = Table {
    name: "logs",
    time: "time_us",
};

impl TelemetryStore {
    /// Counts the rows of `spans` and `logs` (once at start; the writer keeps the counts).
    pub async fn row_counts(&self) -> Result<(u64, u64), StorageError> {
        let count = |table: &'static str| async move {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&self.pool)
                .await
                .map_err(failed(format!("counting {table}")))?;
            Ok::<u64, StorageError>(n.max(0) as u64)
        };
        Ok((count("spans").await?, count("logs").await?))
    }

    /// Deletes at most a chunk of each table past its limits. `spans`/`logs` are the current
    /// row counts; `now_us` the present.
    pub async fn prune(
        &self,
        retention: &Retention,
        now_us: i64,
        spans: u64,
        logs: u64,
    ) -> Result<Pruned, StorageError> {
        let age_cutoff = now_us.saturating_sub(retention.max_age.as_micros() as i64);
        let (spans_deleted, more_spans) = self
            .prune_table(
                &SPANS,
                age_cutoff,
                spans.saturating_sub(retention.max_spans),
            )
            .await?;
        let (logs_deleted, more_logs) = self
            .prune_table(&LOGS, age_cutoff, logs.saturating_sub(retention.max_logs))
            .await?;
        let operations = sqlx::query("DELETE FROM span_operations WHERE last_seen_us < $1")
            .bind(age_cutoff)
            .execute(&self.pool)
            .await
            .map_err(failed("pruning span_operations"))?
            .rows_affected();
        sqlx::query("DELETE FROM span_processes WHERE last_seen_us < $1")
            .bind(age_cutoff)
            .execute(&self.pool)
            .await
            .map_err(failed("pruning span_processes"))?;
        Ok(Pruned {
            spans: spans_deleted,
            logs: logs_deleted,
            operations,
            more: more_spans || more_logs,
        })
    }

    /// Deletes rows older than `age_cutoff`, and the `excess` oldest ones, a chunk at most.
    async fn prune_table(
        &self,
        table: &Table,
        age_cutoff: i64,
        excess: u64,
    ) -> Result<(u64, bool), StorageError> {
        let Table { name, time } = table;
        // The time of the last row this step may delete, oldest first.
        let nth_oldest = |n: i64| async move {
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
                "SELECT {time} FROM {name} ORDER BY {time} LIMIT 1 OFFSET $1"
            )))
            .bind(n - 1)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed(format!("finding the oldest rows of {name}")))
        };
        let by_count = if excess > 0 {
            nth_oldest((excess as i64).min(CHUNK)).await?
        } else {
            None
        };
        // Age: everything before the cutoff, but no more than a chunk per step.
        let oldest = sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(format!(
            "SELECT MIN({time}) FROM {name}"
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(failed(format!("finding the oldest row of {name}")))?;
        let (by_age, more_by_age) = match oldest {
            Some(oldest) if oldest < age_cutoff => match nth_oldest(CHUNK).await? {
                Some(t) if t < age_cutoff => (Some(t), true),
                _ => (Some(age_cutoff - 1), false),
            },
            _ => (None, false),
        };
        if by_count.is_none() && by_age.is_none() {
            return Ok((0, false));
        }
        let through = match (by_count, by_age) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(i64::MIN),
        };
        let deleted = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {name} WHERE {time} <= $1"
        )))
        .bind(through)
        .execute(&self.pool)
        .await
        .map_err(failed(format!("pruning {name}")))?
        .rows_affected();
        let more = more_by_age || excess > CHUNK as u64;
        Ok((deleted, more))
    }
}
