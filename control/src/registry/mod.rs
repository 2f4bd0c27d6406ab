//! The service registry: which services exist and where their endpoints are.
//!
//! The compiler needs one list of [`Service`]s. Where they come from depends on the platform: in
//! local mode from ServiceEntry resources and from proxies that register their workload when they
//! connect ([`LocalRegistry`]); on Kubernetes (later) from Services and EndpointSlices. The push
//! server only sees the [`Registry`] trait.

mod local;

pub use local::{LocalRegistry, Workload};

use std::collections::BTreeMap;
use tokio::sync::watch;
use trellis_api::{ConfigSet, Service};

/// A source of services and endpoints.
pub trait Registry: Send + Sync + 'static {
    /// Every service known now, given the current resources (ServiceEntries declare services,
    /// and their workload selectors pick registered workloads as endpoints).
    fn services(&self, config: &ConfigSet) -> Vec<Service>;

    /// Changes whenever [`Registry::services`] may return something different for the same
    /// resources (a workload came or went).
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// Registered workloads, for the API and console.
    fn workloads(&self) -> Vec<Workload>;

    /// A connecting proxy's workload. Registries that learn workloads elsewhere (Kubernetes) ignore
    /// it; those that take it return a generation for [`Registry::disconnected`].
    fn register(&self, workload: Workload) -> Option<u64> {
        let _ = workload;
        None
    }

    /// The proxy of a registration (`generation` from [`Registry::register`]) went away.
    fn disconnected(&self, proxy_id: &str, generation: u64) {
        let _ = (proxy_id, generation);
    }
}

/// Whether every selector label is present on `labels` with the same value.
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
