//! TLS origination (DestinationRule `tls.mode` SIMPLE and MUTUAL): the app speaks plaintext to
//! the sidecar and the sidecar opens TLS to the upstream, as Istio's does for external services
//! declared by ServiceEntry. The server is verified against `caCertificates` (else the public
//! webpki roots), by `subjectAltNames` when given, else by the SNI host name; MUTUAL also
//! presents `clientCertificate` + `privateKey`. Certificate files are read when the cluster
//! config arrives (cached by path and modification time), never per connection.

use super::tls::{self, MeshTlsError, Transport, UpstreamIo};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use trellis_api::model::{self, ClientTlsMode};
use trellis_identity::tls::MeshProtocol;

/// TLS origination to one endpoint: the name to verify (and send as SNI) and the cluster's
/// client configs. Two targets are the same pool key only when they share the loaded configs,
/// so a changed certificate file gives new connections.
#[derive(Clone)]
pub struct OriginationTarget {
    server_name: ServerName<'static>,
    tls: Arc<OriginationTls>,
}

impl PartialEq for OriginationTarget {
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name && Arc::ptr_eq(&self.tls, &other.tls)
    }
}

impl Eq for OriginationTarget {}

impl Hash for OriginationTarget {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.server_name.hash(state);
        (Arc::as_ptr(&self.tls) as usize).hash(state);
    }
}

impl std::fmt::Debug for OriginationTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginationTarget")
            .field("cluster", &self.tls.cluster)
            .field("mode", &self.tls.mode)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl OriginationTarget {
    /// The `mode` label of the handshake counter: `simple` or `mutual`.
    pub fn mode(&self) -> &'static str {
        self.tls.mode
    }
}

/// One cluster's origination settings made ready: a connector per ALPN offer, or why the
/// certificate files could not be used.
struct OriginationTls {
    cluster: String,
    mode: &'static str,
    connectors: Result<AlpnConnectors, Arc<str>>,
}

/// Client configs by inner protocol: `http/1.1` for HTTP/1, `h2` for HTTP/2 and gRPC, no ALPN
/// for opaque TCP.
pub(super) struct AlpnConnectors {
    http1: TlsConnector,
    http2: TlsConnector,
    tcp: TlsConnector,
}

impl AlpnConnectors {
    fn get(&self, protocol: MeshProtocol) -> &TlsConnector {
        match protocol {
            MeshProtocol::Http1 => &self.http1,
            // Only mesh connections multiplex HTTP/1.1 requests; were one asked for here, the pool
            // would speak HTTP/2 on it.
            MeshProtocol::Http2 | MeshProtocol::Http1OverH2 => &self.http2,
            MeshProtocol::Tcp => &self.tcp,
        }
    }
}

/// The transport for `ep` of a SIMPLE or MUTUAL cluster. The server name is the rule's `sni`,
/// else the service host, else (an IP-only service) the endpoint's address, which is verified
/// against the certificate's IP SANs and sends no SNI.
pub fn transport(config: &model::Cluster, ep: &model::Endpoint) -> Transport {
    let server_name = [config.tls.sni.as_deref(), Some(config.service.as_str())]
        .into_iter()
        .flatten()
        .find_map(|name| match ServerName::try_from(name.to_string()) {
            Ok(name @ ServerName::DnsName(_)) => Some(name),
            _ => None,
        })
        .or_else(|| ServerName::try_from(ep.address.clone()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()));
    Transport::Originate(OriginationTarget {
        server_name,
        tls: load(config),
    })
}

impl OriginationTarget {
    /// The loaded client configs, or (counted as `file_error`) why the cluster's certificate
    /// files could not be used; checked before any connection is opened.
    pub(super) fn connectors(&self, endpoint: &str) -> Result<&AlpnConnectors, MeshTlsError> {
        self.tls.connectors.as_ref().map_err(|error| {
            tls::count(self.tls.mode, "file_error");
            tracing::debug!(cluster = %self.tls.cluster, %endpoint, %error, "TLS origination refused: certificate files unusable");
            MeshTlsError::Files(error.clone())
        })
    }
}

/// Runs the TLS client handshake on `tcp`. Every failure is counted by reason and logged with
/// the endpoint; a certificate file problem fails before any handshake.
pub(super) async fn handshake(
    target: &OriginationTarget,
    protocol: MeshProtocol,
    tcp: TcpStream,
    endpoint: &str,
) -> Result<UpstreamIo, MeshTlsError> {
    let mode = target.tls.mode;
    let connectors = target.connectors(endpoint)?;
    match connectors
        .get(protocol)
        .connect(target.server_name.clone(), tcp)
        .await
    {
        Ok(stream) => {
            tls::count(mode, "success");
            Ok(UpstreamIo::Tls(Box::new(stream)))
        }
        Err(error) => {
            let kind = failure_kind(&error);
            tls::count(mode, kind);
            tracing::warn!(cluster = %target.tls.cluster, %endpoint, server_name = ?target.server_name, reason = kind, %error, "TLS origination handshake refused");
            Err(MeshTlsError::OriginationHandshake { kind, error })
        }
    }
}

/// The counter reason of a failed handshake; a certificate for another name is `name_mismatch`.
fn failure_kind(error: &io::Error) -> &'static str {
    let name_mismatch = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            )
        });
    if name_mismatch {
        "name_mismatch"
    } else {
        trellis_identity::tls::failure_kind(error)
    }
}

/// What decides a cluster's loaded configs: its settings and the state of its files.
#[derive(PartialEq, Eq, Hash)]
struct CacheKey {
    cluster: String,
    tls: model::ClusterTls,
    files: Vec<Option<(SystemTime, u64)>>,
}

