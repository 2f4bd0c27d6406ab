//! Clusters: one per service port and per (service port, subset) a route uses, with the
//! DestinationRule's traffic policy merged as Istio merges it and Istio's defaults filled in.

use super::scope::Scope;
use crate::duration::parse_ms;
use crate::model::{
    Cluster, ConnectionPool, ConsistentHash, Endpoint, HashAlgorithm, HashKey, LoadBalancer,
    OutlierDetection, Protocol, cluster_name,
};
use crate::registry::Service;
use crate::resources::{
    ConnectionPoolSettings, LoadBalancerSettings, OutlierDetection as OutlierSettings, Resolution,
    SimpleLb, TrafficPolicy,
};
use std::collections::BTreeMap;

const DEFAULT_RING_SIZE: u64 = 1024;
const DEFAULT_MAGLEV_TABLE: u64 = 65537;

pub(super) struct Clusters<'s, 'a> {
    scope: &'s Scope<'a>,
    services: &'s BTreeMap<&'s str, &'s Service>,
    built: BTreeMap<String, Cluster>,
}

/// The settings in force for one cluster, before defaults.
#[derive(Default, Clone, Copy)]
struct Policy<'a> {
    load_balancer: Option<&'a LoadBalancerSettings>,
    connection_pool: Option<&'a ConnectionPoolSettings>,
    outlier_detection: Option<&'a OutlierSettings>,
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
            },
            None => Policy {
                load_balancer: tp.load_balancer.as_ref(),
                connection_pool: tp.connection_pool.as_ref(),
                outlier_detection: tp.outlier_detection.as_ref(),
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
        }
    }
}

impl<'s, 'a> Clusters<'s, 'a> {
    pub fn new(scope: &'s Scope<'a>, services: &'s BTreeMap<&'s str, &'s Service>) -> Self {
        Clusters {
            scope,
            services,
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
                .filter(|ep| {
                    subset_labels
                        .is_none_or(|want| want.iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
                })
                .map(|ep| Endpoint {
                    address: ep.address.clone(),
                    port: svc.endpoint_port(ep, sp),
                    labels: ep.labels.clone(),
                    weight: ep.weight.max(1),
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
        }
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
