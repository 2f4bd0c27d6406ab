//! Trust bundles the control plane pushes over the config stream (root rotation): checked, then
//! applied to new handshakes at once, inbound and outbound (the TLS configs read the bundle from
//! [`Credentials`] at every handshake; open connections are untouched).
//!
//! A bundle is taken only when it parses and still verifies this proxy's own certificate: a
//! bundle that does not would make every peer that receives it refuse this proxy, so it is
//! refused, logged and counted instead, and the current one kept.

use std::time::SystemTime;
use trellis_identity::tls::Credentials;
use trellis_identity::{PeerRole, TrustBundle, VerifyError, verify_chain_der};

/// What became of a pushed bundle; `kind()` is the `result` label of
/// `trellis_identity_bundle_updates_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleOutcome {
    /// New handshakes verify peers against it from now on.
    #[error("applied")]
    Applied,
    /// The same roots as the bundle in use.
    #[error("unchanged")]
    Unchanged,
    /// No certificate yet: the bundle arrives with the first one.
    #[error("no workload certificate yet; the bundle comes with the first one")]
    NoCertificate,
    /// Not PEM certificates.
    #[error("not a trust bundle: {0}")]
    Invalid(String),
    /// It does not verify this proxy's own certificate.
    #[error("it does not verify this proxy's own certificate ({0}); keeping the current bundle")]
    Refused(VerifyError),
}

impl BundleOutcome {
    /// Every `kind()`, for metrics that start at zero.
    pub const KINDS: &'static [&'static str] = &[
        "applied",
        "unchanged",
        "no_certificate",
        "invalid",
        "refused",
    ];

    /// A short, stable name for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleOutcome::Applied => "applied",
            BundleOutcome::Unchanged => "unchanged",
            BundleOutcome::NoCertificate => "no_certificate",
            BundleOutcome::Invalid(_) => "invalid",
            BundleOutcome::Refused(_) => "refused",
        }
    }
}

/// Checks `pem` against the credentials in use and, when it is good and new, puts it in use.
/// Returns the bundle applied (for `/certs`) with the outcome.
pub fn apply(
    pem: &[u8],
    credentials: Option<&Credentials>,
    now: SystemTime,
) -> (BundleOutcome, Option<TrustBundle>) {
    let bundle = match TrustBundle::from_pem(pem) {
        Ok(b) if b.roots().is_empty() => {
            return (BundleOutcome::Invalid("no certificates".into()), None);
        }
        Ok(b) => b,
        Err(e) => return (BundleOutcome::Invalid(e.to_string()), None),
    };
    let Some(credentials) = credentials else {
        return (BundleOutcome::NoCertificate, None);
    };
    if *credentials.bundle() == bundle {
        return (BundleOutcome::Unchanged, None);
    }
    let cert = credentials.cert();
    for role in [PeerRole::Server, PeerRole::Client] {
        if let Err(e) = verify_chain_der(cert.chain(), &bundle, role, now) {
            return (BundleOutcome::Refused(e), None);
        }
    }
    credentials.replace_bundle(bundle.clone());
    (BundleOutcome::Applied, Some(bundle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use trellis_identity::tls::WorkloadCert;

    const ID: &str = "spiffe://cluster.local/ns/default/sa/app";

    fn root(name: &str) -> (Issuer<'static, KeyPair>, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        (Issuer::new(params, key), pem)
    }

    fn credentials(issuer: &Issuer<'static, KeyPair>, root_pem: &str) -> Credentials {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(ID.try_into().unwrap())];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf = params.signed_by(&key, issuer).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let cert = WorkloadCert::new(vec![leaf.der().clone()], der).unwrap();
        Credentials::new(cert, TrustBundle::from_pem(root_pem.as_bytes()).unwrap())
    }

    #[test]
    fn a_bundle_with_the_own_root_applies_and_one_without_is_refused() {
        let (old_ca, old_pem) = root("old");
        let (_new_ca, new_pem) = root("new");
        let creds = credentials(&old_ca, &old_pem);
        let now = SystemTime::now();

        let both = format!("{new_pem}{old_pem}");
        let (outcome, applied) = apply(both.as_bytes(), Some(&creds), now);
        assert_eq!(outcome, BundleOutcome::Applied);
        assert_eq!(applied.unwrap().roots().len(), 2);
        assert_eq!(creds.bundle().roots().len(), 2, "new handshakes trust both");

        assert_eq!(
            apply(both.as_bytes(), Some(&creds), now).0,
            BundleOutcome::Unchanged
        );

        // Only the new root: this proxy's own certificate would no longer verify anywhere.
        let (outcome, _) = apply(new_pem.as_bytes(), Some(&creds), now);
        assert_eq!(outcome.kind(), "refused");
        assert!(outcome.to_string().contains("own certificate"), "{outcome}");
        assert_eq!(
            creds.bundle().roots().len(),
            2,
            "the current bundle is kept"
        );
    }

    #[test]
    fn garbage_and_early_bundles_are_counted_not_applied() {
        let (ca, pem) = root("ca");
        let creds = credentials(&ca, &pem);
        let now = SystemTime::now();
        for garbage in [
            &b""[..],
            b"not pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let (outcome, applied) = apply(garbage, Some(&creds), now);
            assert_eq!(outcome.kind(), "invalid", "{outcome}");
            assert!(applied.is_none());
        }
        assert_eq!(
            apply(pem.as_bytes(), None, now).0,
            BundleOutcome::NoCertificate
        );
        assert!(BundleOutcome::KINDS.contains(&BundleOutcome::NoCertificate.kind()));
    }
}
