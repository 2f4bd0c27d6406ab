//! `networking.istio.io` Gateway: listeners of an ingress or egress gateway. Parsed and validated
//! now; compiled when Trellis runs as a gateway.

use super::{Port, Unsupported};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gateway {
    pub selector: BTreeMap<String, String>,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Server {
    pub port: Option<Port>,
    pub hosts: Vec<String>,
    pub tls: Option<ServerTlsSettings>,
    pub name: Option<String>,
    pub bind: Option<Unsupported>,
    pub default_endpoint: Option<Unsupported>,
}

/// Server-side TLS, kept as data for the gateway and security work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerTlsSettings {
    pub https_redirect: Option<bool>,
    pub mode: Option<ServerTlsMode>,
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
    pub ca_crl: Option<String>,
    pub credential_name: Option<String>,
    pub credential_names: Vec<String>,
    pub subject_alt_names: Vec<String>,
    pub min_protocol_version: Option<String>,
    pub max_protocol_version: Option<String>,
    pub cipher_suites: Vec<String>,
    pub tls_certificates: Option<Unsupported>,
    pub verify_certificate_spki: Option<Unsupported>,
    pub verify_certificate_hash: Option<Unsupported>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    OptionalMutual,
}
