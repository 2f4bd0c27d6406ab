//! TLS origination (DestinationRule `tls.mode` SIMPLE / MUTUAL): the app sends plain HTTP to
//! the sidecar for an external host declared by a ServiceEntry, and the sidecar opens TLS to the
//! upstream, here a tokio-rustls + hyper server with certificates from test CAs.

mod common;

use common::{Mesh, stat_value};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::pki::TestCa;
use testkit::process::ConfigDir;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(5);

/// An HTTPS server (HTTP/1.1 and h2 by ALPN) answering `name alpn=.. version=.. client_cert=..`,
/// requiring a client certificate from `client_ca` when given. Stops when dropped.
struct HttpsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsServer {
    async fn start(
        name: &'static str,
        ca: &TestCa,
        host: &str,
        client_ca: Option<&TestCa>,
    ) -> Self {
        let config = ca.server_config(&[host], client_ca);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (_, conn) = tls.get_ref();
                    let facts = format!(
                        "{name} alpn={} client_cert={}",
                        conn.alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                            .unwrap_or_else(|| "none".into()),
                        conn.peer_certificates().is_some_and(|c| !c.is_empty()),
                    );
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let body = format!("{facts} version={:?}", req.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsServer { addr, task }
    }
}

/// A MESH_EXTERNAL ServiceEntry for `host` on port 80 (`protocol`), whose one endpoint is
/// `server`, and a DestinationRule originating TLS with `tls` (YAML flow mapping).
fn external(name: &str, host: &str, protocol: &str, server: SocketAddr, tls: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: main, protocol: {protocol}}}]
  endpoints: [{{address: {ip}, ports: {{main: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: default}}
spec:
  host: {host}
  trafficPolicy: {{tls: {tls}}}
---
",
        ip = server.ip(),
        port = server.port()
    )
}

/// `istio_requests_total` lines with all of `labels`.
fn requests<'a>(stats: &'a str, labels: &[&str]) -> Vec<&'a str> {
    stats
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && labels.iter().all(|w| l.contains(w)))
        .collect()
}

