//! Local mode's registry: ServiceEntries plus the workloads of connected proxies.
//!
//! A proxy that connects with an inbound address registers its workload, as Istio's WorkloadEntry
//! auto-registration does for VMs. A ServiceEntry whose `workloadSelector` matches the workload's
//! labels (in the same namespace) gets it as an endpoint. A workload no ServiceEntry selects forms
//! an implicit service `<app>.<namespace>.svc.cluster.local` (`app` label, else the workload name)
//! on its application port, the way a Kubernetes Service named after the app would, so a local
//! mesh needs no YAML to start routing. When a proxy disconnects its workload stays for a grace
//! period, so a proxy restart or a control-plane blip does not empty a service.

use super::{Registry, labels_match};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use trellis_api::registry::{ServicePort, WorkloadEndpoint, port_protocol};
use trellis_api::resources::{Kind, Location, Resolution, Spec};
use trellis_api::{ConfigSet, Service};

/// A workload registered by its proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// The registering proxy's id.
    pub proxy_id: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    /// Where other proxies reach the workload: its proxy's inbound listener.
    pub address: SocketAddr,
    /// The application's port and protocol name (Istio port naming).
    pub app_port: u16,
    pub app_protocol: String,
    /// False during the grace period after its proxy disconnected.
    pub connected: bool,
}

struct Entry {
    workload: Workload,
    /// Bumped on every (re)registration, so a stale removal timer leaves a new registration alone.
    generation: u64,
}

/// The local-mode registry.
pub struct LocalRegistry {
    grace: Duration,
    state: Arc<State>,
}

/// What removal timers share with the registry.
struct State {
    entries: Mutex<HashMap<String, Entry>>,
    changed: watch::Sender<u64>,
}

