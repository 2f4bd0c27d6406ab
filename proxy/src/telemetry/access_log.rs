//! One JSON line per request, in the field names of Istio's JSON access log, written by a
//! background thread so that a slow stdout never slows traffic: the queue is bounded and records
//! that do not fit are dropped and counted.

use super::record::{RecordSink, RequestRecord};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

const QUEUE: usize = 8192;

pub struct AccessLog {
    queue: SyncSender<serde_json::Value>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts the writer thread writing to `out` (stdout, or a file); records that do not fit
    /// the queue are counted in `dropped`.
    pub fn start(out: Box<dyn Write + Send>, dropped: Arc<AtomicU64>) -> AccessLog {
        let (queue, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(rx, out))
            .expect("spawning the access log thread");
        AccessLog { queue, dropped }
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl RecordSink for AccessLog {
    fn record(&self, r: &RequestRecord) {
        match self.queue.try_send(to_json(r)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write_loop(rx: Receiver<serde_json::Value>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let _ = serde_json::to_writer(&mut out, &line);
        let _ = out.write_all(b"\n");
        // Write whatever else is queued, then flush once.
        while let Ok(line) = rx.try_recv() {
            let _ = serde_json::to_writer(&mut out, &line);
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }
}

/// The access log record of a request, in Istio's JSON field names (also the body of OTLP logs).
pub fn to_json(r: &RequestRecord) -> serde_json::Value {
    let start = trellis_api::time::unix_millis(r.start_time);
    json!({
        "start_time": trellis_api::time::rfc3339_millis(start),
        "direction": r.direction.as_str(),
        "method": r.method.as_ref().map(|m| m.as_str()),
        "path": r.path.as_ref().map(|p| p.as_str()),
        "protocol": r.protocol,
        "response_code": r.status,
        "grpc_status": r.grpc_status,
        "response_flags": r.flags.to_string(),
        "response_code_details": r.details,
        "bytes_received": r.bytes_received,
        "bytes_sent": r.bytes_sent,
        "duration": r.duration_ms,
        "upstream_service_time": r.upstream_service_time_ms,
        "user_agent": r.user_agent.as_ref().and_then(|v| v.to_str().ok()),
        "request_id": r.request_id.as_ref().and_then(|v| v.to_str().ok()),
        "authority": r.authority,
        "upstream_host": r.upstream_host.as_deref(),
        "upstream_cluster": r.upstream_cluster.as_deref(),
        "route_name": r.route_name.as_deref(),
        "attempts": r.attempts,
        "downstream_remote_address": r.downstream_remote.map(|a| a.to_string()),
        "downstream_local_address": r.downstream_local.map(|a| a.to_string()),
    })
}
