//! TLS origination through a connection pool against a real tokio-rustls server: what the server
//! saw (ALPN, SNI, client certificate) and why refused handshakes failed.

use super::dns_matches;
use crate::endpoint::tls::encode_prometheus;
use crate::endpoint::{ConnPool, PoolSettings, UpstreamError, UpstreamIo};
use crate::identity::WorkloadIdentity;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use testkit::pki::TestCa;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use trellis_api::model::{self, ClientTlsMode, ClusterTls};
use trellis_identity::tls::MeshProtocol;

const WAIT: Duration = Duration::from_secs(5);

/// A TLS server that writes one line after the handshake (what it negotiated) and then echoes.
async fn server(
    ca: &TestCa,
    sans: &[&str],
    client_ca: Option<&TestCa>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let config = ca.server_config(sans, client_ca);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, conn) = tls.get_ref();
                let line = format!(
                    "alpn={} sni={} client_cert={}\n",
                    conn.alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_else(|| "none".into()),
                    conn.server_name().unwrap_or("none"),
                    conn.peer_certificates().is_some_and(|c| !c.is_empty()),
                );
                let _ = tls.write_all(line.as_bytes()).await;
                let (mut r, mut w) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

/// Test files in a fresh directory.
struct Files(PathBuf);

impl Files {
    fn new() -> Files {
        let dir = std::env::temp_dir().join(format!(
            "trellis-origination-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pool(name: &str, service: &str, addr: SocketAddr, tls: ClusterTls) -> ConnPool {
    let ep = model::Endpoint {
        address: addr.ip().to_string(),
        port: addr.port(),
        weight: 1,
        ..Default::default()
    };
    let cluster = model::Cluster {
        name: name.into(),
        service: service.into(),
        port: 443,
        endpoints: vec![ep.clone()],
        tls: Box::new(tls),
        ..Default::default()
    };
    let settings = PoolSettings {
        connect_timeout: WAIT,
        transport: super::transport(&cluster, &ep),
        ..PoolSettings::default()
    };
    ConnPool::new(&ep.address, ep.port, settings)
}

fn simple(ca: Option<String>) -> ClusterTls {
    ClusterTls {
        mode: ClientTlsMode::Simple,
        ca_certificates: ca,
        ..ClusterTls::default()
    }
}

/// Connects for `protocol` and returns the server's line, after checking the stream echoes.
async fn exchange(pool: &ConnPool, protocol: MeshProtocol) -> Result<String, UpstreamError> {
    let (io, mesh) = pool
        .connect_with(&WorkloadIdentity::disabled(), protocol)
        .await?;
    assert!(mesh.is_none(), "origination is not mesh mTLS");
    assert!(matches!(io, UpstreamIo::Tls(_)));
    let mut io = BufReader::new(io);
    let mut line = String::new();
    tokio::time::timeout(WAIT, io.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    io.get_mut().write_all(b"ping\n").await.unwrap();
    let mut echo = String::new();
    tokio::time::timeout(WAIT, io.read_line(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echo, "ping\n");
    Ok(line.trim_end().to_string())
}

fn reason(result: Result<String, UpstreamError>) -> String {
    match result {
        Ok(line) => panic!("expected a refusal, the server said {line}"),
        Err(e) => {
            assert!(e.is_connect_failure(), "{e}");
            e.to_string()
        }
    }
}

fn handshakes(mode: &str, result: &str) -> u64 {
    let mut out = String::new();
    encode_prometheus(&mut out);
    let prefix =
        format!("trellis_outbound_tls_handshakes_total{{mode=\"{mode}\",result=\"{result}\"}} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn simple_verifies_the_server_and_offers_the_protocol_by_alpn() {
    let ca = TestCa::new("External CA");
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.root_pem);
    let (addr, _server) = server(&ca, &["api.external.test"], None).await;
    let pool = pool(
        "outbound|443||api.external.test",
        "api.external.test",
        addr,
        simple(Some(ca_file)),
    );
    let before = handshakes("simple", "success");
    assert_eq!(
        exchange(&pool, MeshProtocol::Http1).await.unwrap(),
        "alpn=http/1.1 sni=api.external.test client_cert=false"
    );
    assert_eq!(
        exchange(&pool, MeshProtocol::Http2).await.unwrap(),
        "alpn=h2 sni=api.external.test client_cert=false"
    );
    assert_eq!(
        exchange(&pool, MeshProtocol::Tcp).await.unwrap(),
        "alpn=none sni=api.external.test client_cert=false"
    );
    assert!(handshakes("simple", "success") >= before + 3);
}

#[tokio::test]
async fn servers_the_rule_does_not_trust_are_refused_by_reason() {
    let ca = TestCa::new("External CA");
    let foreign = TestCa::new("Foreign CA");
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.root_pem);
    let (foreign_addr, _f) = server(&foreign, &["api.external.test"], None).await;
    let (addr, _s) = server(&ca, &["api.external.test"], None).await;

    let before = handshakes("simple", "unknown_issuer");
    let p = pool(
        "c1",
        "api.external.test",
        foreign_addr,
        simple(Some(ca_file.clone())),
    );
    let e = reason(exchange(&p, MeshProtocol::Http1).await);
    assert!(e.contains("unknown_issuer"), "{e}");
    assert!(handshakes("simple", "unknown_issuer") > before);

    // No caCertificates: the public roots, which do not know the test CA either.
    let p = pool("c2", "api.external.test", addr, simple(None));
    assert!(reason(exchange(&p, MeshProtocol::Http1).await).contains("unknown_issuer"));

    // A good chain for another name: the SNI host name is checked...
    let before = handshakes("simple", "name_mismatch");
    let p = pool(
        "c3",
        "web.external.test",
        addr,
        simple(Some(ca_file.clone())),
    );
    assert!(reason(exchange(&p, MeshProtocol::Http1).await).contains("name_mismatch"));
    // ... unless subjectAltNames say which names are acceptable: then only they count.
    let with_sans = |sans: &[&str]| ClusterTls {
        subject_alt_names: sans.iter().map(|s| s.to_string()).collect(),
        ..simple(Some(ca_file.clone()))
    };
    let p = pool(
        "c4",
        "web.external.test",
        addr,
        with_sans(&["api.external.test"]),
    );
    assert_eq!(
        exchange(&p, MeshProtocol::Http1).await.unwrap(),
        "alpn=http/1.1 sni=web.external.test client_cert=false"
    );
    let p = pool(
        "c5",
        "api.external.test",
        addr,
        with_sans(&["other.external.test"]),
    );
    assert!(reason(exchange(&p, MeshProtocol::Http1).await).contains("name_mismatch"));
    assert!(handshakes("simple", "name_mismatch") >= before + 2);

    // insecureSkipVerify accepts even the foreign server.
    let p = pool(
        "c6",
        "api.external.test",
        foreign_addr,
        ClusterTls {
            insecure_skip_verify: true,
            ..simple(None)
        },
    );
    assert!(exchange(&p, MeshProtocol::Http1).await.is_ok());
}

#[tokio::test]
async fn mutual_presents_the_client_certificate_the_server_requires() {
    let ca = TestCa::new("External CA");
    let client_ca = TestCa::new("Client CA");
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.root_pem);
    let (cert, key) = client_ca.leaf(&["client.trellis.test"]);
    let cert_file = files.write("client.pem", &cert);
    let key_file = files.write("client-key.pem", &key);
    let (addr, _s) = server(&ca, &["mtls.external.test"], Some(&client_ca)).await;

    let mutual = ClusterTls {
        mode: ClientTlsMode::Mutual,
        ca_certificates: Some(ca_file.clone()),
        client_certificate: Some(cert_file),
        private_key: Some(key_file),
        ..ClusterTls::default()
    };
    let p = pool("m1", "mtls.external.test", addr, mutual);
    let before = handshakes("mutual", "success");
    assert_eq!(
        exchange(&p, MeshProtocol::Http1).await.unwrap(),
        "alpn=http/1.1 sni=mtls.external.test client_cert=true"
    );
    assert!(handshakes("mutual", "success") > before);

    // SIMPLE to the same server: it refuses the connection without a client certificate (in
    // TLS 1.3 after the client's handshake, so it shows on the first read or as an alert).
    let p = pool("m2", "mtls.external.test", addr, simple(Some(ca_file)));
    let refused = match p
        .connect_with(&WorkloadIdentity::disabled(), MeshProtocol::Http1)
        .await
    {
        Err(e) => e.is_connect_failure(),
        Ok((io, _)) => {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, BufReader::new(io).read_line(&mut line)).await;
            matches!(read, Ok(Err(_)) | Ok(Ok(0)))
        }
    };
    assert!(
        refused,
        "the server must not talk to a client without a certificate"
    );
}

#[tokio::test]
async fn unusable_files_fail_only_their_cluster_and_are_counted() {
    let ca = TestCa::new("External CA");
    let files = Files::new();
    let ca_file = files.write("ca.pem", &ca.root_pem);
    let not_pem = files.write("not-pem.pem", "hello");
    let (addr, _s) = server(&ca, &["api.external.test"], None).await;
    let missing = files.0.join("missing.pem").display().to_string();

    let before = handshakes("simple", "file_error");
    for (name, path) in [("f1", &missing), ("f2", &not_pem)] {
        let p = pool(name, "api.external.test", addr, simple(Some(path.clone())));
        let e = reason(exchange(&p, MeshProtocol::Http1).await);
        assert!(
            e.contains("caCertificates") && e.contains(path.as_str()),
            "{e}"
        );
    }
    let p = pool(
        "f3",
        "api.external.test",
        addr,
        ClusterTls {
            mode: ClientTlsMode::Mutual,
            ca_certificates: Some(ca_file.clone()),
            client_certificate: Some(ca_file.clone()),
            private_key: Some(missing.clone()),
            ..ClusterTls::default()
        },
    );
    let e = reason(exchange(&p, MeshProtocol::Http1).await);
    assert!(e.contains("privateKey") && e.contains(&missing), "{e}");
    assert!(handshakes("simple", "file_error") >= before + 2);
    assert!(handshakes("mutual", "file_error") >= 1);

    // Another cluster to the same server is unaffected.
    let p = pool("f4", "api.external.test", addr, simple(Some(ca_file)));
    assert!(exchange(&p, MeshProtocol::Http1).await.is_ok());
}

#[tokio::test]
async fn a_fixed_file_is_picked_up_with_the_next_config() {
    let ca = TestCa::new("External CA");
    let files = Files::new();
    let path = files.write("ca.pem", "not yet");
    let (addr, _s) = server(&ca, &["api.external.test"], None).await;
    let p = pool("r1", "api.external.test", addr, simple(Some(path.clone())));
    assert!(exchange(&p, MeshProtocol::Http1).await.is_err());
    // Same config, same file: the same loaded configs (one pool key, nothing re-read).
    let again = pool("r1", "api.external.test", addr, simple(Some(path.clone())));
    assert_eq!(p.settings().transport, again.settings().transport);
    files.write("ca.pem", &ca.root_pem);
    let fixed = pool("r1", "api.external.test", addr, simple(Some(path)));
    assert_ne!(p.settings().transport, fixed.settings().transport);
    assert!(exchange(&fixed, MeshProtocol::Http1).await.is_ok());
}

#[test]
fn wildcard_sans_cover_one_label() {
    assert!(dns_matches("api.example.com", "API.example.com"));
    assert!(dns_matches("*.example.com", "api.example.com"));
    assert!(!dns_matches("*.example.com", "a.b.example.com"));
    assert!(!dns_matches("*.example.com", "example.com"));
    assert!(!dns_matches("api.example.com", "web.example.com"));
}
