//! The certificate authority: loads or creates the signing CA in `--ca-dir` and issues SPIFFE
//! X.509 SVIDs from proxies' CSRs.
//!
//! The directory layouts, checked in this order:
//! - Istio's plug-in CA: `ca-cert.pem` + `ca-key.pem` (the intermediate that signs),
//!   `cert-chain.pem` (the intermediate's chain up to the root) and `root-cert.pem`.
//! - A root Trellis signs with directly: `root-cert.pem` + `root-key.pem` (given by the user, or
//!   created by Trellis on first start: ECDSA P-256, ten years).
//! - No CA files: a root is created and written there.
//!
//! [`Authority::create_intermediate`] writes the plug-in layout from a user's root, so the root's
//! key need not stay on the control plane's disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;

use rustls_pki_types::CertificateDer;
use trellis_identity::spiffe;
use trellis_identity::{SpiffeId, TrustBundle};

use super::cert::{self, CertInfo};
use super::csr;
use super::error::CaError;
use super::files;
use super::pending_root::{self, PendingRoot};
use super::previous_roots::{self, PreviousRoot};

/// Plug-in layout: the intermediate that signs.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// Plug-in layout: the intermediate's key.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Plug-in layout: the intermediate's chain up to the root.
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
/// The root(s) every proxy trusts.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";
/// The root's key, when Trellis signs with the root.
pub const ROOT_KEY_FILE: &str = "root-key.pem";

/// Certificates are backdated this much so peers whose clocks run a little behind accept them.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The shortest certificate lifetime the CA issues.
const MIN_TTL: Duration = Duration::from_secs(60);

/// How the CA issues: trust domain and lifetimes.
#[derive(Clone, Debug)]
pub struct AuthorityOptions {
    /// The trust domain of every SPIFFE ID issued (Istio's default is `cluster.local`).
    pub trust_domain: String,
    /// Lifetime of workload certificates when the caller asks for none (Istio: 24 h).
    pub leaf_ttl: Duration,
    /// Lifetime of a root Trellis creates.
    pub root_validity: Duration,
    /// Lifetime of an intermediate Trellis creates (capped by its root's).
    pub intermediate_validity: Duration,
}

impl Default for AuthorityOptions {
    fn default() -> Self {
        AuthorityOptions {
            trust_domain: "cluster.local".into(),
            leaf_ttl: Duration::from_secs(24 * 3600),
            root_validity: Duration::from_secs(10 * 365 * 24 * 3600),
            intermediate_validity: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// Which layout the CA directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Trellis signs with a root whose key it holds (created or user-given).
    Root,
    /// Trellis signs with an intermediate (Istio's plug-in CA files).
    Intermediate,
}

/// A workload certificate just issued.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The identity in the certificate's URI SAN.
    pub identity: SpiffeId,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The certificates between the leaf and the root (empty when a root signs), PEM.
    pub chain_pem: String,
    /// When the leaf expires.
    pub not_after: SystemTime,
    /// The leaf's serial number, hex (for logs).
    pub serial: String,
}

impl IssuedCert {
    /// Leaf followed by its chain: what a TLS endpoint presents.
    pub fn full_chain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }
}

/// The key and certificate that sign workload certificates.
struct Signer {
    issuer: Issuer<'static, KeyPair>,
    cert: CertInfo,
    /// Sent after each leaf: the signer itself when it is an intermediate, and any certificates
    /// between it and the root.
    chain: Vec<CertInfo>,
}

