//! Thread-per-core workers, as Envoy runs them: each worker is one thread with a single-threaded
//! runtime and its own listening sockets on the shared ports (SO_REUSEPORT), so a connection, its
//! requests and the upstream connections they use all stay on one thread with no hand-offs.

use crate::server::Proxy;
use crate::telemetry::record::Direction;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use tokio::sync::watch;

static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// This thread's worker index (0 outside workers).
pub fn current() -> usize {
    WORKER.with(|w| w.get())
}

/// Number of workers; per-worker state (connection pools) is sized by it.
pub fn count() -> usize {
    WORKERS.load(Ordering::Relaxed)
}

/// Sets the worker count before any connection pool is made.
pub fn set_count(n: usize) {
    WORKERS.store(n.max(1), Ordering::Relaxed);
}

/// A listening socket that other workers may also bind (SO_REUSEPORT).
pub fn bind_shared(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `[::]` takes IPv4 clients too, as a sidecar's catch-all listener must.
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The listeners of one worker.
pub struct WorkerListeners {
    pub outbound: std::net::TcpListener,
    pub inbound: std::net::TcpListener,
}

/// Binds one set of listeners per worker on `outbound` and `inbound` (port 0 picks one port for
/// all). Returns them with the addresses actually bound.
pub fn bind_all(
    n: usize,
    outbound: SocketAddr,
    inbound: SocketAddr,
) -> std::io::Result<(Vec<WorkerListeners>, SocketAddr, SocketAddr)> {
    let first = WorkerListeners {
        outbound: bind_shared(outbound)?,
        inbound: bind_shared(inbound)?,
    };
    let (out_addr, in_addr) = (first.outbound.local_addr()?, first.inbound.local_addr()?);
    let mut all = vec![first];
    for _ in 1..n {
        all.push(WorkerListeners {
            outbound: bind_shared(out_addr)?,
            inbound: bind_shared(in_addr)?,
        });
    }
    Ok((all, out_addr, in_addr))
}

/// Starts one thread per listener set; each serves until `stop` turns true.
pub fn spawn(
    listeners: Vec<WorkerListeners>,
    proxy: Arc<Proxy>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    listeners
        .into_iter()
        .enumerate()
        .map(|(index, l)| {
            let (proxy, mut stop) = (proxy.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(index));
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "worker runtime failed to start");
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        match (
                            tokio::net::TcpListener::from_std(l.outbound),
                            tokio::net::TcpListener::from_std(l.inbound),
                        ) {
                            (Ok(outbound), Ok(inbound)) => {
                                tokio::spawn(crate::listener::serve(
                                    outbound,
                                    Direction::Outbound,
                                    proxy.clone(),
                                ));
                                tokio::spawn(crate::listener::serve(
                                    inbound,
                                    Direction::Inbound,
                                    proxy,
                                ));
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                tracing::error!(error = %e, "worker listeners failed")
                            }
                        }
                        let _ = stop.wait_for(|stop| *stop).await;
                    });
                })
        })
        .collect()
}
