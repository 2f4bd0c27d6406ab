//! `--control`: config pushed by the control plane over one gRPC stream (`api/proto/push.proto`).
//!
//! The proxy opens the stream with a Hello saying who it is and what version it serves, then
//! applies each update and answers Ack or Nack. Whatever the control plane does, the proxy keeps
//! serving the last config it acknowledged: an outage or an out-of-sync delta only makes it
//! reconnect (with back-off), and every new stream starts with a full update.

pub(crate) mod backoff;
mod held;

use super::{ConfigStore, Nacked, Source};
use crate::identity::WorkloadIdentity;
use crate::telemetry::export::Destination;
use backoff::Backoff;
use held::Held;
use std::error::Error;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use trellis_api::model::NodeIdentity;
use trellis_api::push::config_push_client::ConfigPushClient;
use trellis_api::push::{Ack, ConfigUpdate, Hello, Nack, ProxyMessage, proxy_message::Kind};

/// Largest update accepted; a full update for a big mesh is a few MiB of JSON.
const MAX_MESSAGE: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the control plane may take to accept the stream once connected.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may wait for the stream to take it before the stream counts as stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest NACK reason sent (and kept for `/config_dump`).
const MAX_REASON: usize = 4096;

/// Application protocols a Hello may name (Istio's port-name prefixes).
pub const APP_PROTOCOLS: &[&str] = &[
    "http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "mongo", "mysql", "redis",
];

/// What the Hello says about this proxy; fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `<workload>-<16 hex>.<namespace>`, see [`proxy_id`].
    pub proxy_id: String,
    pub node: NodeIdentity,
    /// `ip:port` other proxies reach this workload at; empty when it serves nothing.
    pub inbound_address: String,
    pub app_port: u16,
    pub app_protocol: String,
}

impl Identity {
    fn hello(&self, version: &str) -> Hello {
        Hello {
            proxy_id: self.proxy_id.clone(),
            workload: self.node.workload.clone(),
            namespace: self.node.namespace.clone(),
            service_account: self.node.service_account.clone(),
            labels: self.node.labels.clone().into_iter().collect(),
            inbound_address: self.inbound_address.clone(),
            app_port: u32::from(self.app_port),
            app_protocol: self.app_protocol.clone(),
            version: version.to_string(),
            proxy_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// A process-unique id: the random suffix tells apart restarts and replicas of one workload.
pub fn proxy_id(workload: &str, namespace: &str) -> String {
    // 64 random bits: two replicas of one workload must never share an id.
    format!("{workload}-{:016x}.{namespace}", fastrand::u64(..))
}

/// The inbound address to advertise: `--advertise` if given, else the bound inbound listener
/// (an unspecified IP made loopback) when there is an application to reach, else none.
pub fn inbound_address(
    advertise: Option<SocketAddr>,
    bound: SocketAddr,
    app_port: Option<u16>,
) -> String {
    match (advertise, app_port) {
        (Some(addr), _) => addr.to_string(),
        (None, Some(_)) if bound.ip().is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port()).to_string()
        }
        (None, Some(_)) => bound.to_string(),
        (None, None) => String::new(),
    }
}

/// Checks `--app-protocol` and spells it the way Hello carries it (lower case).
pub fn app_protocol(name: &str) -> Result<String, String> {
    let lower = name.trim().to_ascii_lowercase();
    if APP_PROTOCOLS.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!(
            "--app-protocol {name:?}: expected one of {}",
            APP_PROTOCOLS.join(", ")
        ))
    }
}

/// Checks a `--control` address (`host:port`, or `http://host:port`) and makes its endpoint.
pub fn endpoint(address: &str) -> Result<Endpoint, String> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let bad = |why: &str| format!("--control {address:?}: {why}");
    if !uri.starts_with("http://") {
        return Err(bad("only plain http:// is supported"));
    }
    let endpoint = Endpoint::from_shared(uri).map_err(|e| bad(&e.to_string()))?;
    if endpoint.uri().port_u16().is_none() {
        return Err(bad("expected host:port"));
    }
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        // A control plane that vanished without closing the connection is noticed in ~30 s.
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// Starts the client on the current runtime. It runs for the life of the process. The collector
/// endpoint each full update names is handed to `collector` (when telemetry follows it), and
/// every trust bundle pushed (root rotation) to `workload` (when its certificate comes from the
/// control plane).
pub fn start(
    address: &str,
    identity: Identity,
    store: Arc<ConfigStore>,
    collector: Option<Destination>,
    workload: Option<WorkloadIdentity>,
) -> Result<(), String> {
    let endpoint = endpoint(address)?;
    store.update_source(|s| {
        *s = Source::Control {
            address: address.to_string(),
            connected: false,
            last_error: None,
            proxy_id: identity.proxy_id.clone(),
            last_nack: None,
        }
    });
    tracing::info!(control = %address, proxy_id = %identity.proxy_id, "taking config from the control plane");
    let client = Client {
        endpoint,
        held: Held::new(identity.node.clone()),
        identity,
        store,
        collector,
        workload,
        link: Link::Connecting,
        backoff: Backoff::default(),
        resync: Backoff::default(),
    };
    tokio::spawn(client.run());
    Ok(())
}

