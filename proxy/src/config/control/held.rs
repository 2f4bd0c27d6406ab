//! The resources the client holds: exactly what it last acknowledged, kept here rather than
//! re-derived from the store, so a delta applies to what the control plane believes this proxy
//! has. Updates are applied to a copy, so a refused update leaves nothing half applied.

use std::collections::BTreeMap;
use trellis_api::model::{Cluster, HashAlgorithm, LoadBalancer, NodeIdentity, ProxyConfig};
use trellis_api::model::{ProxyMeta, VirtualHost};
use trellis_api::push::{self, ConfigUpdate, Decoded, ResourceType};

/// Most virtual hosts or clusters one proxy accepts (each), against unbounded pushes.
pub const MAX_RESOURCES: usize = 100_000;

/// Largest Maglev table accepted (Envoy's limit); larger ones would take memory without bound.
const MAX_MAGLEV_TABLE: u64 = 5_000_011;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Held {
    /// The version last acknowledged (what the proxy serves); empty before the first one.
    pub version: String,
    meta: ProxyMeta,
    virtual_hosts: BTreeMap<String, VirtualHost>,
    clusters: BTreeMap<String, Cluster>,
}

impl Held {
    /// Nothing held yet; the node identity is the proxy's own until the control plane sends one.
    pub fn new(node: NodeIdentity) -> Held {
        Held {
            meta: ProxyMeta {
                node,
                ..ProxyMeta::default()
            },
            ..Held::default()
        }
    }

    /// `Some(base)` when `update` is a delta on a version this proxy does not hold.
    pub fn out_of_sync<'a>(&self, update: &'a ConfigUpdate) -> Option<&'a str> {
        let base = update.base_version.as_str();
        (!base.is_empty() && base != self.version).then_some(base)
    }

    /// What the proxy would hold after `update` (full or delta; the base is checked by
    /// [`out_of_sync`](Self::out_of_sync)), or why the update cannot be applied.
    pub fn next(&self, update: &ConfigUpdate) -> Result<Held, String> {
        let mut next = if update.base_version.is_empty() {
            Held {
                meta: self.meta.clone(),
                ..Held::default()
            }
        } else {
            self.clone()
        };
        next.version.clone_from(&update.version);
        if !update.meta.is_empty() {
            next.meta = push::decode_meta(&update.meta)?;
        }
        for resource in &update.resources {
            match push::decode(resource)? {
                Decoded::VirtualHost(vh) => {
                    next.virtual_hosts.insert(vh.name.clone(), vh);
                }
                Decoded::Cluster(c) => {
                    check_cluster(&c)?;
                    next.clusters.insert(c.name.clone(), c);
                }
            }
        }
        for gone in &update.removed {
            match ResourceType::try_from(gone.r#type) {
                Ok(ResourceType::VirtualHost) => {
                    next.virtual_hosts.remove(&gone.name);
                }
                Ok(ResourceType::Cluster) => {
                    next.clusters.remove(&gone.name);
                }
                _ => {
                    return Err(format!(
                        "removed {:?}: unknown type {}",
                        gone.name, gone.r#type
                    ));
                }
            }
        }
        for (what, n) in [
            ("virtual hosts", next.virtual_hosts.len()),
            ("clusters", next.clusters.len()),
        ] {
            if n > MAX_RESOURCES {
                return Err(format!("{n} {what}: more than {MAX_RESOURCES}"));
            }
        }
        Ok(next)
    }

    /// The config these resources make.
    pub fn config(&self) -> ProxyConfig {
        let mut config = ProxyConfig {
            version: self.version.clone(),
            node: self.meta.node.clone(),
            virtual_hosts: self.virtual_hosts.values().cloned().collect(),
            clusters: self.clusters.values().cloned().collect(),
            outbound_traffic_policy: self.meta.outbound_traffic_policy,
            authorization: self.meta.authorization.clone(),
            inbound_mtls: self.meta.inbound_mtls.clone(),
            rate_limits: self.meta.rate_limits.clone(),
        };
        config.canonicalize();
        config
    }
}

