//! Inbound mutual TLS and PeerAuthentication, seen from the wire: a standalone proxy with a
//! certificate from a test CA, in front of an echo app, and clients that speak plaintext or a
//! mesh proxy's mutual TLS (rustls with the mesh ALPN, as `trellis_identity::tls` configures it).

mod common;

use bytes::Bytes;
use common::{Mesh, TestCa, stat_value};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use testkit::TcpEchoServer;
use testkit::client::HttpClient;
use testkit::echo::EchoServer;
use testkit::process::ConfigDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use trellis_identity::SpiffeId;
use trellis_identity::tls::{Credentials, MeshProtocol, client_config, mesh_server_name};

const WAIT: Duration = Duration::from_secs(5);
const PROXY_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/client";

/// A proxy for `reviews` (labels `app=reviews`) with a certificate from `ca`, in front of the app
/// on `app_port`, reading `files`.
async fn start_proxy(ca: &TestCa, app_port: u16, files: &[(&str, &str)]) -> (Mesh, ConfigDir) {
    let certs = ConfigDir::new();
    let mut flags = ca.proxy_flags(&certs, PROXY_ID);
    flags.extend(
        [
            "--app-port",
            &app_port.to_string(),
            "--workload",
            "reviews-v1",
            "--labels",
            "app=reviews",
            "--service-account",
            "reviews",
            "--trust-domain",
            "cluster.local",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    (Mesh::start_with(files, &flags).await, certs)
}

/// A mesh TLS connection to `addr` offering `protocol`, expecting the proxy's identity.
async fn mesh_connect(
    addr: SocketAddr,
    creds: Arc<Credentials>,
    protocol: MeshProtocol,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let expected: SpiffeId = PROXY_ID.parse().unwrap();
    let config = client_config(creds, [expected], protocol).unwrap();
    let name = mesh_server_name(9080, None, "reviews.default.svc.cluster.local").unwrap();
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        WAIT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// GET `path` over mesh TLS: (status, body), or why it failed.
async fn mesh_get(
    addr: SocketAddr,
    creds: Arc<Credentials>,
    protocol: MeshProtocol,
    path: &str,
) -> Result<(u16, String), String> {
    let exchange = async {
        let tls = mesh_connect(addr, creds, protocol)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let io = TokioIo::new(tls);
        let req = hyper::Request::get(format!("http://reviews{path}"))
            .header("host", "reviews")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = match protocol {
            MeshProtocol::Http2 => {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                send.send_request(req).await.map_err(|e| e.to_string())?
            }
            _ => {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                send.send_request(req).await.map_err(|e| e.to_string())?
            }
        };
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// A plaintext GET: the status, or `None` when the connection was closed without an answer.
async fn plain_get(addr: SocketAddr) -> Option<u16> {
    let client = HttpClient::http1(addr).with_timeout(WAIT);
    client
        .get("reviews", "/plain", &[])
        .await
        .ok()
        .map(|r| r.status.as_u16())
}

/// Waits until the series starting with `prefix` reads `expected` (a refused handshake is
/// counted just after the client sees the alert); the stats text either way.
async fn wait_value(mesh: &Mesh, prefix: &str, expected: u64) -> String {
    mesh.wait_stats(|t| stat_value(t, prefix) == Some(expected))
        .await
}

/// Inbound `istio_requests_total` series lines whose labels include all of `labels`.
fn inbound_requests<'a>(stats: &'a str, labels: &[&str]) -> Vec<&'a str> {
    stats
        .lines()
        .filter(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("reporter=\"destination\"")
                && labels.iter().all(|want| l.contains(want))
        })
        .collect()
}

fn peer_auth(name: &str, selector: bool, spec: &str) -> String {
    let selector = if selector {
        "  selector: {matchLabels: {app: reviews}}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: {name}, namespace: default}}\nspec:\n{selector}{spec}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn permissive_strict_and_port_level_modes_on_the_wire() {
    let ca = TestCa::new("Mesh Root");
    let foreign = TestCa::new("Other Root");
    let app = EchoServer::start("reviews").await;
    let (mesh, _certs) = start_proxy(&ca, app.port(), &[]).await;
    let inbound = mesh.proxy.inbound_addr();
    let client = ca.credentials(CLIENT_ID, None);

    // (a) PERMISSIVE, Istio's default: plaintext and mesh TLS both reach the app.
    assert_eq!(plain_get(inbound).await, Some(200));
    for protocol in [MeshProtocol::Http1, MeshProtocol::Http2] {
        let (status, body) = mesh_get(inbound, client.clone(), protocol, "/tls")
            .await
            .unwrap();
        assert_eq!(status, 200, "{protocol:?}: {body}");
    }
    assert_eq!(app.requests(), 3);
    // Requests are counted when their record finishes, just after the client has its answer.
    let text = mesh
        .wait_stats(|t| {
            ["mutual_tls", "none"].iter().all(|policy| {
                let label = format!("connection_security_policy=\"{policy}\"");
                !inbound_requests(t, &[&label]).is_empty()
            })
        })
        .await;
    let tls = inbound_requests(
        &text,
        &[
            "connection_security_policy=\"mutual_tls\"",
            &format!("source_principal=\"{CLIENT_ID}\""),
            &format!("destination_principal=\"{PROXY_ID}\""),
            "source_workload_namespace=\"default\"",
        ],
    );
    assert!(!tls.is_empty(), "{text}");
    let plain = inbound_requests(&text, &["connection_security_policy=\"none\""]);
    assert!(!plain.is_empty(), "{text}");
    assert!(
        plain
            .iter()
            .all(|l| l.contains("source_principal=\"unknown\"")),
        "{plain:#?}"
    );
    assert_eq!(
        stat_value(
            &text,
            "trellis_inbound_tls_handshakes_total{result=\"success\"}"
        ),
        Some(2),
        "{text}"
    );

    // (b) STRICT namespace-wide: plaintext is closed without an answer, mesh TLS still works,
    // a certificate from another CA fails the handshake.
    mesh.reconfigure(
        "pa.yaml",
        &peer_auth("default", false, "  mtls: {mode: STRICT}\n"),
    )
    .await;
    let before = app.requests();
    assert_eq!(plain_get(inbound).await, None);
    assert_eq!(app.requests(), before, "plaintext must not reach the app");
    let (status, _) = mesh_get(inbound, client.clone(), MeshProtocol::Http2, "/strict")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let stranger = foreign.credentials(CLIENT_ID, Some(&ca.root_pem));
    let refused = mesh_get(inbound, stranger, MeshProtocol::Http1, "/foreign").await;
    assert!(refused.is_err(), "{refused:?}");
    let text = wait_value(
        &mesh,
        "trellis_inbound_tls_handshakes_total{result=\"unknown_issuer\"}",
        1,
    )
    .await;
    assert_eq!(
        stat_value(&text, "trellis_inbound_plaintext_refused_total "),
        Some(1),
        "{text}"
    );
    assert_eq!(
        stat_value(
            &text,
            "trellis_inbound_tls_handshakes_total{result=\"unknown_issuer\"}"
        ),
        Some(1),
        "{text}"
    );
    assert_eq!(
        stat_value(
            &text,
            "trellis_inbound_tls_handshakes_total{result=\"success\"}"
        ),
        Some(3)
    );

    // (c) A workload policy turns the app's port to DISABLE while the namespace stays STRICT.
    let port_level = format!(
        "{}---\n{}",
        peer_auth("default", false, "  mtls: {mode: STRICT}\n"),
        peer_auth(
            "reviews-port",
            true,
            &format!("  portLevelMtls:\n    {}: {{mode: DISABLE}}\n", app.port()),
        )
    );
    mesh.reconfigure("pa.yaml", &port_level).await;
    assert_eq!(plain_get(inbound).await, Some(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_by_principal_over_mutual_tls() {
    let ca = TestCa::new("Mesh Root");
    let app = EchoServer::start("reviews").await;
    let policy = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-client, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]
";
    let (mesh, _certs) = start_proxy(&ca, app.port(), &[("authz.yaml", policy)]).await;
    let inbound = mesh.proxy.inbound_addr();

    let client = ca.credentials(CLIENT_ID, None);
    let (status, body) = mesh_get(inbound, client, MeshProtocol::Http2, "/ok")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    let other = ca.credentials("spiffe://cluster.local/ns/default/sa/other", None);
    let (status, body) = mesh_get(inbound, other, MeshProtocol::Http1, "/no")
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (403, "RBAC: access denied"));
    // Plaintext has no principal: denied too.
    assert_eq!(plain_get(inbound).await, Some(403));
    assert_eq!(app.requests(), 1);
}

/// The first flight of an application's own TLS client (ALPN `h2`, no mesh protocol).
fn app_client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = "app.example".try_into().unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Sends `bytes` on a plain TCP connection and reads back `expect_len` bytes.
async fn tcp_roundtrip(
    addr: SocketAddr,
    bytes: &[u8],
    expect_len: usize,
) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(bytes).await?;
        let mut got = vec![0u8; expect_len];
        s.read_exact(&mut got).await?;
        Ok(got)
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| std::io::Error::other("timed out"))?
}

#[tokio::test(flavor = "multi_thread")]
async fn mesh_tcp_carries_opaque_bytes_and_app_tls_passes_through() {
    let ca = TestCa::new("Mesh Root");
    let app = TcpEchoServer::start("db").await;
    let (mesh, _certs) = start_proxy(&ca, app.addr().port(), &[]).await;
    let inbound = mesh.proxy.inbound_addr();

    // PERMISSIVE: the application's own TLS reaches the app byte for byte.
    let hello = app_client_hello();
    let got = tcp_roundtrip(inbound, &hello, 3 + hello.len())
        .await
        .unwrap();
    assert_eq!(&got[..3], b"db\n");
    assert!(got[3..] == hello[..], "the ClientHello arrived changed");

    // `trellis-tcp`: opaque bytes through mutual TLS.
    let client = ca.credentials(CLIENT_ID, None);
    let exchange = async {
        let mut tls = mesh_connect(inbound, client, MeshProtocol::Tcp).await?;
        tls.write_all(b"\x00\x01opaque\xff").await?;
        let mut got = vec![0u8; b"db\n\x00\x01opaque\xff".len()];
        tls.read_exact(&mut got).await?;
        std::io::Result::Ok(got)
    };
    let got = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("echo in time")
        .expect("echo through mesh TCP");
    assert_eq!(got, b"db\n\x00\x01opaque\xff");
    let text = mesh.stats().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("connection_security_policy=\"mutual_tls\"")
                && l.contains(&format!("source_principal=\"{CLIENT_ID}\""))),
        "{text}"
    );

    // STRICT: a plaintext TCP client reaches nothing, and neither does the app's own TLS.
    mesh.reconfigure(
        "pa.yaml",
        &peer_auth("default", false, "  mtls: {mode: STRICT}\n"),
    )
    .await;
    assert!(tcp_roundtrip(inbound, b"hello", 3).await.is_err());
    // The app's own TLS meets the mesh handshake instead, which refuses it (a TLS alert).
    let answer = tcp_roundtrip(inbound, &hello, 3).await;
    assert!(answer.as_ref().map_or(true, |a| a != b"db\n"), "{answer:?}");
    assert_eq!(app.connections(), 2);
    let text = wait_value(
        &mesh,
        "trellis_inbound_tls_handshakes_total{result=\"no_application_protocol\"}",
        1,
    )
    .await;
    assert_eq!(
        stat_value(
            &text,
            "trellis_inbound_tls_handshakes_total{result=\"no_application_protocol\"}"
        ),
        Some(1),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_certificate_strict_refuses_and_permissive_passes_through() {
    let app = EchoServer::start("reviews").await;
    let port = app.port().to_string();
    let flags = ["--app-port", port.as_str(), "--labels", "app=reviews"];
    // PERMISSIVE (no policy) without credentials: plaintext as before.
    let mesh = Mesh::start_with(&[], &flags).await;
    let inbound = mesh.proxy.inbound_addr();
    assert_eq!(plain_get(inbound).await, Some(200));

    // STRICT without credentials: nothing is served, mesh TLS included.
    mesh.reconfigure(
        "pa.yaml",
        &peer_auth("default", false, "  mtls: {mode: STRICT}\n"),
    )
    .await;
    assert_eq!(plain_get(inbound).await, None);
    let ca = TestCa::new("Mesh Root");
    let tls = mesh_get(
        inbound,
        ca.credentials(CLIENT_ID, None),
        MeshProtocol::Http2,
        "/",
    )
    .await;
    assert!(tls.is_err(), "{tls:?}");
    assert_eq!(app.requests(), 1);
    let text = mesh.stats().await;
    assert_eq!(
        stat_value(
            &text,
            "trellis_inbound_tls_handshakes_total{result=\"no_credentials\"}"
        ),
        Some(1),
        "{text}"
    );
    assert_eq!(
        stat_value(&text, "trellis_inbound_plaintext_refused_total "),
        Some(1)
    );
}

/// Accepts any server certificate: the bad-input clients below test what the proxy refuses, not
/// what they would.
#[derive(Debug)]
struct AnyServer;

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        Ok(tokio_rustls::rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        Ok(tokio_rustls::rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        tokio_rustls::rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client presenting `chain`/`key` with the mesh ALPN, as a misconfigured or hostile proxy
/// would; Ok when the proxy completed the handshake and answered a request.
async fn raw_mesh_get(addr: SocketAddr, chain: &str, key: &str) -> Result<u16, String> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_auth_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"trellis-http/1.1".to_vec()];
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = rustls_pki_types::ServerName::try_from("reviews").unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // TLS 1.3: a refused client certificate shows up on the first read.
        tls.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out);
        text.get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP answer: {text:?}"))
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_client_certificates_and_handshakes_are_refused_and_counted() {
    use testkit::pki::Validity;
    let ca = TestCa::new("Mesh Root");
    let foreign = TestCa::new("Foreign Root");
    let app = EchoServer::start("reviews").await;
    let strict = peer_auth("strict", false, "  mtls: {mode: STRICT}\n");
    let certs = ConfigDir::new();
    let flags: Vec<String> = ca
        .proxy_flags(&certs, PROXY_ID)
        .into_iter()
        .chain(
            [
                "--app-port",
                &app.port().to_string(),
                "--workload",
                "reviews-v1",
                "--labels",
                "app=reviews",
                "--service-account",
                "reviews",
            ]
            .map(String::from),
        )
        .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut mesh = Mesh::start_with(&[("pa.yaml", &strict)], &flags).await;
    let inbound = mesh.proxy.inbound_addr();
    let good = ca.credentials(CLIENT_ID, None);

    // A good mesh client keeps making requests while the bad ones arrive.
    let good_client = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..40 {
            let got = mesh_get(inbound, good.clone(), MeshProtocol::Http1, "/good").await;
            statuses.push(got.map(|(status, _)| status));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        statuses
    });
    // Stalls mid-handshake: a ClientHello's record header promising more than is sent.
    let stalled = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(inbound).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        // The proxy gives up after its handshake timeout and closes.
        tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
            .await
            .map(|r| r.map(|n| n == 0 || buf[0] == 0x15))
    });

    let expired = ca.leaf_valid(
        &[CLIENT_ID],
        Validity {
            from_secs: -7200,
            to_secs: -3600,
        },
    );
    let from_elsewhere = foreign.spiffe_leaf(CLIENT_ID);
    let no_spiffe = ca.leaf(&["client.example"]);
    let bad_spiffe = ca.leaf(&["spiffe://cluster.local/not-a-workload"]);
    for (what, (chain, key)) in [
        ("expired", &expired),
        ("foreign CA", &from_elsewhere),
        ("no SPIFFE ID", &no_spiffe),
        ("bad SPIFFE ID", &bad_spiffe),
    ] {
        let got = raw_mesh_get(inbound, chain, key).await;
        assert!(got.is_err(), "{what}: a refused client got {got:?}");
    }
    // Garbage after a TLS-looking first byte.
    let mut tcp = TcpStream::connect(inbound).await.unwrap();
    tcp.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0x08, 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3,
    ])
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    let answer = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
    assert!(
        matches!(answer, Ok(Ok(n)) if n == 0 || buf[0] == 0x15),
        "garbage got {answer:?}"
    );

    let statuses = good_client.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == Ok(200)),
        "the good client was harmed: {statuses:?}"
    );
    assert_eq!(stalled.await.unwrap().ok().and_then(Result::ok), Some(true));
    let handshakes = "trellis_inbound_tls_handshakes_total{result=";
    let text = wait_value(&mesh, &format!("{handshakes}\"timeout\"}}"), 1).await;
    for reason in [
        "expired",
        "unknown_issuer",
        "no_spiffe_id",
        "bad_spiffe_id",
        "not_tls",
        "timeout",
    ] {
        assert_eq!(
            stat_value(&text, &format!("{handshakes}\"{reason}\"}}")),
            Some(1),
            "{reason}: {text}"
        );
    }
    assert_eq!(
        stat_value(&text, &format!("{handshakes}\"success\"}}")),
        Some(40),
        "{text}"
    );
    assert_eq!(app.requests(), 40);
    assert!(mesh.proxy.try_status().is_none(), "the proxy survived");
    // Each refusal is a warning naming the peer's address and the reason.
    let logs = [mesh.proxy.stdout_lines(), mesh.proxy.stderr_lines()].concat();
    for reason in [
        "expired",
        "unknown_issuer",
        "no_spiffe_id",
        "bad_spiffe_id",
        "not_tls",
        "timeout",
    ] {
        assert!(
            logs.iter().any(|l| l.contains("WARN")
                && l.contains("handshake refused")
                && l.contains("127.0.0.1:")
                && l.contains(reason)),
            "no warning for {reason}: {logs:#?}"
        );
    }
}
