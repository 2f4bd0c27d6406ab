//! Compile classes: proxies that must get the same config share one compile.
//!
//! What the compiler produces for a proxy depends only on its namespace and on the values of the
//! labels that some resource selects on ([`trellis_api::compile::labels_in_use`]). Proxies that
//! agree on those form a class; the class is compiled once per epoch and its virtual hosts and
//! clusters are encoded once, then shared by reference with every session of the class.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use trellis_api::compile::MeshSettings;
use trellis_api::model::OutboundTrafficPolicy;
use trellis_api::push::{Resource, ResourceRef, ResourceType};
use trellis_api::{ConfigSet, NodeIdentity, Service};

/// Namespace plus the labels that matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClassKey {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl ClassKey {
    pub fn of(node: &NodeIdentity, labels_in_use: &BTreeSet<String>) -> ClassKey {
        ClassKey {
            namespace: node.namespace.clone(),
            labels: node
                .labels
                .iter()
                .filter(|(k, _)| labels_in_use.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// Identifies a pushed resource within one proxy's config.
pub type ResourceId = (ResourceType, String);

/// One resource, encoded, with a hash of its body to compare against what a proxy holds.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub hash: u64,
    pub resource: Resource,
}

/// A class's compiled config, ready to send.
#[derive(Debug)]
pub struct Compiled {
    /// [`trellis_api::ProxyConfig::content_version`] of the config.
    pub version: String,
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    pub authorization: trellis_api::authz::PolicySet,
    pub inbound_mtls: trellis_api::model::InboundMtls,
    pub rate_limits: trellis_api::model::RateLimits,
    pub resources: HashMap<ResourceId, Encoded>,
    /// Deltas to this config, by the version they start from: every proxy of the class moving
    /// between the same two versions shares one.
    deltas: Mutex<HashMap<String, Arc<Delta>>>,
}

/// What turns one compiled config into another.
#[derive(Debug, Default)]
pub struct Delta {
    /// Added or changed resources (all of them for a full update).
    pub resources: Vec<Resource>,
    pub removed: Vec<ResourceRef>,
}

/// Encoded resource bodies shared between the classes of an epoch: a service whose virtual host
/// and clusters come out the same for several classes is held once, not once per class.
#[derive(Default)]
pub struct Bodies {
    by_hash: Mutex<HashMap<u64, bytes::Bytes>>,
}

impl Bodies {
    /// `body`, or an equal one already held; with its hash.
    fn intern(&self, body: bytes::Bytes) -> (u64, bytes::Bytes) {
        let hash = xxhash_rust::xxh64::xxh64(&body, 0);
        let mut by_hash = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        match by_hash.get(&hash) {
            Some(held) if *held == body => (hash, held.clone()),
            Some(_) => (hash, body),
            None => {
                by_hash.insert(hash, body.clone());
                (hash, body)
            }
        }
    }
}

impl Compiled {
    /// Compiles a class of `mesh` (whose trust domain is the CA's `--trust-domain`).
    pub fn build(
        config: &ConfigSet,
        services: &[Service],
        key: &ClassKey,
        bodies: &Bodies,
        mesh: &MeshSettings,
    ) -> Compiled {
        let node = NodeIdentity {
            namespace: key.namespace.clone(),
            labels: key.labels.clone(),
            ..NodeIdentity::default()
        };
        let compiled = trellis_api::compile::compile_in(config, services, &node, mesh);
        let mut resources =
            HashMap::with_capacity(compiled.virtual_hosts.len() + compiled.clusters.len());
        let encoded = compiled
            .virtual_hosts
            .iter()
            .map(Resource::virtual_host)
            .chain(compiled.clusters.iter().map(Resource::cluster));
        for mut resource in encoded {
            let (hash, body) = bodies.intern(std::mem::take(&mut resource.body));
            resource.body = body;
            let id = (resource.r#type(), resource.name.clone());
            resources.insert(id, Encoded { hash, resource });
        }
        Compiled {
            version: compiled.version,
            outbound_traffic_policy: compiled.outbound_traffic_policy,
            authorization: compiled.authorization,
            inbound_mtls: compiled.inbound_mtls,
            rate_limits: compiled.rate_limits,
            resources,
            deltas: Mutex::new(HashMap::new()),
        }
    }

    /// The resources to send to a proxy holding `from` (everything when it holds nothing).
    pub fn delta_from(&self, from: Option<&Compiled>) -> Arc<Delta> {
        let key = from.map(|f| f.version.clone()).unwrap_or_default();
        let mut deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(delta) = deltas.get(&key) {
            return delta.clone();
        }
        let held = |id: &ResourceId| from.and_then(|f| f.resources.get(id)).map(|e| e.hash);
        let mut resources: Vec<Resource> = self
            .resources
            .iter()
            .filter(|(id, encoded)| held(id) != Some(encoded.hash))
            .map(|(_, encoded)| encoded.resource.clone())
            .collect();
        resources.sort_by(|a, b| (a.r#type, &a.name).cmp(&(b.r#type, &b.name)));
        let mut removed: Vec<ResourceRef> = from
            .map(|f| {
                f.resources
                    .keys()
                    .filter(|id| !self.resources.contains_key(*id))
                    .map(|(kind, name)| ResourceRef {
                        r#type: *kind as i32,
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        removed.sort_by(|a, b| (a.r#type, &a.name).cmp(&(b.r#type, &b.name)));
        let delta = Arc::new(Delta { resources, removed });
        // Proxies are at most a few versions behind; an old entry is only ever wanted again by a
        // proxy that reconnects, which gets a full update anyway.
        if deltas.len() >= 16 {
            deltas.clear();
        }
        deltas.insert(key, delta.clone());
        delta
    }
}
