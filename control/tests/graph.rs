//! The live service graph with known traffic: simulated proxies push Istio's standard metrics
//! over OTLP (cumulative, several proxies, several pushes), and the graph must show the edges and
//! numbers a user would expect: rates, error percentages, a 90/10 version split, latency
//! quantiles, mTLS share, unknown sources, TCP edges, counter resets, every graph type and the
//! namespace filter, edges from traces of applications outside the mesh, replay of a past window
//! from stored minutes (SQLite, and PostgreSQL on a throwaway cluster), the HTTP API and the
//! mesh-wide Prometheus series.
//!
//! Time is a manual clock, so no assertion depends on how fast the machine is.

mod graph {
    #[path = "../common/postgres.rs"]
    pub mod postgres;
    pub mod sim;
}

use axum::http::StatusCode;
use graph::sim::{Call, ProxySim, W, kv, w};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use trellis_control::collector::graph::api::{GraphApi, router};
use trellis_control::collector::graph::history::{self, HistoryWriter};
use trellis_control::collector::graph::view::{EdgeJson, NodeJson};
use trellis_control::collector::graph::{
    Clock, GraphJson, GraphQuery, GraphType, LiveGraph, ViewOptions,
};

/// A minute-aligned start time (unix ms).
const T0: i64 = 1_800_000_000_000;
const PUSH_MS: i64 = 5_000;

const PRODUCTPAGE: W = w("bookinfo", "productpage-v1", "productpage", "v1");
const REVIEWS_V1: W = w("bookinfo", "reviews-v1", "reviews", "v1");
const REVIEWS_V2: W = w("bookinfo", "reviews-v2", "reviews", "v2");
const DETAILS: W = w("bookinfo", "details-v1", "details", "v1");
const RATINGS: W = w("bookinfo", "ratings-v1", "ratings", "v1");
const MYSQL: W = w("data", "mysql-v1", "mysql", "v1");

fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{what}: got {actual}, expected {expected}"
    );
}

/// The bookinfo proxies; each push interval carries the same traffic:
/// - from outside the mesh to productpage: 50 requests (reported by productpage's proxy);
/// - productpage to reviews: 45 to v1, 5 to v2 (the 90/10 split), 20 ms each;
/// - productpage to details: 18 OK and 2 503s, 15 of the 20 over mTLS (as details reports);
/// - reviews-v2 to ratings over gRPC: 9 OK, 1 UNAVAILABLE;
/// - productpage to mysql over TCP: 200 bytes up, 1000 down, one connection.
struct Bookinfo {
    productpage: ProxySim,
    reviews_v1: ProxySim,
    reviews_v2: ProxySim,
    details: ProxySim,
    mysql: ProxySim,
}

impl Bookinfo {
    fn new(start_ms: i64) -> Bookinfo {
        let mut reviews_v2 = ProxySim::new("reviews-v2-proxy", start_ms);
        // One proxy names its counters without `_total`, as some OTLP exporters do.
        reviews_v2.total_suffix = false;
        Bookinfo {
            productpage: ProxySim::new("productpage-proxy", start_ms),
            reviews_v1: ProxySim::new("reviews-v1-proxy", start_ms),
            reviews_v2,
            details: ProxySim::new("details-proxy", start_ms),
            mysql: ProxySim::new("mysql-proxy", start_ms),
        }
    }