/// Whether the control plane is answering, so an outage is logged once, not once per retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No update yet on this stream, nothing logged about it.
    Connecting,
    /// Updates arrive.
    Up,
    /// Down since the logged time; further failures are only debug logs.
    Down(Instant),
}

/// Why a stream ended.
enum Ended {
    /// Connecting or opening the stream failed, or the stream broke.
    Failed(String),
    /// A delta for a version this proxy does not hold.
    OutOfSync(String),
}

struct Client {
    endpoint: Endpoint,
    identity: Identity,
    store: Arc<ConfigStore>,
    /// Where the control plane's collector endpoint goes; `None` when telemetry does not follow it.
    collector: Option<Destination>,
    /// Where pushed trust bundles go.
    workload: Option<WorkloadIdentity>,
    held: Held,
    link: Link,
    /// Delay after a failure; reset by any update received.
    backoff: Backoff,
    /// Delay after an out-of-sync delta; reset only once a delta applies, so a control plane
    /// that keeps sending bad deltas does not get a full-update reconnect loop at full speed.
    resync: Backoff,
}

impl Client {
    async fn run(mut self) {
        loop {
            let ended = self.session().await;
            let (error, delay) = match ended {
                Ended::Failed(e) if matches!(self.link, Link::Down(_)) => {
                    tracing::debug!(error = %e, "control plane still unavailable");
                    (e, self.backoff.next_delay())
                }
                Ended::Failed(e) => {
                    tracing::warn!(
                        error = %e, version = %self.held.version,
                        "control plane unavailable; serving the last good config and retrying"
                    );
                    self.link = Link::Down(Instant::now());
                    (e, self.backoff.next_delay())
                }
                Ended::OutOfSync(e) => {
                    tracing::warn!(error = %e, "out of sync with the control plane; reconnecting");
                    self.link = Link::Connecting;
                    (e, self.resync.next_delay())
                }
            };
            self.set_status(false, Some(error));
            tokio::time::sleep(delay).await;
        }
    }

