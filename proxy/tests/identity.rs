//! The workload certificate: obtained from the control plane's `Identity.Certify` with a join
//! token, renewed at half-life with a new key, kept through an outage, and refused when the
//! answer is not trustworthy. The control plane here is a fake with a tiny rcgen CA that checks
//! each CSR's URI SAN and issues short-lived certificates, so rotations happen within the test.

mod common;

use common::{BIN, IsolatedServer, OneUpdate, TestCa, service_entry, stat_value, stats_text};
use rcgen::{CertificateSigningRequestParams, PublicKey, SanType};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::client::{HttpClient, wait_until};
use testkit::process::{ConfigDir, ProxyProcess};
use tonic::{Request, Response, Status};
use trellis_api::model::ProxyConfig;
use trellis_api::push::config_push_server::ConfigPushServer;
use trellis_api::push::identity_server::{Identity, IdentityServer};
use trellis_api::push::{CertifyRequest, CertifyResponse, ConfigUpdate};
use trellis_proxy::identity::{CertManager, CertManagerSettings, WorkloadIdentity};

const WAIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "join-token-reviews";
const REVIEWS_ID: &str = "spiffe://cluster.local/ns/shop/sa/reviews";
/// What the fake control plane says to a token it does not know.
const BAD_TOKEN_MESSAGE: &str = "join token not recognised";

// ---- the fake control plane ----

/// How the fake answers a Certify with a good token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// A certificate from the CA whose root is in the bundle.
    Issue,
    /// A certificate signed by another CA, with the trusted bundle.
    ForeignCa,
    /// A certificate for another workload.
    OtherIdentity,
    /// Not PEM at all.
    Garbage,
}

/// One certificate the fake issued.
#[derive(Clone, Debug)]
struct Issued {
    serial: String,
    public_key: PublicKey,
    not_after: u64,
}

struct Shared {
    ca: TestCa,
    foreign: TestCa,
    lifetime: Duration,
    answer: Mutex<Answer>,
    requests: Mutex<Vec<CertifyRequest>>,
    issued: Mutex<Vec<Issued>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct IdentityService(Arc<Shared>);

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let request = request.into_inner();
        let shared = &self.0;
        lock(&shared.requests).push(request.clone());
        if request.join_token != TOKEN {
            return Err(Status::unauthenticated(BAD_TOKEN_MESSAGE));
        }
        let csr = CertificateSigningRequestParams::from_pem(&request.csr_pem)
            .map_err(|e| Status::invalid_argument(format!("bad CSR: {e}")))?;
        let uris: Vec<&str> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|san| match san {
                SanType::URI(u) => Some(u.as_str()),
                _ => None,
            })
            .collect();
        if csr.params.subject_alt_names.len() != 1 || uris != [REVIEWS_ID] {
            return Err(Status::permission_denied(format!(
                "this token entitles {REVIEWS_ID} only, the CSR asks for {uris:?}"
            )));
        }
        let answer = *lock(&shared.answer);
        let (ca, uri) = match answer {
            Answer::Issue | Answer::Garbage => (&shared.ca, REVIEWS_ID),
            Answer::ForeignCa => (&shared.foreign, REVIEWS_ID),
            Answer::OtherIdentity => (&shared.ca, "spiffe://cluster.local/ns/shop/sa/ratings"),
        };
        let (cert_pem, serial) = ca.issue(&csr.public_key, uri, shared.lifetime);
        let not_after = (SystemTime::now() + shared.lifetime)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if answer == Answer::Issue {
            lock(&shared.issued).push(Issued {
                serial,
                public_key: csr.public_key.clone(),
                not_after,
            });
        }
        Ok(Response::new(CertifyResponse {
            cert_chain_pem: if answer == Answer::Garbage {
                "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into()
            } else {
                cert_pem
            },
            trust_bundle_pem: shared.ca.root_pem.clone(),
            not_after_unix: not_after as i64,
        }))
    }
}

