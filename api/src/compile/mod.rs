//! The compiler: resources + registry + one proxy's identity -> that proxy's [`ProxyConfig`].
//!
//! It follows Istio's sidecar semantics (what a proxy sees, how hosts resolve, which rules apply,
//! which defaults fill the gaps) so the same YAML behaves the same under Trellis. The result is
//! fully resolved and deterministic: equal inputs give byte-identical configs and equal versions,
//! which is what lets proxies and the control plane skip pushes that change nothing.

mod clusters;
mod peer_auth;
mod rate_limit;
mod routes;
mod scope;

use crate::load::ConfigSet;
use crate::model::{NodeIdentity, ProxyConfig, TRUST_DOMAIN, VirtualHost};
use crate::registry::{Service, services_from_service_entries};
use clusters::Clusters;
use peer_auth::PeerAuthentications;
use scope::Scope;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Mesh-wide settings that are not resources (Istio keeps them in MeshConfig): the same for
/// every proxy of a mesh, given by the control plane's or the standalone proxy's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    /// The trust domain of the mesh's SPIFFE IDs (`--trust-domain`): what endpoints are
    /// expected to present, and what `cluster.local` in a policy principal stands for.
    pub trust_domain: String,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            trust_domain: TRUST_DOMAIN.to_string(),
        }
    }
}

/// [`compile_in`] a mesh with Istio's default settings (trust domain `cluster.local`).
pub fn compile(config: &ConfigSet, services: &[Service], node: &NodeIdentity) -> ProxyConfig {
    compile_in(config, services, node, &MeshSettings::default())
}

/// Compiles the configuration one proxy of `mesh` needs. Never fails: resources were validated
/// when loaded, and whatever still cannot be honoured (a route to an unknown host, a missing
/// subset) becomes a cluster without endpoints, which the proxy answers with 503 as Envoy would.
pub fn compile_in(
    config: &ConfigSet,
    services: &[Service],
    node: &NodeIdentity,
    mesh: &MeshSettings,
) -> ProxyConfig {
    let scope = Scope::new(config, node);
    let visible = scope.visible_services(services);
    let by_host: BTreeMap<&str, &Service> =
        visible.iter().map(|s| (s.hostname.as_str(), *s)).collect();
    let peer_authentications = PeerAuthentications::new(config);
    let mut clusters = Clusters::new(&scope, &by_host, &peer_authentications, &mesh.trust_domain);
    let mut virtual_hosts = Vec::new();

    for service in &visible {
        let default_port = service.default_port();
        let mut ports: Vec<_> = service
            .ports
            .iter()
            .filter(|p| scope.egress_allows(service, p.number))
            .collect();
        ports.sort_by_key(|p| p.number);
        ports.dedup_by_key(|p| p.number);
        let vses = scope.virtual_services_for(&service.hostname);
        for port in ports {
            let own_cluster = clusters.ensure(&service.hostname, port.number, None);
            let (http_routes, tcp_routes) =
                routes::for_port(&scope, &mut clusters, &vses, port, &own_cluster);
            virtual_hosts.push(VirtualHost {
                name: format!("{}:{}", service.hostname, port.number),
                service: service.hostname.clone(),
                port: port.number,
                protocol: port.protocol,
                domains: domains(
                    service,
                    port.number,
                    default_port == Some(port.number),
                    scope.namespace(),
                ),
                addresses: addresses(service),
                http_routes,
                tcp_routes,
            });
        }
    }

    let rate_limits = rate_limit::rate_limits(config, node, &scope, &virtual_hosts);
    let mut config = ProxyConfig {
        version: String::new(),
        node: node.clone(),
        virtual_hosts,
        clusters: clusters.into_vec(),
        outbound_traffic_policy: scope.outbound_traffic_policy(),
        authorization: authorization(config, node, &mesh.trust_domain),
        inbound_mtls: peer_authentications.for_workload(&node.namespace, &node.labels),
        rate_limits,
    };
    config.canonicalize();
    config.version = config.content_version();
    config
}

/// The AuthorizationPolicies that apply to `node`, compiled. Validation refuses a policy the
/// engine cannot compile when it is applied; should one still fail here, the workload denies
/// every request (fail closed: a broken policy must never open access). In a mesh whose trust
/// domain is not `cluster.local`, principals naming `cluster.local` mean the local trust domain,
/// as in Istio, so policies written for the default domain keep working.
fn authorization(
    config: &ConfigSet,
    node: &NodeIdentity,
    trust_domain: &str,
) -> crate::authz::PolicySet {
    use crate::resources::Spec;
    let applying: Vec<_> = config
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::AuthorizationPolicy(ap)
                if crate::authz::applies_to(
                    r.namespace(),
                    ap.selector.as_ref(),
                    scope::ROOT_NAMESPACE,
                    &node.namespace,
                    &node.labels,
                ) =>
            {
                Some((r.name(), r.namespace(), local_principals(ap, trust_domain)))
            }
            _ => None,
        })
        .collect();
    let applying: Vec<_> = applying
        .iter()
        .map(|(name, ns, ap)| (*name, *ns, ap.as_ref()))
        .collect();
    crate::authz::compile(&applying).unwrap_or_else(|_| {
        let allow_nothing = crate::resources::AuthorizationPolicy::default();
        crate::authz::compile(&[("invalid-policy", &node.namespace, &allow_nothing)])
            .unwrap_or_default()
    })
}

