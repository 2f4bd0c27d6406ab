//! Test support for Trellis end-to-end tests.
//!
//! Everything here runs on loopback and is bounded: servers stop and processes are killed when
//! their handle is dropped, and every wait takes a timeout.
//!
//! - [`echo`]: HTTP/1.1 + HTTP/2 upstream answering with a JSON description of the request,
//!   plus WebSocket and raw HTTP/1 upgrade echo.
//! - [`grpc`]: a tonic echo service (`trellis.test.Echo`) and its client.
//! - [`otlp`]: an OTLP receiver (gRPC and HTTP) that keeps what it gets and can fail or stall.
//! - [`prometheus`]: a real Prometheus server, `promtool check metrics`, and an exposition parser.
//! - [`tcp`]: an opaque TCP echo server.
//! - [`pki`]: a throwaway CA issuing SPIFFE, DNS and deliberately bad certificates.
//! - [`process`]: spawn the `trellis-proxy` binary (or anything else) and read its output.
//! - [`client`]: HTTP clients with fixed target address, WebSocket client, tallies, polling.

pub mod client;
pub mod echo;
pub mod grpc;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod prometheus;
mod server;
pub mod tcp;

pub use client::{HttpClient, Response, Tally, count_by_upstream, wait_until};
pub use echo::{EchoInfo, EchoServer};
pub use grpc::GrpcEchoServer;
pub use process::{ConfigDir, ProxyProcess};
pub use tcp::TcpEchoServer;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// Boxed error used by the fallible helpers.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Ports handed out by [`free_addrs`] in this process, never handed out twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `n` distinct free `127.0.0.1` addresses (bound together on port 0, then released).
///
/// Prefer keeping a bound listener where the code under test can take one; this is for flags.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    let mut held = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = l.local_addr().expect("local_addr");
        held.push(l);
        if handed.insert(addr.port()) {
            out.push(addr);
        }
    }
    out
}

/// One free `127.0.0.1` address; see [`free_addrs`].
pub fn free_addr() -> SocketAddr {
    free_addrs(1)[0]
}
