//! The control plane issues workload certificates: `trellis control` runs the CA, operators make
//! join tokens with `trellis token`, and a proxy's `Certify` call on the push port (a CSR for its
//! own key plus the token) returns a SPIFFE certificate chain and the trust bundle. Refusals carry
//! the right gRPC code and are counted on `/metrics`; the root and the tokens survive a restart;
//! a CA directory with a bad file stops the start with an error naming it.

mod common;

use common::{Control, TRELLIS, text};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::client::HttpClient;
use tonic::Code;
use trellis_api::push::identity_client::IdentityClient;
use trellis_api::push::{CertifyRequest, CertifyResponse};
use trellis_identity::{PeerRole, SpiffeId, TrustBundle, verify_leaf};

const REVIEWS: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const RATINGS: &str = "spiffe://cluster.local/ns/default/sa/ratings";
/// Well formed, never issued.
const UNKNOWN_TOKEN: &str = "trellis-join.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A CSR for a fresh key, asking for `identity`, as a proxy makes it.
fn csr(identity: &str) -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(identity.try_into().expect("URI"))];
    params
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM")
}

async fn certify(
    control: &Control,
    token: &str,
    csr_pem: String,
    ttl_seconds: u64,
) -> Result<CertifyResponse, tonic::Status> {
    let mut client = IdentityClient::connect(format!("http://{}", control.push))
        .await
        .expect("push port reachable");
    client
        .certify(CertifyRequest {
            csr_pem,
            join_token: token.to_string(),
            proxy_id: "reviews-v1.default.test".to_string(),
            ttl_seconds,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn create_token(control: &Control, ns: &str, sa: &str) -> String {
    let out = control.cli(&["token", "create", "-n", ns, "--service-account", sa]);
    assert!(out.status.success(), "token create: {}", text(&out));
    let token = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(
        token.lines().count(),
        1,
        "only the token is printed: {token}"
    );
    token.trim().to_string()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Checks an answer as a proxy would use it: the chain verifies against the bundle (both as a
/// client and as a server certificate) and names `identity`; returns the leaf's lifetime left.
fn check_issued(answer: &CertifyResponse, identity: &str) -> i64 {
    let bundle = TrustBundle::from_pem(answer.trust_bundle_pem.as_bytes()).expect("bundle");
    for role in [PeerRole::Client, PeerRole::Server] {
        let id = verify_leaf(answer.cert_chain_pem.as_bytes(), &bundle, role).expect("verifies");
        assert_eq!(id, identity.parse::<SpiffeId>().unwrap());
    }
    let der = trellis_identity::pem::certs_from_pem(answer.cert_chain_pem.as_bytes())
        .expect("chain PEM")
        .remove(0);
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).expect("leaf");
    assert_eq!(
        leaf.validity().not_after.timestamp(),
        answer.not_after_unix,
        "not_after_unix is the leaf's"
    );
    answer.not_after_unix - unix_now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_issues_workload_certificates() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let data = tempfile::tempdir().unwrap();
        let control = Control::start_with(data.path(), &["--cert-ttl", "1h"]).await;
        let token = create_token(&control, "default", "reviews");
        assert!(token.starts_with("trellis-join."), "{token}");

        // Issued: verifies against the bundle, names the identity, lives no longer than --cert-ttl.
        let issued = certify(&control, &token, csr(REVIEWS), 0)
            .await
            .expect("issued");
        let left = check_issued(&issued, REVIEWS);
        assert!(
            (3500..=3600).contains(&left),
            "default lifetime is --cert-ttl: {left}s"
        );
        let asked_more = certify(&control, &token, csr(REVIEWS), 7200).await.unwrap();
        assert!(
            check_issued(&asked_more, REVIEWS) <= 3600,
            "capped by --cert-ttl"
        );
        let asked_less = certify(&control, &token, csr(REVIEWS), 600).await.unwrap();
        let left = check_issued(&asked_less, REVIEWS);
        assert!(
            (500..=600).contains(&left),
            "a shorter ask is granted: {left}s"
        );
        assert_eq!(
            control.metric("trellis_ca_certificates_issued_total").await,
            3.0
        );

        // Another identity with this token: PERMISSION_DENIED, counted.
        let denied = certify(&control, &token, csr(RATINGS), 0)
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        assert!(denied.message().contains(RATINGS), "{}", denied.message());
        // A CSR that is not one: INVALID_ARGUMENT.
        let garbage = certify(&control, &token, "not a CSR".into(), 0)
            .await
            .unwrap_err();
        assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
        // Bad tokens: UNAUTHENTICATED.
        for bad in [UNKNOWN_TOKEN, "", "trellis-join.short"] {
            let refused = certify(&control, bad, csr(REVIEWS), 0).await.unwrap_err();
            assert_eq!(
                refused.code(),
                Code::Unauthenticated,
                "{bad:?}: {refused:?}"
            );
        }
        let refusals = |reason: &str| format!("trellis_ca_refusals_total{{reason=\"{reason}\"}}");
        assert_eq!(control.metric(&refusals("csr_wrong_identity")).await, 1.0);
        assert_eq!(control.metric(&refusals("csr_malformed")).await, 1.0);
        assert_eq!(control.metric(&refusals("unknown")).await, 1.0);
        assert_eq!(control.metric(&refusals("malformed")).await, 2.0);
        let log = control.process.stderr_lines().join("\n");
        assert!(
            log.contains("refused a certificate request")
                && log.contains("reviews-v1.default.test"),
            "refusals are logged with the proxy id:\n{log}"
        );

        // A revoked token is refused; the list shows tokens without their secret.
        let other = create_token(&control, "shop", "cart");
        let listed = control.api("tokens").await;
        let tokens = listed["tokens"].as_array().expect("tokens");
        assert_eq!(tokens.len(), 2, "{listed}");
        assert!(
            !listed.to_string().contains(&token[13..]),
            "no secret listed"
        );
        let cart = tokens
            .iter()
            .find(|t| t["serviceAccount"] == "cart")
            .expect("cart token listed");
        assert_eq!(cart["namespace"], "shop");
        let id = cart["id"].as_str().unwrap().to_string();
        let cart_csr = || csr("spiffe://cluster.local/ns/shop/sa/cart");
        certify(&control, &other, cart_csr(), 0)
            .await
            .expect("cart token works");
        let out = control.cli(&["token", "revoke", &id]);
        assert!(out.status.success(), "{}", text(&out));
        let revoked = certify(&control, &other, cart_csr(), 0).await.unwrap_err();
        assert_eq!(revoked.code(), Code::Unauthenticated, "{revoked:?}");
        let out = control.cli(&["token", "revoke", &id]);
        assert!(!out.status.success(), "revoking twice fails");
        assert!(
            text(&out).contains("no join token with id"),
            "{}",
            text(&out)
        );
        let out = control.cli(&["token", "list"]);
        assert!(out.status.success(), "{}", text(&out));
        let table = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            table.contains("default") && table.contains("reviews"),
            "{table}"
        );
        assert!(!table.contains(&id), "the revoked token is gone: {table}");

        // Restart on the same data dir: same root, the token still works, the revoked one not.
        let control = control.restart().await;
        let again = certify(&control, &token, csr(REVIEWS), 0)
            .await
            .expect("token survives");
        check_issued(&again, REVIEWS);
        assert_eq!(again.trust_bundle_pem, issued.trust_bundle_pem, "same root");
        let revoked = certify(&control, &other, cart_csr(), 0).await.unwrap_err();
        assert_eq!(revoked.code(), Code::Unauthenticated);
        drop(control);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ca_files_stop_the_start() {
    let data = tempfile::tempdir().unwrap();
    let ca = data.path().join("ca");
    std::fs::create_dir_all(&ca).unwrap();
    std::fs::write(ca.join("root-cert.pem"), "garbage\n").unwrap();
    std::fs::write(ca.join("root-key.pem"), "garbage\n").unwrap();
    let ports = testkit::free_addrs(6);
    let mut args: Vec<String> = vec!["control".into()];
    for (flag, addr) in [
        "--push",
        "--console",
        "--otlp-grpc",
        "--otlp-http",
        "--jaeger",
        "--metrics",
    ]
    .iter()
    .zip(&ports)
    {
        args.extend([flag.to_string(), addr.to_string()]);
    }
    args.extend(["--data-dir".into(), data.path().display().to_string()]);
    let run = tokio::process::Command::new(TRELLIS)
        .args(&args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("trellis control exits")
        .expect("trellis runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad CA dir stops the start: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&ca.join("root-cert.pem").display().to_string()),
        "the error names the file: {stderr}"
    );
}

/// The whole flow with real processes: a join token made with the CLI, a proxy started with it,
/// and the certificate the control plane issued shown on the proxy's `/certs`, verifying against
/// the control plane's trust bundle.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_with_a_join_token_gets_its_identity_from_the_control_plane() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start(data.path()).await;
    let token = create_token(&control, "default", "reviews");
    let proxy = common::sidecar_with(
        control.push,
        "reviews-v1",
        "app=reviews",
        None,
        &["--service-account", "reviews", "--join-token", &token],
    )
    .await;
    let admin = HttpClient::http1(proxy.admin_addr());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let certs = loop {
        let body = match admin.get("admin", "/certs", &[]).await {
            Ok(r) if r.status == 200 => r.body,
            _ => String::new(),
        };
        if body.contains(REVIEWS) && body.contains("serial") {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy shows no certificate for {REVIEWS}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        control.metric("trellis_ca_certificates_issued_total").await,
        1.0
    );
    // The root the proxy trusts is the control plane's own.
    assert!(certs.contains("Trellis root CA"), "{certs}");
}

/// A proxy's `/certs`: (serial, identity) of the certificate it holds, once it has one.
async fn held_cert(admin: std::net::SocketAddr) -> Option<(String, String)> {
    let r = HttpClient::http1(admin)
        .get("admin", "/certs", &[])
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    let cert = v.get("certificate")?;
    Some((
        cert.get("serial_number")?.as_str()?.to_string(),
        cert.get("identity")?.as_str()?.to_string(),
    ))
}

/// Two proxies with certificates from the control plane talk mutual TLS; both rotate their
/// certificates (1-minute certificates, renewed at half-life) while requests flow without a break,
/// and every request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_continuous_mtls_traffic_without_a_failed_request() {
    let data = tempfile::tempdir().unwrap();
    let control = Control::start_with(data.path(), &["--cert-ttl", "1m"]).await;
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("reviews.yaml");
    std::fs::write(&config, common::SERVICE).unwrap();
    let out = control.cli(&["apply", "-f", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let reviews_token = create_token(&control, "default", "reviews");
    let client_token = create_token(&control, "default", "productpage");
    let app = testkit::echo::EchoServer::start("reviews-v1").await;
    let server = common::sidecar_with(
        control.push,
        "reviews-v1",
        "app=reviews,version=v1",
        Some(app.port()),
        &[
            "--service-account",
            "reviews",
            "--join-token",
            &reviews_token,
        ],
    )
    .await;
    let client_proxy = common::sidecar_with(
        control.push,
        "productpage-v1",
        "app=productpage,version=v1",
        None,
        &[
            "--service-account",
            "productpage",
            "--join-token",
            &client_token,
        ],
    )
    .await;

    // Both hold a certificate and the route works over mutual TLS.
    let client = HttpClient::http1(client_proxy.outbound_addr());
    let ready = testkit::client::wait_until(Duration::from_secs(15), || {
        let client = client.clone();
        async move {
            matches!(client.get("reviews:9080", "/", &[]).await, Ok(r) if r.status == 200)
        }
    })
    .await;
    assert!(ready, "productpage never reached reviews");
    let (first_serial, identity) = held_cert(server.admin_addr()).await.expect("server cert");
    assert_eq!(identity, REVIEWS);
    let (client_first, _) = held_cert(client_proxy.admin_addr())
        .await
        .expect("client cert");

    // Continuous load across both renewals (at about 30 s): not one failure.
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let (mut ok, mut failed) = (0u64, Vec::new());
    let mut rotated = false;
    while std::time::Instant::now() < deadline {
        match client.get("reviews:9080", "/", &[]).await {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
            Err(e) => failed.push(e.to_string()),
        }
        if !rotated {
            let server_now = held_cert(server.admin_addr()).await.map(|c| c.0);
            let client_now = held_cert(client_proxy.admin_addr()).await.map(|c| c.0);
            rotated = server_now.is_some_and(|s| s != first_serial)
                && client_now.is_some_and(|s| s != client_first);
            if rotated {
                // A few more seconds of traffic on the new certificates, then stop.
                let after = std::time::Instant::now() + Duration::from_secs(3);
                while std::time::Instant::now() < after {
                    match client.get("reviews:9080", "/", &[]).await {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                break;
            }
        }
    }
    assert!(
        rotated,
        "both proxies renew within 45 s of 1-minute certificates"
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "continuous traffic: {ok} requests");

    // It was mutual TLS: the server's proxy reports the client's principal.
    let stats = HttpClient::http1(server.stats_addr())
        .get("stats", "/stats/prometheus", &[])
        .await
        .unwrap()
        .body;
    assert!(
        stats.lines().any(|l| l.starts_with("istio_requests_total{")
            && l.contains("connection_security_policy=\"mutual_tls\"")
            && l.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\"")),
        "{stats}"
    );
}

/// Requests sent one after another through a proxy until stopped: how many succeeded, and every
/// failure.
struct Load {
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(client: HttpClient, host: &'static str) -> Load {
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn({
            let (ok, failed) = (ok.clone(), failed.clone());
            async move {
                while !*stopped.borrow_and_update() {
                    match client.get(host, "/", &[]).await {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(r) => failed
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", r.status, r.body)),
                        Err(e) => failed.lock().unwrap().push(e.to_string()),
                    }
                }
            }
        });
        Load {
            ok,
            failed,
            stop,
            task,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn failures(&self) -> Vec<String> {
        self.failed.lock().unwrap().clone()
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.send_replace(true);
        let ok = self.ok.clone();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        (
            ok.load(std::sync::atomic::Ordering::Relaxed),
            self.failed.lock().unwrap().clone(),
        )
    }
}

/// A proxy's `/certs` document.
async fn certs(admin: std::net::SocketAddr) -> serde_json::Value {
    let r = HttpClient::http1(admin)
        .get("admin", "/certs", &[])
        .await
        .expect("admin answers");
    serde_json::from_str(&r.body).expect("/certs is JSON")
}

/// Waits (up to `timeout`) until `check` holds for the `/certs` of every proxy in `admins`.
async fn wait_certs(
    admins: &[std::net::SocketAddr],
    timeout: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut all = true;
        let mut shown = Vec::new();
        for admin in admins {
            let doc = certs(*admin).await;
            all &= check(&doc);
            shown.push(doc);
        }
        if all {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not reached within {timeout:?}: {shown:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The roots a proxy's `/certs` lists, by subject.
fn bundle_subjects(doc: &serde_json::Value) -> Vec<String> {
    doc["trust_bundle"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["subject"].as_str().map(str::to_string))
        .collect()
}

fn renewals(doc: &serde_json::Value, result: &str) -> u64 {
    doc["renewals"][result].as_u64().unwrap_or(0)
}

/// Issue 5's two hard cases on one mesh of two mTLS proxies (STRICT) under continuous load, with
/// 1-minute certificates: (a) `trellis ca rotate` — the new root reaches both proxies' bundles
/// at once, signs after the propagation delay, and both renew onto it; (b) the control plane is
/// down for longer than a renewal window (more than half the lifetime, less than all of it),
/// renewals fail and are counted, then it comes back on the same data and port and both renew.
/// Not one request fails throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_and_a_long_control_plane_outage_fail_no_request() {
    tokio::time::timeout(Duration::from_secs(170), async {
        let data = tempfile::tempdir().unwrap();
        // Proxies reconnect with up to 5 s of back-off: the registration grace (also how long the
        // control plane waits for them before sending configs to those that reconnect) covers it.
        let mut control = Control::start_with(
            data.path(),
            &["--cert-ttl", "1m", "--registration-grace", "7s"],
        )
        .await;
        let files = tempfile::tempdir().unwrap();
        let config = files.path().join("mesh.yaml");
        let strict = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: default\nspec:\n  mtls:\n    mode: STRICT\n";
        std::fs::write(&config, format!("{}\n---\n{strict}", common::SERVICE)).unwrap();
        let out = control.cli(&["apply", "-f", config.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let reviews_token = create_token(&control, "default", "reviews");
        let client_token = create_token(&control, "default", "productpage");
        let app = testkit::echo::EchoServer::start("reviews-v1").await;
        let server = common::sidecar_with(
            control.push,
            "reviews-v1",
            "app=reviews,version=v1",
            Some(app.port()),
            &["--service-account", "reviews", "--join-token", &reviews_token],
        )
        .await;
        let client_proxy = common::sidecar_with(
            control.push,
            "productpage-v1",
            "app=productpage,version=v1",
            None,
            &["--service-account", "productpage", "--join-token", &client_token],
        )
        .await;
        let admins = [server.admin_addr(), client_proxy.admin_addr()];
        let client = HttpClient::http1(client_proxy.outbound_addr());
        let ready = testkit::client::wait_until(Duration::from_secs(15), || {
            let client = client.clone();
            async move {
                matches!(client.get("reviews:9080", "/", &[]).await, Ok(r) if r.status == 200)
            }
        })
        .await;
        assert!(ready, "productpage never reached reviews");
        let old_issuer = certs(server.admin_addr()).await["certificate"]["issuer"]
            .as_str()
            .expect("issuer")
            .to_string();
        let load = Load::start(client.clone(), "reviews:9080");

        // A grace shorter than the certificate lifetime is refused, saying why.
        let out = control.cli(&["ca", "rotate", "--grace", "30s"]);
        assert!(!out.status.success());
        let said = text(&out);
        assert!(
            said.contains("grace 30s is shorter than the certificate lifetime 1m"),
            "{said}"
        );

        // (a) Rotation: the CLI names both roots; the new one is in both bundles at once.
        // The delay leaves a loaded machine time to run `ca show` before the switch.
        let out = control.cli(&["ca", "rotate", "--propagation", "8s"]);
        assert!(out.status.success(), "{}", text(&out));
        let said = String::from_utf8(out.stdout).unwrap();
        let new_root = said
            .lines()
            .find_map(|l| l.strip_prefix("new root: "))
            .and_then(|l| l.split(" (sha256").next())
            .unwrap_or_else(|| panic!("no new root named: {said}"))
            .to_string();
        assert!(
            said.contains(&format!("old root: {old_issuer} (sha256")),
            "{said}"
        );
        assert_ne!(new_root, old_issuer);
        // Until the propagation delay is over, the old root signs and the new one is next.
        let shown = text(&control.cli(&["ca", "show"]));
        assert!(shown.contains("signing") && shown.contains("next (signs from"), "{shown}");
        wait_certs(&admins, Duration::from_secs(5), "the new root pushed", |d| {
            let roots = bundle_subjects(d);
            roots.contains(&new_root)
                && roots.contains(&old_issuer)
                && d["bundle_updates"]["applied"] == 1
        })
        .await;
        assert_eq!(control.metric("trellis_ca_root_rotations_total").await, 1.0);
        // Both renew at half-life (about 30 s) onto the new root.
        wait_certs(&admins, Duration::from_secs(55), "renewal onto the new root", |d| {
            d["certificate"]["issuer"] == new_root.as_str()
        })
        .await;
        let shown = control.cli(&["ca", "show"]);
        let shown = text(&shown);
        assert!(shown.contains("previous (trusted until"), "{shown}");
        assert!(load.failures().is_empty(), "{:?}", load.failures());
        let after_rotation = load.ok();

        // (b) Outage: stopped when both certificates have more than 44 of their 60 s left (both
        // renewed moments ago, after (a)), down for 34 s: past both half-lives (so renewals fail
        // for a few seconds at least), at least 10 s before either expiry.
        wait_certs(&admins, Duration::from_secs(30), "fresh certificates", |d| {
            d["certificate"]["seconds_until_expiration"].as_i64() > Some(44)
        })
        .await;
        let mut before = Vec::new();
        for admin in admins {
            let doc = certs(admin).await;
            before.push((
                renewals(&doc, "success"),
                renewals(&doc, "unavailable"),
                doc["certificate"]["expiration_time"].clone(),
            ));
        }
        control.stop().await;
        tokio::time::sleep(Duration::from_secs(34)).await;
        for (admin, (_, unavailable, _)) in admins.iter().zip(&before) {
            let doc = certs(*admin).await;
            assert!(
                renewals(&doc, "unavailable") > *unavailable,
                "renewal failures are counted while the control plane is down: {doc:#}"
            );
            assert_eq!(doc["certificate"]["expired"], false, "{doc:#}");
        }
        assert!(load.failures().is_empty(), "{:?}", load.failures());
        let control = control.relaunch().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(25);
        for (admin, (success, _, expiration)) in admins.iter().zip(&before) {
            loop {
                let doc = certs(*admin).await;
                if renewals(&doc, "success") > *success
                    && doc["certificate"]["expiration_time"] != *expiration
                {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no renewal after the control plane came back: {doc:#}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (ok, failed) = load.finish().await;
        assert!(
            failed.is_empty(),
            "{} of {} requests failed: {:?}",
            failed.len(),
            ok as usize + failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(ok > after_rotation && ok > 200, "continuous traffic: {ok} requests");
        // It was mutual TLS all along.
        let stats = HttpClient::http1(server.stats_addr())
            .get("stats", "/stats/prometheus", &[])
            .await
            .unwrap()
            .body;
        assert!(
            stats.lines().any(|l| l.starts_with("istio_requests_total{")
                && l.contains("connection_security_policy=\"mutual_tls\"")),
            "{stats}"
        );
        drop(control);
    })
    .await
    .expect("the test finishes in time");
}
