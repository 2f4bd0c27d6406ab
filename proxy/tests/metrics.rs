//! Istio's standard metrics, end to end: a client workload's proxy (productpage-v1) sends to a
//! server workload's proxy (reviews-v2, ratings-v1 for gRPC) in front of echo apps; both proxies
//! report with the peer's metadata exchanged between them, the apps never see it, the scrape
//! passes promtool, and a real Prometheus answers Kiali's queries.

mod common;

use common::{Mesh, service_entry};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::echo::EchoServer;
use testkit::grpc::GrpcEchoServer;
use testkit::grpc::pb::EchoRequest;
use testkit::process::{ConfigDir, ProxyProcess};
use testkit::prometheus::{self, Prometheus, Sample};
use testkit::tcp::TcpEchoServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy beside one workload, with the directory it reads.
struct Sidecar {
    _dir: ConfigDir,
    proxy: ProxyProcess,
}

impl Sidecar {
    /// `workload` with `labels` (`k=v,...`), config `files`, and `extra` flags.
    async fn start(
        workload: &str,
        labels: &str,
        files: &[(&str, &str)],
        extra: &[&str],
    ) -> Sidecar {
        let mut args = vec![
            "--workload",
            workload,
            "--labels",
            labels,
            "--access-log",
            "off",
        ];
        args.extend_from_slice(extra);
        let Mesh { dir, proxy } = Mesh::start_with(files, &args).await;
        Sidecar { _dir: dir, proxy }
    }

    /// A server workload's sidecar: inbound on `inbound`, the app on `app_port`.
    async fn server(workload: &str, labels: &str, inbound: SocketAddr, app_port: u16) -> Sidecar {
        let (inbound, port) = (inbound.to_string(), app_port.to_string());
        Sidecar::start(
            workload,
            labels,
            &[],
            &["--inbound", &inbound, "--app-port", &port],
        )
        .await
    }

    async fn scrape(&self) -> String {
        let stats = self.proxy.stats_addr();
        let r = HttpClient::http1(stats)
            .get(&stats.to_string(), "/stats/prometheus", &[])
            .await
            .expect("stats port answers");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        r.body
    }

    async fn samples(&self) -> Vec<Sample> {
        prometheus::parse_exposition(&self.scrape().await).expect("exposition parses")
    }

