//! Graph history: closed minutes of every edge stored in the telemetry database (SQLite or
//! PostgreSQL through sqlx's `AnyPool`; schema in
//! `control/migrations-telemetry/20261121000200_graph_history.sql`), pruned by age, so a window
//! that memory no longer holds (`queryTime` more than an hour back, or a longer `duration`) is
//! answered from storage, in whole minutes.
//!
//! A background task ([`start`]) stores each minute once it has closed; a minute that fails to
//! store is retried on the next round (a bounded number are kept). The minute in progress when
//! the control plane stops is not stored.

use super::model::{Code, EdgeKey, LATENCY_BUCKETS, Latency, Stats};
use super::view::{self, GraphJson, WindowSource};
use super::window::{MinuteBatch, Span, note_fronting};
use super::{GraphQuery, LiveGraph};
use sqlx::{AnyPool, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often closed minutes are stored.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How often old minutes are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// A history failure, with what was being done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("graph history: {0}")]
pub struct HistoryError(pub String);

fn failed(context: &'static str) -> impl FnOnce(sqlx::Error) -> HistoryError {
    move |e| HistoryError(format!("{context}: {e}"))
}

/// The stored id of an edge: a hash of its JSON.
fn edge_id(json: &str) -> i64 {
    (xxhash_rust::xxh64::xxh64(json.as_bytes(), 0x67_72_61_70_68) >> 1) as i64
}

/// Writes closed minutes and prunes old ones.
pub struct HistoryWriter {
    pool: AnyPool,
    /// Edge ids known to be in `graph_edges`.
    stored_edges: HashSet<i64>,
}

impl HistoryWriter {
    pub fn new(pool: AnyPool) -> HistoryWriter {
        HistoryWriter {
            pool,
            stored_edges: HashSet::new(),
        }
    }

    /// Stores the minutes that closed since the last call; returns how many were stored. On
    /// failure the minutes go back to the graph for the next call.
    pub async fn flush(&mut self, graph: &LiveGraph) -> Result<usize, HistoryError> {
        let batches = graph.take_closed_minutes();
        if batches.is_empty() {
            return Ok(0);
        }
        match self.write(&batches).await {
            Ok(()) => Ok(batches.len()),
            Err(e) => {
                graph.give_back(batches);
                Err(e)
            }
        }
    }

    async fn write(&mut self, batches: &[MinuteBatch]) -> Result<(), HistoryError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(failed("starting a write"))?;
        let mut new_edges = Vec::new();
        for batch in batches {
            for (key, stats) in &batch.edges {
                let json = serde_json::to_string(&**key)
                    .map_err(|e| HistoryError(format!("encoding an edge: {e}")))?;
                let id = edge_id(&json);
                if !self.stored_edges.contains(&id) {
                    sqlx::query(
                        "INSERT INTO graph_edges (id, edge) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(&json)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed("storing an edge"))?;
                    new_edges.push(id);
                }
                let codes: BTreeMap<String, f64> =
                    stats.codes.iter().map(|(c, n)| (c.label(), *n)).collect();
                let latency = match &stats.latency {
                    Some(l) => serde_json::to_string(&l[..]).unwrap_or_default(),
                    None => String::new(),
                };
                sqlx::query(
                    "INSERT INTO graph_minutes (minute_ms, edge_id, requests, errors, mtls, \
                     request_bytes, response_bytes, codes, latency) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (minute_ms, edge_id) DO NOTHING",
                )
                .bind(batch.minute_ms)
                .bind(id)
                .bind(stats.requests)
                .bind(stats.errors)
                .bind(stats.mtls)
                .bind(stats.request_bytes)
                .bind(stats.response_bytes)
                .bind(serde_json::to_string(&codes).unwrap_or_default())
                .bind(latency)
                .execute(&mut *tx)
                .await
                .map_err(failed("storing a minute"))?;
            }
        }
        tx.commit().await.map_err(failed("committing minutes"))?;
        self.stored_edges.extend(new_edges);
        Ok(())
    }

    /// Deletes minutes that started before `before_ms`; returns how many rows went.
    pub async fn prune(&mut self, before_ms: i64) -> Result<u64, HistoryError> {
        let done = sqlx::query("DELETE FROM graph_minutes WHERE minute_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(failed("pruning old minutes"))?;
        Ok(done.rows_affected())
    }
}

/// Runs the writer: stores closed minutes every [`FLUSH_EVERY`] and deletes minutes older than
/// `retention` every [`PRUNE_EVERY`]. Abort the handle to stop it.
pub fn start(pool: AnyPool, graph: Arc<LiveGraph>, retention: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut writer = HistoryWriter::new(pool);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<i64> = None;
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        loop {
            tick.tick().await;
            if let Err(e) = writer.flush(&graph).await {
                tracing::warn!(error = %e, "graph history not stored (will retry)");
            }
            let now = graph.clock().now_ms();
            if last_prune.is_none_or(|t| now - t >= PRUNE_EVERY.as_millis() as i64) {
                last_prune = Some(now);
                match writer.prune(now.saturating_sub(retention_ms)).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "graph history pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "graph history not pruned"),
                }
            }
        }
    })
}