    /// One stream, from connecting to its end; returns why it ended.
    async fn session(&mut self) -> Ended {
        let channel: Channel = match self.endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return Ended::Failed(format!("connect: {}", chain(&e))),
        };
        let mut client = ConfigPushClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        // Room for the Hello and one answer: the control plane waits for each answer.
        let (tx, rx) = mpsc::channel::<ProxyMessage>(4);
        let hello = Kind::Hello(self.identity.hello(&self.held.version));
        let _ = tx.try_send(ProxyMessage { kind: Some(hello) });
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await;
        let mut updates = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                return Ended::Failed(format!("open stream: {}", status_text(&status)));
            }
            Err(_) => return Ended::Failed(format!("open stream: no answer in {OPEN_TIMEOUT:?}")),
        };
        self.set_status(true, None);
        let mut parts = Parts::default();
        loop {
            let part = match updates.message().await {
                Ok(Some(u)) => u,
                Ok(None) => return Ended::Failed("stream closed by the control plane".into()),
                Err(status) => return Ended::Failed(format!("stream: {}", status_text(&status))),
            };
            if self.link != Link::Up {
                match self.link {
                    Link::Down(since) => {
                        tracing::info!(after = ?since.elapsed(), "control plane back")
                    }
                    _ => tracing::info!("control plane connected"),
                }
                self.link = Link::Up;
            }
            self.backoff.reset();
            // A new trust bundle applies at once, whatever becomes of the config it came with.
            if !part.trust_bundle_pem.is_empty()
                && let Some(workload) = &self.workload
            {
                workload.apply_bundle(&part.trust_bundle_pem);
            }
            let update = match parts.gather(part) {
                Ok(Some(update)) => update,
                Ok(None) => continue,
                Err(Refused::Mixed(reason)) => return Ended::OutOfSync(reason),
                Err(Refused::TooLarge(nack)) => {
                    tracing::warn!(version = %nack.version, reason = %nack.reason, "config update refused");
                    let answer = ProxyMessage {
                        kind: Some(Kind::Nack(nack)),
                    };
                    if tx.send(answer).await.is_err() {
                        return Ended::Failed("stream closed while answering".into());
                    }
                    continue;
                }
            };
            if update.base_version.is_empty()
                && let Some(collector) = &self.collector
            {
                let control_host = self.endpoint.uri().host().unwrap_or_default();
                collector.follow_control(&update.otlp_endpoint, control_host);
            }
            if let Some(base) = self.held.out_of_sync(&update) {
                return Ended::OutOfSync(format!(
                    "update {:?} is a delta on {base:?} but this proxy holds {:?}",
                    update.version, self.held.version
                ));
            }
            let answer = self.apply(&update);
            match tokio::time::timeout(SEND_TIMEOUT, tx.send(answer)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ended::Failed("stream closed while answering".into()),
                Err(_) => return Ended::Failed(format!("answer not taken in {SEND_TIMEOUT:?}")),
            }
        }
    }

    /// Applies `update` all or nothing and says Ack or Nack.
    fn apply(&mut self, update: &ConfigUpdate) -> ProxyMessage {
        if carries_nothing(update, &self.held.version) {
            // Only a trust bundle came (handled already): the config is unchanged.
            return ProxyMessage {
                kind: Some(Kind::Ack(Ack {
                    version: update.version.clone(),
                })),
            };
        }
        let result = self.held.next(update).and_then(|next| {
            self.store.apply(next.config())?;
            Ok(next)
        });
        let version = update.version.clone();
        let kind = match result {
            Ok(next) => {
                if !update.base_version.is_empty() {
                    self.resync.reset();
                }
                self.held = next;
                Kind::Ack(Ack { version })
            }
            Err(reason) => {
                let reason = truncate(reason, MAX_REASON);
                tracing::warn!(
                    %version, %reason, serving = %self.held.version,
                    "config update refused; keeping the last good config"
                );
                let nacked = Nacked {
                    version: version.clone(),
                    reason: reason.clone(),
                };
                self.store.update_source(|s| {
                    if let Source::Control { last_nack, .. } = s {
                        *last_nack = Some(nacked);
                    }
                });
                Kind::Nack(Nack { version, reason })
            }
        };
        ProxyMessage { kind: Some(kind) }
    }

    fn set_status(&self, now_connected: bool, error: Option<String>) {
        self.store.update_source(|s| {
            if let Source::Control {
                connected,
                last_error,
                ..
            } = s
            {
                *connected = now_connected;
                if error.is_some() {
                    *last_error = error;
                }
            }
        });
    }
}

/// An error and its causes: tonic's transport errors say little without their sources.
/// Why gathered parts do not make an update.
enum Refused {
    /// A part of another version arrived: the stream is out of step, start over.
    Mixed(String),
    /// More than this proxy accepts: refuse the version, keep serving.
    TooLarge(Nack),
}

/// The parts of an update sent in several messages (`continued`), gathered into one.
#[derive(Default)]
struct Parts {
    pending: Option<ConfigUpdate>,
    bytes: usize,
}

impl Parts {
    /// Most bytes of resource bodies one gathered update may hold.
    const MAX_BYTES: usize = 4 * MAX_MESSAGE;