/// The fake control plane on its own runtime: stopping it drops every connection at once, as a
/// control plane that went away would.
struct FakeControl {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: IsolatedServer,
}

impl FakeControl {
    fn start(lifetime: Duration) -> FakeControl {
        let shared = Arc::new(Shared {
            ca: TestCa::new("Trellis Test Root"),
            foreign: TestCa::new("Foreign Root"),
            lifetime,
            answer: Mutex::new(Answer::Issue),
            requests: Mutex::default(),
            issued: Mutex::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake");
        Self::serve(listener, shared)
    }

    /// Starts again at `addr` with the same CA and records (the control plane is back).
    fn start_at(addr: SocketAddr, shared: Arc<Shared>) -> FakeControl {
        let listener = std::net::TcpListener::bind(addr).expect("rebind the fake");
        Self::serve(listener, shared)
    }

    fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) -> FakeControl {
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder()
            .add_service(IdentityServer::new(IdentityService(shared.clone())))
            .add_service(ConfigPushServer::new(OneUpdate(ready_update())));
        FakeControl {
            addr,
            shared,
            server: IsolatedServer::start(listener, router),
        }
    }

    fn stop(mut self) -> Arc<Shared> {
        self.server.stop();
        self.shared
    }

    fn answer(&self, answer: Answer) {
        *lock(&self.shared.answer) = answer;
    }

    fn issued(&self) -> Vec<Issued> {
        lock(&self.shared.issued).clone()
    }
}

// ---- helpers ----

/// One empty full config, so a proxy becomes ready.
fn ready_update() -> ConfigUpdate {
    let mut config = ProxyConfig::default();
    config.canonicalize();
    ConfigUpdate {
        version: "1".into(),
        meta: trellis_api::push::encode_meta(&config.meta()),
        ..ConfigUpdate::default()
    }
}

fn manager(addr: SocketAddr, token: &str) -> WorkloadIdentity {
    CertManager::start(CertManagerSettings {
        endpoint: trellis_proxy::config::control::endpoint(&addr.to_string()).unwrap(),
        address: addr.to_string(),
        identity: REVIEWS_ID.parse().unwrap(),
        join_token: token.into(),
        proxy_id: "reviews-0123456789abcdef.shop".into(),
        ttl: None,
    })
}

fn certs(identity: &WorkloadIdentity) -> serde_json::Value {
    identity.status().certs_json()
}

fn count(certs: &serde_json::Value, result: &str) -> u64 {
    certs["renewals"][result].as_u64().unwrap_or(0)
}

fn serial(certs: &serde_json::Value) -> Option<String> {
    certs["certificate"]["serial_number"]
        .as_str()
        .map(str::to_string)
}

async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let r = HttpClient::http1(admin)
        .get(&admin.to_string(), path, &[])
        .await
        .expect("admin answers");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).expect("JSON")
}

// ---- the tests ----

