//! Where config comes from and how the request path reads it: the compiled [`Snapshot`] sits
//! behind an atomic pointer that requests load once and a reload swaps whole, so in-flight
//! requests finish on the config they started with and no request ever takes a lock.

pub mod control;
pub mod standalone;

use crate::cluster::{ClusterRuntime, PoolRegistry};
use crate::endpoint::{ConnPool, PoolSettings};
use crate::ratelimit::RateLimiters;
use crate::route::RouteTable;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use trellis_api::model::ProxyConfig;

/// A compiled, immutable view of one config version.
pub struct Snapshot {
    pub config: Arc<ProxyConfig>,
    pub routes: RouteTable,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
    /// Local rate limit buckets, kept across reloads while their spec is unchanged.
    pub rate_limits: RateLimiters,
    pools: PoolRegistry,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            config: Arc::new(ProxyConfig::default()),
            routes: RouteTable::default(),
            clusters: HashMap::new(),
            rate_limits: RateLimiters::default(),
            pools: PoolRegistry::default(),
        }
    }

    /// Compiles `config`, keeping endpoint health, connections and rate limit buckets from
    /// `previous`.
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
        let rate_limits = RateLimiters::build(
            &config.rate_limits,
            &previous.rate_limits,
            std::time::Instant::now(),
        );
        Ok(Snapshot {
            config: Arc::new(config),
            routes,
            clusters,
            rate_limits,
            pools,
        })
    }
}

/// Where config comes from, as `/config_dump` reports it under `"source"`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// Nothing set it (the library used without a source).
    #[default]
    None,
    /// `--config`: Istio YAML on disk.
    File { path: PathBuf },
    /// `--control`: pushed by the control plane.
    Control {
        address: String,
        /// A push stream is open.
        connected: bool,
        /// The last reason the stream failed or was dropped; kept after reconnecting.
        last_error: Option<String>,
        proxy_id: String,
        /// The last update refused, and why.
        last_nack: Option<Nacked>,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Nacked {
    pub version: String,
    pub reason: String,
}

/// The current snapshot, plus connection pools for passthrough destinations.
pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    loaded: AtomicBool,
    apply_lock: Mutex<()>,
    passthrough: Mutex<HashMap<SocketAddr, Arc<ConnPool>>>,
    source: Mutex<Source>,
}

impl Default for ConfigStore {
    fn default() -> Self {
        ConfigStore {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            loaded: AtomicBool::new(false),
            apply_lock: Mutex::new(()),
            passthrough: Mutex::new(HashMap::new()),
            source: Mutex::new(Source::None),
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

    /// Where config comes from now.
    pub fn source(&self) -> Source {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces or edits the source status (the control client updates it as it goes).
    pub fn update_source(&self, edit: impl FnOnce(&mut Source)) {
        edit(&mut self.source.lock().unwrap_or_else(|p| p.into_inner()));
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
