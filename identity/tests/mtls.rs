//! Mutual TLS between a server config and a client config as two proxies use them: real
//! handshakes over loopback with certificates minted by rcgen, then bytes through the tunnel.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector, client};
use trellis_identity::tls::{
    ClientAuth, Credentials, CredentialsError, MeshProtocol, WorkloadCert, client_config,
    failure_kind, mesh_server_name, peer_identity, server_config,
};
use trellis_identity::{SpiffeId, TrustBundle};

const HOUR: Duration = Duration::from_secs(3600);
const LIMIT: Duration = Duration::from_secs(5);

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", "default", sa).unwrap()
}

/// A CA: a root, or an intermediate whose chain up to (not including) the root is `chain`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
}

impl Ca {
    fn root(cn: &str) -> Ca {
        Ca::make(cn, None)
    }

    fn intermediate(&self, cn: &str) -> Ca {
        Ca::make(cn, Some(self))
    }

    fn make(cn: &str, parent: Option<&Ca>) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = (SystemTime::now() - HOUR).into();
        params.not_after = (SystemTime::now() + 24 * HOUR).into();
        let (cert, chain) = match parent {
            Some(p) => {
                let cert = params.signed_by(&key, &p.issuer).unwrap();
                let mut chain = vec![cert.der().clone()];
                chain.extend(p.chain.iter().cloned());
                (cert, chain)
            }
            None => (params.self_signed(&key).unwrap(), Vec::new()),
        };
        Ca {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
            chain,
        }
    }

    fn bundle(&self) -> TrustBundle {
        TrustBundle::new(vec![self.der.clone()])
    }

    /// A workload certificate for `sa`, valid from `from` to `until`, with the chain up to the
    /// root.
    fn leaf_valid(&self, sa: &str, from: SystemTime, until: SystemTime) -> WorkloadCert {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id(sa).to_string().try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = from.into();
        params.not_after = until.into();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        WorkloadCert::new(chain, key).unwrap()
    }

    fn leaf(&self, sa: &str) -> WorkloadCert {
        let now = SystemTime::now();
        self.leaf_valid(sa, now - HOUR, now + 12 * HOUR)
    }

    fn creds(&self, sa: &str, bundle: TrustBundle) -> Arc<Credentials> {
        Arc::new(Credentials::new(self.leaf(sa), bundle))
    }
}

/// What the server saw of one connection's handshake.
#[derive(Debug)]
struct Accepted {
    peer: Option<SpiffeId>,
    protocol: Option<MeshProtocol>,
}

