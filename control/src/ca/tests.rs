//! The CA as its users meet it: a directory of PEM files, CSRs made by a "proxy" with rcgen, and
//! certificates checked with webpki and x509-parser.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use x509_parser::extensions::GeneralName;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn options() -> AuthorityOptions {
    AuthorityOptions::default()
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).unwrap()
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.to_string().try_into().unwrap())
}

/// A CSR as a proxy makes it: its own key, the given SANs, no subject.
fn csr_with(sans: Vec<SanType>, alg: &'static rcgen::SignatureAlgorithm) -> String {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn csr_for(identity: &SpiffeId) -> String {
    csr_with(
        vec![uri(&identity.to_string())],
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A CA certificate and key made outside Trellis (a user's own root or intermediate).
fn user_ca(
    cn: &str,
    issuer: Option<&Issuer<'_, KeyPair>>,
    not_after_from_now: Duration,
) -> (String, KeyPair) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (SystemTime::now() - HOUR).into();
    params.not_after = (SystemTime::now() + not_after_from_now).into();
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.pem(), key)
}

fn issuer_of(cert_pem: &str, key: &KeyPair) -> Issuer<'static, KeyPair> {
    let key = KeyPair::from_pem(&key.serialize_pem()).unwrap();
    Issuer::from_ca_cert_pem(cert_pem, key).unwrap()
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

fn parse_pem_cert(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

#[test]
fn creates_a_root_in_an_empty_dir_and_reloads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let ca = Authority::load_or_create(&dir, options()).unwrap();
    assert_eq!(ca.layout(), Layout::Root);
    assert_eq!(mode(&dir.join(ROOT_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir), 0o700);

    let root_pem = std::fs::read_to_string(dir.join(ROOT_CERT_FILE)).unwrap();
    let der = parse_pem_cert(&root_pem);
    let (_, root) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(root.is_ca());
    assert!(root.key_usage().unwrap().unwrap().value.key_cert_sign());
    let validity = root.validity();
    let years = (validity.not_after.timestamp() - validity.not_before.timestamp()) / (365 * 86400);
    assert_eq!(years, 10);
    assert_eq!(
        root.public_key()
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        x509_parser::oid_registry::OID_EC_P256
    );

    let bundle = ca.trust_bundle();
    assert_eq!(bundle.roots().len(), 1);
    let reloaded = Authority::load_or_create(&dir, options()).unwrap();
    assert_eq!(reloaded.trust_bundle(), bundle);
    assert_eq!(bundle.pem(), root_pem);
}

#[test]
fn issues_a_leaf_from_a_csr_that_verifies_against_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Authority::load_or_create(tmp.path(), options()).unwrap();
    let reviews = id("bookinfo", "reviews");
    let before = SystemTime::now();
    let issued = ca
        .sign_csr(csr_for(&reviews).as_bytes(), &reviews, None)
        .unwrap();
    assert_eq!(issued.identity, reviews);
    assert!(
        issued.chain_pem.is_empty(),
        "a root signs directly: no chain"
    );

    let bundle = ca.trust_bundle();
    for role in [PeerRole::Client, PeerRole::Server] {
        let verified = verify_leaf(issued.full_chain_pem().as_bytes(), &bundle, role).unwrap();
        assert_eq!(verified, reviews);
    }

    let der = parse_pem_cert(&issued.cert_pem);
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(!leaf.is_ca());
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca, "CA:FALSE is explicit");
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    assert!(!ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "SAN is critical with an empty subject");
    assert_eq!(
        san.value.general_names,
        vec![GeneralName::URI(
            "spiffe://cluster.local/ns/bookinfo/sa/reviews"
        )]
    );
    assert!(leaf.subject().iter().next().is_none(), "empty subject");
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    let now = before
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - 62..=now - 58).contains(&not_before),
        "backdated a minute"
    );
    assert!((now + 86398..=now + 86402).contains(&not_after), "24 h");
    assert_eq!(
        issued
            .not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        not_after
    );
    assert_eq!(leaf.raw_serial().len(), 16);
    assert_eq!(issued.serial, hex::encode(leaf.raw_serial()));

    // Expired a day later; another CSR gets another serial.
    let later = SystemTime::now() + 25 * HOUR;
    assert_eq!(
        verify_leaf_at(issued.cert_pem.as_bytes(), &bundle, PeerRole::Client, later),
        Err(VerifyError::Expired)
    );
    let again = ca
        .sign_csr(csr_for(&reviews).as_bytes(), &reviews, None)
        .unwrap();
    assert_ne!(again.serial, issued.serial);
}

