//! `networking.istio.io` ServiceEntry: services the mesh knows by declaration, and (in standalone
//! mode) the source of every service and endpoint.

use super::WorkloadSelector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntry {
    pub hosts: Vec<String>,
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub location: Option<Location>,
    pub resolution: Option<Resolution>,
    pub endpoints: Vec<WorkloadEntry>,
    pub workload_selector: Option<WorkloadSelector>,
    pub export_to: Vec<String>,
    pub subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    pub number: u32,
    pub protocol: Option<String>,
    pub name: String,
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEntry {
    pub address: String,
    /// Port name -> port on this endpoint.
    pub ports: BTreeMap<String, u32>,
    pub labels: BTreeMap<String, String>,
    pub network: Option<String>,
    pub locality: Option<String>,
    pub weight: Option<u32>,
    pub service_account: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Istio's default.
    #[default]
    MeshExternal,
    MeshInternal,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Istio's default: forward to the address the client connected to.
    #[default]
    None,
    Static,
    Dns,
    DnsRoundRobin,
}
