//! The conversions to the console's types, and the error mapping, on hand-made views.

use super::graph::{BadgeIndex, collector_query, to_console};
use super::summary::{health_inputs, mtls_status, namespace_traffic, traffic_of};
use super::{revision_summary, service_name, store_error};
use crate::collector::graph::GraphJson;
use crate::collector::graph::GraphType;
use crate::collector::graph::health::Health;
use crate::collector::graph::model::Protocol;
use crate::collector::graph::view::{
    EdgeJson, NodeJson, Quantiles, Traffic, WindowJson, WindowSource,
};
use crate::collector::spans::SpanRow;
use crate::store::{Action, Change, Revision, StoreError};
use std::collections::BTreeMap;
use trellis_api::{ConfigSet, Diagnostic};
use trellis_console::BackendError;
use trellis_console::graph::model as console;
use trellis_console::model::MtlsStatus;

fn node(id: &str, node_type: &str, ns: &str, name: &str) -> NodeJson {
    NodeJson {
        id: id.into(),
        node_type: node_type.into(),
        namespace: Some(ns.into()),
        workload: (node_type == "workload").then(|| name.into()),
        app: None,
        version: None,
        service: (node_type == "service").then(|| name.into()),
        health: Health::Healthy,
        is_outside: false,
        from_traces: false,
        traffic_in: Traffic::default(),
        traffic_out: Traffic {
            requests_per_second: 10.0,
            errors_per_second: 0.0,
            tcp_bytes_per_second: 0.0,
        },
    }
}

fn edge(
    source: &str,
    target: &str,
    protocol: Protocol,
    rps: f64,
    codes: &[(&str, f64)],
) -> EdgeJson {
    EdgeJson {
        id: format!("{source}->{target}"),
        source: source.into(),
        target: target.into(),
        protocol,
        from_traces: false,
        requests_per_second: rps,
        errors_per_second: 0.0,
        error_percent: 0.0,
        responses: codes
            .iter()
            .map(|(c, r)| (c.to_string(), *r))
            .collect::<BTreeMap<_, _>>(),
        latency_ms: Some(Quantiles {
            p50: 10.0,
            p95: 20.0,
            p99: 40.0,
        }),
        request_bytes_per_second: 100.0,
        response_bytes_per_second: 300.0,
        mtls_percent: 100.0,
        traffic_share_percent: 100.0,
        health: Health::Degraded,
    }
}

fn view(nodes: Vec<NodeJson>, edges: Vec<EdgeJson>, source: WindowSource) -> GraphJson {
    GraphJson {
        graph_type: GraphType::Workload,
        namespaces: vec![],
        window: WindowJson {
            start: 1_000,
            end: 61_000,
            seconds: 60.0,
            source,
        },
        nodes,
        edges,
    }
}

fn config(yaml: &str) -> ConfigSet {
    ConfigSet::from_resources(trellis_api::load_str(yaml, "test.yaml").unwrap()).unwrap()
}

const BADGED: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  http:
  - route: [{destination: {host: ratings}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details, namespace: shop}
spec:
  host: details
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3}}
";

