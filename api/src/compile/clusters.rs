//! Clusters: one per service port and per (service port, subset) a route uses, with the
//! DestinationRule's traffic policy merged as Istio merges it and Istio's defaults filled in.

use super::peer_auth::PeerAuthentications;
use super::scope::{Scope, labels_match};
use crate::duration::parse_ms;
use crate::model::{
    ClientTlsMode, Cluster, ClusterTls, ConnectionPool, ConsistentHash, Endpoint, HashAlgorithm,
    HashKey, LoadBalancer, OutlierDetection, Protocol, TLS_MODE_LABEL, cluster_name, spiffe_id_in,
};
use crate::registry::Service;
use crate::resources::{
    ClientTlsMode as TlsModeSetting, ClientTlsSettings, ConnectionPoolSettings,
    LoadBalancerSettings, Location, OutlierDetection as OutlierSettings, Resolution, SimpleLb,
    TrafficPolicy,
};
use std::collections::BTreeMap;

const DEFAULT_RING_SIZE: u64 = 1024;
const DEFAULT_MAGLEV_TABLE: u64 = 65537;

pub(super) struct Clusters<'s, 'a> {
    scope: &'s Scope<'a>,
    services: &'s BTreeMap<&'s str, &'s Service>,
    /// Resolves each endpoint's inbound mode: auto mTLS sends plaintext where it is DISABLE.
    peer_authentications: &'s PeerAuthentications<'a>,
    /// Of the SPIFFE IDs endpoints are expected to present.
    trust_domain: &'s str,
    built: BTreeMap<String, Cluster>,
}

/// The settings in force for one cluster, before defaults.
#[derive(Default, Clone, Copy)]
struct Policy<'a> {
    load_balancer: Option<&'a LoadBalancerSettings>,
    connection_pool: Option<&'a ConnectionPoolSettings>,
    outlier_detection: Option<&'a OutlierSettings>,
    tls: Option<&'a ClientTlsSettings>,
}

