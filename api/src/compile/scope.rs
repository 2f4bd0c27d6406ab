//! What one proxy can see: its Sidecar resource, exportTo, and the VirtualServices and
//! DestinationRules that apply to it, with hosts already resolved.

use crate::host;
use crate::load::{ConfigSet, Resource};
use crate::model::{NodeIdentity, OutboundTrafficPolicy};
use crate::registry::{Service, exported_to};
use crate::resources::{DestinationRule, Kind, OutboundMode, Sidecar, Spec, VirtualService};
use std::collections::BTreeMap;

/// Istio's mesh root namespace: its namespace-wide Sidecar applies where a namespace has none, and
/// its DestinationRules are the fallback for every host.
pub const ROOT_NAMESPACE: &str = "istio-system";

pub(super) struct VsEntry<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub vs: &'a VirtualService,
    /// `spec.hosts`, fully qualified relative to the VirtualService's namespace.
    pub hosts: Vec<String>,
}

pub(super) struct DrEntry<'a> {
    pub namespace: &'a str,
    pub dr: &'a DestinationRule,
    pub host: String,
}

pub(super) struct Scope<'a> {
    pub node: &'a NodeIdentity,
    namespace: String,
    sidecar: Option<&'a Sidecar>,
    virtual_services: Vec<VsEntry<'a>>,
    destination_rules: Vec<DrEntry<'a>>,
}

/// Whether `labels` carry every label of `selector` (an empty selector selects everything).
pub(super) fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl<'a> Scope<'a> {
    pub fn new(config: &'a ConfigSet, node: &'a NodeIdentity) -> Scope<'a> {
        let namespace = if node.namespace.is_empty() {
            "default".to_string()
        } else {
            node.namespace.clone()
        };
        let sidecar = select_sidecar(config, node, &namespace);
        let virtual_services = config
            .of_kind(Kind::VirtualService)
            .filter_map(|r| match &r.spec {
                Spec::VirtualService(vs)
                    if exported_to(&vs.export_to, r.namespace(), &namespace) =>
                {
                    Some(VsEntry {
                        namespace: r.namespace(),
                        name: r.name(),
                        vs,
                        hosts: vs
                            .hosts
                            .iter()
                            .map(|h| host::resolve(h, r.namespace()))
                            .collect(),
                    })
                }
                _ => None,
            })
            .collect();
        let destination_rules = config
            .of_kind(Kind::DestinationRule)
            .filter_map(|r| match &r.spec {
                Spec::DestinationRule(dr)
                    if exported_to(&dr.export_to, r.namespace(), &namespace) =>
                {
                    Some(DrEntry {
                        namespace: r.namespace(),
                        dr,
                        host: host::resolve(&dr.host, r.namespace()),
                    })
                }
                _ => None,
            })
            .collect();
        Scope {
            node,
            namespace,
            sidecar,
            virtual_services,
            destination_rules,
        }
    }

    /// The proxy's namespace (`default` when the node does not say).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn outbound_traffic_policy(&self) -> OutboundTrafficPolicy {
        match self
            .sidecar
            .and_then(|s| s.outbound_traffic_policy.as_ref())
            .and_then(|p| p.mode)
        {
            Some(OutboundMode::RegistryOnly) => OutboundTrafficPolicy::RegistryOnly,
            _ => OutboundTrafficPolicy::AllowAny,
        }
    }

    /// Services this proxy may reach, one per hostname, sorted by hostname. Where several
    /// namespaces declare the same host, the proxy's own namespace wins, then the first namespace
    /// by name.
    pub fn visible_services<'s>(&self, services: &'s [Service]) -> Vec<&'s Service> {
        let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
        for service in services {
            if !service.visible_to(&self.namespace) {
                continue;
            }
            if !service
                .ports
                .iter()
                .any(|p| self.egress_allows(service, p.number))
            {
                continue;
            }
            let better = match chosen.get(service.hostname.as_str()) {
                None => true,
                Some(current) => {
                    let rank = |s: &Service| (s.namespace != self.namespace, s.namespace.clone());
                    rank(service) < rank(current)
                }
            };
            if better {
                chosen.insert(&service.hostname, service);
            }
        }
        chosen.into_values().collect()
    }

    /// Whether the Sidecar's egress listeners import `service` on `port`. A listener bound to the
    /// port decides for it; otherwise the catch-all listener (without port) does.
    pub fn egress_allows(&self, service: &Service, port: u16) -> bool {
        let Some(sidecar) = self.sidecar else {
            return true;
        };
        let on_port: Vec<_> = sidecar
            .egress
            .iter()
            .filter(|l| l.port.as_ref().is_some_and(|p| p.number == u32::from(port)))
            .collect();
        let listeners = if on_port.is_empty() {
            sidecar.egress.iter().filter(|l| l.port.is_none()).collect()
        } else {
            on_port
        };
        listeners.iter().any(|l| {
            l.hosts.iter().any(|pattern| {
                let Some((ns, name)) = pattern.split_once('/') else {
                    return false;
                };
                let ns_ok = match ns {
                    "*" => true,
                    "." => service.namespace == self.namespace,
                    "~" => false,
                    other => service.namespace == other,
                };
                ns_ok
                    && (name == "*"
                        || host::match_specificity(&host::normalize(name), &service.hostname)
                            .is_some())
            })
        })
    }

    /// VirtualServices for a service host: those naming it exactly, else those with the most
    /// specific matching wildcard; several are merged in (namespace, name) order.
    pub fn virtual_services_for(&self, hostname: &str) -> Vec<&VsEntry<'a>> {
        let mut best = None;
        let mut out: Vec<&VsEntry<'a>> = Vec::new();
        for entry in self
            .virtual_services
            .iter()
            .filter(|e| applies_to_mesh(e.vs))
        {
            let Some(spec) = entry
                .hosts
                .iter()
                .filter_map(|h| host::match_specificity(h, hostname))
                .max()
            else {
                continue;
            };
            // `*` is for gateways only.
            if spec == 0 {
                continue;
            }
            match best {
                Some(b) if spec < b => {}
                Some(b) if spec == b => out.push(entry),
                _ => {
                    best = Some(spec);
                    out = vec![entry];
                }
            }
        }
        out
    }

    /// The DestinationRule for a host, looked up as Istio does: the proxy's namespace (a rule
    /// selecting this workload first), then the service's namespace, then the root namespace;
    /// within a namespace the most specific host wins, then the first by name.
    pub fn destination_rule_for(
        &self,
        hostname: &str,
        service_namespace: Option<&str>,
    ) -> Option<&DrEntry<'a>> {
        let tier = |e: &DrEntry<'_>| -> Option<u8> {
            let selector =
                e.dr.workload_selector
                    .as_ref()
                    .map(|s| &s.match_labels)
                    .filter(|m| !m.is_empty());
            if e.namespace == self.namespace {
                match selector {
                    Some(sel) if labels_match(sel, &self.node.labels) => Some(0),
                    Some(_) => None,
                    None => Some(1),
                }
            } else if selector.is_some() {
                None
            } else if Some(e.namespace) == service_namespace {
                Some(2)
            } else if e.namespace == ROOT_NAMESPACE {
                Some(3)
            } else {
                None
            }
        };
        self.destination_rules
            .iter()
            .filter_map(|e| {
                let spec = host::match_specificity(&e.host, hostname)?;
                Some(((tier(e)?, usize::MAX - spec), e))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, e)| e)
    }
}

