//! Outbound mutual TLS between two proxies: client proxy A reaches proxy B (in front of an echo
//! app) through ServiceEntries that mark B as a sidecar (`security.istio.io/tlsMode: istio`) with
//! its service account. B is STRICT, so a request that gets through went over mutual TLS.

mod common;

use common::{Mesh, TestCa, stat_value};
use std::net::SocketAddr;
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::echo::EchoServer;
use testkit::process::ConfigDir;

const WAIT: Duration = Duration::from_secs(5);
const A_ID: &str = "spiffe://cluster.local/ns/default/sa/client";
const B_ID: &str = "spiffe://cluster.local/ns/default/sa/server";

/// A ServiceEntry for `host` whose one endpoint is B's inbound listener, with a sidecar and the
/// service account `sa`.
fn mesh_entry(name: &str, host: &str, protocol: &str, b: SocketAddr, sa: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: main, protocol: {protocol}}}]
  endpoints:
  - address: {ip}
    ports: {{main: {port}}}
    labels: {{app: server, security.istio.io/tlsMode: istio}}
    serviceAccount: {sa}
---
",
        ip = b.ip(),
        port = b.port()
    )
}

/// Starts a proxy with a certificate for `id` from `ca`.
async fn start(ca: &TestCa, id: &str, files: &[(&str, &str)], flags: &[&str]) -> (Mesh, ConfigDir) {
    let certs = ConfigDir::new();
    let mut all = ca.proxy_flags(&certs, id);
    all.extend(flags.iter().map(|f| f.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    (Mesh::start_with(files, &all).await, certs)
}

/// B: the `server` workload's proxy (service account `server`) in front of `app`, with the
/// PeerAuthentication `peer_auth`.
async fn start_server(ca: &TestCa, peer_auth: &str, app: &EchoServer) -> (Mesh, ConfigDir) {
    let app_port = app.port().to_string();
    let flags = [
        "--app-port",
        &app_port,
        "--workload",
        "server-v1",
        "--labels",
        "app=server,version=v1",
        "--service-account",
        "server",
    ];
    start(ca, B_ID, &[("pa.yaml", peer_auth)], &flags).await
}

/// `istio_requests_total` lines with all of `labels`.
fn requests<'a>(stats: &'a str, labels: &[&str]) -> Vec<&'a str> {
    stats
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && labels.iter().all(|w| l.contains(w)))
        .collect()
}

const HANDSHAKE_OK: &str =
    "trellis_outbound_tls_handshakes_total{mode=\"istio_mutual\",result=\"success\"}";

