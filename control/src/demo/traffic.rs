//! The demo's traffic generator: a steady rate of product page views through the ingress, one in
//! five signed in as `jason` (what the header-routing sample matches), so the graph, metrics and
//! traces have something to show.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Most requests in flight at once; beyond it (a delay fault holding every request) views are
/// skipped and counted rather than piled up.
const MAX_IN_FLIGHT: usize = 64;

/// How long one view may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What the generator did, read by the demo's status line.
#[derive(Debug, Default)]
pub struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

impl Counts {
    pub fn totals(&self) -> Totals {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Totals {
            ok: get(&self.ok),
            failed: get(&self.failed),
            skipped: get(&self.skipped),
        }
    }
}

/// The generator's counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Totals {
    /// The status line for what happened between `earlier` and these totals.
    pub fn since(&self, earlier: &Totals) -> String {
        let (ok, failed) = (self.ok - earlier.ok, self.failed - earlier.failed);
        let skipped = self.skipped - earlier.skipped;
        let mut line = format!(
            "traffic: {} product page views in the last minute, {failed} failed",
            ok + failed
        );
        if skipped > 0 {
            line.push_str(&format!(
                ", {skipped} skipped ({MAX_IN_FLIGHT} views already waiting)"
            ));
        }
        line
    }
}

/// Views `http://ingress/productpage` `rate` times a second until dropped.
pub async fn generate(ingress: SocketAddr, rate: f64, counts: Arc<Counts>) {
    if rate <= 0.0 {
        return std::future::pending().await;
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            counts.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let user = if n % 5 == 4 { "?u=jason" } else { "" };
        let uri = format!("http://{ingress}/productpage{user}");
        let (client, counts) = (client.clone(), counts.clone());
        tokio::spawn(async move {
            let view = async {
                let resp = client.get(uri.parse().ok()?).await.ok()?;
                let status = resp.status();
                resp.into_body().collect().await.ok()?;
                Some(status.is_success())
            };
            let ok = tokio::time::timeout(REQUEST_TIMEOUT, view)
                .await
                .ok()
                .flatten()
                .unwrap_or(false);
            let counter = if ok { &counts.ok } else { &counts.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_counts_the_last_interval_and_skips_only_when_any() {
        let earlier = Totals {
            ok: 100,
            failed: 2,
            skipped: 0,
        };
        let now = Totals {
            ok: 390,
            failed: 12,
            skipped: 0,
        };
        assert_eq!(
            now.since(&earlier),
            "traffic: 300 product page views in the last minute, 10 failed"
        );
        let stuck = Totals { skipped: 40, ..now };
        assert_eq!(
            stuck.since(&earlier),
            "traffic: 300 product page views in the last minute, 10 failed, 40 skipped (64 views already waiting)"
        );
    }
}
