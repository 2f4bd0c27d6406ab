//! Epochs: one consistent view of resources and registry that proxies are brought to.
//!
//! A background task follows the store and the registry. After a change it waits until changes
//! stop for [`Debounce::quiet`] (but no longer than [`Debounce::max`]), then publishes a new epoch.
//! Classes are compiled lazily, on the blocking pool, by the first session that needs them; the
//! other sessions of the class await that same compile.

use super::Debounce;
use super::class::{Bodies, ClassKey, Compiled};
use crate::registry::Registry;
use crate::store::Store;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OnceCell, Semaphore, watch};
use trellis_api::compile::MeshSettings;
use trellis_api::{ConfigSet, Service};

/// How long epochs must stop coming before freed memory is returned to the system.
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_secs(2);
/// The longest freed memory is kept while changes keep coming.
const TRIM_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Resources and services at one moment, and the compiles made from them.
pub struct Epoch {
    /// Increases by one per epoch.
    pub number: u64,
    /// The store revision this epoch was built from.
    pub revision: u64,
    config: Arc<ConfigSet>,
    services: Arc<Vec<Service>>,
    labels_in_use: BTreeSet<String>,
    classes: Mutex<HashMap<ClassKey, Arc<OnceCell<Arc<Compiled>>>>>,
    bodies: Arc<Bodies>,
    /// Compiles at once, across epochs: no more than there are cores, so with many classes the
    /// first ones finish (and their proxies converge) first, and memory holds few at a time.
    compiles: Arc<Semaphore>,
    /// Mesh-wide compile settings (the trust domain).
    mesh: Arc<MeshSettings>,
}

impl Epoch {
    fn new(
        number: u64,
        revision: u64,
        config: Arc<ConfigSet>,
        services: Vec<Service>,
        compiles: Arc<Semaphore>,
        mesh: Arc<MeshSettings>,
    ) -> Epoch {
        Epoch {
            number,
            revision,
            labels_in_use: trellis_api::compile::labels_in_use(&config),
            config,
            services: Arc::new(services),
            classes: Mutex::new(HashMap::new()),
            bodies: Arc::default(),
            compiles,
            mesh,
        }
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn class_of(&self, node: &trellis_api::NodeIdentity) -> ClassKey {
        ClassKey::of(node, &self.labels_in_use)
    }

    /// The compiled config of a class, compiling it on first use.
    pub async fn compiled(&self, key: &ClassKey) -> Arc<Compiled> {
        let cell = self
            .classes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let config = self.config.clone();
            let services = self.services.clone();
            let key = key.clone();
            let bodies = self.bodies.clone();
            let mesh = self.mesh.clone();
            let started = Instant::now();
            let permit = self.compiles.clone().acquire_owned().await;
            let compiled = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                Arc::new(Compiled::build(&config, &services, &key, &bodies, &mesh))
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            tracing::debug!(
                epoch = self.number,
                version = %compiled.version,
                resources = compiled.resources.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "compiled"
            );
            compiled
        })
        .await
        .clone()
    }
}

/// Once epochs stop coming for a while (or, under constant change, every so often), the previous
/// compiles and the changes' garbage are free: hand that memory back, off the path of any push.
async fn release_when_quiet(mut epochs: watch::Receiver<Arc<Epoch>>) {
    while epochs.changed().await.is_ok() {
        let first = Instant::now();
        loop {
            let wait = TRIM_AFTER.min(TRIM_AT_LEAST_EVERY.saturating_sub(first.elapsed()));
            tokio::select! {
                () = tokio::time::sleep(wait) => break,
                changed = epochs.changed() => if changed.is_err() { return },
            }
        }
        let _ = tokio::task::spawn_blocking(crate::memory::release_freed).await;
    }
}

/// Publishes a new epoch after each (debounced) change of the store or the registry.
pub fn follow(
    store: Arc<Store>,
    registry: Arc<dyn Registry>,
    debounce: Debounce,
    mesh: MeshSettings,
) -> watch::Receiver<Arc<Epoch>> {
    let mesh = Arc::new(mesh);
    let mut revisions = store.subscribe();
    let mut workloads = registry.subscribe();
    let snapshot = store.snapshot();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let compiles = Arc::new(Semaphore::new(cores));
    let first = Epoch::new(
        1,
        snapshot.revision,
        snapshot.config.clone(),
        registry.services(&snapshot.config),
        compiles.clone(),
        mesh.clone(),
    );
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(release_when_quiet(rx.clone()));
    tokio::spawn(async move {
        let mut number = 1;
        loop {
            tokio::select! {
                changed = revisions.changed() => if changed.is_err() { return },
                changed = workloads.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
            let changed_at = Instant::now();
            // Gather the rest of a burst.
            loop {
                let quiet = tokio::time::sleep(debounce.quiet);
                let remaining = debounce.max.saturating_sub(changed_at.elapsed());
                if remaining.is_zero() {
                    break;
                }
                tokio::select! {
                    () = quiet => break,
                    () = tokio::time::sleep(remaining) => break,
                    r = revisions.changed() => if r.is_err() { break },
                    r = workloads.changed() => if r.is_err() { break },
                }
            }
            revisions.borrow_and_update();
            workloads.borrow_and_update();
            number += 1;
            let snapshot = store.snapshot();
            let services = registry.services(&snapshot.config);
            let epoch = Epoch::new(
                number,
                snapshot.revision,
                snapshot.config.clone(),
                services,
                compiles.clone(),
                mesh.clone(),
            );
            tracing::debug!(epoch = number, revision = epoch.revision, "new epoch");
            if tx.send(Arc::new(epoch)).is_err() {
                return;
            }
        }
    });
    rx
}