    fn interval(&mut self) {
        let pp = &mut self.productpage;
        let ingress = Call::http(
            "destination",
            None,
            ("bookinfo", "productpage"),
            Some(PRODUCTPAGE),
        )
        .plaintext();
        pp.requests(&ingress, 50, 40.0, 0.0, 5000.0);
        let to_v1 = Call::http(
            "source",
            Some(PRODUCTPAGE),
            ("bookinfo", "reviews"),
            Some(REVIEWS_V1),
        );
        let to_v2 = Call::http(
            "source",
            Some(PRODUCTPAGE),
            ("bookinfo", "reviews"),
            Some(REVIEWS_V2),
        );
        pp.requests(&to_v1, 45, 20.0, 100.0, 300.0);
        pp.requests(&to_v2, 5, 20.0, 100.0, 300.0);
        let to_details = Call::http(
            "source",
            Some(PRODUCTPAGE),
            ("bookinfo", "details"),
            Some(DETAILS),
        );
        pp.requests(&to_details, 13, 3.0, 0.0, 200.0);
        pp.requests(&to_details.clone().plaintext(), 5, 3.0, 0.0, 200.0);
        pp.requests(&to_details.clone().code("503"), 2, 3.0, 0.0, 90.0);
        let to_mysql = Call::http("source", Some(PRODUCTPAGE), ("data", "mysql"), Some(MYSQL));
        pp.tcp(&to_mysql, 1000.0, 200.0, 1);
        // The server side reports too (reporter=destination): the graph must not count its
        // requests twice, and takes from it whether mutual TLS carried them (a source reports
        // `unknown`).
        let seen_by_v1 = Call::http(
            "destination",
            Some(PRODUCTPAGE),
            ("bookinfo", "reviews"),
            Some(REVIEWS_V1),
        );
        self.reviews_v1
            .requests(&seen_by_v1, 45, 18.0, 100.0, 300.0);
        let seen_by_v2 = Call::http(
            "destination",
            Some(PRODUCTPAGE),
            ("bookinfo", "reviews"),
            Some(REVIEWS_V2),
        );
        self.reviews_v2.requests(&seen_by_v2, 5, 18.0, 100.0, 300.0);
        let seen_by_details = Call::http(
            "destination",
            Some(PRODUCTPAGE),
            ("bookinfo", "details"),
            Some(DETAILS),
        );
        self.details.requests(&seen_by_details, 13, 2.0, 0.0, 200.0);
        self.details
            .requests(&seen_by_details.clone().plaintext(), 5, 2.0, 0.0, 200.0);
        self.details
            .requests(&seen_by_details.clone().code("503"), 2, 2.0, 0.0, 90.0);
        let seen_by_mysql = Call::http(
            "destination",
            Some(PRODUCTPAGE),
            ("data", "mysql"),
            Some(MYSQL),
        );
        self.mysql.tcp(&seen_by_mysql, 1000.0, 200.0, 1);
        let to_ratings = Call::http(
            "source",
            Some(REVIEWS_V2),
            ("bookinfo", "ratings"),
            Some(RATINGS),
        )
        .grpc("0");
        self.reviews_v2.requests(&to_ratings, 9, 4.0, 10.0, 10.0);
        self.reviews_v2
            .requests(&to_ratings.clone().grpc("14"), 1, 4.0, 10.0, 0.0);
    }

    fn push(&self, graph: &LiveGraph, now_ms: i64) {
        for p in [
            &self.productpage,
            &self.reviews_v1,
            &self.reviews_v2,
            &self.details,
            &self.mysql,
        ] {
            graph.observe_metrics(&p.export(now_ms));
        }
    }
}

/// A graph fed 12 pushes (one minute) of bookinfo traffic from proxies that started at T0; the
/// clock ends at T0 + 60 s.
fn bookinfo_minute() -> (LiveGraph, Bookinfo) {
    bookinfo_pushes(T0 + PUSH_MS)
}

/// 12 pushes of bookinfo traffic, the first at `first_ms`, from proxies started one push earlier;
/// the clock ends at the last push.
fn bookinfo_pushes(first_ms: i64) -> (LiveGraph, Bookinfo) {
    let graph = LiveGraph::with_clock(Clock::manual(first_ms - PUSH_MS));
    let mut mesh = Bookinfo::new(first_ms - PUSH_MS);
    for _ in 0..12 {
        graph.clock().advance_ms(PUSH_MS);
        mesh.interval();
        mesh.push(&graph, graph.clock().now_ms());
    }
    (graph, mesh)
}

/// The versioned-app view of a minute of bookinfo traffic.
fn assert_bookinfo_versioned_apps(g: &GraphJson) {
    close(
        edge(g, "unknown", "service:bookinfo/productpage").requests_per_second,
        10.0,
        "ingress",
    );
    let v1 = edge(g, "service:bookinfo/reviews", "app:bookinfo/reviews/v1");
    close(v1.requests_per_second, 9.0, "v1 rate");
    close(v1.traffic_share_percent, 90.0, "v1 share");
    close(v1.latency_ms.expect("latency").p50, 17.5, "v1 p50");
    close(
        edge(g, "service:bookinfo/reviews", "app:bookinfo/reviews/v2").traffic_share_percent,
        10.0,
        "v2 share",
    );
    let details = edge(g, "app:bookinfo/productpage/v1", "service:bookinfo/details");
    close(details.requests_per_second, 4.0, "details rate");
    close(details.error_percent, 10.0, "details error %");
    close(details.mtls_percent, 75.0, "details mTLS");
    close(
        edge(g, "app:bookinfo/reviews/v2", "service:bookinfo/ratings").error_percent,
        10.0,
        "ratings error %",
    );
    close(
        edge(g, "app:bookinfo/productpage/v1", "service:data/mysql").response_bytes_per_second,
        200.0,
        "tcp down",
    );
    assert_eq!(json(&node(g, "app:bookinfo/details/v1").health), "failure");
}

