//! Where config comes from and how the request path reads it: the compiled [`Snapshot`] sits
//! behind an atomic pointer that requests load once and a reload swaps whole, so in-flight
//! requests finish on the config they started with and no request ever takes a lock.

pub mod standalone;

use crate::cluster::{ClusterRuntime, PoolRegistry};
use crate::endpoint::{ConnPool, PoolSettings};
use crate::route::RouteTable;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use trellis_api::model::ProxyConfig;

/// A compiled, immutable view of one config version.
pub struct Snapshot {
    pub config: Arc<ProxyConfig>,
    pub routes: RouteTable,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
    pools: PoolRegistry,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            config: Arc::new(ProxyConfig::default()),
            routes: RouteTable::default(),
            clusters: HashMap::new(),
            pools: PoolRegistry::default(),
        }
    }

    /// Compiles `config`, keeping endpoint health and connections from `previous`.
    pub fn build(config: ProxyConfig, previous: &Snapshot) -> Result<Snapshot, String> {
        let mut pools = PoolRegistry::default();
        let clusters: HashMap<String, Arc<ClusterRuntime>> = config
            .clusters
            .iter()
            .map(|c| {
                let prev = previous.clusters.get(&c.name);
                let runtime = match prev {
                    Some(p) if p.config == *c => {
                        // Unchanged: keep the same runtime, and its pools alive in the registry.
                        for ep in &p.endpoints {
                            pools.get(
                                &previous.pools,
                                &ep.endpoint.address,
                                ep.endpoint.port,
                                ep.pool.settings().clone(),
                            );
                        }
                        p.clone()
                    }
                    _ => Arc::new(ClusterRuntime::build(
                        c,
                        prev.map(|p| &**p),
                        &mut pools,
                        &previous.pools,
                    )),
                };
                (c.name.clone(), runtime)
            })
            .collect();
        let routes = RouteTable::build(&config, &clusters)?;
        Ok(Snapshot {
            config: Arc::new(config),
            routes,
            clusters,
            pools,
        })
    }
}

/// The current snapshot, plus connection pools for passthrough destinations.
pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    loaded: AtomicBool,
    apply_lock: Mutex<()>,
    passthrough: Mutex<HashMap<SocketAddr, Arc<ConnPool>>>,
}

impl Default for ConfigStore {
    fn default() -> Self {
        ConfigStore {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            loaded: AtomicBool::new(false),
            apply_lock: Mutex::new(()),
            passthrough: Mutex::new(HashMap::new()),
        }
    }
}

impl ConfigStore {
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// True once a first config has been applied.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Compiles and swaps in `config`. On error the current config stays in force.
    pub fn apply(&self, config: ProxyConfig) -> Result<(), String> {
        let _serialized = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        if self.is_loaded() && *current.config == config {
            return Ok(());
        }
        let version = config.version.clone();
        let next = Snapshot::build(config, &current)?;
        self.current.store(Arc::new(next));
        self.loaded.store(true, Ordering::Release);
        tracing::info!(%version, "config applied");
        Ok(())
    }

    /// A pool for a destination outside the registry (ALLOW_ANY passthrough).
    pub fn passthrough_pool(&self, dst: SocketAddr) -> Arc<ConnPool> {
        let mut pools = self.passthrough.lock().unwrap_or_else(|p| p.into_inner());
        if pools.len() > 4096 {
            pools.clear();
        }
        pools
            .entry(dst)
            .or_insert_with(|| {
                Arc::new(ConnPool::new(
                    &dst.ip().to_string(),
                    dst.port(),
                    PoolSettings::default(),
                ))
            })
            .clone()
    }
}
