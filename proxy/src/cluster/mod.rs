//! A cluster is one destination (service port, optionally a subset): its endpoints with their
//! health, the load balancer over them, and the circuit breakers in front of them.

pub mod breaker;
pub mod lb;
pub mod outlier;

use crate::endpoint::{ConnPool, MeshTarget, PoolSettings, Transport, UpstreamProtocol};
use breaker::Breakers;
use lb::Balancer;
use outlier::{Outcome, OutlierState, now_ms};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use trellis_api::model::{self, ClientTlsMode, Protocol};
use trellis_identity::SpiffeId;
use trellis_identity::tls::mesh_server_name;

/// One endpoint as seen by one cluster.
#[derive(Debug)]
pub struct EndpointState {
    pub endpoint: model::Endpoint,
    /// `address:port` as reported in telemetry and `/clusters`.
    pub display: Arc<str>,
    pub pool: Arc<ConnPool>,
    active: AtomicU32,
    pub outlier: OutlierState,
}

impl EndpointState {
    pub fn active_requests(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }
}

/// Counts a request as active on its endpoint (for least-request balancing) while it lives.
#[derive(Debug)]
pub struct ActiveRequest(Arc<EndpointState>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connection pools by endpoint and settings, carried from one config snapshot to the next so a
/// reload keeps established connections.
#[derive(Default)]
pub struct PoolRegistry(HashMap<(String, u16, PoolSettings), Arc<ConnPool>>);

impl std::hash::Hash for PoolSettings {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.connect_timeout.hash(state);
        self.idle_timeout.hash(state);
        self.max_requests_per_connection.hash(state);
        self.transport.hash(state);
    }
}

impl PoolRegistry {
    pub fn get(
        &mut self,
        previous: &PoolRegistry,
        host: &str,
        port: u16,
        settings: PoolSettings,
    ) -> Arc<ConnPool> {
        let key = (host.to_string(), port, settings);
        if let Some(pool) = self.0.get(&key) {
            return pool.clone();
        }
        let pool = previous
            .0
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Arc::new(ConnPool::new(host, port, key.2.clone())));
        self.0.insert(key, pool.clone());
        pool
    }
}

/// How connections to `ep` are made under the cluster's TLS settings (Istio's ClientTLSSettings,
/// AUTO decided per endpoint); SIMPLE and MUTUAL originate TLS (`endpoint/origination.rs`).
fn transport(config: &model::Cluster, ep: &model::Endpoint) -> Transport {
    match config.tls.mode_for(ep) {
        ClientTlsMode::IstioMutual => {
            // The rule's subjectAltNames replace the endpoint's own identity (as Istio's).
            let names: Vec<&str> = if config.tls.subject_alt_names.is_empty() {
                ep.identity.as_deref().into_iter().collect()
            } else {
                config
                    .tls
                    .subject_alt_names
                    .iter()
                    .map(String::as_str)
                    .collect()
            };
            let mut expected: Vec<SpiffeId> = names
                .iter()
                .filter_map(|n| match n.parse::<SpiffeId>() {
                    Ok(id) => Some(id),
                    Err(e) => {
                        tracing::warn!(cluster = %config.name, name = %n, error = %e, "expected server identity is not a SPIFFE ID; ignored");
                        None
                    }
                })
                .collect();
            expected.sort();
            expected.dedup();
            if expected.is_empty() {
                tracing::warn!(cluster = %config.name, endpoint = %ep.address, "mutual TLS endpoint with no known identity (no serviceAccount, no subjectAltNames): connections to it fail");
            }
            let sni = config.tls.sni.clone().unwrap_or_else(|| {
                match mesh_server_name(config.port, config.subset.as_deref(), &config.service) {
                    Ok(name) => name.to_str().into_owned(),
                    Err(e) => {
                        // Left empty, so every handshake fails as an invalid SNI (fail closed).
                        tracing::warn!(cluster = %config.name, error = %e, "no valid SNI for this mutual TLS destination: connections to it fail");
                        String::new()
                    }
                }
            });
            Transport::Mesh(MeshTarget {
                expected,
                sni,
                required: config.tls.mode == ClientTlsMode::IstioMutual,
            })
        }
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {
            crate::endpoint::origination::transport(config, ep)
        }
        ClientTlsMode::Auto | ClientTlsMode::Disable => Transport::Plain,
    }
}

#[derive(Debug)]
pub struct ClusterRuntime {
    /// The cluster name, shared with every request record that names it.
    pub name: Arc<str>,
    /// What outbound requests to this cluster tell the next proxy about their service
    /// (`x-trellis-peer-service`); `None` outside the mesh.
    pub peer_service: Option<http::HeaderValue>,
    pub config: model::Cluster,
    pub endpoints: Vec<Arc<EndpointState>>,
    balancer: Balancer,
    pub breakers: Arc<Breakers>,
}