impl LocalRegistry {
    pub fn new(grace: Duration) -> Arc<LocalRegistry> {
        Arc::new(LocalRegistry {
            grace,
            state: Arc::new(State {
                entries: Mutex::new(HashMap::new()),
                changed: watch::channel(0).0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.state.lock()
    }
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    fn expire(&self, proxy_id: &str, generation: u64) {
        let mut entries = self.lock();
        let expired = entries
            .get(proxy_id)
            .is_some_and(|e| e.generation == generation && !e.workload.connected);
        if expired {
            entries.remove(proxy_id);
            drop(entries);
            tracing::info!(proxy = proxy_id, "workload removed after its proxy left");
            self.notify();
        }
    }
}

impl Registry for LocalRegistry {
    fn register(&self, workload: Workload) -> Option<u64> {
        let mut entries = self.lock();
        let generation = entries
            .get(&workload.proxy_id)
            .map_or(0, |e| e.generation + 1);
        let unchanged = entries
            .get(&workload.proxy_id)
            .is_some_and(|e| e.workload == workload);
        // A proxy that left and a new one now listening at its address: the old one cannot be
        // there any more, so its grace period ends now (else traffic would still be sent to it
        // with its old labels, e.g. its old mTLS mode, until the grace period ran out).
        let before = entries.len();
        entries.retain(|id, e| {
            *id == workload.proxy_id
                || e.workload.connected
                || e.workload.address != workload.address
        });
        let replaced = entries.len() != before;
        entries.insert(
            workload.proxy_id.clone(),
            Entry {
                workload,
                generation,
            },
        );
        drop(entries);
        if !unchanged || replaced {
            self.state.notify();
        }
        Some(generation)
    }

    /// Keeps the workload for the grace period, then drops it unless the proxy registered again.
    fn disconnected(&self, proxy_id: &str, generation: u64) {
        {
            let mut entries = self.lock();
            match entries.get_mut(proxy_id) {
                Some(e) if e.generation == generation => e.workload.connected = false,
                _ => return,
            }
        }
        let state = self.state.clone();
        let id = proxy_id.to_string();
        let grace = self.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            state.expire(&id, generation);
        });
    }

    fn services(&self, config: &ConfigSet) -> Vec<Service> {
        let mut services = trellis_api::services_from_service_entries(config);
        let mut workloads: Vec<Workload> =
            self.lock().values().map(|e| e.workload.clone()).collect();
        workloads.sort_by(|a, b| a.proxy_id.cmp(&b.proxy_id));
        let mut selected = vec![false; workloads.len()];

        for resource in config.of_kind(Kind::ServiceEntry) {
            let Spec::ServiceEntry(se) = &resource.spec else {
                continue;
            };
            let Some(selector) = &se.workload_selector else {
                continue;
            };
            let hosts: Vec<String> = se
                .hosts
                .iter()
                .map(|h| trellis_api::host::normalize(h))
                .collect();
            for (i, w) in workloads.iter().enumerate() {
                if w.namespace != resource.namespace() || !labels_match(&selector.labels, &w.labels)
                {
                    continue;
                }
                selected[i] = true;
                for service in services
                    .iter_mut()
                    .filter(|s| s.namespace == resource.namespace() && hosts.contains(&s.hostname))
                {
                    let ports = service
                        .ports
                        .iter()
                        .map(|p| (p.name.clone(), w.address.port()))
                        .collect();
                    service.endpoints.push(endpoint(w, ports));
                }
            }
        }

        let mut implicit: BTreeMap<String, Service> = BTreeMap::new();
        for (w, _) in workloads.iter().zip(&selected).filter(|(_, s)| !**s) {
            let app = w.labels.get("app").unwrap_or(&w.name);
            let hostname = format!("{app}.{}.svc.cluster.local", w.namespace);
            let port_name = if w.app_protocol.is_empty() {
                format!("http-{}", w.app_port)
            } else {
                w.app_protocol.to_ascii_lowercase()
            };
            let service = implicit.entry(hostname.clone()).or_insert_with(|| Service {
                hostname,
                namespace: w.namespace.clone(),
                addresses: Vec::new(),
                ports: Vec::new(),
                endpoints: Vec::new(),
                resolution: Resolution::Static,
                location: Location::MeshInternal,
                export_to: Vec::new(),
            });
            if service.port(w.app_port).is_none() {
                service.ports.push(ServicePort {
                    number: w.app_port,
                    protocol: port_protocol(None, &port_name),
                    name: port_name.clone(),
                    target_port: None,
                });
            }
            let port_name = service
                .port(w.app_port)
                .map(|p| p.name.clone())
                .unwrap_or(port_name);
            service
                .endpoints
                .push(endpoint(w, BTreeMap::from([(port_name, w.address.port())])));
        }
        // A ServiceEntry for the same host wins over an implicit service.
        let implicit: Vec<Service> = implicit
            .into_values()
            .filter(|i| !services_contains(&services, &i.hostname))
            .collect();
        services.extend(implicit);
        services
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.state.changed.subscribe()
    }

    fn workloads(&self) -> Vec<Workload> {
        let mut out: Vec<Workload> = self.lock().values().map(|e| e.workload.clone()).collect();
        out.sort_by(|a, b| a.proxy_id.cmp(&b.proxy_id));
        out
    }
}

fn services_contains(services: &[Service], hostname: &str) -> bool {
    services.iter().any(|s| s.hostname == hostname)
}

/// A registered workload as an endpoint. Its proxy is a sidecar, so it carries Istio's
/// `security.istio.io/tlsMode: istio` (as the injector labels pods) and auto mTLS reaches it
/// over mutual TLS, unless the workload's own labels say otherwise.
fn endpoint(w: &Workload, ports: BTreeMap<String, u16>) -> WorkloadEndpoint {
    let mut labels = w.labels.clone();
    labels
        .entry(trellis_api::model::TLS_MODE_LABEL.to_string())
        .or_insert_with(|| "istio".to_string());
    WorkloadEndpoint {
        address: w.address.ip().to_string(),
        ports,
        labels,
        weight: 1,
        service_account: (!w.service_account.is_empty()).then(|| w.service_account.clone()),
    }
}

#[cfg(test)]
mod tests;