#[test]
fn lifetime_is_configurable_and_der_csrs_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Authority::load_or_create(
        tmp.path(),
        AuthorityOptions {
            leaf_ttl: HOUR,
            ..options()
        },
    )
    .unwrap();
    let ratings = id("default", "ratings");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![uri(&ratings.to_string())];
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    let issued = ca.sign_csr(&der, &ratings, None).unwrap();
    let left = issued.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(
        left <= HOUR && left > HOUR - Duration::from_secs(60),
        "{left:?}"
    );

    let short = ca
        .sign_csr(
            csr_for(&ratings).as_bytes(),
            &ratings,
            Some(Duration::from_secs(600)),
        )
        .unwrap();
    let left = short.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(600), "{left:?}");

    let ed = csr_with(vec![uri(&ratings.to_string())], &rcgen::PKCS_ED25519);
    let issued = ca.sign_csr(ed.as_bytes(), &ratings, None).unwrap();
    assert_eq!(
        verify_leaf(
            issued.cert_pem.as_bytes(),
            &ca.trust_bundle(),
            PeerRole::Server
        )
        .unwrap(),
        ratings
    );
}

#[test]
fn refuses_csrs_asking_for_anything_but_the_callers_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Authority::load_or_create(tmp.path(), options()).unwrap();
    let caller = id("bookinfo", "reviews");
    let p256 = &rcgen::PKCS_ECDSA_P256_SHA256;
    let refuse = |csr: &[u8]| match ca.sign_csr(csr, &caller, None) {
        Err(CaError::Csr(e)) => e,
        other => panic!("expected a CSR error, got {other:?}"),
    };

    let other = refuse(csr_for(&id("bookinfo", "productpage")).as_bytes());
    assert_eq!(
        other,
        CsrError::WrongIdentity {
            asked: "spiffe://cluster.local/ns/bookinfo/sa/productpage".into(),
            allowed: "spiffe://cluster.local/ns/bookinfo/sa/reviews".into(),
        }
    );
    assert!(other.to_string().contains("productpage") && other.to_string().contains("reviews"));

    let with_dns = csr_with(
        vec![
            uri(&caller.to_string()),
            SanType::DnsName("reviews.bookinfo.svc".try_into().unwrap()),
        ],
        p256,
    );
    let err = refuse(with_dns.as_bytes());
    assert_eq!(err.kind(), "csr_extra_names");
    assert!(
        err.to_string()
            .contains("DNS name \"reviews.bookinfo.svc\""),
        "{err}"
    );

    let two_uris = csr_with(
        vec![
            uri(&caller.to_string()),
            uri("spiffe://cluster.local/ns/bookinfo/sa/other"),
        ],
        p256,
    );
    assert_eq!(refuse(two_uris.as_bytes()).kind(), "csr_extra_names");

    let no_san = csr_with(vec![], p256);
    assert_eq!(refuse(no_san.as_bytes()).kind(), "csr_no_identity");

    let ip = csr_with(vec![SanType::IpAddress("127.0.0.1".parse().unwrap())], p256);
    assert!(
        refuse(ip.as_bytes())
            .to_string()
            .contains("IP address 127.0.0.1")
    );

    // Flip one bit of the signature (the last bytes of the DER).
    let good = csr_for(&caller);
    let mut der = x509_parser::pem::parse_x509_pem(good.as_bytes())
        .unwrap()
        .1
        .contents;
    let last = der.len() - 3;
    der[last] ^= 0x01;
    assert_eq!(refuse(&der), CsrError::BadSignature);

    // Change the requested identity without re-signing.
    let mut der = x509_parser::pem::parse_x509_pem(good.as_bytes())
        .unwrap()
        .1
        .contents;
    let at = der.windows(7).position(|w| w == b"reviews").unwrap();
    der[at] = b'R';
    assert_eq!(refuse(&der), CsrError::BadSignature);

    assert_eq!(refuse(b"not a csr").kind(), "csr_malformed");
    assert_eq!(
        refuse(b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n")
            .kind(),
        "csr_malformed"
    );
    assert_eq!(refuse(&vec![0x30; 100_000]).kind(), "csr_malformed");

    let foreign_td = SpiffeId::new("example.org", "bookinfo", "reviews").unwrap();
    let err = ca
        .sign_csr(csr_for(&foreign_td).as_bytes(), &foreign_td, None)
        .unwrap_err();
    assert_eq!(err.kind(), "trust_domain");
}

