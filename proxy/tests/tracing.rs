//! Spans, access logs and metrics over OTLP through the real binary: a client proxy A (outbound)
//! in front of a server proxy B (inbound) in front of an echo app, exporting to the testkit OTLP
//! receiver. The echo app shows the trace headers it was given.

mod common;

use common::{BIN, Mesh, OneUpdate, service_entry, stat_value};
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::echo::EchoServer;
use testkit::otlp::proto::metrics::v1::{AggregationTemporality, metric::Data, number_data_point};
use testkit::otlp::{Behaviour, OtlpReceiver, ReceivedSpan, Transport, string_attr};
use testkit::process::ProxyProcess;
use tokio_stream::wrappers::TcpListenerStream;
use trellis_api::push::ConfigUpdate;
use trellis_api::push::config_push_server::ConfigPushServer;

const WAIT: Duration = Duration::from_secs(10);
/// What the client asks A for; A routes it to B by the ServiceEntry.
const HOST: &str = "server:80";
/// Span kinds (OTLP enum values).
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// client -> A (outbound) -> B (inbound) -> app.
struct Chain {
    app: EchoServer,
    a: Mesh,
    b: Mesh,
}

impl Chain {
    /// Both proxies get `flags` (besides their identity and addresses).
    async fn start(flags: &[&str]) -> Chain {
        let app = EchoServer::start("app").await;
        let app_port = app.port().to_string();
        let mut b_flags = vec![
            "--app-port",
            &app_port,
            "--workload",
            "server-v1",
            "--labels",
            "app=server,version=v1",
        ];
        b_flags.extend_from_slice(flags);
        let b = Mesh::start_with(&[], &b_flags).await;
        let se = service_entry(
            "server",
            "server.default.svc.cluster.local",
            80,
            "HTTP",
            &[(b.proxy.inbound_addr(), "")],
        );
        let mut a_flags = vec!["--workload", "client-v1", "--labels", "app=client"];
        a_flags.extend_from_slice(flags);
        let a = Mesh::start_with(&[("se.yaml", &se)], &a_flags).await;
        Chain { app, a, b }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> testkit::Response {
        let r = HttpClient::http1(self.a.outbound())
            .get(HOST, path, headers)
            .await
            .expect("request through A and B");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.upstream(), Some("app"));
        r
    }

    /// Dropped-item counter of `signal` on A's `/stats/prometheus`.
    async fn dropped_on_a(&self, signal: &str) -> u64 {
        dropped(&self.a, signal).await
    }
}

