//! Reading spans and logs back: what the Jaeger query API needs (services, operations, a newest-
//! first scan of one service's spans, whole traces, dependencies) and a log query.

use super::{StorageError, TelemetryStore, failed};
use crate::collector::logs::LogRow;
use crate::collector::spans::SpanRow;
use futures_util::TryStreamExt as _;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;
use sqlx::any::AnyRow;

/// One service's spans in a time window, optionally one operation and a duration range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanScan {
    pub service: String,
    pub operation: Option<String>,
    pub start_us: i64,
    pub end_us: i64,
    pub min_duration_us: Option<i64>,
    pub max_duration_us: Option<i64>,
}

/// An operation name as recorded for a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub service: String,
    pub name: String,
    /// OTLP SpanKind number.
    pub kind: i64,
}

/// Calls from one service to another (a parent span in `parent`, its child in `child`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub parent: String,
    pub child: String,
    pub calls: u64,
}

/// Logs in a time window, newest first, optionally of one service or one trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub service: Option<String>,
    pub trace_id: Option<String>,
    pub start_us: i64,
    pub end_us: i64,
    pub limit: usize,
}

/// The search [`TelemetryStore::scan_spans`] runs; parameters in order: service, start, end, then
/// operation, minimum and maximum duration when the scan has them.
fn scan_sql(scan: &SpanScan) -> String {
    let mut sql =
        format!("{SPAN_SELECT} WHERE s.service = $1 AND s.start_us >= $2 AND s.start_us <= $3");
    let mut n = 3;
    let mut add = |sql: &mut String, clause: &str| {
        n += 1;
        sql.push_str(&format!(" AND {clause} ${n}"));
    };
    if scan.operation.is_some() {
        add(&mut sql, "s.operation =");
    }
    if scan.min_duration_us.is_some() {
        add(&mut sql, "s.duration_us >=");
    }
    if scan.max_duration_us.is_some() {
        add(&mut sql, "s.duration_us <=");
    }
    sql.push_str(" ORDER BY s.start_us DESC");
    sql
}

/// Spans with their resource's tags (`s.` is the span table in WHERE clauses).
const SPAN_SELECT: &str = "SELECT s.trace_id, s.span_id, s.parent_id, s.service, s.operation, \
    s.kind, s.start_us, s.duration_us, s.status_code, s.status_message, s.flags, s.scope_name, \
    s.scope_version, s.attributes, s.process_id, COALESCE(p.tags, '[]') AS process, s.events, \
    s.links FROM spans s LEFT JOIN span_processes p ON p.process_id = s.process_id";

fn column<'r, T>(row: &'r AnyRow, name: &str, table: &str) -> Result<T, StorageError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name)
        .map_err(failed(format!("reading {table}.{name}")))
}

fn span_from_row(row: &AnyRow) -> Result<SpanRow, StorageError> {
    let get_s = |name: &str| column::<String>(row, name, "spans");
    let get_i = |name: &str| column::<i64>(row, name, "spans");
    Ok(SpanRow {
        trace_id: get_s("trace_id")?,
        span_id: get_s("span_id")?,
        parent_id: get_s("parent_id")?,
        service: get_s("service")?,
        operation: get_s("operation")?,
        kind: get_i("kind")?,
        start_us: get_i("start_us")?,
        duration_us: get_i("duration_us")?,
        status_code: get_i("status_code")?,
        status_message: get_s("status_message")?,
        flags: get_i("flags")?,
        scope_name: get_s("scope_name")?,
        scope_version: get_s("scope_version")?,
        attributes: get_s("attributes")?,
        process_id: get_s("process_id")?,
        process: get_s("process")?.into(),
        events: get_s("events")?,
        links: get_s("links")?,
    })
}