#[test]
fn refuses_a_leaf_from_a_foreign_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = Authority::load_or_create(&tmp.path().join("ours"), options()).unwrap();
    let theirs = Authority::load_or_create(&tmp.path().join("theirs"), options()).unwrap();
    let who = id("default", "app");
    let foreign = theirs
        .sign_csr(csr_for(&who).as_bytes(), &who, None)
        .unwrap();
    assert_eq!(
        verify_leaf(
            foreign.cert_pem.as_bytes(),
            &ours.trust_bundle(),
            PeerRole::Client
        ),
        Err(VerifyError::UnknownIssuer)
    );

    // A foreign root with the very same name as ours is still foreign.
    let same_name = |name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let (pem, key) = user_ca("Same root", None, 100 * HOUR);
        write(&dir, ROOT_CERT_FILE, &pem);
        write(&dir, ROOT_KEY_FILE, &key.serialize_pem());
        Authority::load_or_create(&dir, options()).unwrap()
    };
    let (a, b) = (same_name("a"), same_name("b"));
    let from_b = b.sign_csr(csr_for(&who).as_bytes(), &who, None).unwrap();
    assert_eq!(
        verify_leaf(
            from_b.cert_pem.as_bytes(),
            &a.trust_bundle(),
            PeerRole::Client
        ),
        Err(VerifyError::UnknownIssuer)
    );
}

#[test]
fn loads_istios_plug_in_layout_with_an_intermediate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (root_pem, root_key) = user_ca("Example root", None, 1000 * HOUR);
    let root_issuer = issuer_of(&root_pem, &root_key);
    let (ca_pem, ca_key) = user_ca("Example intermediate", Some(&root_issuer), 500 * HOUR);
    write(dir, ROOT_CERT_FILE, &root_pem);
    write(dir, CA_CERT_FILE, &ca_pem);
    write(dir, CA_KEY_FILE, &ca_key.serialize_pem());
    write(dir, CERT_CHAIN_FILE, &format!("{ca_pem}{root_pem}"));

    let ca = Authority::load_or_create(dir, options()).unwrap();
    assert_eq!(ca.layout(), Layout::Intermediate);
    assert_eq!(ca.trust_bundle().pem(), root_pem);
    let who = id("default", "app");
    let issued = ca.sign_csr(csr_for(&who).as_bytes(), &who, None).unwrap();
    assert_eq!(issued.chain_pem, ca_pem, "the intermediate, not the root");
    assert_eq!(
        verify_leaf(
            issued.full_chain_pem().as_bytes(),
            &ca.trust_bundle(),
            PeerRole::Client
        ),
        Ok(who.clone())
    );
    assert_eq!(
        verify_leaf(
            issued.cert_pem.as_bytes(),
            &ca.trust_bundle(),
            PeerRole::Client
        ),
        Err(VerifyError::UnknownIssuer),
        "without its chain the leaf does not reach the root"
    );

    // A leaf longer-lived than the intermediate is cut at the intermediate's expiry.
    let long = ca
        .sign_csr(csr_for(&who).as_bytes(), &who, Some(10_000 * HOUR))
        .unwrap();
    assert_eq!(long.not_after, ca.signer_not_after());

    let mut ca = ca;
    assert_eq!(
        ca.rotate_root(HOUR).unwrap_err().kind(),
        "rotation_not_possible"
    );

    // An intermediate from another root does not chain to root-cert.pem.
    let (other_root_pem, other_root_key) = user_ca("Other root", None, 1000 * HOUR);
    let other = issuer_of(&other_root_pem, &other_root_key);
    let (stray_pem, stray_key) = user_ca("Stray intermediate", Some(&other), 500 * HOUR);
    write(dir, CA_CERT_FILE, &stray_pem);
    write(dir, CA_KEY_FILE, &stray_key.serialize_pem());
    write(dir, CERT_CHAIN_FILE, &stray_pem);
    let err = Authority::load_or_create(dir, options()).unwrap_err();
    assert_eq!(err.kind(), "broken_chain", "{err}");
    assert!(err.to_string().contains("ca-cert.pem"), "{err}");
}

