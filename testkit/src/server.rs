//! Accept loops shared by the servers: connection counting and stop-on-drop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Resolves once the owning server stops (explicitly or by being dropped).
#[derive(Clone)]
pub(crate) struct Shutdown(watch::Receiver<()>);

impl Shutdown {
    pub(crate) async fn wait(mut self) {
        // Ok: stop was signalled; Err: the sender is gone. Either way we are done.
        let _ = self.0.changed().await;
    }
}

#[derive(Default)]
pub(crate) struct ConnStats {
    open: AtomicUsize,
    total: AtomicUsize,
}

/// Counts a connection as open while any clone is alive (upgraded streams keep one).
pub(crate) struct ConnGuard(Arc<ConnStats>);

impl ConnGuard {
    fn new(stats: &Arc<ConnStats>) -> Self {
        stats.open.fetch_add(1, Ordering::SeqCst);
        stats.total.fetch_add(1, Ordering::SeqCst);
        ConnGuard(stats.clone())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a connection handler gets besides the stream.
#[derive(Clone)]
pub(crate) struct ConnCtx {
    pub(crate) shutdown: Shutdown,
    pub(crate) guard: Arc<ConnGuard>,
}

/// A running accept loop. Dropping it stops accepting and closes every connection.
pub(crate) struct Running {
    addr: SocketAddr,
    stop: watch::Sender<()>,
    stats: Arc<ConnStats>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    pub(crate) fn total_connections(&self) -> usize {
        self.stats.total.load(Ordering::SeqCst)
    }

    pub(crate) fn reset_total(&self) {
        self.stats.total.store(0, Ordering::SeqCst);
    }

    /// Signals every task to stop; the listener closes when the runtime next polls it.
    pub(crate) fn stop(&mut self) {
        self.stop.send_replace(());
        if let Some(task) = &self.task {
            task.abort();
        }
    }

    /// Stops and waits until the listener is closed (so new connects are refused).
    pub(crate) async fn shutdown(&mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts connections on `listener`, running `handler` for each until the server stops.
pub(crate) fn spawn_accept<F, Fut>(listener: TcpListener, handler: F) -> Running
where
    F: Fn(TcpStream, ConnCtx) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().expect("listener local_addr");
    let (stop, rx) = watch::channel(());
    let shutdown = Shutdown(rx);
    let stats = Arc::new(ConnStats::default());
    let task = tokio::spawn({
        let stats = stats.clone();
        async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((s, _)) => s,
                        // e.g. EMFILE: back off instead of spinning.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                    _ = shutdown.clone().wait() => return,
                };
                let _ = stream.set_nodelay(true);
                let guard = Arc::new(ConnGuard::new(&stats));
                let conn = handler(
                    stream,
                    ConnCtx {
                        shutdown: shutdown.clone(),
                        guard: guard.clone(),
                    },
                );
                let stopped = shutdown.clone().wait();
                tokio::spawn(async move {
                    let _guard = guard;
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped => {}
                    }
                });
            }
        }
    });
    Running {
        addr,
        stop,
        stats,
        task: Some(task),
    }
}

/// Serves HTTP/1.1 (with upgrades) and HTTP/2 prior knowledge on `listener`.
///
/// `make` builds the per-connection service; tasks it spawns for upgraded connections should hold
/// the [`ConnCtx`] (stop with the server, count as open).
pub(crate) fn serve_http<M, S, B>(listener: TcpListener, make: M) -> Running
where
    M: Fn(ConnCtx) -> S + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<crate::Error>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::Error>,
{
    spawn_accept(listener, move |stream, ctx| {
        let svc = make(ctx);
        async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        }
    })
}

/// Writes `greeting`, then echoes every byte read until EOF or error.
pub(crate) async fn echo_bytes<S>(greeting: &[u8], mut io: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if io.write_all(greeting).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = io.shutdown().await;
}
