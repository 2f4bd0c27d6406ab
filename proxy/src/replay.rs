//! Keeping a copy of a request body as it streams upstream, so a retry or a mirror can send it
//! again. Only small bodies are kept (64 KiB, Envoy's default buffer limit); a larger body streams
//! once and is not retried.

use crate::body::{BoxError, ProxyBody};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

const LIMIT: usize = 64 * 1024;

#[derive(Default)]
struct State {
    data: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    size: usize,
    complete: bool,
    overflow: bool,
}

/// A recording of one request body.
#[derive(Clone, Default)]
pub struct Recording(Arc<Mutex<State>>);

impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Wraps the client's body so that reading it also records it.
    pub fn tee(&self, body: Incoming) -> ProxyBody {
        crate::body::boxed(Tee {
            inner: body,
            recording: self.clone(),
        })
    }

    /// The whole body was read and kept.
    pub fn replayable(&self) -> bool {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.complete && !s.overflow
    }

    /// A fresh body with the recorded bytes, when [`Self::replayable`].
    pub fn replay(&self) -> Option<ProxyBody> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !s.complete || s.overflow {
            return None;
        }
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> =
            s.data.iter().cloned().map(|b| Ok(Frame::data(b))).collect();
        if let Some(t) = &s.trailers {
            frames.push(Ok(Frame::trailers(t.clone())));
        }
        Some(crate::body::boxed(http_body_util::StreamBody::new(
            futures_util::stream::iter(frames),
        )))
    }
}

struct Tee {
    inner: Incoming,
    recording: Recording,
}

impl Body for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(ready) = &polled {
            let mut s = this.recording.0.lock().unwrap_or_else(|p| p.into_inner());
            match ready {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        s.size += data.len();
                        if s.size > LIMIT {
                            s.overflow = true;
                            s.data.clear();
                        } else if !s.overflow {
                            s.data.push(data.clone());
                        }
                    } else if let Some(t) = frame.trailers_ref() {
                        s.trailers = Some(t.clone());
                    }
                    if this.inner.is_end_stream() {
                        s.complete = true;
                    }
                }
                None => s.complete = true,
                Some(Err(_)) => s.overflow = true,
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