/// Loaded origination configs, shared by every endpoint (and config push) with the same key.
static CACHE: LazyLock<Mutex<HashMap<CacheKey, Arc<OriginationTls>>>> =
    LazyLock::new(Default::default);

/// The cluster's configs, from the cache when neither the settings nor the files changed. A new
/// failure is logged here, once, naming the cluster and the file.
fn load(config: &model::Cluster) -> Arc<OriginationTls> {
    let tls = &config.tls;
    let files = [
        &tls.ca_certificates,
        &tls.client_certificate,
        &tls.private_key,
    ]
    .into_iter()
    .map(|path| {
        let meta = std::fs::metadata(path.as_deref()?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
    .collect();
    let key = CacheKey {
        cluster: config.name.clone(),
        tls: (**tls).clone(),
        files,
    };
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(loaded) = cache.get(&key) {
        return loaded.clone();
    }
    let mode = match tls.mode {
        ClientTlsMode::Mutual => "mutual",
        _ => "simple",
    };
    let connectors = connectors(tls).map_err(Arc::<str>::from);
    if let Err(error) = &connectors {
        tracing::warn!(cluster = %config.name, %error, "TLS origination disabled for this cluster: its connections fail (503 UF) until the files are fixed");
    }
    let loaded = Arc::new(OriginationTls {
        cluster: config.name.clone(),
        mode,
        connectors,
    });
    // Entries no pool holds any more belong to superseded configs.
    cache.retain(|_, v| Arc::strong_count(v) > 1);
    cache.insert(key, loaded.clone());
    loaded
}

fn connectors(tls: &model::ClusterTls) -> Result<AlpnConnectors, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(OriginVerifier {
            webpki: None,
            subject_alt_names: Vec::new(),
            provider: provider.clone(),
        })
    } else {
        let roots = match &tls.ca_certificates {
            Some(path) => Arc::new(ca_roots(path)?),
            None => PUBLIC_ROOTS.clone(),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("caCertificates: {e}"))?;
        if tls.subject_alt_names.is_empty() {
            webpki
        } else {
            Arc::new(OriginVerifier {
                webpki: Some(webpki),
                subject_alt_names: tls.subject_alt_names.clone(),
                provider: provider.clone(),
            })
        }
    };
    let client_auth = match (&tls.client_certificate, &tls.private_key) {
        (Some(cert), Some(key)) => Some((cert_chain(cert)?, private_key(key)?)),
        (None, None) if tls.mode != ClientTlsMode::Mutual => None,
        (None, _) => return Err("MUTUAL without clientCertificate".into()),
        (_, None) => return Err("clientCertificate without privateKey".into()),
    };
    let config = |alpn: Option<&[u8]>| -> Result<TlsConnector, String> {
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut config = match &client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| {
                    format!(
                        "clientCertificate {} / privateKey {}: {e}",
                        tls.client_certificate.as_deref().unwrap_or_default(),
                        tls.private_key.as_deref().unwrap_or_default()
                    )
                })?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.into_iter().map(<[u8]>::to_vec).collect();
        Ok(TlsConnector::from(Arc::new(config)))
    };
    Ok(AlpnConnectors {
        http1: config(Some(b"http/1.1"))?,
        http2: config(Some(b"h2"))?,
        tcp: config(None)?,
    })
}

/// Mozilla's root set, for SIMPLE/MUTUAL without `caCertificates`.
static PUBLIC_ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    Arc::new(RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
});

fn read(field: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{field} {path}: {e}"))
}

fn certificates(field: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field} {path}: not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{field} {path}: no PEM certificate in it"));
    }
    Ok(certs)
}

fn ca_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("caCertificates", path)? {
        roots
            .add(cert)
            .map_err(|e| format!("caCertificates {path}: unusable CA certificate: {e}"))?;
    }
    Ok(roots)
}

fn cert_chain(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    certificates("clientCertificate", path)
}

fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read("privateKey", path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("privateKey {path}: no usable PEM private key: {e}"))
}

/// Verifies the server's chain with webpki but its identity by the rule's `subjectAltNames`
/// (any DNS, URI or IP SAN equal to one of them), or, with `insecureSkipVerify`, not at all.
#[derive(Debug)]
struct OriginVerifier {
    /// `None`: `insecureSkipVerify`.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    subject_alt_names: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for OriginVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain before the name: a name error means the chain is good.
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(_)
            | Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            Err(e) => return Err(e),
        }
        if san_matches(end_entity, &self.subject_alt_names) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether the certificate has a DNS (wildcards as in RFC 6125: one leftmost label), URI or IP
/// SAN equal to one of `wanted`.
fn san_matches(cert: &CertificateDer<'_>, wanted: &[String]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return false;
    };
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return false;
    };
    sans.value.general_names.iter().any(|name| match name {
        GeneralName::DNSName(dns) => wanted.iter().any(|w| dns_matches(dns, w)),
        GeneralName::URI(uri) => wanted.iter().any(|w| w == uri),
        GeneralName::IPAddress(bytes) => {
            let ip = match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(std::net::IpAddr::from),
                _ => None,
            };
            ip.is_some_and(|ip| wanted.iter().any(|w| w.parse() == Ok(ip)))
        }
        _ => false,
    })
}

fn dns_matches(presented: &str, wanted: &str) -> bool {
    if presented.eq_ignore_ascii_case(wanted) {
        return true;
    }
    match (presented.strip_prefix("*."), wanted.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && !label.contains('*') && rest.eq_ignore_ascii_case(suffix)
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "origination_tests.rs"]
mod tests;