async fn dropped(mesh: &Mesh, signal: &str) -> u64 {
    let stats = mesh.stats().await;
    let prefix = format!("trellis_telemetry_dropped_total{{signal=\"{signal}\"}} ");
    stat_value(&stats, &prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in /stats/prometheus:\n{stats}"))
}

/// Waits for the spans of the request to `path`: A's client span and B's server span.
async fn client_and_server(rx: &OtlpReceiver, path: &str) -> (ReceivedSpan, ReceivedSpan) {
    let pick = |kind: i32| {
        move |rx: &OtlpReceiver| {
            rx.spans()
                .into_iter()
                .find(|s| s.span.kind == kind && s.attr_str("url.path") == Some(path))
        }
    };
    let client = rx.wait_for(WAIT, pick(CLIENT)).await;
    let server = rx.wait_for(WAIT, pick(SERVER)).await;
    match (client, server) {
        (Some(c), Some(s)) => (c, s),
        (c, s) => panic!(
            "spans of {path}: client {}, server {}; received {:#?}",
            c.is_some(),
            s.is_some(),
            rx.spans()
                .iter()
                .map(|s| (s.span.kind, s.attr_str("url.path").map(str::to_string)))
                .collect::<Vec<_>>()
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_through_two_proxies_is_one_trace_with_logs() {
    let rx = OtlpReceiver::start().await;
    let endpoint = rx.grpc_endpoint();
    let chain = Chain::start(&[
        "--trace-sampling",
        "100",
        "--otlp-endpoint",
        &endpoint,
        "--otlp-access-log",
        "true",
    ])
    .await;
    let r = chain
        .get("/traced", &[("user-agent", "trace-test/1")])
        .await;
    let seen = r.json().unwrap();

    let (client, server) = client_and_server(&rx, "/traced").await;
    assert_eq!(client.trace_id(), server.trace_id(), "one trace");
    assert_eq!(client.parent_span_id(), "", "A started the trace");
    assert_eq!(server.parent_span_id(), client.span_id(), "B's parent is A");
    // The app sees B's span as its parent, in both formats.
    let trace = client.trace_id();
    assert_eq!(
        seen.header("traceparent"),
        Some(format!("00-{trace}-{}-01", server.span_id()).as_str())
    );
    assert_eq!(seen.header("x-b3-traceid"), Some(trace.as_str()));
    assert_eq!(seen.header("x-b3-spanid"), Some(server.span_id().as_str()));
    assert_eq!(
        seen.header("x-b3-parentspanid"),
        Some(client.span_id().as_str())
    );
    assert_eq!(seen.header("x-b3-sampled"), Some("1"));

    // Named and described as Istio's proxies describe them.
    assert_eq!(client.span.name, "server:80/*");
    assert_eq!(server.span.name, "server:80/*");
    assert_eq!(client.resource_str("service.name"), Some("client.default"));
    assert_eq!(server.resource_str("service.name"), Some("server.default"));
    assert_eq!(server.resource_str("service.version"), Some("v1"));
    let (a_id, b_id) = (
        client.resource_str("trellis.proxy").expect("A's proxy id"),
        server.resource_str("trellis.proxy").expect("B's proxy id"),
    );
    assert!(a_id.starts_with("client-v1-") && b_id.starts_with("server-v1-"));
    for s in [&client, &server] {
        assert_eq!(s.attr_str("http.request.method"), Some("GET"));
        assert_eq!(s.attr_int("http.response.status_code"), Some(200));
        assert_eq!(s.attr_str("network.protocol.version"), Some("1.1"));
        assert_eq!(s.attr_str("user_agent.original"), Some("trace-test/1"));
        assert_eq!(s.attr_str("response_flags"), Some("-"));
        assert!(s.span.end_time_unix_nano >= s.span.start_time_unix_nano);
    }
    assert_eq!(
        client.attr_str("upstream_cluster"),
        Some("outbound|80||server.default.svc.cluster.local")
    );
    assert_eq!(client.attr_str("istio.canonical_service"), Some("client"));
    assert_eq!(server.attr_str("istio.namespace"), Some("default"));

    // Both proxies' access logs arrive over OTLP, joined to the trace.
    let logs = rx
        .wait_for(WAIT, |rx| {
            let logs: Vec<_> = rx
                .logs()
                .into_iter()
                .filter(|l| l.attr_str("path") == Some("/traced"))
                .collect();
            (logs.len() >= 2).then_some(logs)
        })
        .await
        .expect("access logs of both proxies");
    for log in &logs {
        assert_eq!(log.trace_id(), trace);
        assert_eq!(log.attr_int("response_code"), Some(200));
        let body: serde_json::Value = serde_json::from_str(log.body_str().unwrap()).unwrap();
        assert_eq!(body["path"], "/traced");
    }
    let by_direction = |d: &str| logs.iter().find(|l| l.attr_str("direction") == Some(d));
    assert_eq!(
        by_direction("outbound").unwrap().span_id(),
        client.span_id()
    );
    assert_eq!(by_direction("inbound").unwrap().span_id(), server.span_id());
    assert_eq!(
        by_direction("inbound")
            .unwrap()
            .resource_str("trellis.proxy"),
        Some(b_id)
    );
    drop(chain.app);
}

#[tokio::test(flavor = "multi_thread")]
async fn b3_contexts_are_continued_and_decisions_honoured() {
    let rx = OtlpReceiver::start().await;
    let endpoint = rx.grpc_endpoint();
    // Nothing is sampled on its own: every span below comes from the caller's decision.
    let chain = Chain::start(&[
        "--trace-sampling",
        "0",
        "--otlp-endpoint",
        &endpoint,
        "--otlp-access-log",
        "true",
    ])
    .await;

    // A 64-bit B3 trace id, sampled by the caller.
    let seen = chain
        .get(
            "/b3",
            &[
                ("x-b3-traceid", "a3ce929d0e0e4736"),
                ("x-b3-spanid", "00f067aa0ba902b7"),
                ("x-b3-sampled", "1"),
            ],
        )
        .await
        .json()
        .unwrap();
    let (client, server) = client_and_server(&rx, "/b3").await;
    assert_eq!(client.trace_id(), "0000000000000000a3ce929d0e0e4736");
    assert_eq!(client.parent_span_id(), "00f067aa0ba902b7");
    assert_eq!(server.parent_span_id(), client.span_id());
    assert_eq!(
        seen.header("x-b3-traceid"),
        Some("0000000000000000a3ce929d0e0e4736")
    );

    // The single b3 header, and a W3C context with a tracestate.
    chain
        .get(
            "/b3-single",
            &[("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1")],
        )
        .await;
    let (client, _) = client_and_server(&rx, "/b3-single").await;
    assert_eq!(client.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    let seen = chain
        .get(
            "/w3c",
            &[
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        )
        .await
        .json()
        .unwrap();
    let (client, server) = client_and_server(&rx, "/w3c").await;
    assert_eq!(client.parent_span_id(), "b7ad6b7169203331");
    assert_eq!(server.span.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(seen.header("tracestate"), Some("congo=t61rcWkgMzE"));

    // Not sampled by the caller, or no decision at 0%: no spans, but traffic flows and the
    // context still reaches the app.
    let seen = chain
        .get(
            "/not-sampled",
            &[(
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-00",
            )],
        )
        .await
        .json()
        .unwrap();
    let tp = seen.header("traceparent").unwrap();
    assert!(
        tp.starts_with("00-11111111111111111111111111111111-") && tp.ends_with("-00"),
        "{tp}"
    );
    // B3 gets the bare "deny" decision; the ids travel in traceparent only.
    assert_eq!(seen.header("x-b3-sampled"), Some("0"));
    assert_eq!(seen.header("x-b3-traceid"), None);
    for i in 0..10 {
        chain.get(&format!("/unsampled/{i}"), &[]).await;
    }
    // Invalid context: ignored, a new (unsampled at 0%) trace.
    let seen = chain
        .get(
            "/garbage",
            &[("traceparent", "00-00000000000000000000000000000000-zz-01")],
        )
        .await
        .json()
        .unwrap();
    assert!(seen.header("traceparent").unwrap().ends_with("-00"));
    // A sampled marker after them: once its spans are in, earlier ones would be too.
    chain
        .get(
            "/marker",
            &[(
                "traceparent",
                "00-33333333333333333333333333333333-4444444444444444-01",
            )],
        )
        .await;
    client_and_server(&rx, "/marker").await;
    let paths: Vec<String> = rx
        .spans()
        .iter()
        .filter_map(|s| s.attr_str("url.path").map(str::to_string))
        .collect();
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/unsampled") || p == "/not-sampled" || p == "/garbage"),
        "unsampled requests made spans: {paths:?}"
    );
    // Access logs still cover every request (without trace ids when not sampled).
    let log = rx
        .wait_for(WAIT, |rx| {
            rx.logs()
                .into_iter()
                .find(|l| l.attr_str("path") == Some("/unsampled/3"))
        })
        .await
        .expect("access log of an unsampled request");
    assert_eq!(log.trace_id(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_pushed_over_otlp() {
    let rx = OtlpReceiver::start().await;
    let endpoint = rx.grpc_endpoint();
    let chain = Chain::start(&[
        "--otlp-endpoint",
        &endpoint,
        "--metrics-push-seconds",
        "0.5",
    ])
    .await;
    chain.get("/counted", &[]).await;
    let pushed = rx
        .wait_for(WAIT, |rx| {
            rx.metrics()
                .into_iter()
                .find(|m| m.metric.name == "istio_requests_total")
        })
        .await
        .expect("istio_requests_total pushed within a few intervals");
    assert!(pushed.resource_str("trellis.proxy").is_some());
    // The one request, counted as a cumulative monotonic Sum with Istio's labels.
    let Some(Data::Sum(sum)) = &pushed.metric.data else {
        panic!("istio_requests_total is not a Sum: {:?}", pushed.metric);
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let counted = sum
        .data_points
        .iter()
        .find(|p| string_attr(&p.attributes, "response_code") == Some("200"))
        .unwrap_or_else(|| panic!("no point for the 200: {sum:?}"));
    assert_eq!(counted.value, Some(number_data_point::Value::AsInt(1)));
    assert_eq!(
        string_attr(&counted.attributes, "destination_service_name"),
        Some("server")
    );
    // Access logs go over OTLP only when asked for (`--otlp-access-log true`).
    assert!(rx.logs().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_over_http_protobuf() {
    let rx = OtlpReceiver::start().await;
    let endpoint = rx.http_endpoint();
    let chain = Chain::start(&[
        "--trace-sampling",
        "100",
        "--otlp-endpoint",
        &endpoint,
        "--otlp-protocol",
        "http/protobuf",
        "--metrics-push-seconds",
        "0.5",
        "--otlp-access-log",
        "true",
    ])
    .await;
    chain.get("/over-http", &[]).await;
    let (client, server) = client_and_server(&rx, "/over-http").await;
    assert_eq!(server.parent_span_id(), client.span_id());
    rx.wait_for(WAIT, |rx| {
        rx.logs()
            .into_iter()
            .find(|l| l.attr_str("path") == Some("/over-http"))
    })
    .await
    .expect("access log over HTTP");
    rx.wait_for(WAIT, |rx| {
        rx.metrics()
            .into_iter()
            .find(|m| m.metric.name == "istio_requests_total")
    })
    .await
    .expect("metrics over HTTP");
    assert!(rx.requests(Transport::Http) > 0);
    assert_eq!(rx.requests(Transport::Grpc), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_failing_or_dead_collector_never_touches_traffic() {
    let mut rx = OtlpReceiver::start().await;
    let endpoint = rx.grpc_endpoint();
    let chain = Chain::start(&[
        "--trace-sampling",
        "100",
        "--otlp-endpoint",
        &endpoint,
        "--otlp-timeout-seconds",
        "0.5",
        "--otlp-access-log",
        "true",
    ])
    .await;

    // Stalled: exports time out and are dropped; every request still succeeds.
    rx.set_behaviour(Behaviour::Stall);
    for i in 0..20 {
        chain.get(&format!("/stalled/{i}"), &[]).await;
    }
    let grew =
        testkit::client::wait_until(WAIT, || async { chain.dropped_on_a("spans").await > 0 }).await;
    assert!(grew, "spans dropped while the collector stalls");

    // Failing, then back: exports resume after the back-off.
    rx.set_behaviour(Behaviour::Fail);
    let before = chain.dropped_on_a("logs").await;
    for i in 0..20 {
        chain.get(&format!("/failing/{i}"), &[]).await;
    }
    let grew =
        testkit::client::wait_until(WAIT, || async { chain.dropped_on_a("logs").await > before })
            .await;
    assert!(grew, "logs dropped while the collector fails");
    rx.set_behaviour(Behaviour::Accept);
    let mut recovered = None;
    for i in 0..20 {
        let path = format!("/recovered/{i}");
        chain.get(&path, &[]).await;
        let found = rx
            .wait_for(Duration::from_secs(1), |rx| {
                rx.spans()
                    .into_iter()
                    .find(|s| s.attr_str("url.path") == Some(path.as_str()))
            })
            .await;
        if found.is_some() {
            recovered = found;
            break;
        }
    }
    assert!(
        recovered.is_some(),
        "export resumes once the collector is back"
    );

    // Gone: connections refused; traffic still flows and drops are counted.
    rx.stop().await;
    let before = chain.dropped_on_a("spans").await;
    for i in 0..20 {
        chain.get(&format!("/dead/{i}"), &[]).await;
    }
    let grew = testkit::client::wait_until(WAIT, || async {
        chain.dropped_on_a("spans").await > before
    })
    .await;
    assert!(grew, "spans dropped while the collector is down");
    assert!(dropped(&chain.b, "spans").await > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_is_queued_at_shutdown_is_still_exported() {
    let rx = OtlpReceiver::start().await;
    let app = EchoServer::start("app").await;
    let mut b = Mesh::start_with(
        &[],
        &[
            "--app-port",
            &app.port().to_string(),
            "--trace-sampling",
            "100",
            "--otlp-endpoint",
            &rx.grpc_endpoint(),
            "--otlp-access-log",
            "true",
        ],
    )
    .await;
    let r = HttpClient::http1(b.proxy.inbound_addr())
        .get("anything", "/last-words", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Stop at once: the batch has not filled or waited its second yet.
    b.proxy.send_signal(libc::SIGTERM).unwrap();
    let status = b.proxy.wait_exit(WAIT).await.expect("the proxy exits");
    assert!(status.success(), "{status:?}");
    let spans = rx.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.attr_str("url.path") == Some("/last-words")),
        "the span was flushed before exit: {spans:?}"
    );
    assert!(
        rx.logs()
            .iter()
            .any(|l| l.attr_str("path") == Some("/last-words"))
    );
}

// ---- the collector named by the control plane ----

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_exports_to_the_collector_its_control_plane_names() {
    let rx = OtlpReceiver::start().await;
    // The collector listens on all interfaces; the proxy reaches it at the control plane's host.
    let named = format!("http://0.0.0.0:{}", rx.grpc_addr().port());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ConfigPushServer::new(OneUpdate(ConfigUpdate {
                version: "1".into(),
                otlp_endpoint: named,
                ..ConfigUpdate::default()
            })))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let app = EchoServer::start("app").await;
    let proxy = ProxyProcess::trellis_proxy_control(
        BIN,
        control,
        &[
            "--app-port",
            &app.port().to_string(),
            "--trace-sampling",
            "100",
        ],
    )
    .await
    .expect("proxy under a control plane");
    let r = HttpClient::http1(proxy.inbound_addr())
        .get("anything", "/named", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let span = rx
        .wait_for(WAIT, |rx| {
            rx.spans()
                .into_iter()
                .find(|s| s.attr_str("url.path") == Some("/named"))
        })
        .await
        .expect("the span reaches the collector the control plane named");
    assert_eq!(span.span.kind, SERVER);
    drop(proxy);
    server.abort();
}
