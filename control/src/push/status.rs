//! What the control plane knows about each proxy, for `trellis proxy-status` and the console.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where a proxy stands relative to the config the control plane wants it to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// It acknowledged the latest version.
    Synced,
    /// An update is on its way or waiting for the proxy's answer.
    Stale,
    /// It refused the latest version and serves an older one.
    Nacked,
    /// Its stream is gone (kept for the registry's grace period).
    Disconnected,
}

/// One proxy as seen by the push server.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub id: String,
    pub workload: String,
    pub namespace: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    /// Its inbound address, empty when it serves nothing.
    pub address: String,
    pub peer: String,
    pub proxy_version: String,
    pub connected: bool,
    pub connected_since_unix_ms: i64,
    pub status: SyncState,
    pub version_sent: String,
    pub version_acked: String,
    pub version_nacked: String,
    /// What the control plane wants the proxy to serve now.
    pub latest_version: String,
    /// The config store revision the proxy is known to be in sync with (its acknowledged version
    /// was compiled from it, or a later revision changed nothing for it).
    pub revision_acked: u64,
    /// The reason of the last NACK.
    pub error: Option<String>,
    pub updates_sent: u64,
    pub last_ack_unix_ms: Option<i64>,
}

impl ProxyStatus {
    /// Where the proxy stands against the store's latest `revision`: until the push server has
    /// caught up with a change, the proxy is STALE even if it holds what was latest before.
    fn state(&self, revision: u64) -> SyncState {
        if !self.connected {
            SyncState::Disconnected
        } else if !self.version_nacked.is_empty() && self.version_nacked == self.latest_version {
            SyncState::Nacked
        } else if !self.version_acked.is_empty()
            && self.version_acked == self.latest_version
            && self.revision_acked >= revision
        {
            SyncState::Synced
        } else {
            SyncState::Stale
        }
    }
}

struct Entry {
    status: ProxyStatus,
    /// Which stream owns the entry: a reconnect replaces it, and the old stream's end must not
    /// mark the new one disconnected.
    connection: u64,
    disconnected_at: Option<Instant>,
}

/// Status of every proxy, updated by the sessions.
pub struct StatusBoard {
    grace: Duration,
    entries: Mutex<BTreeMap<String, Entry>>,
    next_connection: std::sync::atomic::AtomicU64,
}

impl StatusBoard {
    pub fn new(grace: Duration) -> StatusBoard {
        StatusBoard {
            grace,
            entries: Mutex::new(BTreeMap::new()),
            next_connection: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// A new stream for `status.id`; returns its connection number.
    pub fn connected(&self, mut status: ProxyStatus) -> u64 {
        let connection = self
            .next_connection
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        status.connected = true;
        status.connected_since_unix_ms = trellis_api::time::now_millis();
        let mut entries = self.lock();
        entries.retain(|_, e| e.disconnected_at.is_none_or(|t| t.elapsed() < self.grace));
        entries.insert(
            status.id.clone(),
            Entry {
                status,
                connection,
                disconnected_at: None,
            },
        );
        connection
    }

    pub fn update(&self, id: &str, connection: u64, change: impl FnOnce(&mut ProxyStatus)) {
        if let Some(e) = self.lock().get_mut(id)
            && e.connection == connection
        {
            change(&mut e.status);
        }
    }

    pub fn disconnected(&self, id: &str, connection: u64) {
        if let Some(e) = self.lock().get_mut(id)
            && e.connection == connection
        {
            e.status.connected = false;
            e.disconnected_at = Some(Instant::now());
        }
    }

    pub fn list(&self, revision: u64) -> Vec<ProxyStatus> {
        self.lock()
            .values()
            .filter(|e| e.disconnected_at.is_none_or(|t| t.elapsed() < self.grace))
            .map(|e| {
                let mut s = e.status.clone();
                s.status = s.state(revision);
                s
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
