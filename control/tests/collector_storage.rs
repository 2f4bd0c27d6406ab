//! Telemetry storage on SQLite and on PostgreSQL (a throwaway cluster; skipped without
//! PostgreSQL unless `TRELLIS_REQUIRE_POSTGRES=1`): the same life cycle on both — batched writes
//! of spans and logs from OTLP requests, the queries behind the Jaeger API, retention by count
//! and age, reopening — and on PostgreSQL the config store and telemetry sharing one database.

#[path = "common/postgres.rs"]
mod postgres;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value as Any};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Status;
use std::time::Duration;
use testkit::otlp::build::{kv, span, traces};
use trellis_control::collector::storage::{
    Dependency, LogQuery, OperationsSeen, Retention, SpanScan, TelemetryStore,
};
use trellis_control::collector::{logs, spans};
use trellis_control::store::Store;

const MINUTE_US: i64 = 60_000_000;
/// A fixed "now" for the test data: 2026-01-01T00:00:00Z.
const NOW_US: i64 = 1_767_225_600_000_000;

async fn write(
    store: &TelemetryStore,
    seen: &mut OperationsSeen,
    request: ExportTraceServiceRequest,
) {
    let rows = spans::rows(&request);
    assert_eq!(rows.rejected, 0, "{:?}", rows.first_error);
    store.write(rows.rows, Vec::new(), seen).await.unwrap();
}

async fn trace_ids(store: &TelemetryStore, scan: &SpanScan) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .scan_spans(scan, 10_000, |s| {
            if !ids.contains(&s.trace_id) {
                ids.push(s.trace_id);
            }
            true
        })
        .await
        .unwrap();
    ids
}

fn id(t: u8) -> String {
    format!("{t:02x}").repeat(16)
}