fn log_from_row(row: &AnyRow) -> Result<LogRow, StorageError> {
    let get_s = |name: &str| column::<String>(row, name, "logs");
    let get_i = |name: &str| column::<i64>(row, name, "logs");
    Ok(LogRow {
        time_us: get_i("time_us")?,
        observed_us: get_i("observed_us")?,
        severity_number: get_i("severity_number")?,
        severity_text: get_s("severity_text")?,
        body: get_s("body")?,
        attributes: get_s("attributes")?,
        resource: get_s("resource")?,
        service: get_s("service")?,
        scope_name: get_s("scope_name")?,
        trace_id: get_s("trace_id")?,
        span_id: get_s("span_id")?,
    })
}

/// `$1, $2, ...` from `first`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl TelemetryStore {
    /// Every service with a recorded operation, sorted.
    pub async fn services(&self) -> Result<Vec<String>, StorageError> {
        let mut services: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT service FROM span_operations")
                .fetch_all(&self.pool)
                .await
                .map_err(failed("listing services"))?;
        services.sort();
        Ok(services)
    }

    /// The operations of `service` (all services when `None`), sorted by name then kind.
    pub async fn operations(&self, service: Option<&str>) -> Result<Vec<Operation>, StorageError> {
        let query = match service {
            Some(s) => sqlx::query(
                "SELECT service, operation, kind FROM span_operations WHERE service = $1",
            )
            .bind(s.to_string()),
            None => sqlx::query("SELECT service, operation, kind FROM span_operations"),
        };
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(failed("listing operations"))?;
        let mut out = rows
            .iter()
            .map(|row| {
                Ok(Operation {
                    service: column(row, "service", "span_operations")?,
                    name: column(row, "operation", "span_operations")?,
                    kind: column(row, "kind", "span_operations")?,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        out.sort_by(|a, b| (&a.service, &a.name, a.kind).cmp(&(&b.service, &b.name, b.kind)));
        Ok(out)
    }

    /// Streams the spans `scan` selects, newest first, to `visit` until it returns false or
    /// `max_rows` were read (a search never reads a whole table).
    pub async fn scan_spans(
        &self,
        scan: &SpanScan,
        max_rows: usize,
        mut visit: impl FnMut(SpanRow) -> bool,
    ) -> Result<(), StorageError> {
        let sql = scan_sql(scan);
        let mut query = sqlx::query(AssertSqlSafe(sql.clone()))
            .bind(scan.service.clone())
            .bind(scan.start_us)
            .bind(scan.end_us);
        if let Some(operation) = &scan.operation {
            query = query.bind(operation.clone());
        }
        if let Some(d) = scan.min_duration_us {
            query = query.bind(d);
        }
        if let Some(d) = scan.max_duration_us {
            query = query.bind(d);
        }
        let mut rows = query.fetch(&self.pool);
        let mut read = 0;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(failed(format!("searching spans of {:?}", scan.service)))?
        {
            read += 1;
            if !visit(span_from_row(&row)?) || read >= max_rows {
                break;
            }
        }
        Ok(())
    }

    /// Every stored span of the given traces (32-hex ids), in no particular order.
    pub async fn spans_of(&self, trace_ids: &[String]) -> Result<Vec<SpanRow>, StorageError> {
        let mut out = Vec::new();
        for ids in trace_ids.chunks(500) {
            let sql = format!(
                "{SPAN_SELECT} WHERE s.trace_id IN ({})",
                placeholders(1, ids.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql.clone()));
            for id in ids {
                query = query.bind(id.clone());
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(failed("reading traces"))?;
            for row in &rows {
                out.push(span_from_row(row)?);
            }
        }
        Ok(out)
    }

    /// Calls between services in a window: each span whose parent span belongs to another
    /// service counts one call from the parent's service to its own.
    pub async fn dependencies(
        &self,
        start_us: i64,
        end_us: i64,
    ) -> Result<Vec<Dependency>, StorageError> {
        let rows = sqlx::query(
            "SELECT p.service AS parent, c.service AS child, COUNT(*) AS calls \
             FROM spans c JOIN spans p ON p.trace_id = c.trace_id AND p.span_id = c.parent_id \
             WHERE c.start_us >= $1 AND c.start_us <= $2 AND c.parent_id <> '' \
             AND p.service <> c.service \
             GROUP BY p.service, c.service",
        )
        .bind(start_us)
        .bind(end_us)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("computing dependencies"))?;
        let mut out = rows
            .iter()
            .map(|row| {
                Ok(Dependency {
                    parent: column(row, "parent", "spans")?,
                    child: column(row, "child", "spans")?,
                    calls: column::<i64>(row, "calls", "spans")?.max(0) as u64,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        out.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        Ok(out)
    }

    /// Log records, newest first.
    pub async fn logs(&self, q: &LogQuery) -> Result<Vec<LogRow>, StorageError> {
        let mut sql = String::from(
            "SELECT time_us, observed_us, severity_number, severity_text, body, attributes, \
             resource, service, scope_name, trace_id, span_id FROM logs \
             WHERE time_us >= $1 AND time_us <= $2",
        );
        let mut n = 2;
        if q.service.is_some() {
            n += 1;
            sql.push_str(&format!(" AND service = ${n}"));
        }
        if q.trace_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND trace_id = ${n}"));
        }
        n += 1;
        sql.push_str(&format!(" ORDER BY time_us DESC LIMIT ${n}"));
        let mut query = sqlx::query(AssertSqlSafe(sql.clone()))
            .bind(q.start_us)
            .bind(q.end_us);
        if let Some(s) = &q.service {
            query = query.bind(s.clone());
        }
        if let Some(t) = &q.trace_id {
            query = query.bind(t.clone());
        }
        let rows = query
            .bind(i64::try_from(q.limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(failed("reading logs"))?;
        rows.iter().map(log_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for `sql` (with `binds` text or integer parameters), one line per step.
    async fn plan(store: &TelemetryStore, sql: &str, binds: &[&str]) -> Vec<String> {
        let mut query = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for b in binds {
            query = match b.parse::<i64>() {
                Ok(n) => query.bind(n),
                Err(_) => query.bind(b.to_string()),
            };
        }
        query
            .fetch_all(store.pool())
            .await
            .expect("query plan")
            .iter()
            .map(|row| row.try_get::<String, _>("detail").expect("detail"))
            .collect()
    }

    /// Every search the Jaeger API makes is answered from an index, never a scan of the spans.
    #[tokio::test]
    async fn span_searches_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/telemetry.db", dir.path().display());
        let store = TelemetryStore::open(&url).await.unwrap();
        let base = SpanScan {
            service: "reviews.default".into(),
            start_us: 1,
            end_us: 2,
            ..SpanScan::default()
        };
        let searches = [
            (base.clone(), vec!["reviews.default", "1", "2"]),
            (
                SpanScan {
                    operation: Some("GET /".into()),
                    ..base.clone()
                },
                vec!["reviews.default", "1", "2", "GET /"],
            ),
            (
                SpanScan {
                    operation: Some("GET /".into()),
                    min_duration_us: Some(10),
                    max_duration_us: Some(20),
                    ..base.clone()
                },
                vec!["reviews.default", "1", "2", "GET /", "10", "20"],
            ),
        ];
        for (scan, binds) in searches {
            let steps = plan(&store, &scan_sql(&scan), &binds).await;
            assert!(
                steps
                    .iter()
                    .any(|s| s.contains("USING INDEX spans_by_service_search")),
                "{scan:?}: {steps:?}"
            );
            assert!(
                !steps.iter().any(|s| s.starts_with("SCAN")),
                "{scan:?}: {steps:?}"
            );
        }
        let by_trace = format!("{SPAN_SELECT} WHERE s.trace_id IN ($1)");
        let steps = plan(&store, &by_trace, &["4bf92f3577b34da6a3ce929d0e0e4736"]).await;
        assert!(
            steps.iter().any(|s| s.contains("spans_by_trace")),
            "{steps:?}"
        );
        store.close().await;
    }
}