impl<'a> Policy<'a> {
    /// A policy's own settings, replaced wholesale by its `portLevelSettings` for `port` (Istio:
    /// port-level settings do not inherit; what they leave out falls back to defaults).
    fn of(tp: &'a TrafficPolicy, port: u16) -> Policy<'a> {
        match tp
            .port_level_settings
            .iter()
            .find(|p| p.port.as_ref().is_some_and(|s| s.number == u32::from(port)))
        {
            Some(pl) => Policy {
                load_balancer: pl.load_balancer.as_ref(),
                connection_pool: pl.connection_pool.as_ref(),
                outlier_detection: pl.outlier_detection.as_ref(),
                tls: pl.tls.as_ref(),
            },
            None => Policy {
                load_balancer: tp.load_balancer.as_ref(),
                connection_pool: tp.connection_pool.as_ref(),
                outlier_detection: tp.outlier_detection.as_ref(),
                tls: tp.tls.as_ref(),
            },
        }
    }

    /// A subset's policy over the rule's: each setting the subset gives replaces the rule's, and
    /// the subset's port-level settings replace everything.
    fn with_subset(self, tp: &'a TrafficPolicy, port: u16) -> Policy<'a> {
        let port_level = tp
            .port_level_settings
            .iter()
            .any(|p| p.port.as_ref().is_some_and(|s| s.number == u32::from(port)));
        if port_level {
            return Policy::of(tp, port);
        }
        Policy {
            load_balancer: tp.load_balancer.as_ref().or(self.load_balancer),
            connection_pool: tp.connection_pool.as_ref().or(self.connection_pool),
            outlier_detection: tp.outlier_detection.as_ref().or(self.outlier_detection),
            tls: tp.tls.as_ref().or(self.tls),
        }
    }
}

impl<'s, 'a> Clusters<'s, 'a> {
    pub fn new(
        scope: &'s Scope<'a>,
        services: &'s BTreeMap<&'s str, &'s Service>,
        peer_authentications: &'s PeerAuthentications<'a>,
        trust_domain: &'s str,
    ) -> Self {
        Clusters {
            scope,
            services,
            peer_authentications,
            trust_domain,
            built: BTreeMap::new(),
        }
    }

    pub fn service(&self, host: &str) -> Option<&'s Service> {
        self.services.get(host).copied()
    }

    /// The name of the cluster for `host:port` (and subset), building it on first use.
    pub fn ensure(&mut self, host: &str, port: u16, subset: Option<&str>) -> String {
        let name = cluster_name(host, port, subset);
        if !self.built.contains_key(&name) {
            let cluster = self.build(name.clone(), host, port, subset);
            self.built.insert(name.clone(), cluster);
        }
        name
    }

    pub fn into_vec(self) -> Vec<Cluster> {
        self.built.into_values().collect()
    }

    fn build(&self, name: String, host: &str, port: u16, subset: Option<&str>) -> Cluster {
        let service = self.service(host);
        let service_port = service.and_then(|s| s.port(port));
        let rule = self
            .scope
            .destination_rule_for(host, service.map(|s| s.namespace.as_str()));

        let mut policy = rule
            .and_then(|r| r.dr.traffic_policy.as_ref())
            .map(|tp| Policy::of(tp, port))
            .unwrap_or_default();
        // A subset no rule defines selects nothing: the cluster exists but has no endpoints.
        let mut subset_labels = None;
        if let Some(subset_name) = subset
            && let Some(def) =
                rule.and_then(|r| r.dr.subsets.iter().find(|s| s.name == subset_name))
        {
            subset_labels = Some(&def.labels);
            if let Some(tp) = &def.traffic_policy {
                policy = policy.with_subset(tp, port);
            }
        }

        let endpoints = match (service, service_port) {
            (Some(svc), Some(sp)) if subset.is_none() || subset_labels.is_some() => svc
                .endpoints
                .iter()
                .filter(|ep| subset_labels.is_none_or(|want| labels_match(want, &ep.labels)))
                .map(|ep| {
                    let port = svc.endpoint_port(ep, sp);
                    let sidecar =
                        ep.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio");
                    Endpoint {
                        address: ep.address.clone(),
                        port,
                        labels: ep.labels.clone(),
                        weight: ep.weight.max(1),
                        identity: ep
                            .service_account
                            .as_deref()
                            .filter(|sa| !sa.is_empty())
                            .map(|sa| endpoint_identity(self.trust_domain, &svc.namespace, sa)),
                        // The endpoint's workload lives in its service's namespace.
                        mesh: sidecar
                            && !self.peer_authentications.disables(
                                &svc.namespace,
                                &ep.labels,
                                port,
                            ),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };

        let load_balancer = if service.is_some_and(|s| s.resolution == Resolution::None) {
            // Istio's ORIGINAL_DST cluster: the address the client dialled is the endpoint.
            LoadBalancer::Passthrough
        } else {
            load_balancer(policy.load_balancer)
        };

        Cluster {
            name,
            service: host.to_string(),
            port,
            subset: subset.map(str::to_string),
            protocol: service_port.map_or(Protocol::Unspecified, |p| p.protocol),
            load_balancer,
            connection_pool: connection_pool(policy.connection_pool),
            outlier_detection: policy.outlier_detection.map(outlier_detection),
            endpoints,
            tls: Box::new(cluster_tls(
                policy.tls,
                service.is_some_and(|s| s.location == Location::MeshExternal),
            )),
        }
    }
}

/// The SPIFFE ID of an endpoint's service account (a bare name, in the service's namespace and
/// the mesh's trust domain), or the account given as a SPIFFE ID already.
fn endpoint_identity(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    if service_account.starts_with("spiffe://") {
        service_account.to_string()
    } else {
        spiffe_id_in(trust_domain, namespace, service_account)
    }
}

/// Istio's client TLS for a cluster: the DestinationRule's `tls` when given (a `tls` without
/// `mode` is DISABLE, the proto's default), else auto mTLS, except for services outside the
/// mesh (ServiceEntry `location: MESH_EXTERNAL`), which Istio never auto-upgrades.
fn cluster_tls(settings: Option<&ClientTlsSettings>, mesh_external: bool) -> ClusterTls {
    let Some(t) = settings else {
        return ClusterTls {
            mode: if mesh_external {
                ClientTlsMode::Disable
            } else {
                ClientTlsMode::Auto
            },
            ..ClusterTls::default()
        };
    };
    ClusterTls {
        mode: match t.mode {
            None | Some(TlsModeSetting::Disable) => ClientTlsMode::Disable,
            Some(TlsModeSetting::IstioMutual) => ClientTlsMode::IstioMutual,
            Some(TlsModeSetting::Simple) => ClientTlsMode::Simple,
            Some(TlsModeSetting::Mutual) => ClientTlsMode::Mutual,
        },
        sni: t.sni.clone().filter(|s| !s.is_empty()),
        subject_alt_names: t.subject_alt_names.clone(),
        ca_certificates: t.ca_certificates.clone().filter(|s| !s.is_empty()),
        client_certificate: t.client_certificate.clone().filter(|s| !s.is_empty()),
        private_key: t.private_key.clone().filter(|s| !s.is_empty()),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    }
}

fn load_balancer(settings: Option<&LoadBalancerSettings>) -> LoadBalancer {
    let Some(settings) = settings else {
        return LoadBalancer::LeastRequest;
    };
    if let Some(ch) = &settings.consistent_hash {
        let key = if let Some(h) = &ch.http_header_name {
            HashKey::Header(h.to_ascii_lowercase())
        } else if let Some(c) = &ch.http_cookie {
            HashKey::Cookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl_ms: c.ttl.as_deref().and_then(|t| parse_ms(t).ok()),
            }
        } else if let Some(q) = &ch.http_query_parameter_name {
            HashKey::QueryParameter(q.clone())
        } else {
            HashKey::SourceIp
        };
        let algorithm = if let Some(m) = &ch.maglev {
            HashAlgorithm::Maglev {
                table_size: m.table_size.unwrap_or(DEFAULT_MAGLEV_TABLE),
            }
        } else {
            HashAlgorithm::RingHash {
                minimum_ring_size: ch
                    .ring_hash
                    .as_ref()
                    .and_then(|r| r.minimum_ring_size)
                    .or(ch.minimum_ring_size)
                    .unwrap_or(DEFAULT_RING_SIZE),
            }
        };
        return LoadBalancer::ConsistentHash(ConsistentHash { key, algorithm });
    }
    match settings.simple {
        Some(SimpleLb::RoundRobin) => LoadBalancer::RoundRobin,
        Some(SimpleLb::Random) => LoadBalancer::Random,
        Some(SimpleLb::Passthrough) => LoadBalancer::Passthrough,
        Some(SimpleLb::LeastRequest | SimpleLb::LeastConn | SimpleLb::Unspecified) | None => {
            LoadBalancer::LeastRequest
        }
    }
}

/// Istio leaves a limit of 0 at Envoy's "unlimited".
fn limit(value: Option<i64>) -> Option<u32> {
    value.filter(|v| *v > 0).and_then(|v| u32::try_from(v).ok())
}

fn connection_pool(settings: Option<&ConnectionPoolSettings>) -> ConnectionPool {
    let mut pool = ConnectionPool::default();
    let Some(settings) = settings else {
        return pool;
    };
    if let Some(tcp) = &settings.tcp {
        pool.max_connections = limit(tcp.max_connections);
        if let Some(ms) = tcp
            .connect_timeout
            .as_deref()
            .and_then(|t| parse_ms(t).ok())
        {
            pool.connect_timeout_ms = ms;
        }
    }
    if let Some(http) = &settings.http {
        pool.http1_max_pending_requests = limit(http.http1_max_pending_requests);
        pool.http2_max_requests = limit(http.http2_max_requests);
        pool.max_requests_per_connection = limit(http.max_requests_per_connection);
        pool.max_retries = limit(http.max_retries);
        pool.idle_timeout_ms = http.idle_timeout.as_deref().and_then(|t| parse_ms(t).ok());
    }
    pool
}

fn outlier_detection(settings: &OutlierSettings) -> OutlierDetection {
    let ms = |value: &Option<String>, default: u64| {
        value
            .as_deref()
            .and_then(|t| parse_ms(t).ok())
            .unwrap_or(default)
    };
    let percent = |value: Option<i64>, default: u32| {
        value
            .and_then(|v| u32::try_from(v).ok())
            .map_or(default, |v| v.min(100))
    };
    OutlierDetection {
        // Envoy's default of 5 applies unless set; 0 turns it off.
        consecutive_5xx: match settings.consecutive_5xx_errors {
            None => Some(5),
            Some(v) => limit(Some(v)),
        },
        consecutive_gateway_errors: limit(settings.consecutive_gateway_errors),
        interval_ms: ms(&settings.interval, 10_000),
        base_ejection_time_ms: ms(&settings.base_ejection_time, 30_000),
        max_ejection_percent: percent(settings.max_ejection_percent, 10),
        min_health_percent: percent(settings.min_health_percent, 0),
    }
}

#[cfg(test)]
mod tls_tests {
    use crate::compile::compile_standalone;
    use crate::compile::tests::{cluster, config};
    use crate::model::{ClientTlsMode, Cluster, NodeIdentity, ProxyConfig};

    const SE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9443, name: tcp-admin, protocol: TCP}
  endpoints:
  - {address: 127.0.0.1, labels: {version: v1, security.istio.io/tlsMode: istio}, serviceAccount: reviews}
  - {address: 127.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: shop}
spec:
  hosts: [api.example.com]
  resolution: STATIC
  ports: [{number: 443, name: https, protocol: TLS}]
  endpoints: [{address: 127.0.0.9, labels: {security.istio.io/tlsMode: istio}}]
"#;

    fn compile(extra: &str) -> ProxyConfig {
        let set = config(&format!("{SE}{extra}"));
        let node = NodeIdentity {
            namespace: "shop".into(),
            ..NodeIdentity::default()
        };
        compile_standalone(&set, &node)
    }

    const REVIEWS: &str = "outbound|9080||reviews.shop.svc.cluster.local";

    #[test]
    fn without_a_rule_mesh_endpoints_get_auto_mtls_and_their_identity() {
        let cfg = compile("");
        let c = cluster(&cfg, REVIEWS);
        assert_eq!(c.tls.mode, ClientTlsMode::Auto);
        let (v1, v2) = (&c.endpoints[0], &c.endpoints[1]);
        assert!(v1.mesh);
        assert_eq!(
            v1.identity.as_deref(),
            Some("spiffe://cluster.local/ns/shop/sa/reviews")
        );
        assert_eq!(c.tls.mode_for(v1), ClientTlsMode::IstioMutual);
        assert!(!v2.mesh);
        assert_eq!(v2.identity, None);
        assert_eq!(c.tls.mode_for(v2), ClientTlsMode::Disable);
        // Outside the mesh nothing is upgraded automatically, labels or not.
        let ext = cluster(&cfg, "outbound|443||api.example.com");
        assert_eq!(ext.tls.mode, ClientTlsMode::Disable);
        assert_eq!(ext.tls.mode_for(&ext.endpoints[0]), ClientTlsMode::Disable);
    }

    #[test]
    fn rule_port_level_and_subset_tls_follow_istio_precedence() {
        let cfg = compile(
            r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/shop/sa/other"]}
    portLevelSettings:
    - port: {number: 9443}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      tls: {mode: DISABLE}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 5}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews.shop.svc.cluster.local, subset: v1}
      weight: 50
    - destination: {host: reviews.shop.svc.cluster.local, subset: v2}
      weight: 50
"#,
        );
        let c = cluster(&cfg, REVIEWS);
        assert_eq!(c.tls.mode, ClientTlsMode::IstioMutual);
        assert_eq!(
            c.tls.subject_alt_names,
            ["spiffe://cluster.local/ns/shop/sa/other"]
        );
        // Explicit ISTIO_MUTUAL applies to endpoints without the sidecar label too.
        assert_eq!(c.tls.mode_for(&c.endpoints[1]), ClientTlsMode::IstioMutual);
        // Port-level settings replace the rule's wholesale: no `tls` there is auto mTLS.
        let admin = cluster(&cfg, "outbound|9443||reviews.shop.svc.cluster.local");
        assert_eq!(admin.tls.mode, ClientTlsMode::Auto);
        // A subset's `tls` replaces the rule's; a subset without one inherits it.
        let v1 = cluster(&cfg, "outbound|9080|v1|reviews.shop.svc.cluster.local");
        assert_eq!(v1.tls.mode, ClientTlsMode::Disable);
        let v2 = cluster(&cfg, "outbound|9080|v2|reviews.shop.svc.cluster.local");
        assert_eq!(v2.tls.mode, ClientTlsMode::IstioMutual);
    }

