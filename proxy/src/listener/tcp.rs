//! Opaque TCP: pick a destination by the connection's original destination and TCP routes, connect,
//! and copy bytes both ways, reporting one record per connection.

use crate::cluster::outlier::Outcome;
use crate::endpoint::UpstreamIo;
use crate::server::{ConnInfo, Proxy};
use crate::telemetry::ResponseFlags;
use crate::telemetry::peer::PeerMeta;
use crate::telemetry::record::{Direction, RequestRecord};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use trellis_api::model::OutboundTrafficPolicy;
use trellis_identity::tls::MeshProtocol;
use xxhash_rust::xxh64::xxh64;

/// Connect attempts on different endpoints before giving up (Envoy tries once; one more helps
/// when an endpoint has just gone away).
const CONNECT_ATTEMPTS: usize = 2;

/// Proxies one client connection (plaintext, or the inner stream of mesh mutual TLS).
pub async fn proxy<S>(proxy: Arc<Proxy>, info: ConnInfo, downstream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut record = RequestRecord::new(info.direction, "TCP");
    record.downstream_remote = Some(info.peer);
    record.downstream_local = Some(info.local);
    record.peer_principal = info.peer_identity.clone();
    record.local_principal = info.local_identity.clone();
    let upstream = match info.direction {
        Direction::Inbound => connect_inbound(&proxy, &info, &mut record)
            .await
            .map(UpstreamIo::Plain),
        Direction::Outbound => connect_outbound(&proxy, &info, &mut record).await,
    };
    // Reported as opened once the destination (or the failure to reach it) is known; the
    // handle reports the close even if this task is cancelled.
    record.reported = proxy.telemetry.enabled;
    let connection = record
        .reported
        .then(|| proxy.telemetry.metrics.tcp_opened(&record));
    if let Some(upstream) = upstream {
        let copied = match &connection {
            Some(connection) => copy(connection.meter(downstream), upstream).await,
            None => copy(downstream, upstream).await,
        };
        match copied {
            Ok((from_client, from_server)) => {
                record.bytes_received = from_client;
                record.bytes_sent = from_server;
            }
            Err(_) => record
                .flags
                .insert(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION),
        }
    }
    drop(connection);
    proxy.telemetry.sinks.finish(record);
}

async fn copy(
    mut downstream: impl AsyncRead + AsyncWrite + Unpin,
    mut upstream: impl AsyncRead + AsyncWrite + Unpin,
) -> std::io::Result<(u64, u64)> {
    tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await
}

async fn connect_inbound(
    proxy: &Proxy,
    info: &ConnInfo,
    record: &mut RequestRecord,
) -> Option<TcpStream> {
    let Some(port) = proxy.inbound.port_for(info) else {
        record.flags.insert(ResponseFlags::NO_ROUTE);
        return None;
    };
    let cluster = proxy.inbound.cluster(port);
    record.upstream_cluster = Some(cluster.name.clone());
    if denied(proxy, info, record, port) {
        // Envoy's RBAC network filter closes the connection; nothing reaches the app.
        record.details = "rbac_access_denied";
        return None;
    }
    let (ep, _active) = cluster.pick(None)?;
    record.upstream_host = Some(ep.display.clone());
    match ep.pool.connect().await {
        Ok(s) => Some(s),
        Err(_) => {
            record
                .flags
                .insert(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
            None
        }
    }
}

/// Applies this workload's AuthorizationPolicies to an inbound TCP connection (HTTP-only
/// fields treated as Istio does for TCP); counts and reports a denial.
fn denied(proxy: &Proxy, info: &ConnInfo, record: &RequestRecord, port: u16) -> bool {
    use crate::authz::RequestAttributes;
    let snapshot = proxy.store.load();
    let policies = &snapshot.config.authorization;
    if policies.is_empty() {
        return false;
    }
    let attributes = RequestAttributes {
        peer_principal: record.peer_principal.as_deref(),
        ..RequestAttributes::new(
            info.peer.ip(),
            info.orig_dst.unwrap_or(info.local).ip(),
            port,
        )
    };
    proxy.denials.denied(&policies.evaluate(&attributes))
}

async fn connect_outbound(
    proxy: &Proxy,
    info: &ConnInfo,
    record: &mut RequestRecord,
) -> Option<UpstreamIo> {
    let dst = info.orig_dst?;
    record.authority = dst.to_string();
    let snapshot = proxy.store.load();
    let route = snapshot
        .routes
        .by_address(dst)
        .and_then(|vh| vh.match_tcp(Some(dst)));
    let Some(route) = route else {
        if snapshot.config.outbound_traffic_policy == OutboundTrafficPolicy::AllowAny
            && !proxy.own_addresses.contains(&dst)
        {
            record.upstream_cluster = Some(Arc::from("PassthroughCluster"));
            record.upstream_host = Some(Arc::from(dst.to_string()));
            return match proxy.store.passthrough_pool(dst).connect().await {
                Ok(s) => Some(UpstreamIo::Plain(s)),
                Err(_) => {
                    record
                        .flags
                        .insert(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
                    None
                }
            };
        }
        record.upstream_cluster = Some(Arc::from("BlackHoleCluster"));
        record.flags.insert(ResponseFlags::NO_ROUTE);
        return None;
    };
    let (cluster, _) = route.destinations.pick()?;
    record.upstream_cluster = Some(cluster.name.clone());
    let hash = Some(xxh64(info.peer.ip().to_string().as_bytes(), 0));
    for _ in 0..CONNECT_ATTEMPTS {
        let Some((ep, _active)) = cluster.pick(hash) else {
            record.flags.insert(ResponseFlags::NO_HEALTHY_UPSTREAM);
            return None;
        };
        record.upstream_host = Some(ep.display.clone());
        // No headers on opaque TCP: what the endpoint's labels say is all that is known of
        // the destination workload.
        record.endpoint_peer = (!ep.endpoint.labels.is_empty())
            .then(|| Arc::new(PeerMeta::from_labels(&ep.endpoint.labels)));
        match ep
            .pool
            .connect_with(&proxy.identity, MeshProtocol::Tcp)
            .await
        {
            Ok((stream, mesh)) => {
                cluster.report(&ep, Outcome::Success);
                if let Some(mesh) = mesh {
                    // Mutual TLS to the next proxy: both identities, as verified.
                    record.local_principal = Some(mesh.local);
                    record.peer_principal = Some(mesh.peer);
                }
                return Some(stream);
            }
            Err(e) => {
                tracing::debug!(endpoint = %ep.display, error = %e, "TCP connect failed");
                cluster.report(&ep, Outcome::LocalFailure);
            }
        }
    }
    record
        .flags
        .insert(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
    None
}