#[tokio::test(flavor = "multi_thread")]
async fn proxies_speak_mutual_tls_and_refuse_what_they_should() {
    let test = async {
        let ca = TestCa::new("Mesh Root");
        let app = EchoServer::start("app").await;
        let strict = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
";
        let (b, _b_certs) = start_server(&ca, strict, &app).await;
        let inbound = b.proxy.inbound_addr();
        let config = [
            mesh_entry(
                "auto",
                "auto.default.svc.cluster.local",
                "HTTP",
                inbound,
                "server",
            ),
            mesh_entry(
                "h2",
                "h2.default.svc.cluster.local",
                "HTTP2",
                inbound,
                "server",
            ),
            mesh_entry(
                "wrong",
                "wrong.default.svc.cluster.local",
                "HTTP",
                inbound,
                "other",
            ),
            mesh_entry(
                "plain",
                "plain.default.svc.cluster.local",
                "HTTP",
                inbound,
                "server",
            ),
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: plain, namespace: default}
spec:
  host: plain.default.svc.cluster.local
  trafficPolicy: {tls: {mode: DISABLE}}
"
            .to_string(),
        ]
        .concat();
        let (a, _a_certs) = start(
            &ca,
            A_ID,
            &[("mesh.yaml", &config)],
            &[
                "--workload",
                "client-v1",
                "--labels",
                "app=client",
                "--service-account",
                "client",
                "--threads",
                "2",
            ],
        )
        .await;
        let client = HttpClient::http1(a.outbound()).with_timeout(WAIT);

        // (a) Auto mTLS: B is STRICT, yet the request gets through, both sides naming the
        // other's verified identity.
        let r = client.get("auto", "/auto", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.upstream(), Some("app"));
        let text = b
            .wait_stats(|t| {
                !requests(t, &["reporter=\"destination\"", "response_code=\"200\""]).is_empty()
            })
            .await;
        let secured = requests(
            &text,
            &[
                "reporter=\"destination\"",
                "connection_security_policy=\"mutual_tls\"",
                &format!("source_principal=\"{A_ID}\""),
                &format!("destination_principal=\"{B_ID}\""),
            ],
        );
        assert!(!secured.is_empty(), "{text}");
        let text = a
            .wait_stats(|t| {
                !requests(t, &["reporter=\"source\"", "response_code=\"200\""]).is_empty()
            })
            .await;
        // Istio's source reporter leaves `connection_security_policy` unknown; the principals
        // are what mutual TLS proved.
        let sourced = requests(
            &text,
            &[
                "reporter=\"source\"",
                "response_code=\"200\"",
                &format!("source_principal=\"{A_ID}\""),
                &format!("destination_principal=\"{B_ID}\""),
            ],
        );
        assert!(!sourced.is_empty(), "{text}");
        assert_eq!(stat_value(&text, HANDSHAKE_OK), Some(1), "{text}");

        // (b) DestinationRule DISABLE: plaintext to a STRICT B is refused there and fails on A.
        let refused_before =
            stat_value(&b.stats().await, "trellis_inbound_plaintext_refused_total ");
        let r = client.get("plain", "/plain", &[]).await.unwrap();
        // B closes the plaintext connection unanswered: a reset before headers, which Trellis
        // answers as Envoy's UC (502, see ARCHITECTURE's decisions).
        assert_eq!(r.status, 502, "{}", r.body);
        assert!(
            r.body.contains("reset reason: connection termination"),
            "{}",
            r.body
        );
        let text = b
            .wait_stats(|t| {
                stat_value(t, "trellis_inbound_plaintext_refused_total ") > refused_before
            })
            .await;
        assert!(
            stat_value(&text, "trellis_inbound_plaintext_refused_total ") > refused_before,
            "{text}"
        );

        // (c) The endpoint is said to run as another service account: B's certificate is not
        // the one expected, the handshake fails, and the request is a connect failure (503 UF).
        let r = client.get("wrong", "/wrong", &[]).await.unwrap();
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body.contains("connection failure"), "{}", r.body);
        let text = a.stats().await;
        let wrong = stat_value(
            &text,
            "trellis_outbound_tls_handshakes_total{mode=\"istio_mutual\",result=\"unexpected_identity\"}",
        );
        assert!(wrong.is_some_and(|n| n >= 1), "{text}");
        assert!(
            !requests(
                &text,
                &[
                    "reporter=\"source\"",
                    "response_code=\"503\"",
                    "response_flags=\"UF",
                ]
            )
            .is_empty(),
            "{text}"
        );

        // (d) HTTP/2 between the proxies: many requests, concurrent or not, share one mutual
        // TLS connection (one handshake on A, one on B).
        let a_before = stat_value(&a.stats().await, HANDSHAKE_OK).unwrap_or(0);
        let b_before = stat_value(
            &b.stats().await,
            "trellis_inbound_tls_handshakes_total{result=\"success\"}",
        )
        .unwrap_or(0);
        let h2 = HttpClient::http2(a.outbound()).with_timeout(WAIT);
        for i in 0..10 {
            let r = h2.get("h2", &format!("/seq/{i}"), &[]).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
        }
        let burst = (0..20).map(|i| {
            let h2 = h2.clone();
            async move { h2.get("h2", &format!("/burst/{i}"), &[]).await }
        });
        for r in futures_util::future::join_all(burst).await {
            let r = r.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
        }
        assert_eq!(
            stat_value(&a.stats().await, HANDSHAKE_OK),
            Some(a_before + 1),
            "A opened more than one connection"
        );
        assert_eq!(
            stat_value(
                &b.stats().await,
                "trellis_inbound_tls_handshakes_total{result=\"success\"}"
            ),
            Some(b_before + 1),
            "B accepted more than one connection"
        );
        // HTTP/1.1 requests to an HTTP port are multiplexed over HTTP/2 between the proxies
        // too: many concurrent clients share one connection per worker thread of A (it runs
        // two; (a) opened the first), and the application still sees HTTP/1.1.
        let before = stat_value(&a.stats().await, HANDSHAKE_OK).unwrap_or(0);
        let burst = (0..20).map(|i| {
            let client = HttpClient::http1(a.outbound()).with_timeout(WAIT);
            async move { client.get("auto", &format!("/again/{i}"), &[]).await }
        });
        for r in futures_util::future::join_all(burst).await {
            let r = r.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.json().unwrap().version, "HTTP/1.1", "{}", r.body);
        }
        let after = stat_value(&a.stats().await, HANDSHAKE_OK).unwrap_or(0);
        assert!(
            after <= before + 1,
            "{before} -> {after} handshakes for 20 requests"
        );
        // An upgrade cannot ride HTTP/2 here: it gets its own HTTP/1.1 mutual TLS connection.
        let mut ws = testkit::client::WsClient::connect(a.outbound(), "auto", "/ws")
            .await
            .expect("websocket through the mesh");
        assert_eq!(ws.roundtrip("hello").await.unwrap(), "app: hello");
        ws.close().await.unwrap();
        assert_eq!(stat_value(&a.stats().await, HANDSHAKE_OK), Some(after + 1));
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread")]
async fn istio_mutual_without_a_certificate_fails_and_auto_falls_back_to_plaintext() {
    let test = async {
        let app = EchoServer::start("app").await;
        // B without a certificate, PERMISSIVE (the default): plaintext reaches the app.
        let app_port = app.port().to_string();
        let b = Mesh::start_with(&[], &["--app-port", &app_port, "--workload", "server-v1"]).await;
        let inbound = b.proxy.inbound_addr();
        let config = [
            mesh_entry(
                "auto",
                "auto.default.svc.cluster.local",
                "HTTP",
                inbound,
                "server",
            ),
            mesh_entry(
                "must",
                "must.default.svc.cluster.local",
                "HTTP",
                inbound,
                "server",
            ),
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: must, namespace: default}
spec:
  host: must.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"
            .to_string(),
        ]
        .concat();
        let a = Mesh::start_with(&[("mesh.yaml", &config)], &["--workload", "client-v1"]).await;
        let client = HttpClient::http1(a.outbound()).with_timeout(WAIT);
        let r = client.get("auto", "/auto", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let r = client.get("must", "/must", &[]).await.unwrap();
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body.contains("connection failure"), "{}", r.body);
        let text = a.stats().await;
        assert!(
            stat_value(
                &text,
                "trellis_outbound_tls_handshakes_total{mode=\"istio_mutual\",result=\"no_credentials\"}"
            )
            .is_some_and(|n| n >= 1),
            "{text}"
        );
        assert_eq!(
            app.requests(),
            1,
            "ISTIO_MUTUAL must not fall back to plaintext"
        );
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test finished in time");
}

