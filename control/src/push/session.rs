//! One proxy's stream: register, send its config, then deltas, each after the previous answer.

use super::Shared;
use super::class::{Compiled, ResourceId};
use super::status::{ProxyStatus, SyncState, now_ms};
use crate::registry::Workload;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use trellis_api::NodeIdentity;
use trellis_api::model::ProxyMeta;
use trellis_api::push::{ConfigUpdate, Hello, ProxyMessage, ResourceRef, proxy_message};

/// How long a new stream may take to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// A proxy's validated first message.
pub struct Registration {
    pub hello: Hello,
    pub node: NodeIdentity,
    pub inbound: Option<SocketAddr>,
}

/// Reads and checks the Hello that must open every stream.
pub async fn read_hello(inbound: &mut Streaming<ProxyMessage>) -> Result<Registration, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no Hello within 10s"))??;
    let Some(ProxyMessage {
        kind: Some(proxy_message::Kind::Hello(hello)),
    }) = first
    else {
        return Err(Status::invalid_argument(
            "the first message on a stream must be a Hello",
        ));
    };
    if hello.proxy_id.is_empty() {
        return Err(Status::invalid_argument("Hello.proxy_id is empty"));
    }
    let inbound = if hello.inbound_address.is_empty() {
        None
    } else {
        Some(hello.inbound_address.parse::<SocketAddr>().map_err(|_| {
            Status::invalid_argument(format!(
                "Hello.inbound_address {:?} is not an ip:port",
                hello.inbound_address
            ))
        })?)
    };
    let app_port = u16::try_from(hello.app_port).map_err(|_| {
        Status::invalid_argument(format!("Hello.app_port {} is not a port", hello.app_port))
    })?;
    if inbound.is_some() && app_port == 0 {
        return Err(Status::invalid_argument(
            "Hello.inbound_address is set but app_port is 0",
        ));
    }
    let namespace = if hello.namespace.is_empty() {
        "default".to_string()
    } else {
        hello.namespace.clone()
    };
    let node = NodeIdentity {
        workload: hello.workload.clone(),
        namespace,
        service_account: hello.service_account.clone(),
        labels: hello.labels.clone().into_iter().collect(),
    };
    Ok(Registration {
        hello,
        node,
        inbound,
    })
}

/// What a proxy holds: the last version it acknowledged, piece by piece.
#[derive(Default)]
struct Held {
    version: String,
    /// The store revision the version was compiled from.
    revision: u64,
    meta: Bytes,
    hashes: HashMap<ResourceId, u64>,
}

/// Serves one stream until the proxy goes away.
pub async fn run(
    shared: Arc<Shared>,
    registration: Registration,
    peer: Option<SocketAddr>,
    mut inbound: Streaming<ProxyMessage>,
    tx: mpsc::Sender<Result<ConfigUpdate, Status>>,
) {
    let Registration {
        hello,
        node,
        inbound: address,
    } = registration;
    let id = hello.proxy_id.clone();
    let connection = shared.board.connected(ProxyStatus {
        id: id.clone(),
        workload: node.workload.clone(),
        namespace: node.namespace.clone(),
        service_account: node.service_account.clone(),
        labels: node.labels.clone(),
        address: hello.inbound_address.clone(),
        peer: peer.map(|p| p.to_string()).unwrap_or_default(),
        proxy_version: hello.proxy_version.clone(),
        connected: true,
        connected_since_unix_ms: 0,
        status: SyncState::Stale,
        version_sent: String::new(),
        version_acked: String::new(),
        version_nacked: String::new(),
        latest_version: String::new(),
        revision_acked: 0,
        error: None,
        updates_sent: 0,
        last_ack_unix_ms: None,
    });
    let registered = address.and_then(|address| {
        shared.registry.register(Workload {
            proxy_id: id.clone(),
            name: node.workload.clone(),
            namespace: node.namespace.clone(),
            service_account: node.service_account.clone(),
            labels: node.labels.clone(),
            address,
            app_port: u16::try_from(hello.app_port).unwrap_or(0),
            app_protocol: hello.app_protocol.clone(),
            connected: true,
        })
    });
    tracing::info!(proxy = %id, peer = ?peer, serving = ?address, "proxy connected");

    let result = serve(&shared, &id, connection, &node, &mut inbound, &tx).await;
    match result {
        Ok(()) => tracing::info!(proxy = %id, "proxy disconnected"),
        Err(e) => tracing::info!(proxy = %id, error = %e, "proxy stream ended"),
    }
    shared.board.disconnected(&id, connection);
    if let Some(generation) = registered {
        shared.registry.disconnected(&id, generation);
    }
}

