//! Istio's resources, in Istio's own field names, as Trellis reads them.
//!
//! The types mirror Istio's API so users keep writing the YAML they know. Every struct refuses
//! unknown fields (a typo is an error, not a silently ignored setting), and the Istio fields that
//! Trellis does not implement are declared as [`Unsupported`], so they fail with a message that
//! says so instead of looking like a typo. Values are checked beyond their types in
//! [`crate::validate`]; these types only describe shapes.

mod destination_rule;
mod gateway;
mod rate_limit;
mod security;
mod service_entry;
mod sidecar;
mod virtual_service;

pub use destination_rule::*;
pub use gateway::*;
pub use rate_limit::*;
pub use security::*;
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The message every unimplemented Istio field fails with.
pub const UNSUPPORTED: &str = "unsupported by Trellis";

/// An Istio field Trellis does not implement: present in a document, it is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

impl<'de> Deserialize<'de> for Unsupported {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom(UNSUPPORTED))
    }
}

/// The resource kinds Trellis reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    Gateway,
    Sidecar,
    PeerAuthentication,
    AuthorizationPolicy,
    LocalRateLimit,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::Gateway,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::LocalRateLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::Gateway => "Gateway",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::LocalRateLimit => "LocalRateLimit",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// A kind as kubectl spells it on the command line: case-insensitive, singular or plural,
    /// optionally with its group (`virtualservices.networking.istio.io`), or a short name.
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower
            .strip_suffix(".networking.istio.io")
            .or_else(|| lower.strip_suffix(".security.istio.io"))
            .or_else(|| lower.strip_suffix(".networking.trellis.io"))
            .unwrap_or(&lower);
        Kind::ALL.into_iter().find(|k| {
            bare == k.as_str().to_ascii_lowercase() || bare == k.plural() || bare == k.short_name()
        })
    }

    /// [`Kind::from_cli_name`], with an error that lists the kinds there are.
    pub fn parse_cli(name: &str) -> Result<Kind, String> {
        Kind::from_cli_name(name).ok_or_else(|| {
            let valid: Vec<String> = Kind::ALL
                .iter()
                .map(|k| format!("{} ({})", k.plural(), k.short_name()))
                .collect();
            format!(
                "unknown resource type \"{name}\"; valid kinds: {}",
                valid.join(", ")
            )
        })
    }

    /// kubectl's plural resource name (`virtualservices`, `serviceentries`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::VirtualService => "virtualservices",
            Kind::DestinationRule => "destinationrules",
            Kind::ServiceEntry => "serviceentries",
            Kind::Gateway => "gateways",
            Kind::Sidecar => "sidecars",
            Kind::PeerAuthentication => "peerauthentications",
            Kind::AuthorizationPolicy => "authorizationpolicies",
            Kind::LocalRateLimit => "localratelimits",
        }
    }

    /// kubectl's short name for the kind (`vs`, `dr`, `se`, `gw`, `sc`, `pa`, `ap`; `lrl` for
    /// Trellis's LocalRateLimit).
    pub fn short_name(self) -> &'static str {
        match self {
            Kind::VirtualService => "vs",
            Kind::DestinationRule => "dr",
            Kind::ServiceEntry => "se",
            Kind::Gateway => "gw",
            Kind::Sidecar => "sc",
            Kind::PeerAuthentication => "pa",
            Kind::AuthorizationPolicy => "ap",
            Kind::LocalRateLimit => "lrl",
        }
    }

    /// API group of the kind.
    pub fn group(self) -> &'static str {
        match self {
            Kind::PeerAuthentication | Kind::AuthorizationPolicy => "security.istio.io",
            // A Trellis extension, in its own group so Istio's never collides with it.
            Kind::LocalRateLimit => "networking.trellis.io",
            _ => "networking.istio.io",
        }
    }

    /// Versions accepted for the kind's group (Istio serves them all with the same schema).
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Kind::PeerAuthentication | Kind::AuthorizationPolicy => &["v1", "v1beta1"],
            Kind::LocalRateLimit => &["v1alpha1"],
            _ => &["v1", "v1beta1", "v1alpha3"],
        }
    }

    /// Whether `api_version` (`group/version`) is one this kind is served under.
    pub fn accepts_api_version(self, api_version: &str) -> bool {
        match api_version.split_once('/') {
            Some((group, version)) => group == self.group() && self.versions().contains(&version),
            None => false,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kubernetes object metadata. Fields Trellis has no use for (uid, managedFields, ...) are
/// ignored, so resources exported from a cluster load as they are.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    /// `default` when absent.
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
}

impl ObjectMeta {
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// The typed `spec` of a resource.
// Resources are loaded once and read by reference; their size is no concern.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    ServiceEntry(ServiceEntry),
    Gateway(Gateway),
    Sidecar(Sidecar),
    PeerAuthentication(PeerAuthentication),
    AuthorizationPolicy(AuthorizationPolicy),
    LocalRateLimit(LocalRateLimit),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::VirtualService(_) => Kind::VirtualService,
            Spec::DestinationRule(_) => Kind::DestinationRule,
            Spec::ServiceEntry(_) => Kind::ServiceEntry,
            Spec::Gateway(_) => Kind::Gateway,
            Spec::Sidecar(_) => Kind::Sidecar,
            Spec::PeerAuthentication(_) => Kind::PeerAuthentication,
            Spec::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Spec::LocalRateLimit(_) => Kind::LocalRateLimit,
        }
    }

    /// Deserializes the `spec` of `kind`. On failure: the field path (relative to `spec`) and the
    /// message.
    pub fn parse(kind: Kind, value: &serde_json::Value) -> Result<Spec, (String, String)> {
        fn de<'a, T: Deserialize<'a>>(value: &'a serde_json::Value) -> Result<T, (String, String)> {
            serde_path_to_error::deserialize(value).map_err(|e| {
                let path = path_string(e.path());
                (path, e.into_inner().to_string())
            })
        }
        Ok(match kind {
            Kind::VirtualService => Spec::VirtualService(de(value)?),
            Kind::DestinationRule => Spec::DestinationRule(de(value)?),
            Kind::ServiceEntry => Spec::ServiceEntry(de(value)?),
            Kind::Gateway => Spec::Gateway(de(value)?),
            Kind::Sidecar => Spec::Sidecar(de(value)?),
            Kind::PeerAuthentication => Spec::PeerAuthentication(de(value)?),
            Kind::AuthorizationPolicy => Spec::AuthorizationPolicy(de(value)?),
            Kind::LocalRateLimit => Spec::LocalRateLimit(de(value)?),
        })
    }
}

