//! Throwaway PKI for TLS tests: a self-signed root that issues leaves (EC P-256, rcgen) for mesh
//! mutual TLS (SPIFFE URI SANs), TLS origination (DNS names), and the bad certificates a good CA
//! never issues (expired, not yet valid, no SAN), plus a rustls server config built from them.

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer};
use rcgen::{ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A self-signed test root, valid from an hour ago for a day.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The root certificate (what a trust bundle or `caCertificates` file holds).
    pub root_pem: String,
}

/// A leaf's validity, in seconds relative to now (negative: in the past).
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub from_secs: i64,
    pub to_secs: i64,
}

impl Validity {
    /// From a minute ago (as a real CA backdates) for an hour.
    pub const HOUR: Validity = Validity {
        from_secs: -60,
        to_secs: 3600,
    };
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Trellis tests");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(-3600).into();
        params.not_after = at(86_400).into();
        let root_pem = params.self_signed(&key).expect("self-signed root").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            root_pem,
        }
    }

    /// A fresh key and an hour's certificate for `sans`: (certificate PEM, key PEM).
    pub fn leaf(&self, sans: &[&str]) -> (String, String) {
        self.leaf_valid(sans, Validity::HOUR)
    }

    /// A fresh key and a certificate for `sans` (`spiffe://...` and other `scheme://` names
    /// become URI SANs, IP addresses IP SANs, the rest DNS names; none is allowed), valid for
    /// `valid`, for both server and client use: (certificate PEM, key PEM).
    pub fn leaf_valid(&self, sans: &[&str], valid: Validity) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = at(valid.from_secs).into();
        params.not_after = at(valid.to_secs).into();
        let cert = params.signed_by(&key, &self.issuer).expect("leaf signed");
        (cert.pem(), key.serialize_pem())
    }

    /// Signs a certificate for someone else's key, as the control plane's CA signs a CSR: URI
    /// SAN `uri`, backdated a minute, living `lifetime`, a random serial. (certificate PEM,
    /// serial in hex).
    pub fn issue(
        &self,
        public_key: &rcgen::PublicKey,
        uri: &str,
        lifetime: Duration,
    ) -> (String, String) {
        let mut serial: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        serial[0] = fastrand::u8(1..=0x7f);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![san(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + lifetime).into();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let csr = rcgen::CertificateSigningRequestParams {
            params,
            public_key: public_key.clone(),
        };
        let cert = csr.signed_by(&self.issuer).expect("CSR signed");
        (cert.pem(), hex_of(&serial))
    }

    /// A TLS server config (TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`) presenting a leaf for
    /// `sans`, requiring a client certificate from `client_ca` when given: an external HTTPS
    /// service for origination tests.
    pub fn server_config(
        &self,
        sans: &[&str],
        client_ca: Option<&TestCa>,
    ) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.leaf(sans);
        let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("leaf PEM")];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = match client_ca {
            Some(client_ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(
                        CertificateDer::from_pem_slice(client_ca.root_pem.as_bytes())
                            .expect("root PEM"),
                    )
                    .expect("root added");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn san(name: &str) -> SanType {
    if name.contains("://") {
        SanType::URI(name.to_string().try_into().expect("URI SAN"))
    } else if let Ok(ip) = name.parse() {
        SanType::IpAddress(ip)
    } else {
        SanType::DnsName(name.to_string().try_into().expect("DNS SAN"))
    }
}

fn at(seconds_from_now: i64) -> SystemTime {
    let now = SystemTime::now();
    let delta = Duration::from_secs(seconds_from_now.unsigned_abs());
    if seconds_from_now < 0 {
        now - delta
    } else {
        now + delta
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