/// The control plane's certificate authority.
pub struct Authority {
    dir: PathBuf,
    options: AuthorityOptions,
    layout: Layout,
    signer: Signer,
    roots: Vec<CertInfo>,
    previous: Vec<PreviousRoot>,
    /// A root a rotation staged: trusted already, signing from its `activate_at`.
    pending: Option<PendingRoot>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("layout", &self.layout)
            .field("signer", &self.signer.cert.subject)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Loads the CA from `dir`, creating the directory and a new root there when it holds no CA
    /// files. Bad files are refused with an error naming the file and what is wrong.
    pub fn load_or_create(dir: &Path, options: AuthorityOptions) -> Result<Authority, CaError> {
        spiffe::check_trust_domain(&options.trust_domain).map_err(|why| CaError::TrustDomain {
            domain: options.trust_domain.clone(),
            why,
        })?;
        create_dir(dir)?;
        let present = |name: &str| dir.join(name).exists();
        let plug_in = [CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE];
        if plug_in.iter().any(|f| present(f)) {
            require(
                dir,
                &[CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE],
            )?;
            return Self::load_intermediate(dir, options);
        }
        if present(ROOT_CERT_FILE) || present(ROOT_KEY_FILE) {
            require(dir, &[ROOT_CERT_FILE, ROOT_KEY_FILE])?;
            return Self::load_root(dir, options);
        }
        let (cert_pem, key) = new_root(&options)?;
        files::write_private(&dir.join(ROOT_KEY_FILE), key.serialize_pem().as_bytes())?;
        files::write_public(&dir.join(ROOT_CERT_FILE), cert_pem.as_bytes())?;
        Self::load_root(dir, options)
    }

    /// Writes Istio's plug-in layout into `dir` with a new intermediate (ECDSA P-256) signed by
    /// the user's root, then loads it. The root's key is read once and not copied.
    pub fn create_intermediate(
        dir: &Path,
        options: AuthorityOptions,
        root_cert_path: &Path,
        root_key_path: &Path,
    ) -> Result<Authority, CaError> {
        create_dir(dir)?;
        for name in [CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE] {
            if dir.join(name).exists() {
                return Err(CaError::BadState {
                    path: dir.join(name),
                    detail: "the directory already holds an intermediate; remove it first".into(),
                });
            }
        }
        let now = SystemTime::now();
        let root_pem = files::read(root_cert_path)?;
        let root_der = files::certs_from_pem(root_cert_path, &root_pem)?.remove(0);
        let root = cert::inspect(root_cert_path, root_der)?;
        root.check_ca(root_cert_path)?;
        root.check_valid_at(root_cert_path, now)?;
        let root_key = files::key_from_pem(root_key_path, &files::read(root_key_path)?)?;
        root.check_key(root_cert_path, root_key_path, &root_key)?;
        let root_issuer = Issuer::from_ca_cert_der(&root.der, root_key)?;

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(&options, "Trellis intermediate CA")?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.not_after = (now + options.intermediate_validity)
            .min(root.not_after)
            .into();
        let cert = params.signed_by(&key, &root_issuer)?;

        let root_pem = files::cert_pem(&root.der);
        files::write_private(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes())?;
        files::write_public(&dir.join(CA_CERT_FILE), cert.pem().as_bytes())?;
        files::write_public(
            &dir.join(CERT_CHAIN_FILE),
            format!("{}{}", cert.pem(), root_pem).as_bytes(),
        )?;
        files::write_public(&dir.join(ROOT_CERT_FILE), root_pem.as_bytes())?;
        Self::load_or_create(dir, options)
    }

