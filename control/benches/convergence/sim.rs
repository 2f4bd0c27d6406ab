//! Simulated proxies: one gRPC stream each, behaving as trellis-proxy's `--control` client does
//! (Hello, then for every update: gather its parts, check the base version, decode every
//! resource, apply to the held maps, answer Ack), and reporting what they received and when.

use prost::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use trellis_api::model::{
    Cluster, NodeIdentity, OutboundTrafficPolicy, ProxyConfig, ProxyMeta, RouteAction, VirtualHost,
};
use trellis_api::push::config_push_client::ConfigPushClient;
use trellis_api::push::proxy_message::Kind;
use trellis_api::push::{self, Ack, ConfigUpdate, Decoded, Hello, ProxyMessage, ResourceType};

const MAX_MESSAGE: usize = 64 << 20;

/// What one simulated proxy holds: exactly what it last acknowledged.
#[derive(Default)]
pub struct Held {
    pub version: String,
    pub meta: Option<ProxyMeta>,
    pub virtual_hosts: BTreeMap<String, VirtualHost>,
    pub clusters: BTreeMap<String, Cluster>,
}

impl Held {
    /// The config these resources make (for checking its content version).
    pub fn config(&self) -> ProxyConfig {
        let meta = self.meta.clone().unwrap_or_default();
        ProxyConfig {
            version: self.version.clone(),
            node: meta.node,
            virtual_hosts: self.virtual_hosts.values().cloned().collect(),
            clusters: self.clusters.values().cloned().collect(),
            outbound_traffic_policy: meta.outbound_traffic_policy,
            authorization: meta.authorization,
            inbound_mtls: meta.inbound_mtls,
            rate_limits: meta.rate_limits,
        }
    }

    /// Applies `update` all or nothing, as the proxy does.
    fn apply(&mut self, update: &ConfigUpdate, workload: &str) -> Result<(), String> {
        if !update.base_version.is_empty() && update.base_version != self.version {
            return Err(format!(
                "update {:?} is a delta on {:?} but this proxy holds {:?}",
                update.version, update.base_version, self.version
            ));
        }
        if update.version.is_empty() {
            return Err("update without a version".into());
        }
        let decoded = update
            .resources
            .iter()
            .map(push::decode)
            .collect::<Result<Vec<_>, _>>()?;
        let meta = if update.meta.is_empty() {
            None
        } else {
            let meta = push::decode_meta(&update.meta)?;
            if meta.node.workload != workload {
                return Err(format!(
                    "meta names workload {:?}, this proxy is {workload:?}",
                    meta.node.workload
                ));
            }
            Some(meta)
        };
        if update.base_version.is_empty() {
            if meta.is_none() {
                return Err("full update without meta".into());
            }
            self.virtual_hosts.clear();
            self.clusters.clear();
        }
        for d in decoded {
            match d {
                Decoded::VirtualHost(vh) => {
                    self.virtual_hosts.insert(vh.name.clone(), vh);
                }
                Decoded::Cluster(c) => {
                    self.clusters.insert(c.name.clone(), c);
                }
            }
        }
        for gone in &update.removed {
            let removed = match ResourceType::try_from(gone.r#type) {
                Ok(ResourceType::VirtualHost) => self.virtual_hosts.remove(&gone.name).is_some(),
                Ok(ResourceType::Cluster) => self.clusters.remove(&gone.name).is_some(),
                _ => {
                    return Err(format!(
                        "removed {:?}: unknown type {}",
                        gone.name, gone.r#type
                    ));
                }
            };
            if !removed {
                return Err(format!("removed {:?}: not held", gone.name));
            }
        }
        if let Some(meta) = meta {
            self.meta = Some(meta);
        }
        self.version.clone_from(&update.version);
        Ok(())
    }
}

/// What a round waits for: a condition on the held config that holds once the change arrived.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A full config with this many virtual hosts.
    Initial {
        virtual_hosts: usize,
    },
    /// The virtual host's weighted split has this v1 weight (and 100 - it for v2).
    Weights {
        vhost: String,
        v1: u32,
    },
    /// The cluster has this many endpoints.
    Endpoints {
        cluster: String,
        n: usize,
    },
    /// The cluster's maxConnections.
    MaxConnections {
        cluster: String,
        n: u32,
    },
    Outbound(OutboundTrafficPolicy),
}

impl Probe {
    fn holds(&self, held: &Held) -> bool {
        match self {
            Probe::Initial { virtual_hosts } => {
                !held.version.is_empty() && held.virtual_hosts.len() == *virtual_hosts
            }
            Probe::Weights { vhost, v1 } => held.virtual_hosts.get(vhost).is_some_and(|vh| {
                vh.http_routes.iter().any(|r| {
                    matches!(&r.action, RouteAction::Forward(d)
                        if d.len() == 2 && d[0].weight == *v1 && d[1].weight == 100 - v1)
                })
            }),
            Probe::Endpoints { cluster, n } => held
                .clusters
                .get(cluster)
                .is_some_and(|c| c.endpoints.len() == *n),
            Probe::MaxConnections { cluster, n } => held
                .clusters
                .get(cluster)
                .is_some_and(|c| c.connection_pool.max_connections == Some(*n)),
            Probe::Outbound(p) => held
                .meta
                .as_ref()
                .is_some_and(|m| m.outbound_traffic_policy == *p),
        }
    }
}