    #[test]
    fn origination_settings_are_carried_and_a_tls_without_mode_is_disable() {
        let cfg = compile(
            r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext, namespace: shop}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, sni: api.example.com, caCertificates: /etc/ca.pem, insecureSkipVerify: true}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy:
    tls: {sni: reviews.example}
"#,
        );
        let ext = cluster(&cfg, "outbound|443||api.example.com");
        assert_eq!(ext.tls.mode, ClientTlsMode::Simple);
        assert_eq!(ext.tls.sni.as_deref(), Some("api.example.com"));
        assert_eq!(ext.tls.ca_certificates.as_deref(), Some("/etc/ca.pem"));
        assert!(ext.tls.insecure_skip_verify);
        assert_eq!(cluster(&cfg, REVIEWS).tls.mode, ClientTlsMode::Disable);
        assert!(!cluster(&cfg, REVIEWS).tls.insecure_skip_verify);
    }

    #[test]
    fn configs_from_before_tls_still_deserialize() {
        let old = r#"{"name":"c","service":"s","port":80,"subset":null,"protocol":"HTTP",
            "load_balancer":"round_robin","connection_pool":{"max_connections":null,
            "connect_timeout_ms":10,"http1_max_pending_requests":null,"http2_max_requests":null,
            "max_requests_per_connection":null,"max_retries":null,"idle_timeout_ms":null},
            "outlier_detection":null,
            "endpoints":[{"address":"127.0.0.1","port":80,"labels":{},"weight":1}]}"#;
        let c: Cluster = serde_json::from_str(old).unwrap();
        assert_eq!(c.tls.mode, ClientTlsMode::Auto);
        assert!(!c.endpoints[0].mesh);
    }
}