#[test]
fn graph_view_becomes_console_graph_with_badges() {
    let v = view(
        vec![
            node(
                "workload:shop/productpage",
                "workload",
                "shop",
                "productpage",
            ),
            node("service:shop/reviews", "service", "shop", "reviews"),
            node("service:shop/ratings", "service", "shop", "ratings"),
            node("service:shop/details", "service", "shop", "details"),
        ],
        vec![
            edge(
                "workload:shop/productpage",
                "service:shop/reviews",
                Protocol::Http,
                5.0,
                &[],
            ),
            edge(
                "service:shop/reviews",
                "service:shop/ratings",
                Protocol::Grpc,
                2.0,
                &[],
            ),
        ],
        WindowSource::History,
    );
    let data = to_console(&v, &BadgeIndex::of(&config(BADGED)));
    assert_eq!(
        data.window,
        console::Window {
            start_ms: 1_000,
            end_ms: 61_000,
            from_history: true
        }
    );
    let by_id = |id: &str| data.nodes.iter().find(|n| n.id == id).unwrap();
    let product = by_id("workload:shop/productpage");
    assert_eq!(product.kind, console::NodeKind::Workload);
    assert_eq!(product.label(), "productpage");
    assert!(product.badges.is_root);
    assert!(!product.badges.virtual_service);
    let reviews = by_id("service:shop/reviews");
    assert_eq!(reviews.kind, console::NodeKind::Service);
    assert!(reviews.badges.virtual_service && reviews.badges.fault_injection);
    assert!(!reviews.badges.circuit_breaker && !reviews.badges.is_root);
    let ratings = by_id("service:shop/ratings");
    assert!(ratings.badges.virtual_service && !ratings.badges.fault_injection);
    let details = by_id("service:shop/details");
    assert!(details.badges.circuit_breaker && !details.badges.virtual_service);
    assert_eq!(product.traffic_out.requests_per_second, 10.0);

    let e = &data.edges[1];
    assert_eq!(e.protocol, console::Protocol::Grpc);
    assert_eq!(e.requests_per_second, 2.0);
    assert_eq!(e.bytes_per_second, 400.0);
    assert_eq!(e.health, console::Health::Degraded);
    assert_eq!(e.latency_ms.unwrap().p99, 40.0);
    assert!(e.is_mtls());
}

#[test]
fn health_inputs_split_errors_by_protocol() {
    let edges = [
        edge(
            "a",
            "b",
            Protocol::Http,
            10.0,
            &[("200", 7.0), ("503", 2.0), ("404", 1.0)],
        ),
        edge("a", "c", Protocol::Grpc, 10.0, &[("0", 9.0), ("14", 1.0)]),
        edge("a", "d", Protocol::Tcp, 3.0, &[]),
    ];
    let t = health_inputs(&edges);
    assert_eq!(t.request_rate, 20.0);
    assert!((t.http_5xx_percent - 20.0).abs() < 1e-9);
    assert!((t.http_4xx_percent - 10.0).abs() < 1e-9);
    assert!((t.grpc_error_percent - 10.0).abs() < 1e-9);
    assert_eq!(health_inputs(&[]).request_rate, 0.0);
}

#[test]
fn traffic_of_a_node_weighs_latency_by_requests() {
    let mut slow = edge("x", "svc", Protocol::Http, 3.0, &[("200", 3.0)]);
    slow.latency_ms = Some(Quantiles {
        p50: 50.0,
        p95: 100.0,
        p99: 200.0,
    });
    let v = view(
        vec![],
        vec![
            edge("w", "svc", Protocol::Http, 1.0, &[("200", 1.0)]),
            slow,
            edge("svc", "db", Protocol::Http, 4.0, &[("500", 4.0)]),
        ],
        WindowSource::Memory,
    );
    let t = traffic_of(&v, "svc");
    assert_eq!(t.inbound.request_rate, 4.0);
    assert_eq!(t.outbound.http_5xx_percent, 100.0);
    assert_eq!(t.p50_ms, Some((10.0 + 3.0 * 50.0) / 4.0));
    assert_eq!(traffic_of(&v, "nobody").p95_ms, None);
}

