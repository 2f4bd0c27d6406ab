//! The inner protocol of a mesh connection, carried in ALPN.
//!
//! Istio's sidecars mark mesh traffic with their own ALPN values (`istio`, `istio-h2`,
//! `istio-http/1.1`), which lets an inbound listener tell a sidecar's mutual TLS from an
//! application's own TLS by the ClientHello alone. Trellis does the same with a `trellis` prefix:
//! the client offers exactly one value, which both marks the connection as mesh traffic and names
//! what runs inside; the server picks it if it accepts that protocol, or the handshake fails with
//! `NoApplicationProtocol`.
//!
//! | inner protocol | ALPN            |
//! |----------------|-----------------|
//! | HTTP/2         | `trellis-h2`       |
//! | HTTP/1.1       | `trellis-http/1.1` |
//! | HTTP/1.1 requests multiplexed over HTTP/2 | `trellis-h2-http/1.1` |
//! | opaque TCP     | `trellis-tcp`      |

use rustls::CommonState;

/// What every mesh ALPN value starts with: a ClientHello offering one is a Trellis proxy's.
pub const MESH_ALPN_PREFIX: &[u8] = b"trellis-";

/// The protocol a mesh connection carries once the TLS handshake is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MeshProtocol {
    Http2,
    Http1,
    /// HTTP/2 between the proxies carrying requests the application speaks HTTP/1.1 for: the
    /// connection is multiplexed, and the server's proxy knows to reach its application over
    /// HTTP/1.1.
    Http1OverH2,
    Tcp,
}

impl MeshProtocol {
    /// Every inner protocol, in the server's order of preference.
    pub const ALL: [MeshProtocol; 4] = [
        MeshProtocol::Http2,
        MeshProtocol::Http1OverH2,
        MeshProtocol::Http1,
        MeshProtocol::Tcp,
    ];

    /// The ALPN protocol ID that carries this protocol.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            MeshProtocol::Http2 => b"trellis-h2",
            MeshProtocol::Http1 => b"trellis-http/1.1",
            MeshProtocol::Http1OverH2 => b"trellis-h2-http/1.1",
            MeshProtocol::Tcp => b"trellis-tcp",
        }
    }

    /// The protocol an ALPN protocol ID names, if it is a mesh one.
    pub fn from_alpn(id: &[u8]) -> Option<MeshProtocol> {
        MeshProtocol::ALL.into_iter().find(|p| p.alpn() == id)
    }

    /// The protocol negotiated on a finished handshake (either side).
    pub fn negotiated(conn: &CommonState) -> Option<MeshProtocol> {
        conn.alpn_protocol().and_then(MeshProtocol::from_alpn)
    }

    /// Whether a ClientHello's ALPN offer (e.g. `ClientHello::alpn()` from rustls's `Acceptor`)
    /// marks the connection as a Trellis proxy's mutual TLS, not an application's own TLS.
    pub fn is_mesh_offer<'a>(mut offered: impl Iterator<Item = &'a [u8]>) -> bool {
        offered.any(|id| id.starts_with(MESH_ALPN_PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_ids_round_trip_and_mark_mesh_offers() {
        for p in MeshProtocol::ALL {
            assert_eq!(MeshProtocol::from_alpn(p.alpn()), Some(p));
        }
        assert_eq!(MeshProtocol::from_alpn(b"h2"), None);
        let app_tls: [&[u8]; 2] = [b"h2", b"http/1.1"];
        assert!(!MeshProtocol::is_mesh_offer(app_tls.into_iter()));
        let mesh: [&[u8]; 1] = [b"trellis-h2"];
        assert!(MeshProtocol::is_mesh_offer(mesh.into_iter()));
    }
}