#[tokio::test]
async fn proxy_obtains_its_certificate_and_renews_it_with_a_new_key() {
    let fake = FakeControl::start(Duration::from_secs(4));
    let dir = ConfigDir::new();
    let token_file = dir.write("token", &format!("{TOKEN}\n"));
    let token_file = token_file.display().to_string();
    let proxy = ProxyProcess::trellis_proxy_control(
        BIN,
        fake.addr,
        &[
            "--namespace",
            "shop",
            "--service-account",
            "reviews",
            "--join-token-file",
            &token_file,
        ],
    )
    .await
    .expect("proxy starts");
    let admin = proxy.admin_addr();

    let issued = wait_until(WAIT, || async {
        !admin_json(admin, "/certs").await["certificate"].is_null()
    })
    .await;
    assert!(issued, "no certificate on /certs");
    let first = fake.issued()[0].clone();
    let shown = admin_json(admin, "/certs").await;
    assert_eq!(shown["identity"], REVIEWS_ID);
    assert_eq!(shown["source"]["type"], "control");
    assert_eq!(shown["mtls_available"], true);
    assert_eq!(shown["certificate"]["identity"], REVIEWS_ID);
    assert_eq!(shown["certificate"]["serial_number"], first.serial.as_str());
    assert_eq!(shown["certificate"]["expired"], false);
    let root = shown["trust_bundle"][0]["subject"].as_str().unwrap();
    assert!(root.contains("CN=Trellis Test Root"), "{root}");
    assert!(shown["next_renewal"].is_string(), "{shown}");

    let request = lock(&fake.shared.requests)[0].clone();
    assert_eq!(request.join_token, TOKEN);
    assert!(
        request.proxy_id.starts_with("test-") && request.proxy_id.ends_with(".shop"),
        "{}",
        request.proxy_id
    );
    assert!(!request.csr_pem.contains("PRIVATE KEY"));

    let text = stats_text(&proxy).await;
    assert!(
        text.contains("trellis_identity_certificate_renewals_total{result=\"success\"} "),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "trellis_identity_certificate_expiry_seconds {}\n",
            first.not_after
        )),
        "{text}"
    );

    if testkit::prometheus::available("promtool", "promtool check metrics") {
        let report = testkit::prometheus::promtool_check_metrics(&text).unwrap();
        assert!(
            report.is_valid_except(&["istio_request_duration_milliseconds use base unit"]),
            "promtool: {report:?}\n{text}"
        );
    }

    // Half-life of a 4 s certificate: a renewal with a new serial and a new key.
    let renewed = wait_until(WAIT, || async {
        serial(&admin_json(admin, "/certs").await).is_some_and(|s| s != first.serial)
    })
    .await;
    assert!(renewed, "the certificate was not renewed");
    let all = fake.issued();
    assert!(all.len() >= 2);
    assert_ne!(
        all[1].public_key, first.public_key,
        "renewal reused the key"
    );
    // Renewal is paced by the lifetime, not a loop: the CA's backdated not_before does not make
    // the certificate look half-used on arrival.
    assert!(all.len() <= 4, "{} certificates issued", all.len());
    let shown = admin_json(admin, "/certs").await;
    assert_eq!(
        shown["renewals"]["success"].as_u64(),
        Some(all.len() as u64)
    );
}

#[tokio::test]
async fn a_bad_join_token_is_logged_once_counted_and_leaves_mtls_unavailable() {
    let fake = FakeControl::start(Duration::from_secs(60));
    let proxy = ProxyProcess::trellis_proxy_control(
        BIN,
        fake.addr,
        &[
            "--namespace",
            "shop",
            "--service-account",
            "reviews",
            "--join-token",
            "not-the-token",
        ],
    )
    .await
    .expect("proxy starts and serves without a certificate");
    let refused_twice = wait_until(WAIT, || async {
        stat_value(
            &stats_text(&proxy).await,
            "trellis_identity_certificate_renewals_total{result=\"unauthenticated\"} ",
        )
        .is_some_and(|n| n >= 2)
    })
    .await;
    assert!(refused_twice, "{}", stats_text(&proxy).await);
    let logged: Vec<_> = proxy
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("refused the join token"))
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains(BAD_TOKEN_MESSAGE), "{}", logged[0]);
    let shown = admin_json(proxy.admin_addr(), "/certs").await;
    assert_eq!(shown["mtls_available"], false);
    assert!(shown["certificate"].is_null());
    let error = shown["last_error"]["error"].as_str().unwrap();
    assert!(error.contains(BAD_TOKEN_MESSAGE), "{error}");
    assert!(fake.issued().is_empty());
}