#[test]
fn generates_an_intermediate_under_a_users_root() {
    let tmp = tempfile::tempdir().unwrap();
    let user = tmp.path().join("user");
    std::fs::create_dir(&user).unwrap();
    let (root_pem, root_key) = user_ca("Corp root", None, 1000 * HOUR);
    write(&user, "root.pem", &root_pem);
    write(&user, "root.key", &root_key.serialize_pem());

    let dir = tmp.path().join("ca");
    let ca = Authority::create_intermediate(
        &dir,
        options(),
        &user.join("root.pem"),
        &user.join("root.key"),
    )
    .unwrap();
    assert_eq!(ca.layout(), Layout::Intermediate);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert!(
        !dir.join(ROOT_KEY_FILE).exists(),
        "the root key is not copied"
    );
    assert_eq!(ca.trust_bundle().pem(), root_pem);
    // The intermediate cannot outlive the root.
    assert!(ca.signer_not_after() <= SystemTime::now() + 1000 * HOUR);

    let who = id("default", "app");
    let issued = ca.sign_csr(csr_for(&who).as_bytes(), &who, None).unwrap();
    assert_eq!(
        verify_leaf(
            issued.full_chain_pem().as_bytes(),
            &ca.trust_bundle(),
            PeerRole::Server
        ),
        Ok(who)
    );
    let reloaded = Authority::load_or_create(&dir, options()).unwrap();
    assert_eq!(reloaded.layout(), Layout::Intermediate);

    let again = Authority::create_intermediate(
        &dir,
        options(),
        &user.join("root.pem"),
        &user.join("root.key"),
    );
    assert_eq!(again.unwrap_err().kind(), "bad_state");
}

#[test]
fn bad_ca_files_are_refused_naming_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let case = |name: &str, files: &[(&str, String)]| {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        for (file, contents) in files {
            write(&dir, file, contents);
        }
        let err = Authority::load_or_create(&dir, options()).unwrap_err();
        (err.kind(), err.to_string())
    };
    let (root_pem, root_key) = user_ca("Good root", None, 1000 * HOUR);
    let key_pem = root_key.serialize_pem();

    let (kind, msg) = case(
        "garbage",
        &[
            (ROOT_CERT_FILE, "hello".into()),
            (ROOT_KEY_FILE, key_pem.clone()),
        ],
    );
    assert_eq!(kind, "not_pem");
    assert!(
        msg.contains("root-cert.pem") && msg.contains("no -----BEGIN CERTIFICATE"),
        "{msg}"
    );

    let (kind, msg) = case(
        "bad-base64",
        &[
            (
                ROOT_CERT_FILE,
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".into(),
            ),
            (ROOT_KEY_FILE, key_pem.clone()),
        ],
    );
    assert_eq!(kind, "not_pem", "{msg}");

    let (kind, msg) = case(
        "bad-der",
        &[
            (
                ROOT_CERT_FILE,
                "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n".into(),
            ),
            (ROOT_KEY_FILE, key_pem.clone()),
        ],
    );
    assert_eq!(kind, "bad_cert", "{msg}");
    assert!(msg.contains("root-cert.pem"), "{msg}");

    let (kind, msg) = case(
        "garbage-key",
        &[
            (ROOT_CERT_FILE, root_pem.clone()),
            (ROOT_KEY_FILE, "nope".into()),
        ],
    );
    assert_eq!(kind, "not_pem");
    assert!(msg.contains("root-key.pem"), "{msg}");

    let other_key = KeyPair::generate().unwrap().serialize_pem();
    let (kind, msg) = case(
        "mismatch",
        &[
            (ROOT_CERT_FILE, root_pem.clone()),
            (ROOT_KEY_FILE, other_key),
        ],
    );
    assert_eq!(kind, "key_mismatch");
    assert!(
        msg.contains("root-key.pem") && msg.contains("root-cert.pem"),
        "{msg}"
    );

    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["example.com".to_string()])
        .unwrap()
        .self_signed(&leaf_key)
        .unwrap();
    let (kind, msg) = case(
        "not-ca",
        &[
            (ROOT_CERT_FILE, leaf.pem()),
            (ROOT_KEY_FILE, leaf_key.serialize_pem()),
        ],
    );
    assert_eq!(kind, "not_ca");
    assert!(msg.contains("CA:TRUE"), "{msg}");

    let old_key = KeyPair::generate().unwrap();
    let mut old = CertificateParams::default();
    old.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    old.not_before = rcgen::date_time_ymd(2000, 1, 1);
    old.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let old = old.self_signed(&old_key).unwrap();
    let (kind, msg) = case(
        "expired",
        &[
            (ROOT_CERT_FILE, old.pem()),
            (ROOT_KEY_FILE, old_key.serialize_pem()),
        ],
    );
    assert_eq!(kind, "expired");
    assert!(msg.contains("expired at") && msg.contains("2001"), "{msg}");

    let (kind, msg) = case("half", &[(ROOT_CERT_FILE, root_pem.clone())]);
    assert_eq!(kind, "incomplete_layout");
    assert!(msg.contains("root-key.pem missing"), "{msg}");

    let (kind, msg) = case("half-plug-in", &[(CA_CERT_FILE, root_pem.clone())]);
    assert_eq!(kind, "incomplete_layout");
    assert!(
        msg.contains("ca-key.pem, cert-chain.pem, root-cert.pem"),
        "{msg}"
    );

    let bad_td = Authority::load_or_create(
        &tmp.path().join("td"),
        AuthorityOptions {
            trust_domain: "Bad Domain".into(),
            ..options()
        },
    )
    .unwrap_err();
    assert_eq!(bad_td.kind(), "trust_domain");
}

