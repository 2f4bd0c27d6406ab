//! The collector end to end, through the real `trellis control` binary: OpenTelemetry clients
//! export spans over OTLP gRPC and HTTP (protobuf, JSON, gzip) and read them back from the
//! Jaeger query API; malformed payloads get OTLP's error answers and store nothing; `/metrics`
//! passes promtool; retention prunes by age and count; spans survive a restart; forwarding
//! delivers to a second OTLP receiver.

use bytes::Bytes;
mod common;

use common::Control;
use common::collector::{python_otel_available, run_python};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use std::io::Write as _;
use std::time::Duration;
use testkit::otlp::build::{span, traces as request};
use trellis_control::collector::receiver::http::RpcStatus;

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

async fn export_grpc(url: &str, request: ExportTraceServiceRequest) {
    let mut client = tokio::time::timeout(
        Duration::from_secs(10),
        TraceServiceClient::connect(url.to_string()),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    tokio::time::timeout(Duration::from_secs(10), client.export(request))
        .await
        .expect("export in time")
        .expect("export accepted");
}

/// The span called `operation` of `service` in a Jaeger trace.
fn find<'a>(trace: &'a Value, service: &str, operation: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["operationName"] == operation
                && trace["processes"][s["processID"].as_str().unwrap()]["serviceName"] == service
        })
        .unwrap_or_else(|| panic!("no {service} {operation} in {trace:#}"))
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"].as_array()?.iter().find(|t| t["key"] == key)
}

