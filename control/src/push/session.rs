//! One proxy's stream: register, send its config, then deltas, each after the previous answer.

use super::Shared;
use super::class::Compiled;
use super::status::{ProxyStatus, SyncState};
use crate::registry::Workload;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use trellis_api::NodeIdentity;
use trellis_api::model::ProxyMeta;
use trellis_api::push::{ConfigUpdate, Hello, ProxyMessage, Resource, proxy_message};
use trellis_api::time::now_millis;

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
    check_sizes(&hello)?;
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

/// Most labels a Hello may carry, and the longest name or value it may use (Kubernetes allows
/// 63-character label values and 253-character names; these leave room without letting one client
/// make the control plane hold arbitrary data).
const MAX_LABELS: usize = 64;
const MAX_TEXT: usize = 256;

fn check_sizes(hello: &Hello) -> Result<(), Status> {
    let texts = [
        ("proxy_id", &hello.proxy_id),
        ("workload", &hello.workload),
        ("namespace", &hello.namespace),
        ("service_account", &hello.service_account),
        ("inbound_address", &hello.inbound_address),
        ("app_protocol", &hello.app_protocol),
        ("version", &hello.version),
        ("proxy_version", &hello.proxy_version),
    ];
    for (field, text) in texts {
        if text.len() > MAX_TEXT {
            return Err(Status::invalid_argument(format!(
                "Hello.{field} is longer than {MAX_TEXT} bytes"
            )));
        }
    }
    if hello.labels.len() > MAX_LABELS {
        return Err(Status::invalid_argument(format!(
            "Hello.labels has {} labels, more than {MAX_LABELS}",
            hello.labels.len()
        )));
    }
    if let Some((k, _)) = hello
        .labels
        .iter()
        .find(|(k, v)| k.len() > MAX_TEXT || v.len() > MAX_TEXT)
    {
        return Err(Status::invalid_argument(format!(
            "Hello.labels[{:?}]: key or value longer than {MAX_TEXT} bytes",
            k.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// What a proxy holds (or will, once it ACKs): a class's compiled config and its own meta.
#[derive(Clone)]
struct Held {
    compiled: Arc<Compiled>,
    meta: Bytes,
    /// The store revision the config was compiled from.
    revision: u64,
}

/// Resource bytes per message: a big update goes in parts of about this size, so per-stream
/// buffers stay small however large the mesh is.
const PART_BYTES: usize = 32 * 1024;

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
    let reconnected = !hello.version.is_empty();
    // Runs however the session ends, a panic included.
    let _left = Left {
        shared: &shared,
        id: &id,
        connection,
        registered,
    };
    let result = serve(
        &shared,
        &id,
        connection,
        &node,
        reconnected,
        &mut inbound,
        &tx,
    )
    .await;
    match result {
        Ok(()) => tracing::info!(proxy = %id, "proxy disconnected"),
        Err(e) => tracing::info!(proxy = %id, error = %e, "proxy stream ended"),
    }
}

/// Marks a session's proxy disconnected (and its workload leaving) when the session ends.
struct Left<'a> {
    shared: &'a Shared,
    id: &'a str,
    connection: u64,
    registered: Option<u64>,
}

impl Drop for Left<'_> {
    fn drop(&mut self) {
        self.shared.board.disconnected(self.id, self.connection);
        if let Some(generation) = self.registered {
            self.shared.registry.disconnected(self.id, generation);
        }
    }
}

async fn serve(
    shared: &Shared,
    id: &str,
    connection: u64,
    node: &NodeIdentity,
    reconnected: bool,
    inbound: &mut Streaming<ProxyMessage>,
    tx: &mpsc::Sender<Result<ConfigUpdate, Status>>,
) -> Result<(), String> {
    let mut epochs = shared.epochs.clone();
    let mut stop = shared.stop.subscribe();
    // A proxy that serves a config already loses nothing by waiting until the other proxies
    // are back in the registry (a control plane just restarted); a new one is served at once.
    let warming = shared.warmup.saturating_sub(shared.started.elapsed());
    if reconnected && !warming.is_zero() {
        tracing::debug!(proxy = id, wait = ?warming, "control plane warming up; first update waits");
        tokio::select! {
            _ = tokio::time::sleep(warming) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
    let mut held: Option<Held> = None;
    let mut in_flight: Option<Held> = None;
    let mut nacked = String::new();
    let mut bundles = shared.trust_bundle.subscribe();
    // The trust bundle this proxy was last sent (it arrives before any later update).
    let mut bundle_sent = String::new();
    loop {
        if in_flight.is_none() {
            let epoch = epochs.borrow_and_update().clone();
            let bundle = bundles.borrow_and_update().clone();
            let compiled = epoch.compiled(&epoch.class_of(node)).await;
            shared.board.update(id, connection, |s| {
                s.latest_version = compiled.version.clone();
            });
            let mut to_send = None;
            if compiled.version != nacked {
                let otlp = shared.otlp_endpoint();
                match update_for(&compiled, epoch.revision, node, held.as_ref(), &otlp) {
                    Some(update) => to_send = Some(update),
                    // The proxy already holds this epoch's config: it is in sync with its revision.
                    None => shared.board.update(id, connection, |s| {
                        s.revision_acked = s.revision_acked.max(epoch.revision);
                    }),
                }
            }
            if to_send.is_none() && bundle != bundle_sent {
                to_send = held.as_ref().map(bundle_only);
            }
            if let Some((mut parts, next)) = to_send {
                if bundle != bundle_sent {
                    parts[0].trust_bundle_pem.clone_from(&bundle);
                    bundle_sent = bundle;
                }
                let version = next.compiled.version.clone();
                for part in parts {
                    tokio::select! {
                        sent = tx.send(Ok(part)) => sent.map_err(|_| "stream closed".to_string())?,
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                    }
                }
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
                let answers =
                    |version: &str| in_flight.as_ref().is_some_and(|f| f.compiled.version == version);
                match message.kind {
                    Some(proxy_message::Kind::Ack(ack)) if answers(&ack.version) => {
                        held = in_flight.take();
                        nacked.clear();
                        let revision = held.as_ref().map_or(0, |h| h.revision);
                        shared.board.update(id, connection, |s| {
                            s.version_acked = ack.version;
                            s.revision_acked = revision;
                            s.error = None;
                            s.last_ack_unix_ms = Some(now_millis());
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
            // A new trust bundle (root rotation): sent at once, config unchanged.
            changed = bundles.changed(), if in_flight.is_none() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            // The control plane is shutting down: end the stream so the proxy reconnects later.
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// The messages that bring a proxy holding `held` to `compiled` (a full update when it holds
/// nothing, naming the collector at `otlp_endpoint`), and what it will hold once it ACKs; `None`
/// when it already has it all.
fn update_for(
    compiled: &Arc<Compiled>,
    revision: u64,
    node: &NodeIdentity,
    held: Option<&Held>,
    otlp_endpoint: &str,
) -> Option<(Vec<ConfigUpdate>, Held)> {
    let meta = trellis_api::push::encode_meta(&ProxyMeta {
        node: node.clone(),
        outbound_traffic_policy: compiled.outbound_traffic_policy,
        authorization: compiled.authorization.clone(),
        inbound_mtls: compiled.inbound_mtls.clone(),
        rate_limits: compiled.rate_limits.clone(),
    });
    let same_meta = held.is_some_and(|h| h.meta == meta);
    if same_meta && held.is_some_and(|h| h.compiled.version == compiled.version) {
        return None;
    }
    let delta = compiled.delta_from(held.map(|h| h.compiled.as_ref()));
    let first = ConfigUpdate {
        version: compiled.version.clone(),
        base_version: held.map(|h| h.compiled.version.clone()).unwrap_or_default(),
        meta: if same_meta {
            Bytes::new()
        } else {
            meta.clone()
        },
        resources: Vec::new(),
        removed: delta.removed.clone(),
        continued: false,
        otlp_endpoint: if held.is_none() {
            otlp_endpoint.to_string()
        } else {
            String::new()
        },
        trust_bundle_pem: String::new(),
    };
    let next = Held {
        compiled: compiled.clone(),
        meta,
        revision,
    };
    Some((in_parts(first, &delta.resources), next))
}

/// An update that changes nothing in the config a proxy holds, to carry a new trust bundle: a
/// delta on the held version to that same version (older proxies apply it as an empty delta).
fn bundle_only(held: &Held) -> (Vec<ConfigUpdate>, Held) {
    let version = held.compiled.version.clone();
    let update = ConfigUpdate {
        base_version: version.clone(),
        version,
        ..ConfigUpdate::default()
    };
    (vec![update], held.clone())
}

/// `first` (meta and removals) followed by the resources, in messages of about [`PART_BYTES`].
fn in_parts(first: ConfigUpdate, resources: &[Resource]) -> Vec<ConfigUpdate> {
    let mut parts = vec![first];
    let mut size = 0;
    for resource in resources {
        if size > 0 && size + resource.body.len() > PART_BYTES {
            let last = parts.last_mut().expect("parts start non-empty");
            last.continued = true;
            let next = ConfigUpdate {
                version: last.version.clone(),
                base_version: last.base_version.clone(),
                ..ConfigUpdate::default()
            };
            parts.push(next);
            size = 0;
        }
        size += resource.body.len();
        parts
            .last_mut()
            .expect("parts start non-empty")
            .resources
            .push(resource.clone());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, bytes: usize) -> Resource {
        Resource {
            r#type: trellis_api::push::ResourceType::Cluster as i32,
            name: name.to_string(),
            body: Bytes::from(vec![b' '; bytes]),
        }
    }

    #[test]
    fn big_updates_go_in_parts_of_one_version() {
        let first = ConfigUpdate {
            version: "v2".into(),
            base_version: "v1".into(),
            ..ConfigUpdate::default()
        };
        let resources: Vec<Resource> = (0..10)
            .map(|i| resource(&format!("c{i}"), PART_BYTES / 4))
            .collect();
        let parts = in_parts(first, &resources);
        assert_eq!(parts.len(), 3);
        assert!(parts[..2].iter().all(|p| p.continued));
        assert!(!parts[2].continued);
        assert!(
            parts
                .iter()
                .all(|p| p.version == "v2" && p.base_version == "v1")
        );
        let sent: usize = parts.iter().map(|p| p.resources.len()).sum();
        assert_eq!(sent, 10);
        assert!(parts.iter().all(|p| p.resources.len() <= 4));
    }

    #[test]
    fn full_updates_name_the_collector_and_deltas_do_not() {
        use super::super::class::{Bodies, ClassKey};
        let key = ClassKey::of(&NodeIdentity::default(), &Default::default());
        let compiled = Arc::new(Compiled::build(
            &trellis_api::ConfigSet::new(),
            &[],
            &key,
            &Bodies::default(),
            &Default::default(),
        ));
        let collector = "http://0.0.0.0:4317";
        let node = NodeIdentity::default();
        let (parts, held) = update_for(&compiled, 1, &node, None, collector).unwrap();
        assert!(parts[0].base_version.is_empty());
        assert_eq!(parts[0].otlp_endpoint, collector);
        // A new node identity is a delta: the proxy already knows where telemetry goes.
        let renamed = NodeIdentity {
            workload: "renamed".into(),
            ..NodeIdentity::default()
        };
        let (parts, _) = update_for(&compiled, 2, &renamed, Some(&held), collector).unwrap();
        assert!(!parts[0].base_version.is_empty());
        assert_eq!(parts[0].otlp_endpoint, "");
        // Without a collector, full updates say so with an empty endpoint.
        let (parts, _) = update_for(&compiled, 1, &node, None, "").unwrap();
        assert_eq!(parts[0].otlp_endpoint, "");
    }

    #[test]
    fn small_updates_are_one_message() {
        let parts = in_parts(
            ConfigUpdate::default(),
            &[resource("a", 10), resource("b", 10)],
        );
        assert_eq!(parts.len(), 1);
        assert!(!parts[0].continued);
        assert_eq!(parts[0].resources.len(), 2);
    }
}