#[tokio::test]
async fn keeps_its_certificate_through_an_outage_and_renews_when_back() {
    let fake = FakeControl::start(Duration::from_secs(6));
    let identity = manager(fake.addr, TOKEN);
    let credentials = identity.wait_ready(WAIT).await.expect("first certificate");
    let first = serial(&certs(&identity)).unwrap();
    let addr = fake.addr;
    let shared = fake.stop();

    // The renewal at half-life (3 s) finds no control plane: the certificate stays.
    let failed = wait_until(WAIT, || async {
        count(&certs(&identity), "unavailable") >= 2
    })
    .await;
    assert!(failed, "{}", certs(&identity));
    let during = certs(&identity);
    assert_eq!(serial(&during).as_deref(), Some(first.as_str()));
    assert_eq!(during["mtls_available"], true);
    let error = during["last_error"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("control plane unavailable: ") && error.contains("Connection refused"),
        "{error}"
    );
    assert_eq!(
        credentials.identity().to_string(),
        REVIEWS_ID,
        "credentials still held"
    );

    let _back = FakeControl::start_at(addr, shared.clone());
    let renewed = wait_until(WAIT, || async {
        serial(&certs(&identity)).is_some_and(|s| s != first)
    })
    .await;
    assert!(renewed, "{}", certs(&identity));
    // The data path's Credentials (taken before the outage) present the new certificate.
    let leaf = credentials.cert();
    let issued = lock(&shared.issued).clone();
    let newest = issued.last().unwrap();
    assert_eq!(
        leaf.not_after()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        newest.not_after
    );
    assert!(certs(&identity)["last_error"].is_null());
}

#[tokio::test]
async fn refuses_untrusted_unparsable_and_wrong_identity_answers() {
    let fake = FakeControl::start(Duration::from_secs(60));
    fake.answer(Answer::ForeignCa);
    let identity = manager(fake.addr, TOKEN);
    let seen = |result: &'static str| {
        let identity = identity.clone();
        async move { wait_until(WAIT, || async { count(&certs(&identity), result) >= 1 }).await }
    };
    assert!(seen("untrusted").await, "{}", certs(&identity));
    let error = certs(&identity)["last_error"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("does not verify against the returned trust bundle"),
        "{error}"
    );
    fake.answer(Answer::OtherIdentity);
    assert!(seen("wrong_identity").await, "{}", certs(&identity));
    fake.answer(Answer::Garbage);
    assert!(seen("malformed").await, "{}", certs(&identity));
    assert!(identity.credentials().is_none(), "nothing refused was used");
    assert_eq!(certs(&identity)["mtls_available"], false);

    fake.answer(Answer::Issue);
    let credentials = identity
        .wait_ready(WAIT)
        .await
        .expect("a good answer is taken");
    assert_eq!(credentials.identity().to_string(), REVIEWS_ID);
    assert_eq!(count(&certs(&identity), "success"), 1);
}