    /// Scrapes until `pred` holds of the samples (records are reported when responses end).
    async fn wait_samples(&self, what: &str, pred: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let samples = self.samples().await;
            if pred(&samples) {
                return samples;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not seen; scrape:\n{}",
                self.scrape().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The value of `name` in the series whose labels include all of `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<_> = samples
        .iter()
        .filter(|s| s.label("__name__") == Some(name))
        .filter(|s| want.iter().all(|(k, v)| s.label(k) == Some(v)))
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {want:?} matches several series: {found:#?}"
    );
    found.first().map(|s| s.value)
}

/// The labels (without `__name__`) of the one `name` series matching `want`.
fn labels_of(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut found = samples
        .iter()
        .filter(|s| s.label("__name__") == Some(name))
        .filter(|s| want.iter().all(|(k, v)| s.label(k) == Some(v)));
    let s = found
        .next()
        .unwrap_or_else(|| panic!("no {name} series with {want:?}"));
    let mut labels = s.labels.clone();
    labels.remove("__name__");
    labels
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const CLIENT_LABELS: &str = "app=productpage,version=v1";
const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn source_side() -> Vec<(&'static str, &'static str)> {
    vec![
        ("source_workload", "productpage-v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "v1"),
        ("source_workload_namespace", "default"),
        ("source_principal", "unknown"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_cluster", "Kubernetes"),
    ]
}

fn reviews_side() -> Vec<(&'static str, &'static str)> {
    vec![
        ("destination_workload", "reviews-v2"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", "reviews"),
        ("destination_version", "v2"),
        ("destination_service", REVIEWS),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v2"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("destination_cluster", "Kubernetes"),
    ]
}

/// productpage-v1's sidecar and reviews-v2's (in front of an echo app), and the client's config
/// naming `reviews` (and `external`, an echo app with no sidecar).
struct Pair {
    reviews_app: EchoServer,
    external: EchoServer,
    client: Sidecar,
    server: Sidecar,
}

async fn start_pair(extra_files: &[(&str, String)]) -> Pair {
    let reviews_app = EchoServer::start("reviews-app").await;
    let external = EchoServer::start("external").await;
    let server_inbound = testkit::free_addr();
    let server = Sidecar::server(
        "reviews-v2",
        "app=reviews,version=v2",
        server_inbound,
        reviews_app.port(),
    )
    .await;
    let reviews = service_entry("reviews", REVIEWS, 9080, "HTTP", &[(server_inbound, "")]);
    let ext = service_entry(
        "external",
        "external.example.com",
        80,
        "HTTP",
        &[(external.addr(), "")],
    );
    let mut files = vec![
        ("reviews.yaml", reviews.as_str()),
        ("external.yaml", ext.as_str()),
    ];
    files.extend(extra_files.iter().map(|(n, y)| (*n, y.as_str())));
    let client = Sidecar::start("productpage-v1", CLIENT_LABELS, &files, &[]).await;
    Pair {
        reviews_app,
        external,
        client,
        server,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_requests_are_reported_by_both_sides_with_peer_metadata() {
    let p = start_pair(&[]).await;
    let http = HttpClient::http1(p.client.proxy.outbound_addr());
    // The app tries to pass for another workload: the proxy replaces its header.
    let forged = [
        ("x-trellis-peer", "1;w=forged;n=evil"),
        ("x-trellis-peer-service", "x"),
    ];
    for _ in 0..4 {
        let r = http
            .get("reviews:9080", "/reviews/1", &forged)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(
            r.header("x-trellis-peer").is_none(),
            "the app never sees peer metadata"
        );
        let seen = r.json().unwrap();
        assert_eq!(seen.server, "reviews-app");
        assert!(
            seen.header("x-trellis-peer").is_none()
                && seen.header("x-trellis-peer-service").is_none(),
            "the app never sees peer metadata: {:?}",
            seen.headers
        );
    }
    let r = http
        .request(
            http::Method::POST,
            "http://reviews:9080/reviews",
            &[],
            vec![b'x'; 1000],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    p.reviews_app.set_status(Some(500));
    for _ in 0..2 {
        let r = http.get("reviews:9080", "/broken", &[]).await.unwrap();
        assert_eq!(r.status, 500);
    }
    p.reviews_app.set_status(None);
    // An upstream with no sidecar: nobody answers with metadata.
    let r = http.get("external.example.com", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);

    let ok = [
        ("response_code", "200"),
        ("destination_service_name", "reviews"),
    ];
    let source = p
        .client
        .wait_samples("client's 200s", |s| {
            value(s, "istio_requests_total", &ok) == Some(5.0)
        })
        .await;
    let mut expected: Vec<(&str, &str)> = vec![("reporter", "source")];
    expected.extend(source_side());
    expected.extend(reviews_side());
    expected.extend([
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("grpc_response_status", ""),
        ("response_flags", "-"),
        ("connection_security_policy", "unknown"),
    ]);
    assert_eq!(
        labels_of(&source, "istio_requests_total", &ok),
        map(&expected)
    );
    let errors = [("response_code", "500"), ("reporter", "source")];
    assert_eq!(value(&source, "istio_requests_total", &errors), Some(2.0));
    assert_eq!(
        value(&source, "istio_request_bytes_sum", &ok),
        Some(1000.0),
        "request body bytes"
    );
    assert_eq!(value(&source, "istio_request_bytes_count", &ok), Some(5.0));
    assert!(value(&source, "istio_response_bytes_sum", &ok).unwrap() > 0.0);
    let le_inf = [ok[0], ok[1], ("le", "+Inf")];
    assert_eq!(
        value(
            &source,
            "istio_request_duration_milliseconds_bucket",
            &le_inf
        ),
        Some(5.0)
    );
    assert_eq!(
        value(&source, "istio_request_duration_milliseconds_count", &ok),
        Some(5.0)
    );
    // No mesh proxy answered: the destination workload is unknown, the service is the host's.
    let ext = labels_of(
        &source,
        "istio_requests_total",
        &[("destination_service", "external.example.com")],
    );
    assert_eq!(ext["destination_workload"], "unknown");
    assert_eq!(ext["destination_workload_namespace"], "unknown");
    assert_eq!(ext["destination_app"], "unknown");
    assert_eq!(ext["destination_canonical_service"], "unknown");
    assert_eq!(ext["destination_canonical_revision"], "latest");
    assert_eq!(ext["destination_service_name"], "external.example.com");
    assert_eq!(ext["destination_service_namespace"], "default");
    assert_eq!(ext["source_workload"], "productpage-v1");
    assert_eq!(
        value(
            &source,
            "trellis_telemetry_dropped_total",
            &[("signal", "access_log")]
        ),
        Some(0.0)
    );

    let dest = p
        .server
        .wait_samples("server's 500s", |s| {
            value(s, "istio_requests_total", &[("response_code", "500")]) == Some(2.0)
        })
        .await;
    let mut expected: Vec<(&str, &str)> = vec![("reporter", "destination")];
    expected.extend(source_side());
    expected.extend(reviews_side());
    expected.extend([
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("grpc_response_status", ""),
        ("response_flags", "-"),
        ("connection_security_policy", "none"),
    ]);
    assert_eq!(
        labels_of(&dest, "istio_requests_total", &[("response_code", "200")]),
        map(&expected)
    );
    assert_eq!(
        value(&dest, "istio_requests_total", &[("response_code", "200")]),
        Some(5.0)
    );
    assert_eq!(
        value(
            &dest,
            "istio_request_bytes_sum",
            &[("response_code", "200")]
        ),
        Some(1000.0)
    );

    // A client outside the mesh reaching the server's inbound port directly: unknown source.
    let r = HttpClient::http1(p.server.proxy.inbound_addr())
        .get("reviews", "/direct", &[("x-trellis-peer", "garbage;;%%")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json().unwrap().header("x-trellis-peer").is_none());
    let unknown = [("source_workload", "unknown")];
    let dest = p
        .server
        .wait_samples("unknown source", |s| {
            value(s, "istio_requests_total", &unknown) == Some(1.0)
        })
        .await;
    let l = labels_of(&dest, "istio_requests_total", &unknown);
    assert_eq!(l["source_canonical_service"], "unknown");
    assert_eq!(l["source_canonical_revision"], "latest");
    assert_eq!(l["source_workload_namespace"], "unknown");
    assert_eq!(l["source_cluster"], "unknown");
    assert_eq!(l["destination_workload"], "reviews-v2");
    assert_eq!(l["destination_service"], "reviews", "the request's host");

    // Both scrapes are valid exposition; the only lint is Istio's own metric name.
    for side in [&p.client, &p.server] {
        let text = side.scrape().await;
        if !prometheus::available("promtool", "promtool check metrics") {
            break;
        }
        let report = prometheus::promtool_check_metrics(&text).unwrap();
        assert!(
            report.is_valid_except(&[
                "istio_request_duration_milliseconds use base unit \"seconds\" instead of \"milliseconds\""
            ]),
            "promtool: {report:?}\n{text}"
        );
    }
    drop(p.external);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_status_and_message_counts() {
    let app = GrpcEchoServer::start("ratings-app").await;
    let inbound = testkit::free_addr();
    let server = Sidecar::server(
        "ratings-v1",
        "app=ratings,version=v1",
        inbound,
        app.addr().port(),
    )
    .await;
    let ratings = "ratings.default.svc.cluster.local";
    let se = service_entry("ratings", ratings, 9090, "GRPC", &[(inbound, "")]);
    let client = Sidecar::start("productpage-v1", CLIENT_LABELS, &[("se.yaml", &se)], &[]).await;
    let mut grpc =
        testkit::grpc::client(client.proxy.outbound_addr(), "ratings:9090").expect("gRPC client");
    let ask = |fail_with_code: i32| EchoRequest {
        message: "rate".into(),
        fail_with_code,
    };
    for _ in 0..2 {
        grpc.unary(ask(0)).await.unwrap();
    }
    let mut stream = grpc.server_stream(ask(0)).await.unwrap().into_inner();
    let mut streamed = 0;
    while stream.message().await.unwrap().is_some() {
        streamed += 1;
    }
    assert_eq!(streamed, testkit::grpc::STREAM_LEN);
    let err = grpc.unary(ask(5)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let metadata = app.last_metadata().expect("the app saw requests");
    assert!(
        metadata.get("x-trellis-peer").is_none()
            && metadata.get("x-trellis-peer-service").is_none()
    );

    for (side, reporter, peer_workload) in [
        (&client, "source", "ratings-v1"),
        (&server, "destination", "productpage-v1"),
    ] {
        let ok = [("grpc_response_status", "0"), ("reporter", reporter)];
        let samples = side
            .wait_samples("gRPC OK", |s| {
                value(s, "istio_requests_total", &ok) == Some(3.0)
            })
            .await;
        let l = labels_of(&samples, "istio_requests_total", &ok);
        assert_eq!(l["request_protocol"], "grpc");
        assert_eq!(l["response_code"], "200");
        assert_eq!(l["destination_service"], ratings);
        assert_eq!(l["destination_service_name"], "ratings");
        let peer_label = if reporter == "source" {
            "destination_workload"
        } else {
            "source_workload"
        };
        assert_eq!(l[peer_label], peer_workload);
        assert_eq!(
            value(&samples, "istio_request_messages_total", &ok),
            Some(3.0)
        );
        let responses = 2.0 + testkit::grpc::STREAM_LEN as f64;
        assert_eq!(
            value(&samples, "istio_response_messages_total", &ok),
            Some(responses)
        );
        let not_found = [("grpc_response_status", "5"), ("reporter", reporter)];
        let samples = side
            .wait_samples("gRPC NOT_FOUND", |s| {
                value(s, "istio_requests_total", &not_found) == Some(1.0)
            })
            .await;
        assert_eq!(
            value(&samples, "istio_request_messages_total", &not_found),
            Some(1.0)
        );
        assert_eq!(
            value(&samples, "istio_response_messages_total", &not_found),
            Some(0.0)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tcp_connections_are_counted() {
    let app = TcpEchoServer::start("db").await;
    let server = Sidecar::server(
        "mysqldb-v1",
        "app=mysqldb,version=v1",
        testkit::free_addr(),
        app.addr().port(),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(server.proxy.inbound_addr())
        .await
        .unwrap();
    s.write_all(b"\x00\x01binary-ping").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"binary-ping") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    // Bytes show while the connection is still open.
    let open = server
        .wait_samples("bytes of the open connection", |s| {
            value(s, "istio_tcp_received_bytes_total", &[]) == Some(13.0)
        })
        .await;
    assert_eq!(
        value(&open, "istio_tcp_connections_opened_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&open, "istio_tcp_connections_closed_total", &[]),
        Some(0.0)
    );
    drop(s);
    let samples = server
        .wait_samples("closed connection", |s| {
            value(s, "istio_tcp_connections_closed_total", &[]) == Some(1.0)
        })
        .await;
    assert_eq!(
        value(&samples, "istio_tcp_connections_opened_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "istio_tcp_received_bytes_total", &[]),
        Some(13.0)
    );
    assert_eq!(
        value(&samples, "istio_tcp_sent_bytes_total", &[]),
        Some(got.len() as f64)
    );
    let l = labels_of(&samples, "istio_tcp_connections_opened_total", &[]);
    // No headers on opaque TCP: the source stays unknown.
    assert_eq!(l["reporter"], "destination");
    assert_eq!(l["source_workload"], "unknown");
    assert_eq!(l["destination_workload"], "mysqldb-v1");
    assert_eq!(l["destination_app"], "mysqldb");
    assert_eq!(l["request_protocol"], "tcp");
    assert_eq!(l["connection_security_policy"], "none");
    assert!(!l.contains_key("response_code") && !l.contains_key("grpc_response_status"));
    assert!(value(&samples, "istio_requests_total", &[]).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_both_proxies_and_answers_kiali_queries() {
    if !prometheus::available(
        "prometheus",
        "prometheus_scrapes_both_proxies_and_answers_kiali_queries",
    ) {
        return;
    }
    let p = start_pair(&[]).await;
    let prom = Prometheus::start(
        &[
            ("productpage", p.client.proxy.stats_addr()),
            ("reviews", p.server.proxy.stats_addr()),
        ],
        "/stats/prometheus",
        Duration::from_secs(1),
    )
    .await
    .expect("prometheus starts");

    // Steady traffic while Prometheus scrapes, so rates are above zero.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, outbound) = (stop.clone(), p.client.proxy.outbound_addr());
        tokio::spawn(async move {
            let http = HttpClient::http1(outbound);
            while !stop.load(Ordering::Relaxed) {
                let _ = http.get("reviews:9080", "/reviews/1", &[]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let rate = r#"sum(rate(istio_requests_total{reporter="source"}[1m])) by (source_workload, destination_service_name, response_code)"#;
    let (ok, samples) = prom
        .query_until(rate, Duration::from_secs(30), |s| {
            s.iter().any(|s| s.value > 0.0)
        })
        .await
        .unwrap();
    assert!(
        ok,
        "no rate: {samples:?}; targets: {:?}",
        prom.targets().await
    );
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].label("source_workload"), Some("productpage-v1"));
    assert_eq!(
        samples[0].label("destination_service_name"),
        Some("reviews")
    );
    assert_eq!(samples[0].label("response_code"), Some("200"));

    let p95 = r#"histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination"}[1m])) by (le, destination_workload))"#;
    let (ok, samples) = prom
        .query_until(p95, Duration::from_secs(30), |s| {
            s.iter().any(|s| s.value.is_finite())
        })
        .await
        .unwrap();
    assert!(ok, "no p95: {samples:?}");
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].label("destination_workload"), Some("reviews-v2"));
    assert!(
        (0.0..=3_600_000.0).contains(&samples[0].value),
        "a quantile within the buckets: {}",
        samples[0].value
    );

    // Kiali's graph joins the two reporters on these labels.
    let edge = r#"sum(istio_requests_total{reporter="destination",source_workload="productpage-v1",destination_service="reviews.default.svc.cluster.local"}) by (destination_workload, destination_version)"#;
    let samples = prom.query(edge).await.unwrap();
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].label("destination_version"), Some("v2"));

    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), traffic).await;
    let targets = prom.targets().await.unwrap();
    assert!(
        targets.iter().all(|(_, health, _)| health == "up"),
        "{targets:?}"
    );
}