/// The whole life cycle against `url`.
async fn life_cycle(url: &str) {
    let store = TelemetryStore::open(url)
        .await
        .expect("open telemetry storage");
    let mut seen = OperationsSeen::default();

    // frontend -> cart (two services, one trace), a slow error span, odd input.
    let mut slow = span(2, 1, None, "GET /slow", NOW_US - 2 * MINUTE_US, 1_500_000);
    slow.status = Some(Status {
        code: 2,
        message: "timeout".into(),
    });
    slow.attributes = vec![
        kv("http.response.status_code", Any::IntValue(504)),
        kv("huge", Any::StringValue("x".repeat(1 << 20))),
        kv("nul", Any::StringValue("a\0b".into())),
    ];
    write(
        &store,
        &mut seen,
        traces(
            "frontend",
            vec![
                span(1, 1, None, "GET /", NOW_US - MINUTE_US, 3000),
                slow,
                span(3, 1, None, "bad\0name", NOW_US - 3 * MINUTE_US, 10),
            ],
        ),
    )
    .await;
    write(
        &store,
        &mut seen,
        traces(
            "cart",
            vec![span(
                1,
                2,
                Some(1),
                "GetCart",
                NOW_US - MINUTE_US + 100,
                1000,
            )],
        ),
    )
    .await;

    assert_eq!(store.services().await.unwrap(), ["cart", "frontend"]);
    let ops: Vec<String> = store
        .operations(Some("frontend"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(ops, ["GET /", "GET /slow", "bad\u{fffd}name"]);

    // Newest first; windows and durations select.
    let all = SpanScan {
        service: "frontend".into(),
        start_us: NOW_US - 10 * MINUTE_US,
        end_us: NOW_US,
        ..SpanScan::default()
    };
    assert_eq!(trace_ids(&store, &all).await, [id(1), id(2), id(3)]);
    let slow_only = SpanScan {
        min_duration_us: Some(1_000_000),
        ..all.clone()
    };
    assert_eq!(trace_ids(&store, &slow_only).await, [id(2)]);
    let fast_only = SpanScan {
        max_duration_us: Some(100),
        ..all.clone()
    };
    assert_eq!(trace_ids(&store, &fast_only).await, [id(3)]);
    let one_op = SpanScan {
        operation: Some("GET /".into()),
        ..all.clone()
    };
    assert_eq!(trace_ids(&store, &one_op).await, [id(1)]);
    let early = SpanScan {
        end_us: NOW_US - 150 * 1_000_000,
        ..all.clone()
    };
    assert_eq!(trace_ids(&store, &early).await, [id(3)]);

    // A whole trace, and the bounded huge attribute.
    let mut trace = store.spans_of(&[id(1)]).await.unwrap();
    trace.sort_by_key(|s| s.start_us);
    assert_eq!(trace.len(), 2);
    assert_eq!(trace[1].parent_id, trace[0].span_id);
    assert_eq!(
        (trace[0].service.as_str(), trace[1].service.as_str()),
        ("frontend", "cart")
    );
    let slow = &store.spans_of(&[id(2)]).await.unwrap()[0];
    assert_eq!(
        (slow.status_code, slow.status_message.as_str()),
        (2, "timeout")
    );
    let tags: serde_json::Value = serde_json::from_str(&slow.attributes).unwrap();
    assert_eq!(tags["http.response.status_code"], 504);
    assert!(tags["huge"].as_str().unwrap().len() < 10_000);
    assert_eq!(tags["nul"], "a\0b");

    assert_eq!(
        store
            .dependencies(NOW_US - 10 * MINUTE_US, NOW_US)
            .await
            .unwrap(),
        [Dependency {
            parent: "frontend".into(),
            child: "cart".into(),
            calls: 1
        }]
    );

    // Logs.
    let log_request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Any::StringValue("cart".into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..3)
                    .map(|i| LogRecord {
                        time_unix_nano: ((NOW_US - (3 - i) * MINUTE_US) * 1000) as u64,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(Any::StringValue(format!("line {i}"))),
                        }),
                        trace_id: if i == 2 { vec![1; 16] } else { Vec::new() },
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let log_rows = logs::rows(&log_request);
    store
        .write(Vec::new(), log_rows.rows, &mut seen)
        .await
        .unwrap();
    let window = LogQuery {
        start_us: NOW_US - 10 * MINUTE_US,
        end_us: NOW_US,
        limit: 10,
        ..LogQuery::default()
    };
    let bodies: Vec<String> = store
        .logs(&window)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.body)
        .collect();
    assert_eq!(bodies, ["line 2", "line 1", "line 0"]);
    let in_trace = store
        .logs(&LogQuery {
            trace_id: Some(id(1)),
            ..window.clone()
        })
        .await
        .unwrap();
    assert_eq!(in_trace.len(), 1);
    assert_eq!(in_trace[0].service, "cart");

    // Reopening keeps everything (the migrations run again as no-ops).
    store.close().await;
    let store = TelemetryStore::open(url).await.expect("reopen");
    assert_eq!(store.row_counts().await.unwrap(), (4, 3));

    // Retention: by count (oldest first), then by age.
    let retention = Retention {
        max_age: Duration::from_secs(24 * 3600),
        max_spans: 2,
        max_logs: 10,
    };
    let pruned = store.prune(&retention, NOW_US, 4, 3).await.unwrap();
    assert_eq!((pruned.spans, pruned.logs), (2, 0));
    assert_eq!(trace_ids(&store, &all).await, [id(1)]);
    let retention = Retention {
        max_age: Duration::from_secs(90),
        max_spans: 100,
        max_logs: 100,
    };
    let pruned = store.prune(&retention, NOW_US, 2, 3).await.unwrap();
    assert_eq!((pruned.spans, pruned.logs), (0, 2));
    assert_eq!(store.row_counts().await.unwrap(), (2, 1));
    // Operations of pruned spans go when they are older than the age limit.
    let ops: Vec<String> = store
        .operations(Some("frontend"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(ops, ["GET /"]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_storage_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/telemetry.db", dir.path().display());
    life_cycle(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_storage_on_postgres_beside_the_config_store() {
    let Some(cluster) = postgres::start_cluster() else {
        return;
    };
    let url = cluster.url();
    // The config store first, then telemetry in the same database, then both again: each
    // migration set must accept the other's rows in the shared migrations table.
    let config = Store::open(&url).await.expect("config store on PostgreSQL");
    config.close().await;
    life_cycle(&url).await;
    let config = Store::open(&url)
        .await
        .expect("config store reopens beside telemetry");
    assert_eq!(config.revision(), 0);
    config.close().await;
    drop(cluster);
}