fn query(graph_type: GraphType, namespaces: &[&str]) -> GraphQuery {
    GraphQuery {
        view: ViewOptions {
            graph_type,
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            inject_service_nodes: true,
        },
        duration_ms: 60_000,
        query_time_ms: None,
    }
}

fn edge<'a>(g: &'a GraphJson, source: &str, target: &str) -> &'a EdgeJson {
    g.edges
        .iter()
        .find(|e| e.source == source && e.target == target)
        .unwrap_or_else(|| {
            let all: Vec<String> = g
                .edges
                .iter()
                .map(|e| format!("{} -> {}", e.source, e.target))
                .collect();
            panic!("no edge {source} -> {target}; edges: {all:#?}")
        })
}

fn node<'a>(g: &'a GraphJson, id: &str) -> &'a NodeJson {
    g.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| {
        panic!(
            "no node {id}; nodes: {:?}",
            g.nodes.iter().map(|n| &n.id).collect::<Vec<_>>()
        )
    })
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

#[test]
fn workload_graph_shows_rates_errors_latency_mtls_and_unknown_sources() {
    let (graph, _) = bookinfo_minute();
    let g = graph
        .query(&query(GraphType::Workload, &[]))
        .expect("a memory window");
    assert_eq!(g.window.end - g.window.start, 60_000);

    // From outside the mesh: unknown -> productpage service -> productpage workload, 50 per 5 s.
    let ingress = edge(&g, "unknown", "service:bookinfo/productpage");
    close(ingress.requests_per_second, 10.0, "ingress rate");
    close(ingress.mtls_percent, 0.0, "ingress mTLS");
    close(
        edge(
            &g,
            "service:bookinfo/productpage",
            "workload:bookinfo/productpage-v1",
        )
        .requests_per_second,
        10.0,
        "into productpage",
    );

    // productpage -> reviews, counted once (the destination proxies' reports are not added).
    let to_reviews = edge(
        &g,
        "workload:bookinfo/productpage-v1",
        "service:bookinfo/reviews",
    );
    close(
        to_reviews.requests_per_second,
        10.0,
        "productpage -> reviews",
    );
    close(to_reviews.mtls_percent, 100.0, "reviews mTLS");
    // Its share of productpage's outbound HTTP: 50 of 70 requests per push.
    close(
        to_reviews.traffic_share_percent,
        50.0 / 70.0 * 100.0,
        "reviews share",
    );
    let v1 = edge(
        &g,
        "service:bookinfo/reviews",
        "workload:bookinfo/reviews-v1",
    );
    close(v1.requests_per_second, 9.0, "reviews v1 rate");
    close(v1.traffic_share_percent, 90.0, "reviews v1 share");
    close(
        edge(
            &g,
            "service:bookinfo/reviews",
            "workload:bookinfo/reviews-v2",
        )
        .traffic_share_percent,
        10.0,
        "v2 share",
    );
    // 20 ms requests land in Envoy's (10, 25] bucket: interpolated as histogram_quantile does.
    let latency = v1.latency_ms.expect("latency");
    close(latency.p50, 17.5, "p50");
    close(latency.p95, 10.0 + 15.0 * 0.95, "p95");
    close(latency.p99, 10.0 + 15.0 * 0.99, "p99");
    close(v1.request_bytes_per_second, 9.0 * 100.0, "request bytes");
    close(v1.response_bytes_per_second, 9.0 * 300.0, "response bytes");

    // details: 10% 503s, 75% mTLS, Kiali's failure threshold for 5xx is 10%.
    let details = edge(
        &g,
        "workload:bookinfo/productpage-v1",
        "service:bookinfo/details",
    );
    close(details.requests_per_second, 4.0, "details rate");
    close(details.errors_per_second, 0.4, "details errors");
    close(details.error_percent, 10.0, "details error %");
    close(details.mtls_percent, 75.0, "details mTLS");
    close(details.responses["200"], 3.6, "200s");
    close(details.responses["503"], 0.4, "503s");
    assert_eq!(
        json(&node(&g, "workload:bookinfo/details-v1").health),
        "failure"
    );
    assert_eq!(
        json(&node(&g, "service:bookinfo/details").health),
        "failure"
    );
    // productpage sends 2 errors in 70 requests: degraded (any 5xx); reviews v1 only 200s.
    assert_eq!(
        json(&node(&g, "workload:bookinfo/productpage-v1").health),
        "degraded"
    );
    assert_eq!(
        json(&node(&g, "workload:bookinfo/reviews-v1").health),
        "healthy"
    );

    // gRPC: errors are non-OK statuses.
    let ratings = edge(
        &g,
        "workload:bookinfo/reviews-v2",
        "service:bookinfo/ratings",
    );
    assert_eq!(json(&ratings.protocol), "grpc");
    close(ratings.requests_per_second, 2.0, "ratings rate");
    close(ratings.error_percent, 10.0, "ratings error %");
    close(ratings.responses["14"], 0.2, "UNAVAILABLE");

    // TCP: bytes both ways, connections as the rate.
    let mysql = edge(&g, "workload:bookinfo/productpage-v1", "service:data/mysql");
    assert_eq!(json(&mysql.protocol), "tcp");
    close(mysql.request_bytes_per_second, 40.0, "tcp up");
    close(mysql.response_bytes_per_second, 200.0, "tcp down");
    close(mysql.mtls_percent, 100.0, "tcp mTLS");
    assert!(mysql.latency_ms.is_none());
    assert_eq!(
        json(&node(&g, "workload:data/mysql-v1").health),
        "noTraffic"
    );

    // Node traffic.
    let pp = node(&g, "workload:bookinfo/productpage-v1");
    close(pp.traffic_in.requests_per_second, 10.0, "productpage in");
    close(pp.traffic_out.requests_per_second, 14.0, "productpage out");
    close(
        pp.traffic_out.tcp_bytes_per_second,
        240.0,
        "productpage tcp out",
    );
    assert_eq!(node(&g, "unknown").node_type, "unknown");
    assert_eq!(
        g.nodes.len(),
        12,
        "{:?}",
        g.nodes.iter().map(|n| &n.id).collect::<Vec<_>>()
    );
    assert_eq!(g.edges.len(), 11);
}

