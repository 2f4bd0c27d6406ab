//! Counting gRPC messages in a body stream (`istio_request_messages_total` /
//! `istio_response_messages_total`): each message is a 5-byte prefix (compressed flag, 32-bit
//! big-endian length) and then that many bytes, split across data frames however the sender liked.

/// Where a stream is within gRPC's length-prefixed framing.
#[derive(Debug, Default, Clone)]
pub struct GrpcFrames {
    /// Prefix bytes of the next message seen so far.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Payload bytes of the current message still to come.
    remaining: u64,
}

impl GrpcFrames {
    /// Consumes one data chunk; returns how many messages started in it.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut started = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(data.len() as u64);
                self.remaining -= skip;
                data = &data[skip as usize..];
                continue;
            }
            let take = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data = &data[take..];
            if self.prefix_len == 5 {
                started += 1;
                self.prefix_len = 0;
                let len = &self.prefix[1..5];
                self.remaining = u64::from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]));
            }
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn counts_messages_however_the_stream_is_split() {
        let mut stream = Vec::new();
        for payload in [&b"hello"[..], b"", b"a longer message body", b"x"] {
            stream.extend(message(payload));
        }
        for chunk in [1, 2, 3, 5, 7, stream.len()] {
            let mut frames = GrpcFrames::default();
            let total: u64 = stream.chunks(chunk).map(|c| frames.feed(c)).sum();
            assert_eq!(total, 4, "chunk size {chunk}");
        }
    }

    #[test]
    fn a_message_counts_when_its_prefix_arrives() {
        let mut frames = GrpcFrames::default();
        let m = message(b"0123456789");
        assert_eq!(frames.feed(&m[..4]), 0);
        assert_eq!(frames.feed(&m[4..6]), 1);
        assert_eq!(frames.feed(&m[6..]), 0);
        assert_eq!(frames.feed(&[]), 0);
    }
}
