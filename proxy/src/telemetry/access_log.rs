//! One JSON line per request, in the field names of Istio's JSON access log, written by a
//! background thread so that a slow stdout never slows traffic: the queue is bounded and records
//! that do not fit are dropped and counted.

use super::record::{Direction, RecordSink, RequestRecord};
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
    let inbound = r.direction == Direction::Inbound;
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
        "connection_security_policy": security_policy(r),
        // Envoy's %DOWNSTREAM_PEER_URI_SAN% / %DOWNSTREAM_LOCAL_URI_SAN% (inbound) and
        // %UPSTREAM_PEER_URI_SAN% (outbound): the SPIFFE IDs mutual TLS verified.
        "downstream_peer_uri_san": inbound.then_some(r.peer_principal.as_deref()).flatten(),
        "downstream_local_uri_san": inbound.then_some(r.local_principal.as_deref()).flatten(),
        "upstream_peer_uri_san": (!inbound).then_some(r.peer_principal.as_deref()).flatten(),
    })
}

/// Istio's `connection_security_policy`: `mutual_tls` when mutual TLS authenticated both ends,
/// `none` for plaintext inbound. The client side says `unknown` (as in Istio's metrics) unless
/// it verified the next proxy itself, which outbound TCP records: a log line can say more than
/// a metric label that must stay comparable with Istio's.
pub fn security_policy(r: &RequestRecord) -> &'static str {
    let both = r.local_principal.is_some() && r.peer_principal.is_some();
    match (r.direction, both) {
        (_, true) => "mutual_tls",
        (Direction::Inbound, false) => "none",
        (Direction::Outbound, false) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_mutual_tls_names_both_identities() {
        let mut r = RequestRecord::new(Direction::Inbound, "HTTP/2");
        r.local_principal = Some(Arc::from("spiffe://cluster.local/ns/shop/sa/reviews"));
        r.peer_principal = Some(Arc::from("spiffe://cluster.local/ns/shop/sa/productpage"));
        let json = to_json(&r);
        assert_eq!(json["connection_security_policy"], "mutual_tls");
        assert_eq!(
            json["downstream_peer_uri_san"],
            "spiffe://cluster.local/ns/shop/sa/productpage"
        );
        assert_eq!(
            json["downstream_local_uri_san"],
            "spiffe://cluster.local/ns/shop/sa/reviews"
        );
        assert!(json["upstream_peer_uri_san"].is_null());
    }

    #[test]
    fn plaintext_inbound_is_none_and_outbound_unknown_unless_verified() {
        let plain = to_json(&RequestRecord::new(Direction::Inbound, "HTTP/1.1"));
        assert_eq!(plain["connection_security_policy"], "none");
        assert!(plain["downstream_peer_uri_san"].is_null());

        let http_out = to_json(&RequestRecord::new(Direction::Outbound, "HTTP/1.1"));
        assert_eq!(http_out["connection_security_policy"], "unknown");

        let mut tcp_out = RequestRecord::new(Direction::Outbound, "TCP");
        tcp_out.local_principal = Some(Arc::from("spiffe://cluster.local/ns/a/sa/client"));
        tcp_out.peer_principal = Some(Arc::from("spiffe://cluster.local/ns/b/sa/db"));
        let tcp_out = to_json(&tcp_out);
        assert_eq!(tcp_out["connection_security_policy"], "mutual_tls");
        assert_eq!(
            tcp_out["upstream_peer_uri_san"],
            "spiffe://cluster.local/ns/b/sa/db"
        );
        assert!(tcp_out["downstream_peer_uri_san"].is_null());
    }
}