#[test]
fn graph_types_and_namespace_filter() {
    let (graph, _) = bookinfo_minute();

    // versionedApp: one node per version; the service's edges show the 90/10 split.
    let g = graph.query(&query(GraphType::VersionedApp, &[])).unwrap();
    assert_bookinfo_versioned_apps(&g);
    let v1 = edge(&g, "service:bookinfo/reviews", "app:bookinfo/reviews/v1");
    let v2 = edge(&g, "service:bookinfo/reviews", "app:bookinfo/reviews/v2");
    close(v1.traffic_share_percent, 90.0, "v1 share");
    close(v2.traffic_share_percent, 10.0, "v2 share");
    let n = node(&g, "app:bookinfo/reviews/v2");
    assert_eq!(
        (n.node_type.as_str(), n.app.as_deref(), n.version.as_deref()),
        ("app", Some("reviews"), Some("v2"))
    );

    // app: versions merge.
    let g = graph.query(&query(GraphType::App, &[])).unwrap();
    let reviews = edge(&g, "service:bookinfo/reviews", "app:bookinfo/reviews");
    close(reviews.requests_per_second, 10.0, "reviews app");
    close(reviews.traffic_share_percent, 100.0, "reviews app share");
    edge(&g, "app:bookinfo/reviews", "service:bookinfo/ratings");

    // service: services only; a workload's calls leave from the service in front of it.
    let g = graph.query(&query(GraphType::Service, &[])).unwrap();
    close(
        edge(&g, "unknown", "service:bookinfo/productpage").requests_per_second,
        10.0,
        "ingress",
    );
    close(
        edge(
            &g,
            "service:bookinfo/productpage",
            "service:bookinfo/reviews",
        )
        .requests_per_second,
        10.0,
        "pp -> reviews",
    );
    close(
        edge(&g, "service:bookinfo/reviews", "service:bookinfo/ratings").requests_per_second,
        2.0,
        "reviews -> ratings",
    );
    edge(&g, "service:bookinfo/productpage", "service:data/mysql");
    assert!(
        g.nodes
            .iter()
            .all(|n| n.node_type == "service" || n.node_type == "unknown")
    );

    // Without injected service nodes, workloads connect directly.
    let mut q = query(GraphType::Workload, &[]);
    q.view.inject_service_nodes = false;
    let g = graph.query(&q).unwrap();
    close(
        edge(
            &g,
            "workload:bookinfo/productpage-v1",
            "workload:bookinfo/reviews-v1",
        )
        .requests_per_second,
        9.0,
        "direct",
    );

    // Namespace filter: edges touching `data`, with the outside caller marked.
    let g = graph.query(&query(GraphType::Workload, &["data"])).unwrap();
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(node(&g, "workload:bookinfo/productpage-v1").is_outside);
    assert!(!node(&g, "workload:data/mysql-v1").is_outside);
    assert_eq!(g.edges.len(), 2);
}