#[test]
fn reads_pkcs1_rsa_keys_as_istios_sample_certs_have() {
    // An RSA root made by openssl, as in Istio's samples/certs (PKCS#1 "RSA PRIVATE KEY").
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/O=Istio/CN=Root CA", "-traditional"])
        .arg("-keyout")
        .arg(dir.join(ROOT_KEY_FILE))
        .arg("-out")
        .arg(dir.join(ROOT_CERT_FILE))
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args([
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ])
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => {
            eprintln!("openssl not available; skipping");
            return;
        }
    }
    let key = std::fs::read_to_string(dir.join(ROOT_KEY_FILE)).unwrap();
    assert!(key.contains("BEGIN RSA PRIVATE KEY"), "{key}");
    let ca = Authority::load_or_create(dir, options()).unwrap();
    let who = id("default", "app");
    let issued = ca.sign_csr(csr_for(&who).as_bytes(), &who, None).unwrap();
    assert_eq!(
        verify_leaf(
            issued.cert_pem.as_bytes(),
            &ca.trust_bundle(),
            PeerRole::Client
        ),
        Ok(who)
    );
}

#[test]
fn rotating_the_root_keeps_the_old_one_trusted_for_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut ca = Authority::load_or_create(dir, options()).unwrap();
    let who = id("default", "app");
    let old_root = ca.trust_bundle().pem();
    // Longer-lived than the grace period, so that its root leaving is what refuses it later.
    let old_leaf = ca
        .sign_csr(csr_for(&who).as_bytes(), &who, Some(100 * HOUR))
        .unwrap();

    ca.rotate_root(48 * HOUR).unwrap();
    let bundle = ca.trust_bundle();
    assert_eq!(bundle.roots().len(), 2);
    let new_root = std::fs::read_to_string(dir.join(ROOT_CERT_FILE)).unwrap();
    assert_ne!(new_root, old_root);
    assert_eq!(
        bundle.pem(),
        format!("{new_root}{old_root}"),
        "newest first"
    );
    assert_eq!(mode(&dir.join(ROOT_KEY_FILE)), 0o600);

    // Old leaves still verify within the window; new leaves chain to the new root.
    assert_eq!(
        verify_leaf(old_leaf.cert_pem.as_bytes(), &bundle, PeerRole::Client),
        Ok(who.clone())
    );
    let new_leaf = ca.sign_csr(csr_for(&who).as_bytes(), &who, None).unwrap();
    let only_new = TrustBundle::from_pem(new_root.as_bytes()).unwrap();
    assert_eq!(
        verify_leaf(new_leaf.cert_pem.as_bytes(), &only_new, PeerRole::Client),
        Ok(who.clone())
    );
    assert_eq!(
        verify_leaf(old_leaf.cert_pem.as_bytes(), &only_new, PeerRole::Client),
        Err(VerifyError::UnknownIssuer)
    );

    // A restart keeps the window.
    let reloaded = Authority::load_or_create(dir, options()).unwrap();
    assert_eq!(reloaded.trust_bundle(), bundle);

    // After the window, only the new root is left.
    let after = SystemTime::now() + 49 * HOUR;
    let later = reloaded.trust_bundle_at(after);
    assert_eq!(later, only_new);
    assert_eq!(
        verify_leaf_at(
            old_leaf.cert_pem.as_bytes(),
            &later,
            PeerRole::Client,
            after
        ),
        Err(VerifyError::UnknownIssuer)
    );

    // A second rotation keeps both older roots for their own windows.
    let mut ca = reloaded;
    ca.rotate_root(HOUR).unwrap();
    assert_eq!(ca.trust_bundle().roots().len(), 3);
    assert_eq!(
        ca.trust_bundle_at(SystemTime::now() + 2 * HOUR)
            .roots()
            .len(),
        2
    );

    std::fs::write(dir.join(PREVIOUS_ROOTS_FILE), "{oops").unwrap();
    let err = Authority::load_or_create(dir, options()).unwrap_err();
    assert_eq!(err.kind(), "bad_state");
    assert!(err.to_string().contains(PREVIOUS_ROOTS_FILE), "{err}");
}