fn trace_ids(data: &Value) -> Vec<String> {
    let mut ids: Vec<String> = data
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_spans_come_back_from_the_jaeger_api() {
    if !python_otel_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start_with(dir.path(), &[]).await;
    let ids = run_python(
        "export_spans.py",
        &[
            &control.grpc_url(),
            &format!("http://{}", control.otlp_http),
        ],
    );
    let trace_id = ids["trace"].as_str().unwrap();
    let health_id = ids["health_trace"].as_str().unwrap();
    let start_us = ids["start_us"].as_i64().unwrap();

    let trace = control.wait_for_trace(trace_id, 3).await;
    assert_eq!(trace["traceID"], trace_id);
    let root = find(&trace, "checkout", "GET /checkout");
    let client = find(&trace, "checkout", "POST /pay");
    let server = find(&trace, "payments", "POST /pay");

    // Parent links, times and durations, exactly as exported.
    assert_eq!(root["spanID"], ids["root"]);
    assert_eq!(root["references"], json!([]));
    assert_eq!(
        client["references"],
        json!([{"refType": "CHILD_OF", "traceID": trace_id, "spanID": ids["root"]}])
    );
    assert_eq!(
        server["references"],
        json!([{"refType": "CHILD_OF", "traceID": trace_id, "spanID": ids["client"]}])
    );
    assert_eq!(root["startTime"], start_us);
    assert_eq!(
        (
            root["duration"].as_i64(),
            client["duration"].as_i64(),
            server["duration"].as_i64()
        ),
        (Some(12_000), Some(7_000), Some(5_000))
    );

    // Typed tags, status and kind mapped as Jaeger does, the event as a log.
    assert_eq!(
        tag(root, "http.response.status_code").unwrap()["type"],
        "int64"
    );
    assert_eq!(
        tag(root, "http.response.status_code").unwrap()["value"],
        500
    );
    assert_eq!(tag(root, "http.request.method").unwrap()["value"], "GET");
    assert_eq!(tag(root, "retry").unwrap()["value"], true);
    assert_eq!(tag(root, "ratio").unwrap()["type"], "float64");
    assert_eq!(tag(root, "error").unwrap()["value"], true);
    assert_eq!(tag(root, "otel.status_code").unwrap()["value"], "ERROR");
    assert_eq!(
        tag(root, "otel.status_description").unwrap()["value"],
        "payment failed"
    );
    assert_eq!(tag(root, "span.kind").unwrap()["value"], "server");
    assert_eq!(tag(client, "span.kind").unwrap()["value"], "client");
    assert_eq!(tag(root, "otel.scope.name").unwrap()["value"], "shop");
    assert!(tag(server, "error").is_none());
    assert_eq!(
        root["logs"],
        json!([{"timestamp": start_us + 1000, "fields": [
            {"key": "event", "type": "string", "value": "cache miss"},
            {"key": "key", "type": "string", "value": "cart-42"},
        ]}])
    );
    let process = &trace["processes"][root["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "checkout");
    let process_tags = process["tags"].as_array().unwrap();
    assert!(
        process_tags
            .contains(&json!({"key": "service.version", "type": "string", "value": "1.2.3"}))
    );
    assert!(
        process_tags.contains(
            &json!({"key": "telemetry.sdk.language", "type": "string", "value": "python"})
        )
    );

    // Search: by service, operation, tags, durations, and errors for bad parameters.
    let both = control
        .jaeger_data("/api/traces?service=checkout&lookback=1h")
        .await;
    let mut expected = vec![trace_id.to_string(), health_id.to_string()];
    expected.sort();
    assert_eq!(trace_ids(&both), expected);
    let search = |q: &str| format!("/api/traces?service=checkout&lookback=1h&{q}");
    let tagged = control
        .jaeger_data(&search(
            "tags=%7B%22http.response.status_code%22%3A%22500%22%7D",
        ))
        .await;
    assert_eq!(trace_ids(&tagged), [trace_id]);
    let errors = control
        .jaeger_data(&search("tags=%7B%22error%22%3A%22true%22%7D"))
        .await;
    assert_eq!(trace_ids(&errors), [trace_id]);
    let slow = control.jaeger_data(&search("minDuration=10ms")).await;
    assert_eq!(trace_ids(&slow), [trace_id]);
    let fast = control.jaeger_data(&search("maxDuration=1ms")).await;
    assert_eq!(trace_ids(&fast), [health_id]);
    let by_operation = control
        .jaeger_data(&search("operation=GET%20%2Fhealth"))
        .await;
    assert_eq!(trace_ids(&by_operation), [health_id]);
    let limited = control.jaeger_data(&search("limit=1")).await;
    assert_eq!(limited.as_array().unwrap().len(), 1);
    let in_window = control
        .jaeger_data(&format!(
            "/api/traces?service=payments&start={}&end={}",
            start_us,
            start_us + 10_000
        ))
        .await;
    assert_eq!(trace_ids(&in_window), [trace_id]);
    let before = control
        .jaeger_data(&format!(
            "/api/traces?service=payments&start={}&end={}",
            start_us - 10_000,
            start_us
        ))
        .await;
    assert_eq!(before, json!([]));

    // Services, operations, dependencies.
    assert_eq!(
        control.jaeger_data("/api/services").await,
        json!(["checkout", "payments"])
    );
    assert_eq!(
        control
            .jaeger_data("/api/services/checkout/operations")
            .await,
        json!(["GET /checkout", "GET /health", "POST /pay"])
    );
    assert_eq!(
        control
            .jaeger_data("/api/operations?service=checkout&spanKind=client")
            .await,
        json!([{"name": "POST /pay", "spanKind": "client"}])
    );
    let now_ms = now_us() / 1000;
    assert_eq!(
        control
            .jaeger_data(&format!(
                "/api/dependencies?endTs={now_ms}&lookback=3600000"
            ))
            .await,
        json!([{"parent": "checkout", "child": "payments", "callCount": 1}])
    );

    // Jaeger's error shape for bad requests.
    for (path, words) in [
        ("/api/traces?lookback=1h", "'service' is required"),
        (
            "/api/traces?service=checkout&minDuration=fast",
            "minDuration",
        ),
        ("/api/traces?service=checkout&tags=%7Bnope", "'tags'"),
        ("/api/traces/not-hex", "malformed trace ID"),
        (
            "/api/operations?service=checkout&spanKind=sideways",
            "span kind",
        ),
        ("/api/dependencies?endTs=yesterday", "endTs"),
    ] {
        let (status, body) = control.jaeger(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["data"], Value::Null);
        assert_eq!(body["errors"][0]["code"], 400, "{path}: {body}");
        let msg = body["errors"][0]["msg"].as_str().unwrap();
        assert!(msg.contains(words), "{path}: {msg}");
    }
    let (status, body) = control
        .jaeger(&format!("/api/traces/{}", "ab".repeat(16)))
        .await;
    assert_eq!(
        (status, &body["errors"][0]["msg"]),
        (404, &json!("trace not found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_and_gzip_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start_with(dir.path(), &[]).await;
    let start = now_us() - 1_000_000;
    let start_ns = (start * 1000).to_string();
    let end_ns = ((start + 2500) * 1000).to_string();

    // OTLP/JSON as the spec writes it: hex ids, integer enums, 64-bit integers as strings. The
    // second span's trace id is too short: rejected alone (partial success).
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
             "name": "json op", "kind": 3, "startTimeUnixNano": start_ns, "endTimeUnixNano": end_ns,
             "attributes": [{"key": "count", "value": {"intValue": "42"}},
                            {"key": "ok", "value": {"boolValue": true}}],
             "status": {"code": 1}},
            {"traceId": "5b8e", "spanId": "eee19b7ec3c1b175", "name": "bad",
             "startTimeUnixNano": start_ns, "endTimeUnixNano": end_ns}
        ]}]
    }]});
    let posted = control
        .post(
            "/v1/traces",
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(posted.status, 200, "{:?}", posted.body);
    assert_eq!(posted.content_type, "application/json");
    let answer: Value = serde_json::from_slice(&posted.body).unwrap();
    let partial = &answer["partialSuccess"];
    assert_eq!(
        partial["rejectedSpans"].to_string().trim_matches('"'),
        "1",
        "{answer}"
    );
    let message = partial["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("trace_id must be 16 bytes, got 2 bytes"),
        "{message}"
    );

    let trace = control
        .wait_for_trace("5b8efff798038103d269b633813fc60c", 1)
        .await;
    let span = &trace["spans"][0];
    assert_eq!(span["operationName"], "json op");
    assert_eq!(span["duration"], 2500);
    assert_eq!(
        tag(span, "count").unwrap(),
        &json!({"key": "count", "type": "int64", "value": 42})
    );
    assert_eq!(tag(span, "otel.status_code").unwrap()["value"], "OK");
    assert_eq!(tag(span, "span.kind").unwrap()["value"], "client");

    // gzip-compressed protobuf.
    let proto = request("gzip-svc", vec![span_at(7, start)]).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&proto).unwrap();
    let posted = control
        .post(
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(posted.status, 200);
    assert_eq!(posted.content_type, "application/x-protobuf");
    control.wait_for_trace(&"07".repeat(16), 1).await;

    // Logs and metrics over JSON are accepted too.
    let logs = json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": start_ns, "severityNumber": 9,
            "body": {"stringValue": "hello"}, "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174"}]}]}]});
    let posted = control
        .post(
            "/v1/logs",
            &[("content-type", "application/json")],
            logs.to_string().into_bytes(),
        )
        .await;
    assert_eq!(posted.status, 200, "{:?}", posted.body);
    let metrics = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "up",
        "gauge": {"dataPoints": [{"asInt": "1", "timeUnixNano": start_ns}]}}]}]}]});
    let posted = control
        .post(
            "/v1/metrics",
            &[("content-type", "application/json")],
            metrics.to_string().into_bytes(),
        )
        .await;
    assert_eq!(posted.status, 200, "{:?}", posted.body);
    assert_eq!(
        control
            .metric("trellis_collector_accepted_items_total{signal=\"metrics\"}")
            .await,
        1.0
    );
    // The graph API is served beside the REST API on the console address.
    let graph = testkit::client::HttpClient::http1(control.console)
        .get("console", "/api/v1/graph", &[])
        .await
        .expect("GET /api/v1/graph");
    assert_eq!(graph.status, 200, "{}", graph.body);
    let stored_logs = wait_metric(
        &control,
        "trellis_collector_stored_rows_total{table=\"logs\"}",
        1.0,
    )
    .await;
    assert_eq!(stored_logs, 1.0);
}