#[test]
fn windows_move_on_and_counter_resets_do_not_invent_traffic() {
    let graph = LiveGraph::with_clock(Clock::manual(T0));
    // A proxy that has run for two hours connects: its first push is a baseline, not a burst.
    let mut proxy = ProxySim::new("old-proxy", T0 - 7_200_000);
    let call = Call::http(
        "source",
        Some(PRODUCTPAGE),
        ("bookinfo", "reviews"),
        Some(REVIEWS_V1),
    );
    proxy.requests(&call, 1000, 20.0, 1.0, 1.0);
    graph.clock().advance_ms(PUSH_MS);
    graph.observe_metrics(&proxy.export(graph.clock().now_ms()));
    let g = graph.query(&query(GraphType::Workload, &[])).unwrap();
    assert!(
        g.edges.is_empty(),
        "a baseline is not traffic: {:?}",
        g.edges
    );

    // 60 more requests over the next minute.
    for _ in 0..6 {
        graph.clock().advance_ms(PUSH_MS);
        proxy.requests(&call, 10, 20.0, 1.0, 1.0);
        graph.observe_metrics(&proxy.export(graph.clock().now_ms()));
    }
    // The proxy restarts (new start time, counters from zero) and serves 30 more.
    proxy.restart(graph.clock().now_ms());
    for _ in 0..3 {
        graph.clock().advance_ms(PUSH_MS);
        proxy.requests(&call, 10, 20.0, 1.0, 1.0);
        graph.observe_metrics(&proxy.export(graph.clock().now_ms()));
    }
    // A late duplicate of an old export changes nothing.
    graph.observe_metrics(&proxy.export(graph.clock().now_ms() - 20_000));
    // The clock is at T0 + 50 s: the 90 requests came in the last minute.
    let g = graph.query(&query(GraphType::Workload, &[])).unwrap();
    let e = edge(
        &g,
        "workload:bookinfo/productpage-v1",
        "service:bookinfo/reviews",
    );
    close(
        e.requests_per_second * g.window.seconds,
        90.0,
        "requests after baseline and restart",
    );

    // A new series from a known proxy counts from zero (the first 503 after the baseline).
    graph.clock().advance_ms(PUSH_MS);
    proxy.requests(&call.clone().code("503"), 4, 20.0, 1.0, 1.0);
    graph.observe_metrics(&proxy.export(graph.clock().now_ms()));
    let g = graph.query(&query(GraphType::Workload, &[])).unwrap();
    let e = edge(
        &g,
        "workload:bookinfo/productpage-v1",
        "service:bookinfo/reviews",
    );
    close(
        e.errors_per_second * g.window.seconds,
        4.0,
        "new 503 series",
    );

    // Five quiet minutes later the 1-minute window is empty; the 10-minute window still has it.
    graph.clock().advance_ms(5 * 60_000);
    assert!(
        graph
            .query(&query(GraphType::Workload, &[]))
            .unwrap()
            .edges
            .is_empty()
    );
    let mut ten = query(GraphType::Workload, &[]);
    ten.duration_ms = 600_000;
    let g = graph.query(&ten).unwrap();
    let e = edge(
        &g,
        "workload:bookinfo/productpage-v1",
        "service:bookinfo/reviews",
    );
    close(
        e.requests_per_second * g.window.seconds,
        94.0,
        "ten minutes",
    );
}

fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    kind: SpanKind,
    start_ms: u64,
    duration_ms: u64,
    error: bool,
) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: "call".into(),
        kind: kind as i32,
        start_time_unix_nano: start_ms * 1_000_000,
        end_time_unix_nano: (start_ms + duration_ms) * 1_000_000,
        status: error.then(|| Status {
            code: 2,
            ..Default::default()
        }),
        attributes: vec![kv("http.request.method", "GET")],
        ..Default::default()
    }
}

fn spans(
    service: &str,
    namespace: Option<&str>,
    proxy: Option<&str>,
    spans: Vec<Span>,
) -> ExportTraceServiceRequest {
    let mut attributes = vec![kv("service.name", service)];
    attributes.extend(namespace.map(|n| kv("service.namespace", n)));
    attributes.extend(proxy.map(|p| kv("trellis.proxy", p)));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn edges_from_traces_of_applications_outside_the_mesh() {
    let graph = LiveGraph::with_clock(Clock::manual(T0 + 30_000));
    let t = T0 as u64;
    // frontend -> checkout, twice: the child arrives before its parent the first time; the
    // second call fails.
    graph.observe_spans(&spans(
        "checkout",
        Some("shop"),
        None,
        vec![span(1, 2, Some(1), SpanKind::Server, t + 1, 8, false)],
    ));
    graph.observe_spans(&spans(
        "frontend",
        Some("shop"),
        None,
        vec![
            span(1, 1, None, SpanKind::Client, t, 10, false),
            span(3, 5, None, SpanKind::Client, t, 30, true),
        ],
    ));
    graph.observe_spans(&spans(
        "checkout",
        Some("shop"),
        None,
        vec![span(3, 6, Some(5), SpanKind::Server, t + 1, 28, true)],
    ));
    // An in-process child (same service) is no edge.
    graph.observe_spans(&spans(
        "checkout",
        Some("shop"),
        None,
        vec![span(3, 7, Some(6), SpanKind::Internal, t + 2, 5, false)],
    ));
    // Two mesh proxies: metrics already give that edge.
    graph.observe_spans(&spans(
        "reviews.bookinfo",
        None,
        Some("p1"),
        vec![span(4, 1, None, SpanKind::Client, t, 5, false)],
    ));
    graph.observe_spans(&spans(
        "ratings.bookinfo",
        None,
        Some("p2"),
        vec![span(4, 2, Some(1), SpanKind::Server, t, 4, false)],
    ));
    // An app outside the mesh calling into a mesh service (its proxy's span).
    graph.observe_spans(&spans(
        "batch",
        Some("jobs"),
        None,
        vec![span(5, 1, None, SpanKind::Client, t, 7, false)],
    ));
    graph.observe_spans(&spans(
        "reviews.bookinfo",
        None,
        Some("p1"),
        vec![span(5, 2, Some(1), SpanKind::Server, t, 6, false)],
    ));

    let g = graph.query(&query(GraphType::Workload, &[])).unwrap();
    assert_eq!(g.edges.len(), 2, "{:#?}", g.edges);
    let e = edge(&g, "service:shop/frontend", "service:shop/checkout");
    assert!(e.from_traces);
    close(e.requests_per_second * g.window.seconds, 2.0, "calls");
    close(e.error_percent, 50.0, "error %");
    // Client durations 10 ms and 30 ms: buckets (5, 10] and (25, 50].
    let latency = e.latency_ms.unwrap();
    close(latency.p50, 10.0, "trace p50");
    assert!(node(&g, "service:shop/frontend").from_traces);
    let into_mesh = edge(&g, "service:jobs/batch", "service:bookinfo/reviews");
    assert!(into_mesh.from_traces);
}

async fn sqlite_pool(dir: &std::path::Path) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", dir.join("telemetry.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.expect("open SQLite");
    migrate(&pool).await;
    pool
}

async fn migrate(pool: &sqlx::AnyPool) {
    let mut migrator = sqlx::migrate!("./migrations-telemetry");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await.expect("telemetry migrations");
}

