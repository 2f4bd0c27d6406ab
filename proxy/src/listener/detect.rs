//! Protocol detection from the first bytes a client sends: HTTP/1, HTTP/2 (prior knowledge) or
//! anything else (opaque TCP).

use std::time::Duration;
use tokio::net::TcpStream;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The longest HTTP method we wait for before deciding it is not HTTP.
const MAX_METHOD: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http,
    Tcp,
    /// The client closed before sending anything.
    Closed,
}

/// Classifies what is known so far; `None` when more bytes are needed.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n >= 8 { Some(Detected::Http) } else { None };
    }
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'A'..=b'Z' | b'-' | b'_' if i < MAX_METHOD => continue,
            b' ' if i > 0 => return Some(Detected::Http),
            _ => return Some(Detected::Tcp),
        }
    }
    if buf.len() >= MAX_METHOD {
        Some(Detected::Tcp)
    } else {
        None
    }
}

/// Peeks at the stream until the protocol is known. If the client stays silent for `patience`
/// (a server-first protocol), it is opaque TCP.
pub async fn detect(stream: &TcpStream, patience: Duration) -> Detected {
    let deadline = tokio::time::Instant::now() + patience;
    let mut buf = [0u8; 32];
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await;
        match peeked {
            Err(_) => return Detected::Tcp,
            Ok(Err(_)) | Ok(Ok(0)) => return Detected::Closed,
            Ok(Ok(n)) => {
                if let Some(d) = classify(&buf[..n]) {
                    return d;
                }
                // Part of a request line has arrived; wait briefly for the rest.
                if tokio::time::Instant::now() >= deadline {
                    return Detected::Tcp;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http));
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Some(Detected::Http));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Some(Detected::Http));
        assert_eq!(classify(b"PRI"), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"\x16\x03\x01\x02"), Some(Detected::Tcp));
        assert_eq!(classify(b"hello world"), Some(Detected::Tcp));
        assert_eq!(classify(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"), Some(Detected::Tcp));
    }
}