/// `policy` with principals in `cluster.local` moved to `trust_domain` (borrowed unchanged when
/// the domain is `cluster.local` or no principal names it).
fn local_principals<'p>(
    policy: &'p crate::resources::AuthorizationPolicy,
    trust_domain: &str,
) -> Cow<'p, crate::resources::AuthorizationPolicy> {
    const DEFAULT_PREFIX: &str = "cluster.local/";
    let is_default = |p: &String| p.starts_with(DEFAULT_PREFIX);
    let principal_keys = ["source.principal"];
    let names_default =
        policy.rules.iter().any(|rule| {
            rule.from.iter().filter_map(|f| f.source.as_ref()).any(|s| {
                s.principals.iter().any(is_default) || s.not_principals.iter().any(is_default)
            }) || rule.when.iter().any(|c| {
                principal_keys.contains(&c.key.as_str())
                    && (c.values.iter().any(is_default) || c.not_values.iter().any(is_default))
            })
        });
    if trust_domain == TRUST_DOMAIN || !names_default {
        return Cow::Borrowed(policy);
    }
    let local = |principals: &mut Vec<String>| {
        for p in principals
            .iter_mut()
            .filter(|p| p.starts_with(DEFAULT_PREFIX))
        {
            *p = format!("{trust_domain}/{}", &p[DEFAULT_PREFIX.len()..]);
        }
    };
    let mut policy = policy.clone();
    for rule in &mut policy.rules {
        for source in rule.from.iter_mut().filter_map(|f| f.source.as_mut()) {
            local(&mut source.principals);
            local(&mut source.not_principals);
        }
        for condition in &mut rule.when {
            if principal_keys.contains(&condition.key.as_str()) {
                local(&mut condition.values);
                local(&mut condition.not_values);
            }
        }
    }
    Cow::Owned(policy)
}

/// [`compile`] with the services declared by the ServiceEntries in `config` (standalone mode).
pub fn compile_standalone(config: &ConfigSet, node: &NodeIdentity) -> ProxyConfig {
    compile_standalone_in(config, node, &MeshSettings::default())
}

/// [`compile_in`] with the services declared by the ServiceEntries in `config` (standalone mode).
pub fn compile_standalone_in(
    config: &ConfigSet,
    node: &NodeIdentity,
    mesh: &MeshSettings,
) -> ProxyConfig {
    compile_in(config, &services_from_service_entries(config), node, mesh)
}

/// Label keys whose values can change what [`compile`] produces for a proxy: those named by
/// `sourceLabels` matches and by DestinationRule/Sidecar/security/LocalRateLimit workload selectors. Two proxies
/// in one namespace whose labels agree on these keys get the same config, which lets the control
/// plane compile once per such class instead of once per proxy.
pub fn labels_in_use(config: &ConfigSet) -> std::collections::BTreeSet<String> {
    use crate::resources::Spec;
    let mut keys = std::collections::BTreeSet::new();
    for resource in config.iter() {
        match &resource.spec {
            Spec::VirtualService(vs) => {
                for rule in &vs.http {
                    for m in &rule.matches {
                        keys.extend(m.source_labels.keys().cloned());
                    }
                }
                for rule in &vs.tcp {
                    for m in &rule.matches {
                        keys.extend(m.source_labels.keys().cloned());
                    }
                }
            }
            Spec::DestinationRule(dr) => {
                if let Some(sel) = &dr.workload_selector {
                    keys.extend(sel.match_labels.keys().cloned());
                }
            }
            Spec::Sidecar(sc) => {
                if let Some(sel) = &sc.workload_selector {
                    keys.extend(sel.labels.keys().cloned());
                }
            }
            Spec::PeerAuthentication(pa) => {
                if let Some(sel) = &pa.selector {
                    keys.extend(sel.match_labels.keys().cloned());
                }
            }
            Spec::AuthorizationPolicy(ap) => {
                if let Some(sel) = &ap.selector {
                    keys.extend(sel.match_labels.keys().cloned());
                }
            }
            Spec::LocalRateLimit(lrl) => {
                if let Some(sel) = &lrl.workload_selector {
                    keys.extend(sel.labels.keys().cloned());
                }
            }
            Spec::ServiceEntry(_) | Spec::Gateway(_) => {}
        }
    }
    keys
}

/// Names that reach `service` on `port`: the host and its short forms, each with `:port`, and
/// without a port only on the service's default port (so a bare `Host: reviews` is unambiguous).
/// Service VIPs are listed the same way, as Istio does.
fn domains(service: &Service, port: u16, default_port: bool, proxy_namespace: &str) -> Vec<String> {
    let mut names = vec![service.hostname.clone()];
    names.extend(crate::host::short_names(&service.hostname, proxy_namespace));
    for address in &service.addresses {
        if let Ok(ip) = address.parse::<std::net::IpAddr>() {
            names.push(match ip {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                std::net::IpAddr::V4(v4) => v4.to_string(),
            });
        }
    }
    let mut out = Vec::with_capacity(names.len() * 2);
    for name in names {
        if default_port {
            out.push(name.clone());
        }
        out.push(format!("{name}:{port}"));
    }
    out.dedup();
    out
}

/// VIPs and the IP addresses of endpoints, for routing by original destination.
fn addresses(service: &Service) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let candidates = service
        .addresses
        .iter()
        .chain(service.endpoints.iter().map(|e| &e.address));
    for a in candidates {
        let is_address = a.parse::<std::net::IpAddr>().is_ok() || crate::validate::is_ip_or_cidr(a);
        if is_address && !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
