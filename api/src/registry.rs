//! The service registry as the compiler needs it: services with ports and endpoints.
//!
//! Kubernetes, proxies registering themselves and ServiceEntry resources all feed the same
//! [`Service`] shape, so the compiler does not care where a service came from. In standalone mode
//! ServiceEntries are the only source, via [`services_from_service_entries`].

use crate::load::ConfigSet;
use crate::model::Protocol;
use crate::resources::{Kind, Location, Resolution, Spec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Fully qualified, lower case; may be a `*.` wildcard (ServiceEntry hosts).
    pub hostname: String,
    pub namespace: String,
    /// Virtual IPs or CIDRs.
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<WorkloadEndpoint>,
    pub resolution: Resolution,
    pub location: Location,
    /// Istio's exportTo: `*` (everywhere, the default), `.` (own namespace), `~` (nowhere) or names.
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub number: u16,
    pub protocol: Protocol,
    pub name: String,
    pub target_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadEndpoint {
    /// IP address, or a DNS name for `resolution: DNS`.
    pub address: String,
    /// Port name -> port on this endpoint, overriding the service port.
    pub ports: BTreeMap<String, u16>,
    pub labels: BTreeMap<String, String>,
    /// 1 when not given.
    pub weight: u32,
    pub service_account: Option<String>,
}

impl Service {
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// The port a request without an explicit port reaches: 80 if the service has it, else its
    /// only HTTP port, else its first port.
    pub fn default_port(&self) -> Option<u16> {
        if self.port(80).is_some() {
            return Some(80);
        }
        let mut http = self.ports.iter().filter(|p| p.protocol.is_http());
        if let (Some(only), None) = (http.next(), http.next()) {
            return Some(only.number);
        }
        self.ports.first().map(|p| p.number)
    }

    /// Where an endpoint listens for `port`: its own port for that port name, else the service's
    /// target port, else the service port itself.
    pub fn endpoint_port(&self, endpoint: &WorkloadEndpoint, port: &ServicePort) -> u16 {
        endpoint
            .ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number)
    }

    /// Whether a proxy in `namespace` may see this service under its exportTo.
    pub fn visible_to(&self, namespace: &str) -> bool {
        exported_to(&self.export_to, &self.namespace, namespace)
    }
}

/// Istio's exportTo rule, shared by services, VirtualServices and DestinationRules: empty means
/// everywhere.
pub fn exported_to(export_to: &[String], own_namespace: &str, namespace: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && own_namespace == namespace))
}

/// Istio's protocol names (case-insensitive) as the proxy handles them; `None` for names Trellis
/// does not know.
pub fn parse_protocol(name: &str) -> Option<Protocol> {
    Some(match name.to_ascii_uppercase().as_str() {
        "HTTP" => Protocol::Http,
        "HTTP2" | "GRPC-WEB" => Protocol::Http2,
        "GRPC" => Protocol::Grpc,
        "TCP" | "TLS" | "HTTPS" | "MONGO" | "MYSQL" | "REDIS" => Protocol::Tcp,
        _ => return None,
    })
}

/// A port's protocol from its `protocol` field, or, when that is absent, from Istio's port naming
/// convention (`http-web`, `grpc`, `tcp-db`: the part before the first `-`).
pub fn port_protocol(protocol: Option<&str>, name: &str) -> Protocol {
    match protocol {
        Some(p) if !p.is_empty() => parse_protocol(p).unwrap_or_default(),
        _ => {
            let prefix = name.split('-').next().unwrap_or_default();
            parse_protocol(prefix).unwrap_or_default()
        }
    }
}

