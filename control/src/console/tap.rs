//! The live tap: requests as the proxies' access logs report them over OTLP, read back from the
//! collector's log storage every second (records arrive in the proxies' export batches, so the
//! stream lags by about one export interval). It starts with the last few recorded.

use crate::collector::logs::LogRow;
use crate::collector::storage::{LogQuery, TelemetryStore};
use futures_util::stream::{self, BoxStream, StreamExt as _};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use trellis_console::model::{TapDirection, TapEvent, TapFilter};

/// How often storage is read.
const POLL: Duration = Duration::from_secs(1);
/// How far back each read looks: records arrive late by up to an export interval.
const OVERLAP_US: i64 = 30_000_000;
/// How many recorded requests a tap starts with.
const BACKLOG: usize = 20;
/// Most records one read takes.
const READ_LIMIT: usize = 2_000;
/// How many sent records are remembered to skip them in the next reads.
const SEEN_LIMIT: usize = 20_000;

struct Tap {
    store: Arc<TelemetryStore>,
    filter: TapFilter,
    /// Records already sent (time and body), to skip them in overlapping reads.
    seen: HashSet<(i64, u64)>,
    order: VecDeque<(i64, u64)>,
    /// Events ready to send, oldest first.
    ready: VecDeque<TapEvent>,
    started: bool,
    /// Rate limit: the second being counted, events sent in it, events dropped since the last sent.
    second: i64,
    sent_in_second: u32,
    dropped: u64,
}

/// A stream of matching requests, ending when storage fails.
pub fn stream(store: Arc<TelemetryStore>, filter: TapFilter) -> BoxStream<'static, TapEvent> {
    let tap = Tap {
        store,
        filter,
        seen: HashSet::new(),
        order: VecDeque::new(),
        ready: VecDeque::new(),
        started: false,
        second: 0,
        sent_in_second: 0,
        dropped: 0,
    };
    stream::unfold(tap, |mut tap| async move {
        loop {
            if let Some(event) = tap.ready.pop_front() {
                return Some((event, tap));
            }
            if tap.started {
                tokio::time::sleep(POLL).await;
            }
            if !tap.read().await {
                return None;
            }
        }
    })
    .boxed()
}

impl Tap {
    /// Reads new records into `ready`; false when storage failed.
    async fn read(&mut self) -> bool {
        let now_us = trellis_api::time::now_millis().saturating_mul(1000);
        let query = LogQuery {
            service: None,
            trace_id: None,
            start_us: now_us - OVERLAP_US,
            end_us: now_us + 1_000_000,
            limit: READ_LIMIT,
        };
        let rows = match self.store.logs(&query).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "console tap: reading access logs failed");
                return false;
            }
        };
        // Newest first from storage; events go out oldest first.
        let mut fresh: Vec<TapEvent> = Vec::new();
        for row in rows.iter().rev() {
            let key = (
                row.time_us,
                xxhash_rust::xxh64::xxh64(row.body.as_bytes(), 0),
            );
            if self.seen.contains(&key) {
                continue;
            }
            self.remember(key);
            if let Some(event) = event(row).filter(|_| matches(row, &self.filter)) {
                fresh.push(event);
            }
        }
        if !self.started {
            self.started = true;
            let skip = fresh.len().saturating_sub(BACKLOG);
            fresh.drain(..skip);
        }
        for event in fresh {
            self.admit(event, now_us / 1_000_000);
        }
        true
    }

    fn remember(&mut self, key: (i64, u64)) {
        self.seen.insert(key);
        self.order.push_back(key);
        if self.order.len() > SEEN_LIMIT
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
    }

    /// Applies the per-second limit: an event beyond it is dropped and counted on the next one.
    fn admit(&mut self, mut event: TapEvent, second: i64) {
        if second != self.second {
            self.second = second;
            self.sent_in_second = 0;
        }
        if self.filter.max_per_second > 0 && self.sent_in_second >= self.filter.max_per_second {
            self.dropped += 1;
            return;
        }
        self.sent_in_second += 1;
        event.dropped_before = std::mem::take(&mut self.dropped);
        self.ready.push_back(event);
    }
}

