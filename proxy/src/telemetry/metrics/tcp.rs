//! Opaque TCP connections' metrics: opened when the destination is known, bytes counted as they
//! flow (so a long-lived connection's traffic shows before it closes), closed when it ends.

use super::store::TcpCounters;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An open connection's series. Dropping it reports the close, also when the connection's task
/// is cancelled.
pub struct TcpConnection {
    counters: Option<Arc<TcpCounters>>,
}

impl TcpConnection {
    /// `None`: the series limit was reached; the connection is not reported.
    pub(super) fn opened(counters: Option<Arc<TcpCounters>>) -> TcpConnection {
        if let Some(c) = &counters {
            c.opened.fetch_add(1, Ordering::Relaxed);
        }
        TcpConnection { counters }
    }

    /// Bytes sent to the client (`istio_tcp_sent_bytes_total`).
    pub fn count_sent(&self, n: u64) {
        if let Some(c) = &self.counters {
            c.sent_bytes.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Bytes received from the client (`istio_tcp_received_bytes_total`).
    pub fn count_received(&self, n: u64) {
        if let Some(c) = &self.counters {
            c.received_bytes.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Wraps the client's side of the connection so that its bytes are counted as they pass.
    pub fn meter<S>(&self, client: S) -> MeteredStream<S> {
        MeteredStream {
            inner: client,
            counters: self.counters.clone(),
        }
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        if let Some(c) = &self.counters {
            c.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The client's stream, counting what is read from it (received) and written to it (sent).
pub struct MeteredStream<S> {
    inner: S,
    counters: Option<Arc<TcpCounters>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for MeteredStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0
            && let Some(c) = &self.counters
        {
            c.received_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MeteredStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled
            && let Some(c) = &self.counters
        {
            c.sent_bytes.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