    fn load_root(dir: &Path, options: AuthorityOptions) -> Result<Authority, CaError> {
        let now = SystemTime::now();
        let cert_path = dir.join(ROOT_CERT_FILE);
        let key_path = dir.join(ROOT_KEY_FILE);
        let roots = load_roots(&cert_path, now)?;
        let key = files::key_from_pem(&key_path, &files::read(&key_path)?)?;
        let signer_cert = roots
            .iter()
            .find(|r| r.check_key(&cert_path, &key_path, &key).is_ok())
            .cloned()
            .ok_or_else(|| CaError::KeyMismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
            })?;
        let issuer = Issuer::from_ca_cert_der(&signer_cert.der, key)?;
        let mut authority = Authority {
            dir: dir.to_path_buf(),
            layout: Layout::Root,
            signer: Signer {
                issuer,
                cert: signer_cert,
                chain: Vec::new(),
            },
            roots,
            previous: previous_roots::load_previous(dir, now)?,
            pending: pending_root::load_pending(dir)?,
            options,
        };
        // A rotation whose time came while the control plane was down (or that a crash
        // interrupted) completes now.
        authority.activate_due(now)?;
        Ok(authority)
    }

    fn load_intermediate(dir: &Path, options: AuthorityOptions) -> Result<Authority, CaError> {
        let now = SystemTime::now();
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let chain_path = dir.join(CERT_CHAIN_FILE);
        let root_path = dir.join(ROOT_CERT_FILE);

        let der = files::certs_from_pem(&cert_path, &files::read(&cert_path)?)?.remove(0);
        let ca = cert::inspect(&cert_path, der)?;
        ca.check_ca(&cert_path)?;
        ca.check_valid_at(&cert_path, now)?;
        let key = files::key_from_pem(&key_path, &files::read(&key_path)?)?;
        ca.check_key(&cert_path, &key_path, &key)?;

        let mut chain_certs = Vec::new();
        for der in files::certs_from_pem(&chain_path, &files::read(&chain_path)?)? {
            let c = cert::inspect(&chain_path, der)?;
            c.check_valid_at(&chain_path, now)?;
            chain_certs.push(c);
        }
        let roots = load_roots(&root_path, now)?;
        let between = cert::chain_to_root(&ca, &chain_certs, &roots).map_err(|detail| {
            CaError::BrokenChain {
                path: cert_path.clone(),
                roots: root_path.clone(),
                subject: ca.subject.clone(),
                detail,
            }
        })?;
        let mut chain = vec![ca.clone()];
        chain.extend(between.into_iter().cloned());
        let issuer = Issuer::from_ca_cert_der(&ca.der, key)?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            layout: Layout::Intermediate,
            signer: Signer {
                issuer,
                cert: ca,
                chain,
            },
            roots,
            previous: previous_roots::load_previous(dir, now)?,
            pending: None,
            options,
        })
    }

    /// The directory the CA lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which layout the directory holds.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The trust domain of the identities this CA issues.
    pub fn trust_domain(&self) -> &str {
        &self.options.trust_domain
    }

    /// The default lifetime of issued certificates.
    pub fn leaf_ttl(&self) -> Duration {
        self.options.leaf_ttl
    }

    /// When the signing certificate expires: no leaf outlives it.
    pub fn signer_not_after(&self) -> SystemTime {
        self.signer.cert.not_after
    }

    /// The roots trusted now: the current ones and replaced ones still in their grace period.
    pub fn trust_bundle(&self) -> TrustBundle {
        self.trust_bundle_at(SystemTime::now())
    }

    /// The roots trusted at `at`.
    pub fn trust_bundle_at(&self, at: SystemTime) -> TrustBundle {
        let mut roots: Vec<CertificateDer<'static>> = Vec::new();
        let candidates = self
            .roots
            .iter()
            .chain(self.pending.iter().map(|p| &p.cert))
            .chain(
                self.previous
                    .iter()
                    .filter(|p| p.trusted_until > at)
                    .map(|p| &p.cert),
            );
        for cert in candidates {
            if !roots.contains(&cert.der) {
                roots.push(cert.der.clone());
            }
        }
        TrustBundle::new(roots)
    }

    /// Every root in the bundle at `at` and its part in it, for `trellis ca show`.
    pub fn roots_at(&self, at: SystemTime) -> Vec<RootView> {
        let mut views: Vec<RootView> = Vec::new();
        let mut add = |cert: &CertInfo, role: RootRole| {
            if !views.iter().any(|v| v.der == cert.der) {
                views.push(RootView {
                    der: cert.der.clone(),
                    subject: cert.subject.clone(),
                    sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &cert.der)),
                    not_after: cert.not_after,
                    role,
                });
            }
        };
        for root in &self.roots {
            let signs = self.layout == Layout::Root && root.der == self.signer.cert.der;
            add(
                root,
                if signs {
                    RootRole::Signing
                } else {
                    RootRole::Trusted
                },
            );
        }
        if let Some(p) = &self.pending {
            add(
                &p.cert,
                RootRole::Next {
                    activates_at: p.activate_at,
                },
            );
        }
        for p in self.previous.iter().filter(|p| p.trusted_until > at) {
            add(
                &p.cert,
                RootRole::Previous {
                    trusted_until: p.trusted_until,
                },
            );
        }
        views
    }

    /// The next time the bundle or the signer changes by itself: a staged root starts signing,
    /// or a replaced root's grace ends.
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        self.pending
            .iter()
            .map(|p| p.activate_at)
            .chain(
                self.previous
                    .iter()
                    .map(|p| p.trusted_until)
                    .filter(|t| *t > now),
            )
            .min()
    }

    /// The staged root's activation time, when a rotation is under way.
    pub fn pending_activation(&self) -> Option<SystemTime> {
        self.pending.as_ref().map(|p| p.activate_at)
    }

    /// Checks a proxy's CSR (PEM or DER) and issues its certificate for `identity`, the one
    /// identity the caller's credential entitles it to. `ttl` defaults to the configured lifetime
    /// and is capped by the signing certificate's own expiry.
    pub fn sign_csr(
        &self,
        csr: &[u8],
        identity: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<IssuedCert, CaError> {
        if identity.trust_domain() != self.options.trust_domain {
            return Err(CaError::TrustDomain {
                domain: identity.trust_domain().to_string(),
                why: format!(
                    "this CA issues identities in trust domain {:?} only",
                    self.options.trust_domain
                ),
            });
        }
        let public_key = csr::check(csr, identity)?;
        let now = SystemTime::now();
        let ttl = ttl.unwrap_or(self.options.leaf_ttl).max(MIN_TTL);
        let not_after = (now + ttl).min(self.signer.cert.not_after);
        let serial = random_serial()?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(rcgen::string::Ia5String::try_from(
            identity.to_string(),
        )?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = not_after.into();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&public_key, &self.signer.issuer)?;

        Ok(IssuedCert {
            identity: identity.clone(),
            cert_pem: cert.pem(),
            chain_pem: self
                .signer
                .chain
                .iter()
                .map(|c| files::cert_pem(&c.der))
                .collect(),
            not_after: truncate_to_seconds(not_after),
            serial: hex::encode(serial),
        })
    }

    /// Replaces the root at once: a new root signs from now on, and the old one stays in the
    /// trust bundle for `grace` (which should exceed the leaf lifetime, so every certificate the
    /// old root signed expires or is renewed before it leaves). Written to the directory, so a
    /// restart keeps the window. Only when Trellis signs with a root it holds.
    pub fn rotate_root(&mut self, grace: Duration) -> Result<(), CaError> {
        self.stage_root(grace, Duration::ZERO, SystemTime::now())
            .map(|_| ())
    }

    /// Starts a root rotation: a new root joins the trust bundle now and starts signing at
    /// `now + propagation` (so every proxy trusts it before it meets a certificate it signed);
    /// the roots it replaces stay trusted for `grace` after that. Persisted, so a restart keeps
    /// the schedule. Refused while another rotation is staged, and for a plugged-in intermediate.
    pub fn stage_root(
        &mut self,
        grace: Duration,
        propagation: Duration,
        now: SystemTime,
    ) -> Result<SystemTime, CaError> {
        if self.layout != Layout::Root {
            return Err(CaError::RotationNotPossible {
                dir: self.dir.clone(),
            });
        }
        if let Some(p) = &self.pending {
            return Err(CaError::RotationInProgress {
                dir: self.dir.clone(),
                activates_unix: unix_seconds(p.activate_at),
            });
        }
        let (cert_pem, key) = new_root(&self.options)?;
        let cert_path = self.dir.join(ROOT_CERT_FILE);
        let der = files::certs_from_pem(&cert_path, cert_pem.as_bytes())?.remove(0);
        let pending = PendingRoot {
            cert: cert::inspect(&cert_path, der)?,
            key_pem: key.serialize_pem(),
            activate_at: now + propagation,
            grace,
        };
        pending_root::store_pending(&self.dir, Some(&pending))?;
        let activate_at = pending.activate_at;
        self.pending = Some(pending);
        self.activate_due(now)?;
        Ok(activate_at)
    }

    /// Lets a staged root start signing once its time has come; `true` when it did. The roots
    /// it replaces move to the previous roots, trusted for the rotation's grace from now.
    pub fn activate_due(&mut self, now: SystemTime) -> Result<bool, CaError> {
        let Some(pending) = self.pending.clone() else {
            return Ok(false);
        };
        if pending.activate_at > now {
            return Ok(false);
        }
        let cert_path = self.dir.join(ROOT_CERT_FILE);
        let key_path = self.dir.join(ROOT_KEY_FILE);
        let key = files::key_from_pem(&key_path, pending.key_pem.as_bytes())?;
        let mut previous: Vec<PreviousRoot> = self
            .previous
            .iter()
            .filter(|p| p.trusted_until > now && p.cert.der != pending.cert.der)
            .cloned()
            .collect();
        for root in self.roots.iter().filter(|r| r.der != pending.cert.der) {
            previous.retain(|p| p.cert.der != root.der);
            previous.push(PreviousRoot {
                cert: root.clone(),
                trusted_until: now + pending.grace,
            });
        }
        let new_issuer = Issuer::from_ca_cert_der(&pending.cert.der, key)?;
        // Every step leaves a directory that loads: the old roots are recorded first; then
        // root-cert.pem holds both roots while the key changes (the loader signs with whichever
        // root the key belongs to); only then the old root leaves the file and the staged one is
        // forgotten. A crash in between finishes the rotation at the next start.
        previous_roots::store_previous(&self.dir, &previous)?;
        let both: String = std::iter::once(&pending.cert)
            .chain(self.roots.iter().filter(|r| r.der != pending.cert.der))
            .map(|c| files::cert_pem(&c.der))
            .collect();
        files::write_public(&cert_path, both.as_bytes())?;
        files::write_private(&key_path, pending.key_pem.as_bytes())?;
        files::write_public(&cert_path, files::cert_pem(&pending.cert.der).as_bytes())?;
        pending_root::store_pending(&self.dir, None)?;

        self.previous = previous;
        self.roots = vec![pending.cert.clone()];
        self.signer = Signer {
            issuer: new_issuer,
            cert: pending.cert,
            chain: Vec::new(),
        };
        self.pending = None;
        Ok(true)
    }
}