fn resource_text(row: &LogRow, key: &str) -> Option<String> {
    let resource: Value = serde_json::from_str(&row.resource).ok()?;
    resource.get(key)?.as_str().map(str::to_string)
}

/// Whether the reporting proxy is in the filter's namespace and workload.
fn matches(row: &LogRow, filter: &TapFilter) -> bool {
    let wanted = |want: &Option<String>, key: &str| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| resource_text(row, key).as_deref() == Some(w))
    };
    wanted(&filter.namespace, "k8s.namespace.name") && wanted(&filter.workload, "trellis.workload")
}

/// An access log record as a tap event; `None` for other log records (access log records are
/// recognised by their JSON body with a `direction`; their event name is not stored).
pub fn event(row: &LogRow) -> Option<TapEvent> {
    let log: Value = serde_json::from_str(&row.body).ok()?;
    let direction = match log.get("direction")?.as_str()? {
        "inbound" => TapDirection::Inbound,
        "outbound" => TapDirection::Outbound,
        _ => return None,
    };
    let text = |key: &str| {
        log.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let me = match (
        resource_text(row, "trellis.workload"),
        resource_text(row, "k8s.namespace.name"),
    ) {
        (Some(w), Some(ns)) => format!("{w}.{ns}"),
        _ => row.service.clone(),
    };
    let (source, destination) = match direction {
        // The caller's SPIFFE ID when mutual TLS verified it (it names the workload's service
        // account; the address is only the peer proxy's ephemeral port), else its address.
        TapDirection::Inbound => (
            Some(text("downstream_peer_uri_san"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| text("downstream_remote_address")),
            me,
        ),
        TapDirection::Outbound => {
            let upstream = Some(text("authority"))
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| text("upstream_host"));
            (me, upstream)
        }
    };
    Some(TapEvent {
        time: trellis_api::time::rfc3339_millis(row.time_us / 1000),
        direction,
        source,
        destination,
        method: text("method"),
        authority: text("authority"),
        path: text("path"),
        status: log
            .get("response_code")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0),
        duration_ms: log
            .get("duration")
            .and_then(Value::as_f64)
            .unwrap_or_default(),
        flags: Some(text("response_flags"))
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "-".to_string()),
        // Istio's `connection_security_policy` in the proxy's access log; a record from a proxy
        // older than the field (or a client side that could not tell) counts as not mTLS.
        mtls: text("connection_security_policy") == "mutual_tls",
        dropped_before: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(body: &str) -> LogRow {
        LogRow {
            time_us: 1_795_255_200_000_000,
            observed_us: 0,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: body.into(),
            attributes: "{}".into(),
            resource: r#"{"trellis.workload":"reviews","k8s.namespace.name":"shop"}"#.into(),
            service: "reviews.shop".into(),
            scope_name: String::new(),
            trace_id: String::new(),
            span_id: String::new(),
        }
    }

    #[test]
    fn mutual_tls_comes_from_the_access_logs_security_policy() {
        let mtls = event(&row(
            r#"{"direction":"inbound","downstream_remote_address":"10.0.0.7:5000","connection_security_policy":"mutual_tls","downstream_peer_uri_san":"spiffe://cluster.local/ns/shop/sa/productpage","response_code":200}"#,
        ))
        .unwrap();
        assert!(mtls.mtls);
        assert_eq!(
            (mtls.source.as_str(), mtls.destination.as_str()),
            (
                "spiffe://cluster.local/ns/shop/sa/productpage",
                "reviews.shop"
            )
        );

        let plain = event(&row(
            r#"{"direction":"inbound","downstream_remote_address":"10.0.0.7:5000","connection_security_policy":"none"}"#,
        ))
        .unwrap();
        assert!(!plain.mtls);
        assert_eq!(plain.source, "10.0.0.7:5000");

        // Client side that could not tell, and records from proxies older than the field.
        for body in [
            r#"{"direction":"outbound","authority":"ratings:9080","connection_security_policy":"unknown"}"#,
            r#"{"direction":"outbound","authority":"ratings:9080"}"#,
        ] {
            assert!(!event(&row(body)).unwrap().mtls, "{body}");
        }
    }
}