impl ClusterRuntime {
    /// Builds the runtime for `config`, keeping endpoint health from `previous` (the same-named
    /// cluster of the last snapshot) where the endpoint is still there.
    pub fn build(
        config: &model::Cluster,
        previous: Option<&ClusterRuntime>,
        pools: &mut PoolRegistry,
        previous_pools: &PoolRegistry,
    ) -> ClusterRuntime {
        let settings = PoolSettings {
            connect_timeout: Duration::from_millis(
                config.connection_pool.connect_timeout_ms.max(1),
            ),
            idle_timeout: Duration::from_millis(
                config
                    .connection_pool
                    .idle_timeout_ms
                    .unwrap_or(3_600_000)
                    .max(1),
            ),
            max_requests_per_connection: config
                .connection_pool
                .max_requests_per_connection
                .filter(|n| *n > 0),
            transport: Transport::Plain,
        };
        let endpoints = config
            .endpoints
            .iter()
            .map(|ep| {
                let settings = PoolSettings {
                    transport: transport(config, ep),
                    ..settings.clone()
                };
                let pool = pools.get(previous_pools, &ep.address, ep.port, settings);
                let display: Arc<str> = Arc::from(pool.authority());
                match previous.and_then(|p| p.endpoints.iter().find(|e| e.endpoint == *ep)) {
                    Some(kept) if Arc::ptr_eq(&kept.pool, &pool) => kept.clone(),
                    _ => Arc::new(EndpointState {
                        endpoint: ep.clone(),
                        display,
                        pool,
                        active: AtomicU32::new(0),
                        outlier: OutlierState::default(),
                    }),
                }
            })
            .collect::<Vec<_>>();
        let names: Vec<(String, u32)> = endpoints
            .iter()
            .map(|e| (e.display.to_string(), e.endpoint.weight))
            .collect();
        let breakers = match previous {
            Some(p) if p.config.connection_pool == config.connection_pool => p.breakers.clone(),
            _ => Arc::new(Breakers::new(&config.connection_pool)),
        };
        ClusterRuntime {
            name: Arc::from(config.name.as_str()),
            peer_service: crate::telemetry::peer::destination_service_value(&config.name),
            balancer: Balancer::build(&config.load_balancer, &names),
            config: config.clone(),
            endpoints,
            breakers,
        }
    }