/// Stores a minute of bookinfo traffic, moves the clock two hours on with other traffic, and
/// replays the stored minute: the same edges and numbers as when it was live.
async fn replay_past_window(pool: sqlx::AnyPool) {
    // Pushes at T0, T0 + 5 s, ... T0 + 55 s: the minute [T0, T0 + 60 s) holds them all.
    let (graph, mut mesh) = bookinfo_pushes(T0);
    let graph = Arc::new(graph);
    let mut writer = HistoryWriter::new(pool.clone());
    assert_eq!(
        writer.flush(&graph).await.expect("flush"),
        0,
        "the minute is still open"
    );
    graph.clock().advance_ms(PUSH_MS);
    assert_eq!(writer.flush(&graph).await.expect("flush"), 1);
    assert_eq!(writer.flush(&graph).await.expect("flush again"), 0);

    // Two hours on, with traffic, so memory holds only recent minutes.
    for _ in 0..24 {
        graph.clock().advance_ms(300_000);
        mesh.interval();
        mesh.push(&graph, graph.clock().now_ms());
    }
    let mut past = query(GraphType::VersionedApp, &[]);
    past.query_time_ms = Some(T0 + 60_000);
    assert!(
        graph.query(&past).is_none(),
        "memory no longer holds that minute"
    );
    let replayed = history::query(&pool, &graph, &past).await.expect("replay");
    assert_eq!(json(&replayed.window.source), "history");
    assert_eq!(
        (replayed.window.start, replayed.window.end),
        (T0, T0 + 60_000)
    );
    assert_bookinfo_versioned_apps(&replayed);
    assert_eq!(replayed.edges.len(), 11);

    // Through the HTTP API as well.
    let (addr, server) = serve(router(GraphApi {
        graph: graph.clone(),
        history: Some(pool.clone()),
    }))
    .await;
    let (status, body) = get(
        addr,
        &format!(
            "/api/v1/graph?graphType=versionedApp&duration=1m&queryTime={}",
            T0 + 60_000
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["window"]["source"], "history");
    assert_eq!(body["edges"].as_array().unwrap().len(), 11);
    server.abort();

    // Pruned by age: the minute is gone.
    assert!(writer.prune(T0 + 60_000).await.unwrap() > 0);
    let pruned = history::query(&pool, &graph, &past).await.unwrap();
    assert!(pruned.edges.is_empty());
}

#[tokio::test]
async fn replay_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(dir.path()).await;
    tokio::time::timeout(Duration::from_secs(60), replay_past_window(pool.clone()))
        .await
        .expect("replay within a minute");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_postgres() {
    let Some(cluster) = graph::postgres::start_cluster() else {
        return;
    };
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&cluster.url())
        .await
        .expect("connect to PostgreSQL");
    migrate(&pool).await;
    tokio::time::timeout(Duration::from_secs(60), replay_past_window(pool.clone()))
        .await
        .expect("replay within a minute");
    pool.close().await;
    drop(cluster);
}

