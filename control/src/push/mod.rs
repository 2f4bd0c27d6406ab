//! The config push server: compiles each connected proxy's config and streams it to the proxy.
//!
//! Every change to the resources or the registry starts a new [`Epoch`] (after a short debounce,
//! so a burst of changes costs one compile). Proxies whose config depends on the same things
//! share one compile per epoch (see [`class`]); each proxy's session then sends only the virtual
//! hosts and clusters that differ from what that proxy last acknowledged, and waits for the ACK or
//! NACK before sending again. Per-proxy state is kept for `proxy-status`.

mod class;
mod epoch;
mod session;
mod status;

pub use epoch::Epoch;
pub use status::{ProxyStatus, SyncState};

use crate::registry::Registry;
use crate::store::Store;
use status::StatusBoard;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use trellis_api::push::config_push_server::{ConfigPush, ConfigPushServer};
use trellis_api::push::{ConfigUpdate, ProxyMessage};

/// Largest update a proxy accepts (the proxy sets the same limit): a full config for thousands of
/// services with tens of thousands of endpoints fits with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest message a proxy may send (Hello, Ack, Nack are small; a Nack's reason is cut at 4 KiB).
const MAX_PROXY_MESSAGE_BYTES: usize = 256 * 1024;

/// How long changes are gathered before compiling, and the longest a change waits in a burst.
#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    pub quiet: Duration,
    pub max: Duration,
}

impl Debounce {
    /// Waits for `quiet`, but never longer than ten times that (at least 100 ms) in a burst.
    pub fn new(quiet: Duration) -> Debounce {
        Debounce {
            quiet,
            max: (quiet * 10).max(Duration::from_millis(100)),
        }
    }
}

impl Default for Debounce {
    fn default() -> Debounce {
        Debounce::new(Duration::from_millis(20))
    }
}

/// The push server's shared state; cheap to clone.
#[derive(Clone)]
pub struct PushServer {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Arc<dyn Registry>,
    epochs: watch::Receiver<Arc<Epoch>>,
    board: StatusBoard,
    /// Set when the server shuts down: sessions end their streams so connections can close.
    stop: watch::Sender<bool>,
    /// The collector's OTLP gRPC endpoint told to proxies (`ConfigUpdate.otlp_endpoint`).
    otlp_endpoint: std::sync::RwLock<Option<String>>,
    /// The CA's trust bundle (PEM; empty without a CA), sent to every proxy when it changes.
    trust_bundle: watch::Sender<String>,
    /// When this server started, and how long proxies that still serve a config (they
    /// reconnect after a control-plane restart) wait for their first update: the registry is
    /// rebuilt from reconnecting proxies, and a config compiled before the others are back
    /// would hold services without endpoints.
    started: std::time::Instant,
    warmup: Duration,
}

impl Shared {
    fn otlp_endpoint(&self) -> String {
        self.otlp_endpoint
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

impl PushServer {
    /// Starts following the store and the registry; call [`PushServer::serve`] to accept proxies.
    pub fn start(
        store: Arc<Store>,
        registry: Arc<dyn Registry>,
        debounce: Debounce,
        grace: Duration,
        mesh: trellis_api::compile::MeshSettings,
    ) -> PushServer {
        let epochs = epoch::follow(store, registry.clone(), debounce, mesh);
        PushServer {
            shared: Arc::new(Shared {
                registry,
                epochs,
                board: StatusBoard::new(grace),
                stop: watch::channel(false).0,
                otlp_endpoint: std::sync::RwLock::new(None),
                trust_bundle: watch::channel(String::new()).0,
                started: std::time::Instant::now(),
                warmup: grace,
            }),
        }
    }

    /// Names the collector proxies send spans, access logs and metrics to: its OTLP gRPC
    /// endpoint (`http://host:4317`; an unspecified host such as `0.0.0.0` means "the host you
    /// reach me at"). `None` (the default): proxies export nothing unless given their own
    /// `--otlp-endpoint`, which always wins.
    pub fn with_otlp_endpoint(self, endpoint: Option<String>) -> PushServer {
        self.set_otlp_endpoint(endpoint);
        self
    }

    /// Changes the collector endpoint; it reaches each proxy with its next full update (the
    /// first of every stream, so connected proxies learn it when they reconnect).
    pub fn set_otlp_endpoint(&self, endpoint: Option<String>) {
        *self
            .shared
            .otlp_endpoint
            .write()
            .unwrap_or_else(|e| e.into_inner()) = endpoint.filter(|e| !e.trim().is_empty());
    }

    /// Sends the trust bundle `bundles` carries to every connected proxy whenever it changes
    /// (root rotation), and to every proxy that connects later with its first update.
    pub fn follow_trust_bundle(&self, mut bundles: watch::Receiver<String>) {
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            loop {
                let pem = bundles.borrow_and_update().clone();
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                shared.trust_bundle.send_if_modified(|held| {
                    let changed = *held != pem;
                    *held = pem;
                    changed
                });
                drop(shared);
                if bundles.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Serves the gRPC push stream on `listener` until `shutdown` resolves, with the CA's
    /// `Identity` service beside it when there is one (proxies certify on the same connection).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        identity: Option<crate::ca::IdentityService>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let shared = self.shared.clone();
        let shutdown = async move {
            shutdown.await;
            shared.stop.send_replace(true);
        };
        let service = ConfigPushServer::new(self)
            .max_decoding_message_size(MAX_PROXY_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(service)
            .add_optional_service(identity.map(crate::ca::IdentityService::into_server))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| format!("push server: {e}"))
    }

    /// Every proxy connected now or within the grace period, by id; a proxy counts as in sync
    /// only once it holds the config of `revision` (the store's latest).
    pub fn proxies(&self, revision: u64) -> Vec<ProxyStatus> {
        self.shared.board.list(revision)
    }

    /// The epoch proxies are being brought to.
    pub fn epoch(&self) -> Arc<Epoch> {
        self.shared.epochs.borrow().clone()
    }

    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.shared.registry
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<ConfigUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigPush for PushServer {
    type StreamStream = UpdateStream;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer: Option<SocketAddr> = request.remote_addr();
        let mut inbound = request.into_inner();
        let hello = session::read_hello(&mut inbound).await?;
        let (tx, rx) = mpsc::channel(2);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            session::run(shared, hello, peer, inbound, tx).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
