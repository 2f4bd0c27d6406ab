//! The destination a connection had before iptables REDIRECT sent it to us (SO_ORIGINAL_DST,
//! IPv4 and IPv6, including IPv4 clients of a dual-stack listener).

use crate::route::canonical_ip;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// The original destination, when the connection was redirected (it differs from the address the
/// connection actually arrived on).
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let local = SocketAddr::new(canonical_ip(local.ip()), local.port());
    let sock = socket2::SockRef::from(stream);
    let orig = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    let orig = orig.ok()?.as_socket()?;
    let orig = SocketAddr::new(canonical_ip(orig.ip()), orig.port());
    (orig != local).then_some(orig)
}