/// One update received and acknowledged.
#[derive(Debug, Clone)]
pub struct Applied {
    pub proxy: usize,
    pub version: String,
    pub full: bool,
    pub resources: usize,
    pub removed: usize,
    pub meta: bool,
    /// Protobuf size of the update (the gRPC payloads without their 5-byte frame headers),
    /// summed over its parts.
    pub bytes: usize,
    /// Messages the update came in (`continued` parts plus the last one).
    pub parts: usize,
    /// When the update was complete (its last part arrived).
    pub received: Instant,
    /// When the Ack was handed to the stream.
    pub acked: Instant,
    /// The probe id that held once this update was applied.
    pub probe: Option<u64>,
}

#[derive(Debug)]
pub enum Event {
    Connected,
    Applied(Applied),
    Failed { proxy: usize, error: String },
}

/// State shared by all simulated proxies and the coordinator.
pub struct Fleet {
    probe: RwLock<Option<(u64, Probe)>>,
    events: mpsc::UnboundedSender<Event>,
}

impl Fleet {
    pub fn new() -> (Arc<Fleet>, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Fleet {
                probe: RwLock::new(None),
                events: tx,
            }),
            rx,
        )
    }

    pub fn set_probe(&self, id: u64, probe: Probe) {
        *self.probe.write().unwrap_or_else(|e| e.into_inner()) = Some((id, probe));
    }
}

/// One simulated proxy's identity and held state.
pub struct Sim {
    pub index: usize,
    pub workload: String,
    pub node: NodeIdentity,
    pub held: Arc<Mutex<Held>>,
}

impl Sim {
    pub fn new(index: usize, apps: usize) -> Sim {
        let workload = format!("sim-{index}");
        let node = NodeIdentity {
            workload: workload.clone(),
            namespace: "default".into(),
            service_account: String::new(),
            labels: [
                ("app".to_string(), format!("sim-{}", index % apps.max(1))),
                ("version".to_string(), "v1".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        Sim {
            index,
            workload,
            node,
            held: Arc::default(),
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            proxy_id: format!("{}.default", self.workload),
            workload: self.workload.clone(),
            namespace: self.node.namespace.clone(),
            service_account: String::new(),
            labels: self.node.labels.clone().into_iter().collect(),
            inbound_address: String::new(),
            app_port: 0,
            app_protocol: String::new(),
            version: String::new(),
            proxy_version: "bench".into(),
        }
    }

    /// Runs the proxy's stream until it fails or the task is aborted.
    pub fn spawn(&self, push: SocketAddr, fleet: Arc<Fleet>) -> tokio::task::JoinHandle<()> {
        let index = self.index;
        let hello = self.hello();
        let held = self.held.clone();
        let workload = self.workload.clone();
        tokio::spawn(async move {
            if let Err(error) = run(index, push, hello, &workload, &held, &fleet).await {
                let _ = fleet.events.send(Event::Failed {
                    proxy: index,
                    error,
                });
            }
        })
    }
}

async fn run(
    index: usize,
    push: SocketAddr,
    hello: Hello,
    workload: &str,
    held: &Mutex<Held>,
    fleet: &Fleet,
) -> Result<(), String> {
    let endpoint = Endpoint::from_shared(format!("http://{push}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = ConfigPushClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::channel::<ProxyMessage>(4);
    tx.send(ProxyMessage {
        kind: Some(Kind::Hello(hello)),
    })
    .await
    .map_err(|_| "hello not sent")?;
    let mut updates = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("open stream: {s}"))?
        .into_inner();
    let _ = fleet.events.send(Event::Connected);
    // Parts of an update not yet complete (`continued`), their count and size.
    let mut pending: Option<ConfigUpdate> = None;
    let (mut parts, mut bytes) = (0, 0);
    loop {
        let part = match updates.message().await {
            Ok(Some(u)) => u,
            Ok(None) => return Err("stream closed by the control plane".into()),
            Err(s) => return Err(format!("stream: {s}")),
        };
        parts += 1;
        bytes += part.encoded_len();
        let update = match pending.take() {
            None => part,
            Some(mut gathered) => {
                if part.version != gathered.version || part.base_version != gathered.base_version {
                    return Err(format!(
                        "part of update {:?} (base {:?}) arrived while gathering {:?} (base {:?})",
                        part.version, part.base_version, gathered.version, gathered.base_version
                    ));
                }
                if !part.meta.is_empty() {
                    gathered.meta = part.meta;
                }
                gathered.resources.extend(part.resources);
                gathered.removed.extend(part.removed);
                gathered.continued = part.continued;
                gathered
            }
        };
        if update.continued {
            pending = Some(update);
            continue;
        }
        let received = Instant::now();
        let probe = {
            let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
            held.apply(&update, workload)
                .map_err(|e| format!("refused update {:?}: {e}", update.version))?;
            let probe = fleet.probe.read().unwrap_or_else(|e| e.into_inner());
            probe
                .as_ref()
                .filter(|(_, p)| p.holds(&held))
                .map(|(id, _)| *id)
        };
        let version = update.version.clone();
        tx.send(ProxyMessage {
            kind: Some(Kind::Ack(Ack {
                version: version.clone(),
            })),
        })
        .await
        .map_err(|_| "stream closed while answering")?;
        let acked = Instant::now();
        let _ = fleet.events.send(Event::Applied(Applied {
            proxy: index,
            version,
            full: update.base_version.is_empty(),
            resources: update.resources.len(),
            removed: update.removed.len(),
            meta: !update.meta.is_empty(),
            bytes,
            parts,
            received,
            acked,
            probe,
        }));
        (parts, bytes) = (0, 0);
    }
}