/// A mesh inbound listener: reports each handshake's outcome, then echoes bytes back.
struct Server {
    addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<io::Result<Accepted>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(config: ServerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, outcomes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let conn = tls.get_ref().1;
                    let _ = tx.send(Ok(Accepted {
                        peer: peer_identity(conn),
                        protocol: MeshProtocol::negotiated(conn),
                    }));
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = tls.read(&mut buf).await {
                        if tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Server {
            addr,
            outcomes,
            task,
        }
    }

    async fn next_outcome(&mut self) -> io::Result<Accepted> {
        tokio::time::timeout(LIMIT, self.outcomes.recv())
            .await
            .expect("the server saw no handshake in time")
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(
    addr: SocketAddr,
    config: ClientConfig,
) -> io::Result<client::TlsStream<TcpStream>> {
    let name = mesh_server_name(9080, None, "reviews.default.svc.cluster.local").unwrap();
    tokio::time::timeout(LIMIT, async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    })
    .await
    .expect("the client handshake did not finish in time")
}

/// Sends `msg` through the tunnel and reads the echo.
async fn round_trip<S>(stream: &mut S, msg: &[u8]) -> io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(LIMIT, async {
        stream.write_all(msg).await?;
        stream.flush().await?;
        let mut back = vec![0u8; msg.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    })
    .await
    .expect("no echo in time")
}

fn strict(creds: &Arc<Credentials>) -> ServerConfig {
    server_config(creds.clone(), ClientAuth::Required, &MeshProtocol::ALL).unwrap()
}

fn to(creds: &Arc<Credentials>, expected: &[&str]) -> ClientConfig {
    client_config(
        creds.clone(),
        expected.iter().map(|sa| id(sa)),
        MeshProtocol::Http2,
    )
    .unwrap()
}

fn leaf_of(conn: &rustls::CommonState) -> CertificateDer<'static> {
    conn.peer_certificates().unwrap()[0].clone().into_owned()
}

#[tokio::test]
async fn both_sides_see_each_others_identity_and_the_inner_protocol() {
    let root = Ca::root("mesh root");
    let intermediate = root.intermediate("mesh intermediate");
    let reviews = intermediate.creds("reviews", root.bundle());
    let productpage = root.creds("productpage", root.bundle());
    let mut server = Server::start(strict(&reviews)).await;

    let mut tls = connect(server.addr, to(&productpage, &["details", "reviews"]))
        .await
        .unwrap();
    let conn = tls.get_ref().1;
    assert_eq!(peer_identity(conn), Some(id("reviews")));
    assert_eq!(MeshProtocol::negotiated(conn), Some(MeshProtocol::Http2));
    assert_eq!(
        round_trip(&mut tls, b"GET /reviews/1").await.unwrap(),
        b"GET /reviews/1"
    );

    let accepted = server.next_outcome().await.unwrap();
    assert_eq!(accepted.peer, Some(id("productpage")));
    assert_eq!(accepted.protocol, Some(MeshProtocol::Http2));
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let mesh = Ca::root("mesh root");
    let foreign = Ca::root("mesh root"); // same name, other key
    let reviews = mesh.creds("reviews", mesh.bundle());
    let intruder = foreign.creds("productpage", mesh.bundle());
    let mut server = Server::start(strict(&reviews)).await;

    // TLS 1.3: the client finishes first; the server's refusal reaches it as an alert.
    let client = connect(server.addr, to(&intruder, &["reviews"])).await;
    let refused = server.next_outcome().await.unwrap_err();
    assert_eq!(failure_kind(&refused), "unknown_issuer", "{refused}");
    let err = match client {
        Ok(mut tls) => round_trip(&mut tls, b"hello").await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(failure_kind(&err), "alert_received", "{err}");
    assert!(err.to_string().contains("UnknownCA"), "{err}");
}

#[tokio::test]
async fn a_server_with_an_unexpected_identity_is_refused_naming_both() {
    let root = Ca::root("mesh root");
    let ratings = root.creds("ratings", root.bundle());
    let productpage = root.creds("productpage", root.bundle());
    let mut server = Server::start(strict(&ratings)).await;

    let err = connect(server.addr, to(&productpage, &["reviews", "details"]))
        .await
        .unwrap_err();
    assert_eq!(failure_kind(&err), "unexpected_identity", "{err}");
    let text = err.to_string();
    assert!(
        text.contains(
            "server identity spiffe://cluster.local/ns/default/sa/ratings is not one expected for this destination \
             (expected spiffe://cluster.local/ns/default/sa/details or spiffe://cluster.local/ns/default/sa/reviews)"
        ),
        "{text}"
    );
    let seen = server.next_outcome().await.unwrap_err();
    assert_eq!(failure_kind(&seen), "alert_received", "{seen}");
}

#[tokio::test]
async fn a_plaintext_client_fails_against_strict() {
    let root = Ca::root("mesh root");
    let reviews = root.creds("reviews", root.bundle());
    let mut server = Server::start(strict(&reviews)).await;

    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        .await
        .unwrap();
    let refused = server.next_outcome().await.unwrap_err();
    assert_eq!(failure_kind(&refused), "not_tls", "{refused}");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(LIMIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server kept a refused connection open");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_by_strict_and_let_in_by_permissive() {
    let root = Ca::root("mesh root");
    let reviews = root.creds("reviews", root.bundle());

    let mut strict_server = Server::start(strict(&reviews)).await;
    let client = connect(strict_server.addr, anonymous_client()).await;
    let refused = strict_server.next_outcome().await.unwrap_err();
    assert_eq!(failure_kind(&refused), "no_certificate", "{refused}");
    let err = match client {
        Ok(mut tls) => round_trip(&mut tls, b"hello").await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(failure_kind(&err), "alert_received", "{err}");

    let permissive =
        server_config(reviews.clone(), ClientAuth::Optional, &MeshProtocol::ALL).unwrap();
    let mut server = Server::start(permissive).await;
    let mut tls = connect(server.addr, anonymous_client()).await.unwrap();
    assert_eq!(round_trip(&mut tls, b"hello").await.unwrap(), b"hello");
    let accepted = server.next_outcome().await.unwrap();
    assert_eq!(accepted.peer, None);

    // PERMISSIVE still refuses a certificate that does not verify.
    let foreign = Ca::root("other").creds("productpage", root.bundle());
    let _ = connect(server.addr, to(&foreign, &["reviews"])).await;
    let refused = server.next_outcome().await.unwrap_err();
    assert_eq!(failure_kind(&refused), "unknown_issuer", "{refused}");
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let root = Ca::root("mesh root");
    let reviews = root.creds("reviews", root.bundle());
    let now = SystemTime::now();
    let expired = root.leaf_valid("productpage", now - 3 * HOUR, now - HOUR);
    let client = Arc::new(Credentials::new(expired, root.bundle()));
    let mut server = Server::start(strict(&reviews)).await;

    let _ = connect(server.addr, to(&client, &["reviews"])).await;
    let refused = server.next_outcome().await.unwrap_err();
    assert_eq!(failure_kind(&refused), "expired", "{refused}");
}

#[tokio::test]
async fn rotating_the_server_certificate_keeps_open_connections_and_serves_new_ones_the_new_one() {
    let root = Ca::root("mesh root");
    let reviews = root.creds("reviews", root.bundle());
    let productpage = root.creds("productpage", root.bundle());
    let server = Server::start(strict(&reviews)).await;
    let client = to(&productpage, &["reviews"]);

    let mut before = connect(server.addr, client.clone()).await.unwrap();
    let old_leaf = leaf_of(before.get_ref().1);
    assert_eq!(round_trip(&mut before, b"one").await.unwrap(), b"one");

    let renewed = root.leaf("reviews");
    let new_leaf = renewed.chain()[0].clone();
    reviews.replace_cert(renewed).unwrap();
    assert_ne!(old_leaf, new_leaf);

    assert_eq!(round_trip(&mut before, b"two").await.unwrap(), b"two");
    let mut after = connect(server.addr, client).await.unwrap();
    assert_eq!(leaf_of(after.get_ref().1), new_leaf);
    assert_eq!(round_trip(&mut after, b"three").await.unwrap(), b"three");
    assert_eq!(leaf_of(before.get_ref().1), old_leaf);
}

#[tokio::test]
async fn a_rotated_root_is_trusted_beside_the_old_one_until_it_leaves_the_bundle() {
    let old_root = Ca::root("mesh root");
    let new_root = Ca::root("mesh root");
    let both = TrustBundle::new(vec![new_root.der.clone(), old_root.der.clone()]);
    // The server has renewed under the new root; the client still holds a leaf of the old one.
    let reviews = new_root.creds("reviews", both.clone());
    let productpage = old_root.creds("productpage", both.clone());
    let mut server = Server::start(strict(&reviews)).await;

    let mut tls = connect(server.addr, to(&productpage, &["reviews"]))
        .await
        .unwrap();
    assert_eq!(round_trip(&mut tls, b"both").await.unwrap(), b"both");
    assert_eq!(
        server.next_outcome().await.unwrap().peer,
        Some(id("productpage"))
    );

    // The grace period ends: the old root leaves the server's bundle.
    reviews.replace_bundle(new_root.bundle());
    let _ = connect(server.addr, to(&productpage, &["reviews"])).await;
    let refused = server.next_outcome().await.unwrap_err();
    assert_eq!(failure_kind(&refused), "unknown_issuer", "{refused}");
    assert_eq!(round_trip(&mut tls, b"still").await.unwrap(), b"still");

    // Renewed under the new root, the client is let in again.
    productpage
        .replace(new_root.leaf("productpage"), Some(new_root.bundle()))
        .unwrap();
    let mut tls = connect(server.addr, to(&productpage, &["reviews"]))
        .await
        .unwrap();
    assert_eq!(round_trip(&mut tls, b"new").await.unwrap(), b"new");
}

#[tokio::test]
async fn a_protocol_the_server_does_not_accept_fails_the_handshake() {
    let root = Ca::root("mesh root");
    let reviews = root.creds("reviews", root.bundle());
    let productpage = root.creds("productpage", root.bundle());
    let http1_only = server_config(reviews, ClientAuth::Required, &[MeshProtocol::Http1]).unwrap();
    let mut server = Server::start(http1_only).await;

    let _ = connect(server.addr, to(&productpage, &["reviews"])).await;
    let refused = server.next_outcome().await.unwrap_err();
    assert_eq!(
        failure_kind(&refused),
        "no_application_protocol",
        "{refused}"
    );
}

#[test]
fn credentials_refuse_a_mismatched_key_and_a_change_of_identity() {
    let root = Ca::root("mesh root");
    let a = root.leaf("reviews");
    let b = root.leaf("reviews");
    let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let err = WorkloadCert::new(
        a.chain().to_vec(),
        PrivateKeyDer::Pkcs8(other_key.serialize_der().into()),
    )
    .unwrap_err();
    assert_eq!(err, CredentialsError::KeyMismatch);
    assert!(b.renew_at() > b.not_before() && b.renew_at() < b.not_after());

    let creds = Credentials::new(a, root.bundle());
    let err = creds.replace_cert(root.leaf("ratings")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "new certificate is for spiffe://cluster.local/ns/default/sa/ratings, but this workload is spiffe://cluster.local/ns/default/sa/reviews"
    );
    assert_eq!(creds.identity(), id("reviews"));
    creds.replace_cert(b).unwrap();

    let err = WorkloadCert::from_pem(b"not pem", b"not pem").unwrap_err();
    assert_eq!(
        err.to_string(),
        "workload certificate chain: no -----BEGIN CERTIFICATE----- block found"
    );
    let ca_cert = trellis_identity::pem::cert_pem(&root.der);
    let key_pem = other_key.serialize_pem();
    let err = WorkloadCert::from_pem(ca_cert.as_bytes(), key_pem.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "workload certificate has no usable identity: certificate carries no SPIFFE ID (no URI SAN)"
    );
}

#[test]
fn client_configs_need_an_expected_identity_and_sni_takes_istios_form() {
    let root = Ca::root("mesh root");
    let creds = root.creds("productpage", root.bundle());
    let err = client_config(creds, [], MeshProtocol::Http1).unwrap_err();
    assert!(
        err.to_string().contains("no expected server identity"),
        "{err}"
    );
    let name = mesh_server_name(9080, Some("v2"), "reviews.default.svc.cluster.local").unwrap();
    assert_eq!(
        name.to_str(),
        "outbound_.9080_.v2_.reviews.default.svc.cluster.local"
    );
    // No subset: an empty segment, as Istio writes it.
    let name = mesh_server_name(9080, None, "reviews.default.svc.cluster.local").unwrap();
    assert_eq!(
        name.to_str(),
        "outbound_.9080_._.reviews.default.svc.cluster.local"
    );
}

/// A TLS client that presents no certificate (an application's own TLS client, say).
fn anonymous_client() -> ClientConfig {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer))
            .with_no_client_auth();
    config.alpn_protocols = vec![MeshProtocol::Http1.alpn().to_vec()];
    config
}

#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