#[tokio::test]
async fn standalone_proxy_takes_its_certificate_from_files_and_refuses_a_wrong_key() {
    let ca = TestCa::new("User Root");
    let dir = ConfigDir::new();
    dir.write(
        "se.yaml",
        &service_entry(
            "web",
            "web.example",
            80,
            "HTTP",
            &[("127.0.0.1:9".parse().unwrap(), "")],
        ),
    );
    // --cert-chain, --key and --trust-bundle, the files kept in `files`.
    let files = ConfigDir::new();
    let cert_flags = ca.proxy_flags(&files, "spiffe://example.org/ns/default/sa/web");
    let mut args = vec!["--trust-domain", "example.org", "--service-account", "web"];
    args.extend(cert_flags.iter().map(String::as_str));
    let proxy = ProxyProcess::trellis_proxy(BIN, dir.path(), &args)
        .await
        .expect("proxy starts");
    let shown = admin_json(proxy.admin_addr(), "/certs").await;
    assert_eq!(shown["source"]["type"], "files");
    assert_eq!(
        shown["certificate"]["identity"],
        "spiffe://example.org/ns/default/sa/web"
    );
    assert!(shown["next_renewal"].is_null());
    assert!(
        stats_text(&proxy)
            .await
            .contains("trellis_identity_certificate_expiry_seconds ")
    );

    // Another certificate's key: refused at start with the reason.
    let (_, other_key) = ca.spiffe_leaf("spiffe://example.org/ns/default/sa/web");
    files.write("key.pem", &other_key);
    let config = dir.path().display().to_string();
    let mut all = vec![
        "--config",
        config.as_str(),
        "--admin",
        "127.0.0.1:0",
        "--stats",
        "127.0.0.1:0",
        "--outbound",
        "127.0.0.1:0",
        "--inbound",
        "127.0.0.1:0",
    ];
    all.extend(args);
    let mut refused = ProxyProcess::spawn(BIN, &all, &[]).unwrap();
    let status = refused.wait_exit(WAIT).await.expect("exits");
    assert!(!status.success());
    let stderr = refused.stderr_lines().join("\n");
    assert!(
        stderr.contains("--cert-chain") && stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_kept_and_shown_as_expired() {
    let fake = FakeControl::start(Duration::from_secs(2));
    let identity = manager(fake.addr, TOKEN);
    identity.wait_ready(WAIT).await.expect("first certificate");
    let first = serial(&certs(&identity)).unwrap();
    let _gone = fake.stop();
    let expired = wait_until(WAIT, || async {
        certs(&identity)["certificate"]["expired"] == true
    })
    .await;
    assert!(expired, "{}", certs(&identity));
    let shown = certs(&identity);
    assert_eq!(serial(&shown).as_deref(), Some(first.as_str()));
    assert!(
        shown["certificate"]["seconds_until_expiration"]
            .as_i64()
            .unwrap()
            <= 0
    );
    assert!(count(&shown, "unavailable") >= 1);
    assert!(
        identity.credentials().is_some(),
        "kept: peers decide what an expired one is worth"
    );
}

/// A trust bundle pushed by the control plane (root rotation) is taken only when it still
/// verifies this workload's own certificate; garbage and a bundle without its root are refused,
/// counted and leave the bundle in use unchanged; a good one shows on `/certs` and in the metrics.
#[tokio::test]
async fn pushed_trust_bundles_are_checked_against_the_own_certificate() {
    let fake = FakeControl::start(Duration::from_secs(60));
    let identity = manager(fake.addr, TOKEN);
    let creds = identity.wait_ready(WAIT).await.expect("a certificate");
    let own_root = fake.shared.ca.root_pem.clone();
    let next_root = fake.shared.foreign.root_pem.clone();

    // Before any push: the bundle of the Certify answer.
    assert_eq!(creds.bundle().roots().len(), 1);

    let outcome = identity
        .apply_bundle("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    assert_eq!(outcome.kind(), "invalid", "{outcome}");
    let outcome = identity.apply_bundle(&next_root);
    assert_eq!(outcome.kind(), "refused", "{outcome}");
    assert_eq!(creds.bundle().roots().len(), 1, "the bundle in use is kept");

    let both = format!("{next_root}{own_root}");
    assert_eq!(identity.apply_bundle(&both).kind(), "applied");
    assert_eq!(creds.bundle().roots().len(), 2, "new handshakes trust both");
    assert_eq!(identity.apply_bundle(&both).kind(), "unchanged");

    let shown = certs(&identity);
    let subjects: Vec<&str> = shown["trust_bundle"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["subject"].as_str())
        .collect();
    assert_eq!(subjects.len(), 2, "{shown:#}");
    assert!(subjects[0].contains("Foreign Root"), "{subjects:?}");
    for (result, n) in [
        ("applied", 1),
        ("unchanged", 1),
        ("invalid", 1),
        ("refused", 1),
    ] {
        assert_eq!(shown["bundle_updates"][result], n, "{result}: {shown:#}");
    }
    let mut metrics = String::new();
    identity.status().encode_prometheus(&mut metrics);
    assert!(
        metrics.contains("trellis_identity_bundle_updates_total{result=\"refused\"} 1\n"),
        "{metrics}"
    );
}