fn span_at(trace: u8, start_us: i64) -> Span {
    span(trace, trace, None, "op", start_us, 1000)
}

/// Waits until a series reaches `at_least`; returns its value.
async fn wait_metric(control: &Control, series: &str, at_least: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let value = control.metric(series).await;
        if value >= at_least || std::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_get_otlp_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start_with(dir.path(), &[]).await;
    // Field 1 (resource_spans), length-delimited, claiming more bytes than follow.
    let garbage = vec![0x0a, 0xff, 0x01, 0x02];

    // gRPC: INVALID_ARGUMENT naming the message.
    let channel = tonic::transport::Endpoint::from_shared(control.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(Bytes::from(garbage.clone())),
            http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            ),
            testkit::grpc::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("malformed ExportTraceServiceRequest"),
        "{status:?}"
    );

    // HTTP protobuf: 400 with a protobuf google.rpc.Status.
    let posted = control
        .post(
            "/v1/traces",
            &[("content-type", "application/x-protobuf")],
            garbage.clone(),
        )
        .await;
    assert_eq!(
        (posted.status, posted.content_type.as_str()),
        (400, "application/x-protobuf")
    );
    let status = RpcStatus::decode(posted.body).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status
            .message
            .contains("malformed protobuf ExportTraceServiceRequest"),
        "{status:?}"
    );

    // HTTP JSON: 400 with a JSON google.rpc.Status naming the problem.
    let posted = control
        .post(
            "/v1/traces",
            &[("content-type", "application/json")],
            br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}"#.to_vec(),
        )
        .await;
    assert_eq!(posted.status, 400);
    let status: Value = serde_json::from_slice(&posted.body).unwrap();
    assert_eq!(status["code"], 3);
    assert!(
        status["message"].as_str().unwrap().contains("OTLP/JSON"),
        "{status}"
    );
    let posted = control
        .post(
            "/v1/logs",
            &[("content-type", "application/json")],
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(posted.status, 400);

    // Other content types and encodings: 415.
    let posted = control
        .post(
            "/v1/traces",
            &[("content-type", "text/plain")],
            b"hi".to_vec(),
        )
        .await;
    assert_eq!(posted.status, 415);
    let posted = control
        .post(
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "br"),
            ],
            b"hi".to_vec(),
        )
        .await;
    assert_eq!(posted.status, 415);
    // A corrupt gzip body: 400.
    let posted = control
        .post(
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
            b"not gzip".to_vec(),
        )
        .await;
    assert_eq!(posted.status, 400);

    // Nothing was stored; every refusal was counted.
    assert_eq!(control.jaeger_data("/api/services").await, json!([]));
    assert_eq!(
        control
            .metric("trellis_collector_stored_rows_total{table=\"spans\"}")
            .await,
        0.0
    );
    let text = control.metrics_text().await;
    let invalid: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("trellis_collector_otlp_requests_total{")
                && l.contains("outcome=\"invalid\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(invalid, 7.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start_with(dir.path(), &[]).await;
    export_grpc(
        &control.grpc_url(),
        request("svc", vec![span_at(3, now_us())]),
    )
    .await;
    wait_metric(
        &control,
        "trellis_collector_stored_rows_total{table=\"spans\"}",
        1.0,
    )
    .await;
    let text = control.metrics_text().await;
    assert!(
        text.contains("trellis_collector_received_items_total{signal=\"traces\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("trellis_collector_table_rows{table=\"spans\"} 1"),
        "{text}"
    );

    let promtool = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    if !promtool.is_ok_and(|o| o.status.success()) {
        if std::env::var("TRELLIS_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!("promtool is required (TRELLIS_REQUIRE_PROMETHEUS=1) but not found");
        }
        eprintln!("skipped promtool check: promtool not found");
        return;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_by_age_and_count_and_restart_keeps_spans() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::start_with(
        dir.path(),
        &[
            "--telemetry-max-spans",
            "5",
            "--telemetry-retention",
            "1h",
            "--telemetry-prune-interval",
            "100ms",
        ],
    )
    .await;
    let now = now_us();
    // Three spans two hours old, then eight recent ones a second apart (one trace each).
    let mut spans: Vec<Span> = (1..=3)
        .map(|t| span_at(t, now - 7_200_000_000 + t as i64))
        .collect();
    spans.extend((10..18).map(|t| span_at(t, now - 60_000_000 + t as i64 * 1_000_000)));
    export_grpc(&control.grpc_url(), request("svc", spans)).await;

    let id = |t: u8| format!("{t:02x}").repeat(16);
    let status = |t: u8| {
        let control = &control;
        async move { control.jaeger(&format!("/api/traces/{}", id(t))).await.0 }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut kept = Vec::new();
        for t in (1..=3).chain(10..18) {
            if status(t).await == 200 {
                kept.push(t);
            }
        }
        if kept == [13, 14, 15, 16, 17] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "kept {kept:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        control
            .metric("trellis_collector_table_rows{table=\"spans\"}")
            .await,
        5.0
    );
    assert_eq!(
        control
            .metric("trellis_collector_pruned_rows_total{table=\"spans\"}")
            .await,
        6.0
    );

    // Spans sent right before a graceful stop are written, and everything survives a restart.
    export_grpc(&control.grpc_url(), request("late", vec![span_at(20, now)])).await;
    let control = control.restart().await;
    for t in [14, 15, 16, 17, 20] {
        assert_eq!(
            status_of(&control, &id(t)).await,
            200,
            "trace {t} after restart"
        );
    }
    assert_eq!(
        control.jaeger_data("/api/services").await,
        json!(["late", "svc"])
    );
}

async fn status_of(control: &Control, id: &str) -> u16 {
    control.jaeger(&format!("/api/traces/{id}")).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_delivers_traces_to_another_otlp_receiver() {
    let receiver = testkit::otlp::OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let forward = receiver.grpc_endpoint();
    let control = Control::start_with(dir.path(), &["--otlp-forward", &forward]).await;
    let now = now_us();
    export_grpc(
        &control.grpc_url(),
        request(
            "fwd",
            vec![
                span(9, 1, None, "root", now, 50),
                span(9, 2, Some(1), "child", now, 10),
            ],
        ),
    )
    .await;
    let spans = receiver
        .wait_for(Duration::from_secs(15), |r| {
            let spans = r.spans();
            (spans.len() >= 2).then_some(spans)
        })
        .await
        .expect("the forwarded spans arrive");
    let mut names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["child", "root"]);
    assert!(
        spans
            .iter()
            .all(|s| s.resource_str("service.name") == Some("fwd"))
    );
    assert!(spans.iter().all(|s| s.trace_id() == "09".repeat(16)));
    assert_eq!(
        wait_metric(
            &control,
            "trellis_collector_forwarded_spans_total{result=\"sent\"}",
            2.0
        )
        .await,
        2.0
    );
    // Stored here as well.
    control.wait_for_trace(&"09".repeat(16), 2).await;
}
