//! Graceful drain: on SIGTERM the proxy stops accepting, reports not-ready, asks every connection
//! to finish its in-flight requests and close, and exits when they have (or the drain time ends).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

struct Shared {
    open: AtomicUsize,
    idle: Notify,
}

/// Held by listeners and connections: tells them when to drain, and counts them while they live.
#[derive(Clone)]
pub struct Drain {
    signal: watch::Receiver<bool>,
    shared: Arc<Shared>,
}

/// Starts the drain.
pub struct DrainTrigger {
    signal: watch::Sender<bool>,
    shared: Arc<Shared>,
}

/// Counts one open connection until dropped.
pub struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

pub fn channel() -> (DrainTrigger, Drain) {
    let (tx, rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        open: AtomicUsize::new(0),
        idle: Notify::new(),
    });
    (
        DrainTrigger {
            signal: tx,
            shared: shared.clone(),
        },
        Drain { signal: rx, shared },
    )
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once draining has begun.
    pub async fn signaled(&mut self) {
        let _ = self.signal.wait_for(|draining| *draining).await;
    }

    pub fn track(&self) -> ConnectionGuard {
        self.shared.open.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.shared.clone())
    }
}

impl DrainTrigger {
    /// Signals every holder to drain and waits until no tracked connection is open or `deadline`
    /// has passed. Returns the number still open.
    pub async fn drain(self, deadline: Duration) -> usize {
        let _ = self.signal.send(true);
        let wait = async {
            loop {
                let idle = self.shared.idle.notified();
                if self.shared.open.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        self.shared.open.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_connections_then_returns() {
        let (trigger, drain) = channel();
        let guard = drain.track();
        let mut watcher = drain.clone();
        let closer = tokio::spawn(async move {
            watcher.signaled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(guard);
        });
        assert_eq!(trigger.drain(Duration::from_secs(5)).await, 0);
        closer.await.unwrap();
        assert!(drain.is_draining());
    }
}