    /// Adds a part; the whole update once its last part arrived.
    fn gather(&mut self, part: ConfigUpdate) -> Result<Option<ConfigUpdate>, Refused> {
        self.bytes += part.resources.iter().map(|r| r.body.len()).sum::<usize>();
        let continued = part.continued;
        let whole = match self.pending.take() {
            None => part,
            Some(mut pending) => {
                if (&part.version, &part.base_version) != (&pending.version, &pending.base_version)
                {
                    self.bytes = 0;
                    return Err(Refused::Mixed(format!(
                        "part of update {:?} (on {:?}) arrived while gathering {:?} (on {:?})",
                        part.version, part.base_version, pending.version, pending.base_version
                    )));
                }
                if !part.meta.is_empty() {
                    pending.meta = part.meta;
                }
                pending.resources.extend(part.resources);
                pending.removed.extend(part.removed);
                pending
            }
        };
        if self.bytes > Self::MAX_BYTES {
            // Drop what was gathered; skip the rest of this version's parts.
            if continued {
                self.pending = Some(ConfigUpdate {
                    version: whole.version.clone(),
                    base_version: whole.base_version.clone(),
                    ..ConfigUpdate::default()
                });
                return Ok(None);
            }
            self.bytes = 0;
            return Err(Refused::TooLarge(Nack {
                reason: format!("update is larger than {} MiB", Self::MAX_BYTES >> 20),
                version: whole.version,
            }));
        }
        if continued {
            self.pending = Some(whole);
            return Ok(None);
        }
        self.bytes = 0;
        Ok(Some(whole))
    }
}

/// Whether `update` changes nothing in the config at `held` (a bundle-only update).
fn carries_nothing(update: &ConfigUpdate, held: &str) -> bool {
    !held.is_empty()
        && update.version == held
        && update.base_version == held
        && update.meta.is_empty()
        && update.resources.is_empty()
        && update.removed.is_empty()
}

fn chain(e: &dyn Error) -> String {
    with_sources(e.to_string(), e.source())
}

fn status_text(status: &tonic::Status) -> String {
    let text = format!("{:?}: {}", status.code(), status.message());
    with_sources(text, status.source())
}

/// Appends each cause not already spelled out (hyper and h2 often repeat their source).
pub(crate) fn with_sources(mut text: String, mut source: Option<&(dyn Error + 'static)>) -> String {
    for _ in 0..8 {
        let Some(s) = source else { break };
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_api::push::{Resource, ResourceType};

    fn part(version: &str, names: &[&str], continued: bool) -> ConfigUpdate {
        ConfigUpdate {
            version: version.into(),
            base_version: "v1".into(),
            resources: names
                .iter()
                .map(|n| Resource {
                    r#type: ResourceType::Cluster as i32,
                    name: n.to_string(),
                    body: bytes::Bytes::from_static(b"{}"),
                })
                .collect(),
            continued,
            ..ConfigUpdate::default()
        }
    }

    #[test]
    fn parts_of_one_version_make_one_update() {
        let mut parts = Parts::default();
        assert!(
            parts
                .gather(part("v2", &["a"], true))
                .ok()
                .unwrap()
                .is_none()
        );
        assert!(
            parts
                .gather(part("v2", &["b"], true))
                .ok()
                .unwrap()
                .is_none()
        );
        let whole = parts
            .gather(part("v2", &["c"], false))
            .ok()
            .unwrap()
            .unwrap();
        let names: Vec<&str> = whole.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // The next update starts afresh.
        let single = parts
            .gather(part("v3", &["d"], false))
            .ok()
            .unwrap()
            .unwrap();
        assert_eq!(single.resources.len(), 1);
    }

    #[test]
    fn a_part_of_another_version_means_out_of_step() {
        let mut parts = Parts::default();
        assert!(
            parts
                .gather(part("v2", &["a"], true))
                .ok()
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            parts.gather(part("v3", &["b"], false)),
            Err(Refused::Mixed(_))
        ));
    }

    #[test]
    fn addresses_and_protocols() {
        let bound: SocketAddr = "0.0.0.0:15006".parse().unwrap();
        assert_eq!(inbound_address(None, bound, Some(8080)), "127.0.0.1:15006");
        assert_eq!(inbound_address(None, bound, None), "");
        let given: SocketAddr = "10.0.0.5:15006".parse().unwrap();
        assert_eq!(inbound_address(Some(given), bound, None), "10.0.0.5:15006");
        assert_eq!(app_protocol("GRPC").unwrap(), "grpc");
        assert!(app_protocol("carrier-pigeon").is_err());
        assert!(endpoint("127.0.0.1:15010").is_ok());
        assert!(endpoint("http://control:15010").is_ok());
        assert!(endpoint("https://control:15010").is_err());
        assert!(endpoint("control").is_err());
        let id = proxy_id("reviews", "default");
        assert!(
            id.starts_with("reviews-") && id.ends_with(".default"),
            "{id}"
        );
        assert_eq!(id.len(), "reviews-".len() + 16 + ".default".len());
        assert_eq!(truncate("héllo".into(), 2), "h...");
    }
}