/// Auto mTLS follows the destination's PeerAuthentication: where B's workload is DISABLE, A
/// sends plaintext (mutual TLS would reach B's app as bytes it cannot read), and an explicit
/// ISTIO_MUTUAL still forces mutual TLS.
#[tokio::test(flavor = "multi_thread")]
async fn auto_mtls_sends_plaintext_where_the_destination_disables_it() {
    let test = async {
        let ca = TestCa::new("Mesh Root");
        let app = EchoServer::start("app").await;
        let disable = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: server, namespace: default}
spec:
  selector: {matchLabels: {app: server}}
  mtls: {mode: DISABLE}
";
        let (b, _b_certs) = start_server(&ca, disable, &app).await;
        let inbound = b.proxy.inbound_addr();
        let config = [
            disable.to_string(),
            "---\n".to_string(),
            mesh_entry(
                "auto",
                "auto.default.svc.cluster.local",
                "HTTP",
                inbound,
                "server",
            ),
        ]
        .concat();
        let (a, _a_certs) = start(
            &ca,
            A_ID,
            &[("mesh.yaml", &config)],
            &["--workload", "client-v1", "--service-account", "client"],
        )
        .await;
        let client = HttpClient::http1(a.outbound()).with_timeout(WAIT);
        for i in 0..3 {
            let r = client
                .get("auto", &format!("/plain/{i}"), &[])
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.upstream(), Some("app"));
        }
        let text = a.stats().await;
        assert_eq!(stat_value(&text, HANDSHAKE_OK), None, "{text}");
        let text = b
            .wait_stats(|t| {
                requests(t, &["reporter=\"destination\"", "response_code=\"200\""]).len() == 1
            })
            .await;
        assert!(
            !requests(
                &text,
                &[
                    "reporter=\"destination\"",
                    "connection_security_policy=\"none\""
                ]
            )
            .is_empty(),
            "{text}"
        );
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test finished in time");
}