#[test]
fn namespace_traffic_and_mtls_from_edges_unless_a_policy_says() {
    let mut plain = edge(
        "workload:a/x",
        "workload:b/y",
        Protocol::Http,
        2.0,
        &[("200", 2.0)],
    );
    plain.mtls_percent = 0.0;
    let v = view(
        vec![
            node("workload:a/x", "workload", "a", "x"),
            node("workload:b/y", "workload", "b", "y"),
            node("workload:a/z", "workload", "a", "z"),
        ],
        vec![
            plain,
            edge(
                "workload:b/y",
                "workload:a/z",
                Protocol::Http,
                1.0,
                &[("200", 1.0)],
            ),
        ],
        WindowSource::Memory,
    );
    let traffic = namespace_traffic(&v);
    assert_eq!(traffic["b"].request_rate, 2.0);
    assert_eq!(traffic["a"].request_rate, 1.0);
    let none = ConfigSet::new();
    assert_eq!(
        mtls_status("a", &none, &v, "istio-system"),
        MtlsStatus::Enabled
    );
    assert_eq!(
        mtls_status("b", &none, &v, "istio-system"),
        MtlsStatus::Disabled
    );
    assert_eq!(
        mtls_status("c", &none, &v, "istio-system"),
        MtlsStatus::Disabled
    );
    let strict = config(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
",
    );
    assert_eq!(
        mtls_status("b", &strict, &v, "istio-system"),
        MtlsStatus::Enabled
    );
}

#[test]
fn store_errors_map_to_page_errors() {
    let d = Diagnostic::error("spec.http[0].route: weights must add up to 100");
    assert_eq!(
        store_error(StoreError::Invalid(vec![d.clone()])),
        BackendError::Invalid(vec![d])
    );
    assert_eq!(
        store_error(StoreError::NoSuchRevision(9, 3)),
        BackendError::BadRequest("revision 9 does not exist (latest is 3)".into())
    );
    assert!(matches!(
        store_error(StoreError::Database("disk full".into())),
        BackendError::Unavailable(m) if m.contains("disk full")
    ));
    assert_eq!(
        store_error(StoreError::NotFound("VirtualService a/b".into())).to_string(),
        "VirtualService a/b not found"
    );
}