#[test]
fn join_tokens_verify_expire_and_revoke_and_only_hashes_are_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tokens = JoinTokens::open(tmp.path()).unwrap();
    let token = tokens.create("bookinfo", "reviews", HOUR).unwrap();
    assert!(token.starts_with("trellis-join."));
    assert_eq!(token.len(), "trellis-join.".len() + 43);
    assert_eq!(
        tokens.verify(&token).unwrap(),
        ("bookinfo".to_string(), "reviews".to_string())
    );

    let path = tmp.path().join(tokens::TOKENS_FILE);
    assert_eq!(mode(&path), 0o600);
    let stored = std::fs::read_to_string(&path).unwrap();
    let secret = token.strip_prefix("trellis-join.").unwrap();
    assert!(!stored.contains(secret), "the file holds hashes only");
    assert!(stored.contains("reviews"));

    // A restart reads the hashes back.
    let mut tokens = JoinTokens::open(tmp.path()).unwrap();
    assert!(tokens.verify(&token).is_ok());
    assert_eq!(tokens.list().len(), 1);

    let expired = tokens
        .verify_at(&token, SystemTime::now() + 2 * HOUR)
        .unwrap_err();
    assert_eq!(expired.kind(), "expired");
    assert!(expired.to_string().contains("bookinfo/reviews"));

    let malformed = [
        "reviews",
        "trellis-join.",
        "trellis-join.@@@@",
        "trellis-join.AAAA",
        "Bearer trellis-join.AAAA",
    ];
    for bad in malformed {
        assert_eq!(tokens.verify(bad).unwrap_err().kind(), "malformed", "{bad}");
    }
    let unknown = format!("trellis-join.{}", "A".repeat(43));
    assert_eq!(tokens.verify(&unknown).unwrap_err().kind(), "unknown");

    let other = tokens.create("bookinfo", "ratings", HOUR).unwrap();
    assert!(tokens.revoke(&token).unwrap());
    assert!(!tokens.revoke(&token).unwrap());
    assert_eq!(tokens.verify(&token).unwrap_err().kind(), "unknown");
    let ratings = ("bookinfo".to_string(), "ratings".to_string());
    assert_eq!(tokens.verify(&other).unwrap(), ratings);
    let reopened = JoinTokens::open(tmp.path()).unwrap();
    assert_eq!(reopened.verify(&token).unwrap_err().kind(), "unknown");
    assert_eq!(reopened.verify(&other).unwrap(), ratings);

    let id = tokens.list()[0].id.clone();
    assert!(tokens.revoke_id(&id).unwrap());
    assert!(!tokens.revoke_id(&id).unwrap());
    assert_eq!(tokens.verify(&other).unwrap_err().kind(), "unknown");

    assert_eq!(
        tokens.create("bad ns", "sa", HOUR).unwrap_err().kind(),
        "scope"
    );
}