/// A root in the trust bundle, as `trellis ca show` lists it.
#[derive(Clone, Debug)]
pub struct RootView {
    pub der: CertificateDer<'static>,
    pub subject: String,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    pub not_after: SystemTime,
    pub role: RootRole,
}

/// What a root in the bundle is there for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootRole {
    /// It signs workload certificates now.
    Signing,
    /// A root of a plugged-in intermediate's chain: trusted, Trellis does not hold its key.
    Trusted,
    /// Staged by a rotation: trusted already, signing from `activates_at`.
    Next { activates_at: SystemTime },
    /// Replaced by a rotation: trusted until `trusted_until` for the certificates it signed.
    Previous { trusted_until: SystemTime },
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn create_dir(dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CaError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

fn require(dir: &Path, names: &[&str]) -> Result<(), CaError> {
    let (present, missing): (Vec<&str>, Vec<&str>) =
        names.iter().partition(|n| dir.join(n).exists());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CaError::IncompleteLayout {
            dir: dir.to_path_buf(),
            present: present.join(", "),
            missing: missing.join(", "),
        })
    }
}

/// Every root in `path`: each must be a valid, self-signed CA certificate.
fn load_roots(path: &Path, now: SystemTime) -> Result<Vec<CertInfo>, CaError> {
    let mut roots = Vec::new();
    for der in files::certs_from_pem(path, &files::read(path)?)? {
        let root = cert::inspect(path, der)?;
        root.check_ca(path)?;
        root.check_valid_at(path, now)?;
        if !root.is_self_signed() {
            return Err(CaError::BrokenChain {
                path: path.to_path_buf(),
                roots: path.to_path_buf(),
                subject: root.subject.clone(),
                detail: "a root must be self-signed; put an intermediate in ca-cert.pem with ca-key.pem and cert-chain.pem".into(),
            });
        }
        roots.push(root);
    }
    Ok(roots)
}

/// Parameters shared by the CA certificates Trellis creates.
fn ca_params(options: &AuthorityOptions, common_name: &str) -> Result<CertificateParams, CaError> {
    let now = SystemTime::now();
    let serial = random_serial()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, options.trust_domain.as_str());
    // Each CA Trellis creates has its own name, so rotated roots are told apart in logs.
    dn.push(
        DnType::CommonName,
        format!("{common_name} {}", hex::encode(&serial[..4])),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + options.root_validity).into();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

/// A new self-signed root (ECDSA P-256): its PEM and key.
fn new_root(options: &AuthorityOptions) -> Result<(String, KeyPair), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let params = ca_params(options, "Trellis root CA")?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// 128 random bits, positive and of fixed length in DER.
fn random_serial() -> Result<[u8; 16], CaError> {
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| CaError::Generate("no randomness for a serial number".into()))?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial)
}

/// Certificates carry whole seconds.
fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}
