//! The listener stage: accept a connection, learn where it was going (original destination),
//! terminate mesh mutual TLS on inbound ports that ask for it (`mtls.rs`), tell HTTP from opaque
//! TCP, and hand it to the HTTP server or the TCP proxy.

pub mod detect;
pub mod mtls;
pub mod orig_dst;
pub mod tcp;

use crate::server::{ConnInfo, Proxy};
use crate::telemetry::record::Direction;
use detect::Detected;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use trellis_api::model::Protocol;

/// Accepts connections until the drain begins.
pub async fn serve(listener: TcpListener, direction: Direction, proxy: Arc<Proxy>) {
    let mut drain = proxy.drain.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(handle_connection(proxy.clone(), direction, stream, peer));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = drain.signaled() => return,
        }
    }
}

async fn handle_connection(
    proxy: Arc<Proxy>,
    direction: Direction,
    stream: TcpStream,
    peer: std::net::SocketAddr,
) {
    let _open = proxy.drain.track();
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let orig_dst = orig_dst::original_dst(&stream);
    let info = ConnInfo {
        direction,
        peer,
        local,
        orig_dst,
        peer_identity: None,
        local_identity: None,
        app_speaks_http1: false,
    };
    if direction == Direction::Inbound {
        match mtls::admit(&proxy, &stream, &info).await {
            mtls::Admission::PassThrough => {}
            mtls::Admission::Silent => return tcp::proxy(proxy, info, stream).await,
            mtls::Admission::Terminate(server) => {
                return mtls::terminate(proxy, info, stream, server).await;
            }
            mtls::Admission::Refuse => return,
        }
    }
    // Ports declared TCP skip detection, so server-first protocols work.
    let declared_tcp = direction == Direction::Outbound
        && orig_dst.is_some_and(|d| {
            proxy
                .store
                .load()
                .routes
                .by_address(d)
                .is_some_and(|vh| vh.protocol == Protocol::Tcp)
        });
    let detected = if declared_tcp {
        Detected::Tcp
    } else if orig_dst.is_some() {
        detect::detect(&stream, proxy.detection_timeout).await
    } else {
        // Explicit clients must speak HTTP; give them the header timeout to start.
        match detect::detect(&stream, Duration::from_secs(30)).await {
            Detected::Tcp if direction == Direction::Outbound => {
                tracing::debug!(%peer, "non-HTTP connection without an original destination; closing");
                return;
            }
            d => d,
        }
    };
    match detected {
        Detected::Http => serve_http(proxy, info, stream).await,
        Detected::Tcp => tcp::proxy(proxy, info, stream).await,
        Detected::Closed => {}
    }
}

/// Serves HTTP/1.1 or HTTP/2 (hyper's auto connection reads which from the client's first
/// bytes) on a plaintext or mutual TLS stream.
async fn serve_http<S>(proxy: Arc<Proxy>, info: ConnInfo, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let service = {
        let proxy = proxy.clone();
        hyper::service::service_fn(move |req| {
            let (proxy, info) = (proxy.clone(), info.clone());
            // Boxed: hyper moves each request's future into its HTTP/2 stream task and the
            // task's stages, so a pointer is copied instead of kilobytes of routing state.
            Box::pin(async move {
                Ok::<_, Infallible>(crate::forward::handle(&proxy, &info, req).await)
            })
        })
    };
    let conn = proxy
        .http
        .serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut drain = proxy.drain.clone();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = drain.signaled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