fn handshakes(mode: &str, result: &str) -> String {
    format!("trellis_outbound_tls_handshakes_total{{mode=\"{mode}\",result=\"{result}\"}}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_originates_tls_to_external_services() {
    let test = async {
        let ca = TestCa::new("External CA");
        let foreign = TestCa::new("Foreign CA");
        let client_ca = TestCa::new("Client CA");
        let files = ConfigDir::new();
        let ca_file = files.write("ca.pem", &ca.root_pem);
        let (cert, key) = client_ca.leaf(&["client.trellis.test"]);
        let cert_file = files.write("client.pem", &cert);
        let key_file = files.write("client-key.pem", &key);
        let missing = files.path().join("missing.pem");
        let (ca_file, cert_file, key_file, missing) = (
            ca_file.display(),
            cert_file.display(),
            key_file.display(),
            missing.display(),
        );

        let api = HttpsServer::start("api", &ca, "api.external.test", None).await;
        let impostor = HttpsServer::start("impostor", &foreign, "api.external.test", None).await;
        let mtls = HttpsServer::start("mtls", &ca, "mtls.external.test", Some(&client_ca)).await;
        let simple = format!("{{mode: SIMPLE, caCertificates: {ca_file}}}");
        let config = [
            external("api", "api.external.test", "HTTP", api.addr, &simple),
            external("h2", "h2.external.test", "HTTP2", api.addr, &format!(
                "{{mode: SIMPLE, caCertificates: {ca_file}, sni: api.external.test}}"
            )),
            external("impostor", "impostor.external.test", "HTTP", impostor.addr, &format!(
                "{{mode: SIMPLE, caCertificates: {ca_file}, sni: api.external.test}}"
            )),
            external("sans", "sans.external.test", "HTTP", api.addr, &format!(
                "{{mode: SIMPLE, caCertificates: {ca_file}, sni: api.external.test, subjectAltNames: [other.external.test]}}"
            )),
            external("mtls", "mtls.external.test", "HTTP", mtls.addr, &format!(
                "{{mode: MUTUAL, caCertificates: {ca_file}, clientCertificate: {cert_file}, privateKey: {key_file}}}"
            )),
            external("nocert", "nocert.external.test", "HTTP", mtls.addr, &format!(
                "{{mode: SIMPLE, caCertificates: {ca_file}, sni: mtls.external.test}}"
            )),
            external("badca", "badca.external.test", "HTTP", api.addr, &format!(
                "{{mode: SIMPLE, caCertificates: {missing}, sni: api.external.test}}"
            )),
        ]
        .concat();
        let proxy = Mesh::start(&[("external.yaml", &config)]).await;
        let client = HttpClient::http1(proxy.outbound()).with_timeout(WAIT);

        // SIMPLE with caCertificates: the app's plain request reaches the server over TLS
        // (HTTP/1.1 by ALPN), and the app sees its answer.
        let r = client.get("api.external.test", "/a", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body,
            "api alpn=http/1.1 client_cert=false version=HTTP/1.1"
        );

        // An HTTP2 cluster negotiates h2 by ALPN (the app still speaks HTTP/1.1 to the proxy).
        let r = client.get("h2.external.test", "/h2", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, "api alpn=h2 client_cert=false version=HTTP/2.0");

        // MUTUAL presents the client certificate the server requires.
        let r = client.get("mtls.external.test", "/m", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body,
            "mtls alpn=http/1.1 client_cert=true version=HTTP/1.1"
        );

        // Refusals: a certificate from a CA the rule does not trust, one for a name outside
        // subjectAltNames, certificate files that are missing: 503 UF, each counted by reason;
        // a server that wants a client certificate never answers a SIMPLE client.
        for host in [
            "impostor.external.test",
            "sans.external.test",
            "badca.external.test",
            "nocert.external.test",
        ] {
            let r = client.get(host, "/refused", &[]).await.unwrap();
            assert!(
                r.status == 503 || r.status == 502,
                "{host}: {} {}",
                r.status,
                r.body
            );
            assert!(
                !r.body.contains("api "),
                "{host} reached the app: {}",
                r.body
            );
            if host != "nocert.external.test" {
                assert_eq!(r.status, 503, "{host}: {}", r.body);
                let record = proxy
                    .wait_log(|l| l["authority"] == host && l["path"] == "/refused")
                    .await;
                // UF, with URX: Istio's default retry policy retried the connect failure.
                let flags = record["response_flags"].as_str().unwrap_or_default();
                assert!(flags.split(',').any(|f| f == "UF"), "{record}");
            }
        }
        let text = proxy.stats().await;
        for (mode, result) in [
            ("simple", "success"),
            ("mutual", "success"),
            ("simple", "unknown_issuer"),
            ("simple", "name_mismatch"),
            ("simple", "file_error"),
        ] {
            let n = stat_value(&text, &handshakes(mode, result));
            assert!(n.is_some_and(|n| n >= 1), "{mode}/{result}: {text}");
        }
        // The proxy logged which file of which cluster was unusable.
        let stderr = proxy.proxy.stderr_lines().join("\n");
        assert!(
            stderr.contains("outbound|80||badca.external.test") && stderr.contains("missing.pem"),
            "{stderr}"
        );

        // Origination is not mesh mutual TLS: no destination principal in the request metrics.
        let text = proxy
            .wait_stats(|t| !requests(t, &["destination_service=\"api.external.test\""]).is_empty())
            .await;
        let api_lines = requests(&text, &["destination_service=\"api.external.test\""]);
        assert!(!api_lines.is_empty(), "{text}");
        for line in api_lines {
            assert!(line.contains("destination_principal=\"unknown\""), "{line}");
            assert!(!line.contains("mutual_tls"), "{line}");
        }

        // A failing cluster harms no other: concurrent good traffic beside refused traffic.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let client = client.clone();
            let host = if i % 2 == 0 {
                "api.external.test"
            } else {
                "impostor.external.test"
            };
            tasks.push(tokio::spawn(async move {
                (
                    host,
                    client.get(host, "/concurrent", &[]).await.map(|r| r.status),
                )
            }));
        }
        for task in tasks {
            let (host, status) = task.await.unwrap();
            let status = status.unwrap();
            if host == "api.external.test" {
                assert_eq!(status, 200);
            } else {
                assert_eq!(status, 503);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test timed out");
}