async fn serve(
    shared: &Shared,
    id: &str,
    connection: u64,
    node: &NodeIdentity,
    inbound: &mut Streaming<ProxyMessage>,
    tx: &mpsc::Sender<Result<ConfigUpdate, Status>>,
) -> Result<(), String> {
    let mut epochs = shared.epochs.clone();
    let mut held: Option<Held> = None;
    let mut in_flight: Option<Held> = None;
    let mut nacked = String::new();
    loop {
        if in_flight.is_none() {
            let epoch = epochs.borrow_and_update().clone();
            let compiled = epoch.compiled(&epoch.class_of(node)).await;
            shared.board.update(id, connection, |s| {
                s.latest_version = compiled.version.clone();
            });
            if compiled.version != nacked
                && let Some((update, mut next)) = delta(&compiled, node, held.as_ref())
            {
                next.revision = epoch.revision;
                let version = update.version.clone();
                tx.send(Ok(update))
                    .await
                    .map_err(|_| "stream closed".to_string())?;
                shared.board.update(id, connection, |s| {
                    s.version_sent = version;
                    s.updates_sent += 1;
                });
                in_flight = Some(next);
            }
        }
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message.map_err(|e| e.to_string())? else {
                    return Ok(());
                };
                let answers = |version: &str| in_flight.as_ref().is_some_and(|f| f.version == version);
                match message.kind {
                    Some(proxy_message::Kind::Ack(ack)) if answers(&ack.version) => {
                        held = in_flight.take();
                        nacked.clear();
                        let revision = held.as_ref().map_or(0, |h| h.revision);
                        shared.board.update(id, connection, |s| {
                            s.version_acked = ack.version;
                            s.revision_acked = revision;
                            s.error = None;
                            s.last_ack_unix_ms = Some(now_ms());
                        });
                    }
                    Some(proxy_message::Kind::Nack(nack)) if answers(&nack.version) => {
                        in_flight = None;
                        tracing::warn!(proxy = id, version = %nack.version, reason = %nack.reason, "proxy refused config");
                        nacked = nack.version.clone();
                        shared.board.update(id, connection, |s| {
                            s.version_nacked = nack.version;
                            s.error = Some(nack.reason);
                        });
                    }
                    Some(proxy_message::Kind::Hello(_)) => {
                        return Err("a second Hello on one stream".to_string());
                    }
                    // An answer to nothing in flight, or an empty message: nothing to do.
                    _ => {}
                }
            }
            changed = epochs.changed(), if in_flight.is_none() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// The update that brings a proxy holding `held` to `compiled` (a full one when it holds
/// nothing), and what it will hold once it ACKs; `None` when it already has it all.
fn delta(
    compiled: &Compiled,
    node: &NodeIdentity,
    held: Option<&Held>,
) -> Option<(ConfigUpdate, Held)> {
    let meta = trellis_api::push::encode_meta(&ProxyMeta {
        node: node.clone(),
        outbound_traffic_policy: compiled.outbound_traffic_policy,
    });
    let empty = Held::default();
    let base = held.unwrap_or(&empty);
    if held.is_some() && base.version == compiled.version && base.meta == meta {
        return None;
    }
    let mut resources = Vec::new();
    let mut hashes = HashMap::with_capacity(compiled.resources.len());
    for (id, encoded) in &compiled.resources {
        if base.hashes.get(id) != Some(&encoded.hash) {
            resources.push(encoded.resource.clone());
        }
        hashes.insert(id.clone(), encoded.hash);
    }
    let removed = base
        .hashes
        .keys()
        .filter(|id| !compiled.resources.contains_key(*id))
        .map(|(kind, name)| ResourceRef {
            r#type: *kind as i32,
            name: name.clone(),
        })
        .collect();
    let update = ConfigUpdate {
        version: compiled.version.clone(),
        base_version: held.map(|h| h.version.clone()).unwrap_or_default(),
        meta: if held.is_some_and(|h| h.meta == meta) {
            Bytes::new()
        } else {
            meta.clone()
        },
        resources,
        removed,
    };
    Some((
        update,
        Held {
            version: compiled.version.clone(),
            revision: 0,
            meta,
            hashes,
        },
    ))
}
