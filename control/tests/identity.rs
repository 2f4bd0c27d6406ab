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