/// Rejects cluster settings the proxy cannot build in bounded time and memory. The compiler
/// validates these for YAML it reads; a pushed cluster has not been through that.
fn check_cluster(c: &Cluster) -> Result<(), String> {
    if let LoadBalancer::ConsistentHash(ch) = &c.load_balancer
        && let HashAlgorithm::Maglev { table_size } = ch.algorithm
        && (table_size > MAX_MAGLEV_TABLE || !is_prime(table_size))
    {
        return Err(format!(
            "cluster {:?}: maglev table size {table_size} must be a prime of at most {MAX_MAGLEV_TABLE}",
            c.name
        ));
    }
    Ok(())
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_api::model::{ConsistentHash, HashKey, OutboundTrafficPolicy};
    use trellis_api::push::{Resource, ResourceRef};

    fn vh(name: &str) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            ..VirtualHost::default()
        }
    }

    fn cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            ..Cluster::default()
        }
    }

    fn update(version: &str, base: &str, resources: Vec<Resource>) -> ConfigUpdate {
        ConfigUpdate {
            version: version.into(),
            base_version: base.into(),
            resources,
            ..ConfigUpdate::default()
        }
    }

    fn names(config: &ProxyConfig) -> (Vec<&str>, Vec<&str>) {
        (
            config
                .virtual_hosts
                .iter()
                .map(|v| v.name.as_str())
                .collect(),
            config.clusters.iter().map(|c| c.name.as_str()).collect(),
        )
    }

    #[test]
    fn full_replaces_delta_upserts_and_removes() {
        let node = NodeIdentity {
            workload: "w".into(),
            ..NodeIdentity::default()
        };
        let held = Held::new(node.clone());
        let full = update(
            "1",
            "",
            vec![
                Resource::virtual_host(&vh("b:80")),
                Resource::virtual_host(&vh("a:80")),
                Resource::cluster(&cluster("c1")),
            ],
        );
        let held = held.next(&full).unwrap();
        let config = held.config();
        assert_eq!(config.version, "1");
        assert_eq!(config.node, node, "no meta: the proxy's own identity");
        assert_eq!(names(&config), (vec!["a:80", "b:80"], vec!["c1"]));

        let mut delta = update("2", "1", vec![Resource::cluster(&cluster("c2"))]);
        delta.removed.push(ResourceRef {
            r#type: ResourceType::VirtualHost as i32,
            name: "a:80".into(),
        });
        delta.meta = push::encode_meta(&ProxyMeta {
            outbound_traffic_policy: OutboundTrafficPolicy::RegistryOnly,
            ..ProxyMeta::default()
        });
        assert_eq!(held.out_of_sync(&delta), None);
        let next = held.next(&delta).unwrap();
        let config = next.config();
        assert_eq!(names(&config), (vec!["b:80"], vec!["c1", "c2"]));
        assert_eq!(
            config.outbound_traffic_policy,
            OutboundTrafficPolicy::RegistryOnly
        );

        let again = next.next(&update("3", "", vec![])).unwrap();
        assert_eq!(names(&again.config()), (vec![], vec![]));
        assert_eq!(
            again.config().outbound_traffic_policy,
            OutboundTrafficPolicy::RegistryOnly,
            "a full update without meta keeps the meta held"
        );
    }

    #[test]
    fn deltas_on_another_base_are_out_of_sync() {
        let held = Held::new(NodeIdentity::default());
        assert_eq!(held.out_of_sync(&update("2", "1", vec![])), Some("1"));
        assert_eq!(held.out_of_sync(&update("1", "", vec![])), None);
    }

    #[test]
    fn bad_resources_are_refused_with_their_name() {
        let held = Held::new(NodeIdentity::default());
        let mut bad = Resource::virtual_host(&vh("a:80"));
        bad.body = b"{not json".to_vec().into();
        let e = held.next(&update("1", "", vec![bad])).unwrap_err();
        assert!(e.contains("\"a:80\""), "{e}");

        let mut unknown = Resource::cluster(&cluster("c"));
        unknown.r#type = 42;
        let e = held.next(&update("1", "", vec![unknown])).unwrap_err();
        assert!(e.contains("unknown type 42"), "{e}");

        let mut maglev = cluster("m");
        maglev.load_balancer = LoadBalancer::ConsistentHash(ConsistentHash {
            key: HashKey::SourceIp,
            algorithm: HashAlgorithm::Maglev { table_size: 65536 },
        });
        let e = held
            .next(&update("1", "", vec![Resource::cluster(&maglev)]))
            .unwrap_err();
        assert!(e.contains("maglev table size 65536"), "{e}");
        assert!(is_prime(65537) && is_prime(2) && !is_prime(1) && !is_prime(9));
    }
}
