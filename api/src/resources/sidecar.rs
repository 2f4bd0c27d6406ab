//! `networking.istio.io` Sidecar: narrows what a proxy sees and sets its outbound policy.

use super::{Port, Unsupported, WorkloadSelector};
use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Sidecar {
    pub workload_selector: Option<WorkloadSelector>,
    /// Parsed; not applied yet (inbound traffic goes to `--app-port`).
    pub ingress: Vec<IngressListener>,
    pub egress: Vec<EgressListener>,
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    pub inbound_connection_pool: Option<Unsupported>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressListener {
    pub port: Option<Port>,
    pub bind: Option<String>,
    pub capture_mode: Option<String>,
    pub default_endpoint: Option<String>,
    pub tls: Option<Unsupported>,
    pub connection_pool: Option<Unsupported>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressListener {
    pub port: Option<Port>,
    /// `namespace/host` patterns: namespace `*`, `.` (the proxy's), `~` (none) or a name; host a
    /// FQDN, `*.suffix` or `*`.
    pub hosts: Vec<String>,
    pub bind: Option<Unsupported>,
    pub capture_mode: Option<Unsupported>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OutboundTrafficPolicy {
    pub mode: Option<OutboundMode>,
    pub egress_proxy: Option<Unsupported>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    RegistryOnly,
    AllowAny,
}
