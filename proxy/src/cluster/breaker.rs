//! Envoy's circuit breakers from `connectionPool`: a request over a limit is refused at once
//! (503, flag UO) rather than queued without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use trellis_api::model::ConnectionPool;

#[derive(Debug)]
pub struct Breakers {
    /// `http2MaxRequests`: requests in flight to the cluster.
    max_requests: Option<u32>,
    requests: AtomicU32,
    /// `maxConnections` for HTTP/1 (one request per connection at a time), with
    /// `http1MaxPendingRequests` allowed to wait for one.
    connections: Option<Arc<Semaphore>>,
    max_pending: u32,
    pending: AtomicU32,
    /// `maxRetries`: retries in flight to the cluster.
    max_retries: Option<u32>,
    retries: AtomicU32,
}

/// Holds the slots a request took; they are given back when it is dropped.
#[derive(Debug)]
pub struct Admission {
    breakers: Arc<Breakers>,
    counted: bool,
    _connection: Option<OwnedSemaphorePermit>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.counted {
            self.breakers.requests.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Holds a retry slot.
#[derive(Debug)]
pub struct RetrySlot(Arc<Breakers>);

impl Drop for RetrySlot {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The request was over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl Breakers {
    pub fn new(pool: &ConnectionPool) -> Breakers {
        Breakers {
            max_requests: pool.http2_max_requests,
            requests: AtomicU32::new(0),
            connections: pool
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n.max(1) as usize))),
            max_pending: pool.http1_max_pending_requests.unwrap_or(u32::MAX),
            pending: AtomicU32::new(0),
            max_retries: pool.max_retries,
            retries: AtomicU32::new(0),
        }
    }

    /// Admits a request, waiting for an HTTP/1 connection slot if the pending queue has room.
    pub async fn admit(self: &Arc<Self>, http1: bool) -> Result<Admission, Overflow> {
        let counted = match self.max_requests {
            Some(max) => {
                if self.requests.fetch_add(1, Ordering::Relaxed) >= max {
                    self.requests.fetch_sub(1, Ordering::Relaxed);
                    return Err(Overflow);
                }
                true
            }
            None => false,
        };
        let mut admission = Admission {
            breakers: self.clone(),
            counted,
            _connection: None,
        };
        if let (true, Some(sem)) = (http1, &self.connections) {
            let permit = match sem.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
                        self.pending.fetch_sub(1, Ordering::Relaxed);
                        return Err(Overflow);
                    }
                    let permit = sem.clone().acquire_owned().await;
                    self.pending.fetch_sub(1, Ordering::Relaxed);
                    permit.map_err(|_| Overflow)?
                }
            };
            admission._connection = Some(permit);
        }
        Ok(admission)
    }

    /// Takes a retry slot, or `None` when `maxRetries` retries are already in flight.
    pub fn retry(self: &Arc<Self>) -> Option<RetrySlot> {
        let max = self.max_retries.unwrap_or(u32::MAX);
        if self.retries.fetch_add(1, Ordering::Relaxed) >= max {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(RetrySlot(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http1_connections_then_pending_then_overflow() {
        let pool = ConnectionPool {
            max_connections: Some(1),
            http1_max_pending_requests: Some(1),
            ..Default::default()
        };
        let b = Arc::new(Breakers::new(&pool));
        let first = b.admit(true).await.unwrap();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.admit(true).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(b.admit(true).await.unwrap_err(), Overflow);
        drop(first);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn max_requests_and_retries() {
        let pool = ConnectionPool {
            http2_max_requests: Some(2),
            max_retries: Some(1),
            ..Default::default()
        };
        let b = Arc::new(Breakers::new(&pool));
        let (_a, _b) = (b.admit(false).await.unwrap(), b.admit(false).await.unwrap());
        assert!(b.admit(false).await.is_err());
        let slot = b.retry().unwrap();
        assert!(b.retry().is_none());
        drop(slot);
        assert!(b.retry().is_some());
    }
}