/// Per-edge sums of the stored minutes starting in `span`.
pub async fn load(pool: &AnyPool, span: Span) -> Result<Vec<(Arc<EdgeKey>, Stats)>, HistoryError> {
    let rows = sqlx::query(
        "SELECT m.edge_id, e.edge, m.requests, m.errors, m.mtls, m.request_bytes, \
         m.response_bytes, m.codes, m.latency \
         FROM graph_minutes m JOIN graph_edges e ON e.id = m.edge_id \
         WHERE m.minute_ms >= $1 AND m.minute_ms < $2",
    )
    .bind(span.start)
    .bind(span.end)
    .fetch_all(pool)
    .await
    .map_err(failed("reading stored minutes"))?;
    let mut edges: HashMap<i64, (Arc<EdgeKey>, Stats)> = HashMap::new();
    let mut unreadable = 0usize;
    for row in rows {
        match decode(&row) {
            Ok((id, key, stats)) => edges
                .entry(id)
                .or_insert_with(|| (Arc::new(key), Stats::default()))
                .1
                .merge(&stats),
            Err(e) => {
                unreadable += 1;
                if unreadable == 1 {
                    tracing::warn!(error = %e, "graph history: skipping an unreadable row");
                }
            }
        }
    }
    Ok(edges.into_values().collect())
}

fn decode(row: &sqlx::any::AnyRow) -> Result<(i64, EdgeKey, Stats), String> {
    let get_f64 = |name: &str| row.try_get::<f64, _>(name).map_err(|e| e.to_string());
    let id: i64 = row.try_get("edge_id").map_err(|e| e.to_string())?;
    let edge: String = row.try_get("edge").map_err(|e| e.to_string())?;
    let key: EdgeKey = serde_json::from_str(&edge).map_err(|e| format!("edge {id}: {e}"))?;
    let codes: String = row.try_get("codes").map_err(|e| e.to_string())?;
    let codes: BTreeMap<String, f64> =
        serde_json::from_str(&codes).map_err(|e| format!("codes of edge {id}: {e}"))?;
    let latency: String = row.try_get("latency").map_err(|e| e.to_string())?;
    let latency = if latency.is_empty() {
        None
    } else {
        let counts: Vec<u64> =
            serde_json::from_str(&latency).map_err(|e| format!("latency of edge {id}: {e}"))?;
        let buckets: Latency = counts
            .try_into()
            .map_err(|_| format!("latency of edge {id}: not {LATENCY_BUCKETS} buckets"))?;
        Some(Box::new(buckets))
    };
    let mut stats = Stats {
        requests: get_f64("requests")?,
        errors: get_f64("errors")?,
        mtls: get_f64("mtls")?,
        request_bytes: get_f64("request_bytes")?,
        response_bytes: get_f64("response_bytes")?,
        codes: Vec::new(),
        latency,
    };
    for (code, n) in codes {
        stats.add_code(Code::parse(&code), n);
    }
    Ok((id, key, stats))
}

/// Answers a query from stored minutes (for windows memory no longer holds).
pub async fn query(
    pool: &AnyPool,
    graph: &LiveGraph,
    query: &GraphQuery,
) -> Result<GraphJson, HistoryError> {
    let span = graph.plan(query).span();
    let edges = load(pool, span).await?;
    let mut fronting = graph.fronting();
    for (key, _) in &edges {
        note_fronting(&mut fronting, key);
    }
    Ok(view::build(
        &edges,
        &fronting,
        &query.view,
        span,
        WindowSource::History,
    ))
}
