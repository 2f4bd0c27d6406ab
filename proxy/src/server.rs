//! The running proxy: its shared state and the listeners it starts.

use crate::cluster::{ClusterRuntime, PoolRegistry};
use crate::config::ConfigStore;
use crate::drain::Drain;
use crate::telemetry::Telemetry;
use crate::telemetry::record::Direction;
use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trellis_api::model;

/// Largest request header block accepted (Envoy's default is 60 KiB); larger gets 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// State every connection and request shares.
pub struct Proxy {
    pub store: Arc<ConfigStore>,
    pub telemetry: Arc<Telemetry>,
    pub inbound: Inbound,
    pub drain: Drain,
    pub http: auto::Builder<TokioExecutor>,
    /// How long a redirected connection may stay silent before it is treated as opaque TCP.
    pub detection_timeout: Duration,
    /// The proxy's own listener addresses, never valid as a passthrough destination.
    pub own_addresses: Vec<SocketAddr>,
    /// Inbound requests and connections AuthorizationPolicy denied.
    pub denials: crate::authz::Denials,
    /// The workload's certificate and trust bundle for mutual TLS (disabled unless configured).
    pub identity: crate::identity::WorkloadIdentity,
    /// Inbound mutual TLS termination: the server config built from `identity`, and its counters.
    pub inbound_tls: crate::listener::mtls::InboundTls,
}

impl Proxy {
    pub fn new(
        store: Arc<ConfigStore>,
        telemetry: Arc<Telemetry>,
        app_port: Option<u16>,
        drain: Drain,
    ) -> Proxy {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(MAX_HEADER_BYTES.max(8192));
        http.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20);
        Proxy {
            store,
            telemetry,
            inbound: Inbound::new(app_port),
            drain,
            http,
            detection_timeout: Duration::from_secs(5),
            own_addresses: Vec::new(),
            denials: crate::authz::Denials::default(),
            identity: crate::identity::WorkloadIdentity::disabled(),
            inbound_tls: crate::listener::mtls::InboundTls::default(),
        }
    }
}

/// What one accepted connection is.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub direction: Direction,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Where the client meant to go, when iptables redirected it here.
    pub orig_dst: Option<SocketAddr>,
    /// The client's SPIFFE ID (`spiffe://td/ns/NS/sa/SA`), verified by mutual TLS; `None` for
    /// plaintext connections.
    pub peer_identity: Option<Arc<str>>,
    /// This workload's SPIFFE ID, when the connection arrived over mutual TLS.
    pub local_identity: Option<Arc<str>>,
    /// The client's proxy multiplexes over HTTP/2 requests the application speaks HTTP/1.1
    /// for: they reach the application as HTTP/1.1.
    pub app_speaks_http1: bool,
}

/// Inbound traffic goes to the application on loopback: `--app-port`, or the port the client
/// originally dialled when inbound capture redirected it.
pub struct Inbound {
    pub app_port: Option<u16>,
    /// Read on every inbound request without locking; the mutex only serialises additions.
    clusters: ArcSwap<HashMap<u16, Arc<ClusterRuntime>>>,
    adding: Mutex<()>,
}

impl Inbound {
    fn new(app_port: Option<u16>) -> Inbound {
        Inbound {
            app_port,
            clusters: ArcSwap::from_pointee(HashMap::new()),
            adding: Mutex::new(()),
        }
    }

    /// The application port for a connection.
    pub fn port_for(&self, info: &ConnInfo) -> Option<u16> {
        info.orig_dst.map(|d| d.port()).or(self.app_port)
    }

    /// The `inbound|PORT||` cluster: the application on 127.0.0.1:PORT.
    pub fn cluster(&self, port: u16) -> Arc<ClusterRuntime> {
        if let Some(c) = self.clusters.load().get(&port) {
            return c.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.clusters.load().get(&port) {
            return c.clone();
        }
        let config = model::Cluster {
            name: format!("inbound|{port}||"),
            service: "127.0.0.1".into(),
            port,
            load_balancer: model::LoadBalancer::RoundRobin,
            endpoints: vec![model::Endpoint {
                address: "127.0.0.1".into(),
                port,
                labels: Default::default(),
                weight: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let cluster = Arc::new(ClusterRuntime::build(
            &config,
            None,
            &mut PoolRegistry::default(),
            &PoolRegistry::default(),
        ));
        let mut next = HashMap::clone(&self.clusters.load());
        next.insert(port, cluster.clone());
        self.clusters.store(Arc::new(next));
        cluster
    }
}
