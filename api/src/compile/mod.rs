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
use crate::model::{NodeIdentity, ProxyConfig, VirtualHost};
use crate::registry::{Service, services_from_service_entries};
use clusters::Clusters;
use scope::Scope;
use std::collections::BTreeMap;

/// Compiles the configuration one proxy needs. Never fails: resources were validated when loaded,
/// and whatever still cannot be honoured (a route to an unknown host, a missing subset) becomes a
/// cluster without endpoints, which the proxy answers with 503 as Envoy would.
pub fn compile(config: &ConfigSet, services: &[Service], node: &NodeIdentity) -> ProxyConfig {
    let scope = Scope::new(config, node);
    let visible = scope.visible_services(services);
    let by_host: BTreeMap<&str, &Service> =
        visible.iter().map(|s| (s.hostname.as_str(), *s)).collect();
    let mut clusters = Clusters::new(&scope, &by_host);
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
        authorization: authorization(config, node),
        inbound_mtls: peer_auth::inbound_mtls(config, node),
        rate_limits,
    };
    config.canonicalize();
    config.version = config.content_version();
    config
}

/// The AuthorizationPolicies that apply to `node`, compiled. Validation refuses a policy the
/// engine cannot compile when it is applied; should one still fail here, the workload denies
/// every request (fail closed: a broken policy must never open access).
fn authorization(config: &ConfigSet, node: &NodeIdentity) -> crate::authz::PolicySet {
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
                Some((r.name(), r.namespace(), ap))
            }
            _ => None,
        })
        .collect();
    crate::authz::compile(&applying).unwrap_or_else(|_| {
        let allow_nothing = crate::resources::AuthorizationPolicy::default();
        crate::authz::compile(&[("invalid-policy", &node.namespace, &allow_nothing)])
            .unwrap_or_default()
    })
}

/// [`compile`] with the services declared by the ServiceEntries in `config` (standalone mode).
pub fn compile_standalone(config: &ConfigSet, node: &NodeIdentity) -> ProxyConfig {
    compile(config, &services_from_service_entries(config), node)
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