    /// A one-endpoint cluster for a destination outside the registry (ALLOW_ANY).
    pub fn passthrough(dst: std::net::SocketAddr, pool: Arc<ConnPool>) -> ClusterRuntime {
        let config = model::Cluster {
            name: "PassthroughCluster".into(),
            service: dst.ip().to_string(),
            port: dst.port(),
            load_balancer: model::LoadBalancer::RoundRobin,
            ..Default::default()
        };
        let endpoint = model::Endpoint {
            address: dst.ip().to_string(),
            port: dst.port(),
            labels: Default::default(),
            weight: 1,
            ..Default::default()
        };
        ClusterRuntime {
            balancer: Balancer::build(&config.load_balancer, &[(dst.to_string(), 1)]),
            endpoints: vec![Arc::new(EndpointState {
                endpoint,
                display: Arc::from(pool.authority()),
                pool,
                active: AtomicU32::new(0),
                outlier: OutlierState::default(),
            })],
            breakers: Arc::new(Breakers::new(&config.connection_pool)),
            name: Arc::from(config.name.as_str()),
            peer_service: None,
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The HTTP version to speak upstream, given what the client spoke.
    pub fn upstream_protocol(&self, downstream_http2: bool) -> UpstreamProtocol {
        match self.config.protocol {
            Protocol::Http2 | Protocol::Grpc => UpstreamProtocol::Http2,
            Protocol::Http => UpstreamProtocol::Http1,
            Protocol::Unspecified | Protocol::Tcp if downstream_http2 => UpstreamProtocol::Http2,
            _ => UpstreamProtocol::Http1,
        }
    }

    pub fn uses_hash(&self) -> Option<&model::HashKey> {
        match &self.config.load_balancer {
            model::LoadBalancer::ConsistentHash(ch) => Some(&ch.key),
            _ => None,
        }
    }

    /// Picks an endpoint and counts the request on it; `None` when no endpoint is healthy.
    pub fn pick(&self, hash: Option<u64>) -> Option<(Arc<EndpointState>, ActiveRequest)> {
        // Without outlier detection nothing is ever ejected: skip the clock.
        let now = if self.config.outlier_detection.is_some() {
            now_ms()
        } else {
            0
        };
        let ignore_ejections = now == 0 || self.in_panic(now);
        let eps = &self.endpoints;
        let i = self.balancer.pick(
            eps.len(),
            |i| ignore_ejections || !eps[i].outlier.is_ejected(now),
            |i| eps[i].active_requests(),
            hash,
        )?;
        let ep = eps[i].clone();
        ep.active.fetch_add(1, Ordering::Relaxed);
        Some((ep.clone(), ActiveRequest(ep)))
    }

    /// Picks like [`Self::pick`], preferring endpoints not in `tried`: Istio's default retry host
    /// predicate (`previous_hosts`, up to 5 selection attempts).
    pub fn pick_avoiding(
        &self,
        hash: Option<u64>,
        tried: &[Arc<EndpointState>],
    ) -> Option<(Arc<EndpointState>, ActiveRequest)> {
        let mut last = None;
        for _ in 0..5 {
            let picked = self.pick(hash)?;
            if !tried.iter().any(|t| Arc::ptr_eq(t, &picked.0)) {
                return Some(picked);
            }
            last = Some(picked);
        }
        last
    }

    /// Below `minHealthPercent` healthy endpoints, ejections are ignored (Envoy's panic mode).
    fn in_panic(&self, now: u64) -> bool {
        let Some(od) = &self.config.outlier_detection else {
            return false;
        };
        if od.min_health_percent == 0 || self.endpoints.is_empty() {
            return false;
        }
        let healthy = self
            .endpoints
            .iter()
            .filter(|e| !e.outlier.is_ejected(now))
            .count();
        healthy * 100 < self.endpoints.len() * od.min_health_percent as usize
    }

    /// Feeds an attempt's outcome to outlier detection, ejecting the endpoint when it crossed a
    /// threshold and the cluster's ejection cap allows (at least one endpoint may always go).
    pub fn report(&self, ep: &EndpointState, outcome: Outcome) {
        let Some(od) = &self.config.outlier_detection else {
            return;
        };
        if !ep.outlier.observe(outcome, od) {
            return;
        }
        let now = now_ms();
        if ep.outlier.is_ejected(now) {
            return;
        }
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.outlier.is_ejected(now))
            .count();
        let cap = (self.endpoints.len() * od.max_ejection_percent as usize / 100).max(1);
        if ejected < cap {
            tracing::info!(cluster = %self.config.name, endpoint = %ep.display, "outlier detection ejected endpoint");
            ep.outlier.eject(od, now);
        }
    }

    /// State for `/clusters`.
    pub fn status(&self) -> serde_json::Value {
        let now = now_ms();
        serde_json::json!({
            "name": self.config.name,
            "service": self.config.service,
            "port": self.config.port,
            "subset": self.config.subset,
            "endpoints": self.endpoints.iter().map(|e| {
                let ejected = e.outlier.is_ejected(now);
                serde_json::json!({
                    "address": &*e.display,
                    "labels": e.endpoint.labels,
                    "weight": e.endpoint.weight,
                    "health": if ejected { "ejected" } else { "healthy" },
                    "ejected_for_ms": if ejected { e.outlier.ejected_until().saturating_sub(now) } else { 0 },
                    "ejections": e.outlier.ejections(),
                    "active_requests": e.active_requests(),
                })
            }).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh_target(subset: Option<&str>, sni: Option<&str>) -> MeshTarget {
        let config = model::Cluster {
            name: "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
            service: "reviews.default.svc.cluster.local".into(),
            port: 9080,
            subset: subset.map(str::to_string),
            tls: Box::new(model::ClusterTls {
                mode: ClientTlsMode::IstioMutual,
                sni: sni.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ep = model::Endpoint {
            address: "10.0.0.1".into(),
            port: 9080,
            identity: Some(model::spiffe_id("default", "reviews")),
            ..Default::default()
        };
        match transport(&config, &ep) {
            Transport::Mesh(target) => target,
            other => panic!("ISTIO_MUTUAL must be mesh TLS, not {other:?}"),
        }
    }

    #[test]
    fn istio_mutual_sends_istios_sni_and_expects_the_endpoint_identity() {
        let target = mesh_target(Some("v2"), None);
        assert_eq!(
            target.sni,
            "outbound_.9080_.v2_.reviews.default.svc.cluster.local"
        );
        assert!(target.required);
        assert_eq!(
            target.expected,
            ["spiffe://cluster.local/ns/default/sa/reviews"
                .parse::<SpiffeId>()
                .unwrap()]
        );
        // No subset (or an empty one): the shared form, whatever identity spells it as.
        let no_subset = mesh_server_name(9080, None, "reviews.default.svc.cluster.local").unwrap();
        assert_eq!(mesh_target(None, None).sni, no_subset.to_str());
        assert_eq!(mesh_target(Some(""), None).sni, no_subset.to_str());
        assert_eq!(
            mesh_target(Some("v2"), Some("reviews.example")).sni,
            "reviews.example"
        );
    }
}