/// Serves `app` on a free loopback port until the returned task is aborted.
async fn serve(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

async fn get(addr: SocketAddr, uri: &str) -> (StatusCode, serde_json::Value) {
    let client = testkit::HttpClient::http1(addr).with_timeout(Duration::from_secs(10));
    let response = client.get("control", uri, &[]).await.expect("an answer");
    (
        response.status,
        serde_json::from_str(&response.body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn http_api_answers_and_refuses_bad_parameters() {
    let (graph, _) = bookinfo_minute();
    let (addr, server) = serve(router(GraphApi {
        graph: Arc::new(graph),
        history: None,
    }))
    .await;
    let (status, body) = get(
        addr,
        "/api/v1/graph?graphType=versionedApp&namespaces=bookinfo&duration=60s",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["graphType"], "versionedApp");
    assert_eq!(body["window"]["source"], "memory");
    let split = body["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["source"] == "service:bookinfo/reviews" && e["target"] == "app:bookinfo/reviews/v1"
        })
        .expect("the reviews v1 edge");
    assert!(
        (split["trafficSharePercent"].as_f64().unwrap() - 90.0).abs() < 1e-6,
        "{split}"
    );
    assert!(split["latencyMs"]["p99"].is_number());
    assert!(split["mtlsPercent"].is_number());

    // Defaults: workload graph, 60 s, now, every namespace.
    let (status, body) = get(addr, "/api/v1/graph").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["graphType"], "workload");
    assert_eq!(body["nodes"].as_array().unwrap().len(), 12);

    for (uri, names) in [
        ("/api/v1/graph?graphType=pods", "graphType"),
        ("/api/v1/graph?duration=forever", "duration"),
        ("/api/v1/graph?duration=0s", "duration"),
        ("/api/v1/graph?queryTime=last-tuesday", "queryTime"),
        ("/api/v1/graph?queryTime=4102444800000", "queryTime"),
        (
            "/api/v1/graph?injectServiceNodes=sometimes",
            "injectServiceNodes",
        ),
    ] {
        let (status, body) = get(addr, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(names), "{uri}: {error}");
        assert!(
            body["diagnostics"].is_array(),
            "the REST error shape: {body}"
        );
    }
    // Older than memory and no history: a clear refusal.
    let (status, body) = get(addr, &format!("/api/v1/graph?queryTime={}", T0 - 7_200_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("no graph history"),
        "{body}"
    );
    server.abort();
}

/// `promtool check metrics` accepts the exposition. Allowed: Istio's own metric name (not in
/// base units), and counters' HELP lines, which OpenMetrics (what prometheus-client writes) puts
/// on the family name without `_total` while promtool reads the Prometheus text format.
fn promtool_check(text: &str) {
    if !testkit::prometheus::available("promtool", "promtool check metrics") {
        return;
    }
    let report = testkit::prometheus::promtool_check_metrics(text).unwrap();
    let counters_help: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .map(|name| format!("{name}_total no help text"))
        .collect();
    let mut allowed: Vec<&str> = counters_help.iter().map(String::as_str).collect();
    allowed.push(
        "istio_request_duration_milliseconds use base unit \"seconds\" instead of \"milliseconds\"",
    );
    assert!(report.is_valid_except(&allowed), "promtool: {report:?}");
}

#[test]
fn prometheus_export_sums_proxies_and_never_goes_backwards() {
    let (graph, mut mesh) = bookinfo_minute();
    let graph = Arc::new(graph);
    let mut registry = prometheus_client::registry::Registry::default();
    graph.register_metrics(&mut registry);
    let scrape = |registry: &prometheus_client::registry::Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    };
    let text = scrape(&registry);
    promtool_check(&text);
    let line = |text: &str, prefix: &str, needles: &[&str]| -> f64 {
        let l = text
            .lines()
            .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no {prefix} line with {needles:?} in:\n{text}"));
        l.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // 12 pushes x 45 requests, as productpage's proxy reported them.
    let v1 = [
        "reporter=\"source\"",
        "destination_workload=\"reviews-v1\"",
        "response_code=\"200\"",
    ];
    close(
        line(&text, "istio_requests_total{", &v1),
        540.0,
        "mesh-wide requests",
    );
    // The proxy without `_total` in its names is exported under Istio's name.
    close(
        line(
            &text,
            "istio_requests_total{",
            &[
                "destination_workload=\"ratings-v1\"",
                "grpc_response_status=\"14\"",
            ],
        ),
        12.0,
        "ratings UNAVAILABLE",
    );
    assert!(
        text.contains("istio_request_duration_milliseconds_bucket{"),
        "histograms"
    );
    assert!(text.contains("le=\"25.0\""), "Envoy buckets");
    // Edge series over the last minute.
    close(
        line(
            &text,
            "trellis_graph_edge_requests_per_second{",
            &["destination_workload=\"reviews-v1\"", "protocol=\"http\""],
        ),
        9.0,
        "edge rate",
    );
    close(
        line(
            &text,
            "trellis_graph_edge_latency_p50_seconds{",
            &["destination_workload=\"reviews-v1\""],
        ),
        0.0175,
        "edge p50",
    );

    // productpage's proxy restarts: its counters start over, the mesh-wide ones do not.
    graph.clock().advance_ms(PUSH_MS);
    mesh.productpage.restart(graph.clock().now_ms());
    mesh.interval();
    mesh.push(&graph, graph.clock().now_ms());
    let text = scrape(&registry);
    close(
        line(&text, "istio_requests_total{", &v1),
        585.0,
        "after a restart",
    );
}