/// A CSR made by openssl (a client other than rcgen), or None when openssl is not installed.
fn openssl_csr(dir: &Path, name: &str, args: &[&str]) -> Option<Vec<u8>> {
    let out = dir.join(format!("{name}.csr"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", "/"])
        .args(args)
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(&out)
        .args([
            "-addext",
            "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/app",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| std::fs::read(out).unwrap())
}

#[test]
fn accepts_openssl_csrs_with_allowed_keys_and_refuses_weak_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Authority::load_or_create(&tmp.path().join("ca"), options()).unwrap();
    let who = id("default", "app");
    let Some(rsa2048) = openssl_csr(tmp.path(), "rsa2048", &["-newkey", "rsa:2048"]) else {
        eprintln!("openssl not available; skipping");
        return;
    };
    let issued = ca.sign_csr(&rsa2048, &who, None).unwrap();
    assert_eq!(
        verify_leaf(
            issued.cert_pem.as_bytes(),
            &ca.trust_bundle(),
            PeerRole::Client
        ),
        Ok(who.clone())
    );
    // openssl, an independent verifier, accepts the leaf for both TLS roles.
    std::fs::write(tmp.path().join("bundle.pem"), ca.trust_bundle().pem()).unwrap();
    std::fs::write(tmp.path().join("leaf.pem"), &issued.cert_pem).unwrap();
    for purpose in ["sslclient", "sslserver"] {
        let out = std::process::Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(tmp.path().join("bundle.pem"))
            .arg(tmp.path().join("leaf.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{purpose}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let p384 = openssl_csr(
        tmp.path(),
        "p384",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    )
    .unwrap();
    assert!(ca.sign_csr(&p384, &who, None).is_ok());

    let refused = |csr: Vec<u8>| match ca.sign_csr(&csr, &who, None) {
        Err(CaError::Csr(e)) => e,
        other => panic!("expected a CSR error, got {other:?}"),
    };
    let rsa1024 = openssl_csr(tmp.path(), "rsa1024", &["-newkey", "rsa:1024"]).unwrap();
    assert_eq!(
        refused(rsa1024),
        CsrError::KeyType("RSA of 1024 bits".into())
    );
    let p521 = openssl_csr(
        tmp.path(),
        "p521",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    )
    .unwrap();
    assert_eq!(refused(p521).kind(), "csr_key_type");
    let sha1 = openssl_csr(tmp.path(), "sha1", &["-newkey", "rsa:2048", "-sha1"]).unwrap();
    assert_eq!(refused(sha1).kind(), "csr_signature_algorithm");
}

#[test]
fn a_staged_root_is_trusted_first_and_signs_only_from_its_time_even_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut ca = Authority::load_or_create(dir, options()).unwrap();
    let who = id("default", "app");
    let old_only = ca.trust_bundle();
    let now = SystemTime::now();

    let signs_from = ca.stage_root(2 * HOUR, HOUR, now).unwrap();
    assert_eq!(signs_from, now + HOUR);
    let bundle = ca.trust_bundle();
    assert_eq!(bundle.roots().len(), 2, "the new root is trusted at once");
    // Until its time, the old root still signs: peers with the old bundle accept the leaf.
    let leaf = ca.sign_csr(csr_for(&who).as_bytes(), &who, None).unwrap();
    assert_eq!(
        verify_leaf(leaf.cert_pem.as_bytes(), &old_only, PeerRole::Client),
        Ok(who.clone())
    );
    let roles: Vec<RootRole> = ca.roots_at(now).iter().map(|r| r.role).collect();
    assert_eq!(
        roles,
        vec![
            RootRole::Signing,
            RootRole::Next {
                activates_at: now + HOUR
            }
        ]
    );
    assert_eq!(ca.next_change(now), Some(now + HOUR));
    assert_eq!(
        ca.stage_root(2 * HOUR, HOUR, now).unwrap_err().kind(),
        "rotation_in_progress"
    );
    assert_eq!(mode(&dir.join(PENDING_ROOT_FILE)), 0o600, "it holds a key");

    // A restart keeps the schedule.
    let mut ca = Authority::load_or_create(dir, options()).unwrap();
    assert_eq!(ca.trust_bundle(), bundle);
    assert!(!ca.activate_due(now).unwrap());

    // At its time the new root signs, and the old one stays for the grace.
    let at = now + HOUR;
    assert!(ca.activate_due(at).unwrap());
    assert!(!dir.join(PENDING_ROOT_FILE).exists());
    let leaf = ca.sign_csr(csr_for(&who).as_bytes(), &who, None).unwrap();
    assert_eq!(
        verify_leaf(leaf.cert_pem.as_bytes(), &old_only, PeerRole::Client),
        Err(VerifyError::UnknownIssuer)
    );
    assert_eq!(
        verify_leaf(leaf.cert_pem.as_bytes(), &bundle, PeerRole::Client),
        Ok(who.clone())
    );
    let roles: Vec<RootRole> = ca.roots_at(at).iter().map(|r| r.role).collect();
    assert_eq!(
        roles,
        vec![
            RootRole::Signing,
            RootRole::Previous {
                trusted_until: at + 2 * HOUR
            }
        ]
    );
    assert_eq!(ca.trust_bundle_at(at + 3 * HOUR).roots().len(), 1);
    // The directory now loads with the new root signing.
    let reloaded = Authority::load_or_create(dir, options()).unwrap();
    assert_eq!(reloaded.trust_bundle(), ca.trust_bundle());

    // A bad staged-root file is refused with its name.
    std::fs::write(dir.join(PENDING_ROOT_FILE), "{}").unwrap();
    let err = Authority::load_or_create(dir, options()).unwrap_err();
    assert!(err.to_string().contains(PENDING_ROOT_FILE), "{err}");
}

#[test]
fn rotations_refuse_a_grace_shorter_than_the_certificate_lifetime() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Authority::load_or_create(tmp.path(), options()).unwrap();
    let tokens = JoinTokens::open(tmp.path()).unwrap();
    let service = IdentityService::new(ca, tokens, HOUR);
    let err = service.rotate(Some(HOUR / 2), None).unwrap_err();
    assert!(err.is_request_error());
    assert!(
        err.to_string()
            .starts_with("grace 30m is shorter than the certificate lifetime 1h"),
        "{err}"
    );
    assert_eq!(service.default_grace(), 2 * HOUR);
    let bundles = service.subscribe_bundle();
    let rotation = service.rotate(None, Some(HOUR)).unwrap();
    assert_eq!(rotation.replaced.len(), 1);
    assert_eq!(rotation.old_trusted_until, rotation.activates_at + 2 * HOUR);
    assert_eq!(
        TrustBundle::from_pem(bundles.borrow().as_bytes())
            .unwrap()
            .roots()
            .len(),
        2,
        "the bigger bundle is published at once"
    );
    let err = service.rotate(None, None).unwrap_err();
    assert!(err.to_string().contains("already under way"), "{err}");
}

#[tokio::test]
async fn the_schedule_activates_the_new_root_and_pushes_the_smaller_bundle_when_grace_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Authority::load_or_create(tmp.path(), options()).unwrap();
    let tokens = JoinTokens::open(tmp.path()).unwrap();
    let second = Duration::from_secs(1);
    let service = IdentityService::new(ca, tokens, second);
    service.start_schedule();
    let mut bundles = service.subscribe_bundle();
    let roots = |pem: &str| TrustBundle::from_pem(pem.as_bytes()).unwrap().roots().len();
    let rotation = service.rotate(Some(second), Some(second / 2)).unwrap();
    assert_eq!(roots(&bundles.borrow_and_update()), 2);
    let signing = |service: &IdentityService| {
        service
            .roots()
            .into_iter()
            .find(|r| r.role == RootRole::Signing)
            .map(|r| r.der)
    };
    // Half a second later the new root signs; a second after that the old one leaves and the
    // one-root bundle is published.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            bundles.changed().await.unwrap();
            if roots(&bundles.borrow_and_update()) == 1 {
                break;
            }
        }
    })
    .await
    .expect("the old root leaves the bundle after its grace");
    assert_eq!(signing(&service), Some(rotation.new_root.der));
}