/// One [`Service`] per host of every ServiceEntry, in (namespace, name, host) order.
pub fn services_from_service_entries(config: &ConfigSet) -> Vec<Service> {
    let mut services = Vec::new();
    for resource in config.of_kind(Kind::ServiceEntry) {
        let Spec::ServiceEntry(se) = &resource.spec else {
            continue;
        };
        let resolution = se.resolution.unwrap_or_default();
        let ports: Vec<ServicePort> = se
            .ports
            .iter()
            .filter_map(|p| {
                Some(ServicePort {
                    number: u16::try_from(p.number).ok().filter(|n| *n != 0)?,
                    protocol: port_protocol(p.protocol.as_deref(), &p.name),
                    name: p.name.clone(),
                    target_port: p.target_port.and_then(|t| u16::try_from(t).ok()),
                })
            })
            .collect();
        let declared: Vec<WorkloadEndpoint> = if se.workload_selector.is_some() {
            // Selected workloads register themselves with the control plane; none are known here.
            Vec::new()
        } else {
            se.endpoints
                .iter()
                .map(|e| WorkloadEndpoint {
                    address: e.address.clone(),
                    ports: e
                        .ports
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), u16::try_from(*v).ok()?)))
                        .collect(),
                    labels: e.labels.clone(),
                    weight: e.weight.unwrap_or(1).max(1),
                    service_account: e.service_account.clone(),
                })
                .collect()
        };
        for host in &se.hosts {
            let hostname = crate::host::normalize(host);
            let endpoints = match resolution {
                Resolution::None => Vec::new(),
                Resolution::Static => declared.clone(),
                Resolution::Dns | Resolution::DnsRoundRobin => {
                    if declared.is_empty()
                        && se.workload_selector.is_none()
                        && !hostname.starts_with('*')
                    {
                        // Without endpoints, DNS resolution means: resolve the host itself.
                        vec![WorkloadEndpoint {
                            address: hostname.clone(),
                            ports: BTreeMap::new(),
                            labels: BTreeMap::new(),
                            weight: 1,
                            service_account: None,
                        }]
                    } else {
                        declared.clone()
                    }
                }
            };
            services.push(Service {
                hostname,
                namespace: resource.namespace().to_string(),
                addresses: se.addresses.clone(),
                ports: ports.clone(),
                endpoints,
                resolution,
                location: se.location.unwrap_or_default(),
                export_to: se.export_to.clone(),
            });
        }
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    fn services(yaml: &str) -> Vec<Service> {
        let set = ConfigSet::from_resources(load_str(yaml, "se.yaml").unwrap()).unwrap();
        services_from_service_entries(&set)
    }

    #[test]
    fn static_endpoints_and_ports() {
        let s = services(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.96.0.10]
  ports:
  - {number: 9080, name: http, protocol: HTTP, targetPort: 9081}
  - {number: 9090, name: grpc-admin}
  - {number: 5432, name: db, protocol: TCP}
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints:
  - {address: 127.0.0.1, labels: {version: v1}}
  - {address: 127.0.0.2, ports: {http: 19080}, labels: {version: v2}, weight: 3, serviceAccount: reviews}
"#,
        );
        assert_eq!(s.len(), 1);
        let svc = &s[0];
        assert_eq!(svc.hostname, "reviews.default.svc.cluster.local");
        assert_eq!(svc.resolution, Resolution::Static);
        assert_eq!(svc.location, Location::MeshInternal);
        assert_eq!(
            svc.ports.iter().map(|p| p.protocol).collect::<Vec<_>>(),
            [Protocol::Http, Protocol::Grpc, Protocol::Tcp]
        );
        assert_eq!(svc.endpoints[1].weight, 3);
        assert_eq!(svc.endpoints[1].service_account.as_deref(), Some("reviews"));
        let http = &svc.ports[0];
        assert_eq!(svc.endpoint_port(&svc.endpoints[0], http), 9081);
        assert_eq!(svc.endpoint_port(&svc.endpoints[1], http), 19080);
        assert_eq!(svc.endpoint_port(&svc.endpoints[0], &svc.ports[2]), 5432);
        assert_eq!(svc.default_port(), Some(9080));
    }

    #[test]
    fn dns_without_endpoints_resolves_the_host() {
        let s = services(
            r#"
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com, www.example.com]
  ports: [{number: 443, name: https, protocol: TLS}, {number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"#,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].endpoints[0].address, "api.example.com");
        assert_eq!(s[1].endpoints[0].address, "www.example.com");
        assert_eq!(s[0].location, Location::MeshExternal);
        assert_eq!(s[0].default_port(), Some(80));
    }

    #[test]
    fn protocols_follow_istio() {
        assert_eq!(port_protocol(Some("GRPC-WEB"), "x"), Protocol::Http2);
        assert_eq!(port_protocol(Some("https"), "http"), Protocol::Tcp);
        assert_eq!(port_protocol(None, "http2-x"), Protocol::Http2);
        assert_eq!(port_protocol(None, "tcp"), Protocol::Tcp);
        assert_eq!(port_protocol(None, "web"), Protocol::Unspecified);
        assert_eq!(port_protocol(Some("UDP"), "http"), Protocol::Unspecified);
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&[".".into()], "a", "a"));
        assert!(!exported_to(&[".".into()], "a", "b"));
        assert!(exported_to(&["b".into()], "a", "b"));
        assert!(!exported_to(&["~".into()], "a", "a"));
    }
}