/// Whether `gateways` (empty meaning the mesh) include sidecars.
pub(super) fn includes_mesh(gateways: &[String]) -> bool {
    gateways.is_empty() || gateways.iter().any(|g| g == "mesh")
}

/// Whether any rule of a VirtualService can apply to sidecars (match-level `gateways` override the
/// VirtualService's).
fn applies_to_mesh(vs: &VirtualService) -> bool {
    let vs_level = includes_mesh(&vs.gateways);
    let http = vs.http.iter().any(|r| {
        r.matches.is_empty() && vs_level
            || r.matches.iter().any(|m| {
                if m.gateways.is_empty() {
                    vs_level
                } else {
                    includes_mesh(&m.gateways)
                }
            })
    });
    let tcp = vs.tcp.iter().any(|r| {
        r.matches.is_empty() && vs_level
            || r.matches.iter().any(|m| {
                if m.gateways.is_empty() {
                    vs_level
                } else {
                    includes_mesh(&m.gateways)
                }
            })
    });
    http || tcp
}

/// The Sidecar for a workload: in its namespace, the first (by name) whose selector matches it,
/// else the namespace-wide one, else the root namespace's namespace-wide one.
fn select_sidecar<'a>(
    config: &'a ConfigSet,
    node: &NodeIdentity,
    namespace: &str,
) -> Option<&'a Sidecar> {
    let sidecars: Vec<(&Resource, &Sidecar)> = config
        .of_kind(Kind::Sidecar)
        .filter_map(|r| match &r.spec {
            Spec::Sidecar(s) => Some((r, s)),
            _ => None,
        })
        .collect();
    let selector = |s: &Sidecar| {
        s.workload_selector
            .as_ref()
            .map(|w| &w.labels)
            .filter(|l| !l.is_empty())
            .cloned()
    };
    let find = |ns: &str, selected: bool| {
        sidecars
            .iter()
            .filter(|(r, _)| r.namespace() == ns)
            .find(|(_, s)| match selector(s) {
                Some(sel) => selected && labels_match(&sel, &node.labels),
                None => !selected,
            })
            .map(|(_, s)| *s)
    };
    find(namespace, true)
        .or_else(|| find(namespace, false))
        .or_else(|| find(ROOT_NAMESPACE, false))
}