/// A serde_path_to_error path in the same spelling as [`crate::yaml::Positions`] keys.
pub(crate) fn path_string(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Istio's StringMatch: exactly one of the three (checked by validation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

/// `port: {number: N}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortSelector {
    pub number: u32,
}

/// `{value: 12.5}`: a percentage as a double.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Percent {
    pub value: f64,
}

/// Networking's workload selector (`labels`), used by Sidecar and ServiceEntry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadSelector {
    pub labels: BTreeMap<String, String>,
}

/// `istio.type.v1beta1.WorkloadSelector` (`matchLabels`), used by DestinationRule and security.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchLabelsSelector {
    pub match_labels: BTreeMap<String, String>,
}

/// A port as Gateway and Sidecar listeners declare it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    pub number: u32,
    pub protocol: String,
    pub name: String,
    pub target_port: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_versions() {
        assert!(Kind::VirtualService.accepts_api_version("networking.istio.io/v1alpha3"));
        assert!(Kind::Sidecar.accepts_api_version("networking.istio.io/v1"));
        assert!(!Kind::VirtualService.accepts_api_version("networking.istio.io/v2"));
        assert!(!Kind::VirtualService.accepts_api_version("security.istio.io/v1"));
        assert!(Kind::PeerAuthentication.accepts_api_version("security.istio.io/v1beta1"));
        assert!(!Kind::PeerAuthentication.accepts_api_version("security.istio.io/v1alpha3"));
        assert!(!Kind::Gateway.accepts_api_version("v1"));
    }

    #[test]
    fn unsupported_and_unknown_fields_differ() {
        let err = Spec::parse(
            Kind::VirtualService,
            &json!({"hosts": ["a"], "tls": [{"match": []}]}),
        )
        .unwrap_err();
        assert_eq!(err, ("tls".to_string(), UNSUPPORTED.to_string()));
        let err = Spec::parse(
            Kind::VirtualService,
            &json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}, "wieght": 5}]}]}),
        )
        .unwrap_err();
        assert_eq!(err.0, "http[0].route[0].wieght");
        assert!(
            err.1.starts_with("unknown field `wieght`, expected one of"),
            "{}",
            err.1
        );
    }
}