#[test]
fn graph_queries_out_of_range_are_refused() {
    let now = 1_800_000_000_000;
    let ok = collector_query(&console::GraphQuery::default(), now).unwrap();
    assert_eq!(ok.duration_ms, 60_000);
    assert!(ok.view.inject_service_nodes);
    let q = |duration_secs, query_time_ms| console::GraphQuery {
        duration_secs,
        query_time_ms,
        graph_type: console::GraphType::VersionedApp,
        ..console::GraphQuery::default()
    };
    assert_eq!(
        collector_query(&q(600, Some(now - 5)), now)
            .unwrap()
            .view
            .graph_type,
        GraphType::VersionedApp
    );
    for bad in [
        q(0, None),
        q(8 * 86_400, None),
        q(60, Some(now + 3_600_000)),
    ] {
        assert!(
            matches!(collector_query(&bad, now), Err(BackendError::BadRequest(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn history_lines_and_service_names() {
    let change = |name: &str, action| Change {
        kind: "VirtualService".into(),
        namespace: "shop".into(),
        name: name.into(),
        action,
    };
    let r = Revision {
        revision: 4,
        time: "2026-11-21T10:00:00.000Z".into(),
        time_unix_ms: 0,
        author: "ann".into(),
        message: String::new(),
        changes: vec![
            change("reviews", Action::Created),
            change("ratings", Action::Configured),
        ],
    };
    let line = revision_summary(r.clone());
    assert_eq!(line.number, 4);
    assert_eq!(
        line.summary,
        "VirtualService shop/reviews created, VirtualService shop/ratings configured"
    );
    let with_message = Revision {
        message: "shift to v2".into(),
        ..r
    };
    assert_eq!(revision_summary(with_message).summary, "shift to v2");
    assert_eq!(
        service_name("reviews.shop.svc.cluster.local", "shop"),
        "reviews"
    );
    assert_eq!(service_name("api.example.com", "shop"), "api.example.com");
}

fn span(id: &str, parent: &str, service: &str, start: i64, duration: i64, status: i64) -> SpanRow {
    SpanRow {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: id.into(),
        parent_id: parent.into(),
        service: service.into(),
        operation: format!("{service} op"),
        kind: 2,
        start_us: start,
        duration_us: duration,
        status_code: status,
        status_message: String::new(),
        flags: 0,
        scope_name: String::new(),
        scope_version: String::new(),
        attributes: "{}".into(),
        process_id: String::new(),
        process: "[]".into(),
        events: "[]".into(),
        links: "[]".into(),
    }
}

#[test]
fn trace_summary_finds_the_root_and_the_whole_duration() {
    let spans = [
        span("b", "a", "reviews", 1_100, 500, 2),
        span("a", "", "productpage", 1_000, 800, 0),
        span("c", "b", "ratings", 1_200, 1_000, 0),
    ];
    let s = super::traces::summary(&spans);
    assert_eq!(s.root_service, "productpage");
    assert_eq!(s.root_operation, "productpage op");
    assert_eq!((s.start_us, s.duration_us), (1_000, 1_200));
    assert_eq!((s.spans, s.errors), (3, 1));
    assert_eq!(s.services, ["productpage", "ratings", "reviews"]);
}

#[test]
fn trace_searches_need_a_service_and_a_sane_window() {
    use super::traces::scan_of;
    use trellis_console::model::TraceQuery;
    let q = TraceQuery {
        service: " reviews ".into(),
        operation: Some(String::new()),
        ..TraceQuery::default()
    };
    let scan = scan_of(&q, 10_000_000_000).unwrap();
    assert_eq!(scan.service, "reviews");
    assert_eq!(scan.operation, None);
    assert_eq!(scan.end_us - scan.start_us, 3_600_000_000);
    for bad in [
        TraceQuery::default(),
        TraceQuery {
            start_us: Some(5),
            end_us: Some(1),
            ..q.clone()
        },
        TraceQuery {
            min_duration_us: Some(10),
            max_duration_us: Some(5),
            ..q.clone()
        },
    ] {
        assert!(
            matches!(scan_of(&bad, 0), Err(BackendError::BadRequest(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn detail_tables_name_the_peer_busiest_first() {
    use super::detail::edges;
    use trellis_console::model::{Direction, PeerKind};
    let mut unknown = node("unknown", "unknown", "", "");
    unknown.namespace = None;
    let v = view(
        vec![
            node("workload:shop/web", "workload", "shop", "web"),
            node("service:shop/reviews", "service", "shop", "reviews"),
            node("workload:shop/reviews-v1", "workload", "shop", "reviews-v1"),
            unknown,
        ],
        vec![
            edge(
                "workload:shop/web",
                "service:shop/reviews",
                Protocol::Http,
                1.0,
                &[("200", 1.0)],
            ),
            edge(
                "unknown",
                "service:shop/reviews",
                Protocol::Http,
                3.0,
                &[("503", 3.0)],
            ),
            edge(
                "service:shop/reviews",
                "workload:shop/reviews-v1",
                Protocol::Http,
                4.0,
                &[],
            ),
        ],
        WindowSource::Memory,
    );
    let inbound = edges(&v, "service:shop/reviews", Direction::Inbound);
    assert_eq!(inbound.len(), 2);
    assert_eq!(
        (inbound[0].peer_kind.clone(), inbound[0].peer_name.as_str()),
        (PeerKind::Unknown, "unknown")
    );
    assert_eq!(inbound[0].traffic.http_5xx_percent, 100.0);
    assert_eq!(inbound[1].peer_name, "web");
    assert_eq!(inbound[1].peer_namespace, "shop");
    assert_eq!(inbound[1].p95_ms, Some(20.0));
    let outbound = edges(&v, "service:shop/reviews", Direction::Outbound);
    assert_eq!(outbound[0].peer_kind, PeerKind::Workload);
    assert_eq!(outbound[0].peer_name, "reviews-v1");
    assert_eq!(outbound[0].protocol, "http");
}

#[test]
fn series_steps_end_at_the_query_time_and_bad_steps_are_refused() {
    use super::detail::{point, steps};
    use std::time::Duration;
    use trellis_console::model::{Direction, SeriesQuery, TrafficTarget};
    let q = |window: u64, step: u64| SeriesQuery {
        target: TrafficTarget::Service {
            namespace: "shop".into(),
            name: "reviews".into(),
        },
        direction: Direction::Inbound,
        window: Duration::from_secs(window),
        step: Duration::from_secs(step),
        end_us: Some(600_000_000),
    };
    assert_eq!(
        steps(&q(60, 20), 0).unwrap(),
        [560_000_000, 580_000_000, 600_000_000]
    );
    for bad in [q(60, 0), q(60, 120), q(86_400 * 7, 60)] {
        assert!(
            matches!(steps(&bad, 0), Err(BackendError::BadRequest(_))),
            "{bad:?}"
        );
    }
    let v = view(
        vec![],
        vec![edge(
            "a",
            "service:shop/reviews",
            Protocol::Http,
            4.0,
            &[("200", 3.0), ("500", 1.0)],
        )],
        WindowSource::Memory,
    );
    let p = point(&v, "service:shop/reviews", Direction::Inbound, 7).unwrap();
    assert_eq!((p.t_us, p.request_rate, p.error_percent), (7, 4.0, 25.0));
    assert_eq!(p.p50_ms, Some(10.0));
    assert!(point(&v, "service:shop/reviews", Direction::Outbound, 7).is_none());
}

#[test]
fn mesh_service_names_find_the_spans_of_istio_canonical_names() {
    use super::traces::qualified_services;
    let known: Vec<String> = [
        "reviews.default",
        "reviews.shop",
        "reviews.v2.x",
        "frontend",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        qualified_services(&known, "reviews"),
        ["reviews.default", "reviews.shop"]
    );
    assert_eq!(qualified_services(&known, "frontend"), ["frontend"]);
    assert_eq!(qualified_services(&known, "reviews.shop"), ["reviews.shop"]);
    assert_eq!(qualified_services(&known, "ratings"), ["ratings"]);
}

#[test]
fn access_log_records_become_tap_events() {
    use crate::collector::logs::LogRow;
    use trellis_console::model::TapDirection;
    let row = |body: &str| LogRow {
        time_us: 1_795_255_200_000_000,
        observed_us: 0,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: body.into(),
        attributes: "{}".into(),
        resource: r#"{"trellis.workload":"web","k8s.namespace.name":"shop"}"#.into(),
        service: "web.shop".into(),
        scope_name: String::new(),
        trace_id: String::new(),
        span_id: String::new(),
    };
    let out = super::tap::event(&row(
        r#"{"direction":"outbound","method":"GET","path":"/a?b=<c>","authority":"reviews:9080","response_code":503,"duration":12,"response_flags":"UF"}"#,
    ))
    .unwrap();
    assert_eq!(out.direction, TapDirection::Outbound);
    assert_eq!(
        (out.source.as_str(), out.destination.as_str()),
        ("web.shop", "reviews:9080")
    );
    assert_eq!(
        (out.status, out.duration_ms, out.flags.as_str()),
        (503, 12.0, "UF")
    );
    assert_eq!(out.path, "/a?b=<c>");
    assert_eq!(out.time, "2026-11-21T10:00:00.000Z");
    let inbound = super::tap::event(&row(
        r#"{"direction":"inbound","downstream_remote_address":"10.0.0.7:5000","response_code":null}"#,
    ))
    .unwrap();
    assert_eq!(
        (inbound.source.as_str(), inbound.destination.as_str()),
        ("10.0.0.7:5000", "web.shop")
    );
    assert_eq!((inbound.status, inbound.flags.as_str()), (0, "-"));
    assert!(super::tap::event(&row("plain text log line")).is_none());
    assert!(super::tap::event(&row(r#"{"msg":"hello"}"#)).is_none());
}
