//! OTLP/gRPC: the three `Export` services, served by tonic. The request body is decoded here
//! rather than by tonic's prost codec, so a malformed message is answered INVALID_ARGUMENT (as
//! OTLP requires; tonic's codec would say INTERNAL) with prost's description of what is wrong.
//! gzip-compressed requests (the OpenTelemetry Collector's default) are accepted.

use super::{MAX_REQUEST_BYTES, OtlpSignal, outcome};
use crate::collector::ingest::Ingest;
use bytes::{Buf, BufMut, Bytes};
use prost::Message as _;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// The `Export` service of signal `S`.
pub struct GrpcReceiver<S> {
    ingest: Arc<Ingest>,
    signal: PhantomData<fn() -> S>,
}

impl<S> GrpcReceiver<S> {
    pub fn new(ingest: Arc<Ingest>) -> Self {
        GrpcReceiver {
            ingest,
            signal: PhantomData,
        }
    }
}

impl<S> Clone for GrpcReceiver<S> {
    fn clone(&self) -> Self {
        GrpcReceiver::new(self.ingest.clone())
    }
}

impl<S: OtlpSignal> NamedService for GrpcReceiver<S> {
    const NAME: &'static str = S::GRPC_SERVICE;
}

impl<S, B> Service<http::Request<B>> for GrpcReceiver<S>
where
    S: OtlpSignal,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != S::GRPC_PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let export = Export::<S> {
            ingest: self.ingest.clone(),
            signal: PhantomData,
        };
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_REQUEST_BYTES);
            Ok(grpc.unary(export, request).await)
        })
    }
}

/// One call of `Export`.
struct Export<S> {
    ingest: Arc<Ingest>,
    signal: PhantomData<fn() -> S>,
}

impl<S: OtlpSignal> UnaryService<Bytes> for Export<S> {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let metrics = ingest.metrics();
            let decoded = match S::Request::decode(request.into_inner()) {
                Ok(decoded) => decoded,
                Err(e) => {
                    metrics.request(S::SIGNAL, "grpc", "invalid");
                    return Err(Status::invalid_argument(format!(
                        "malformed {}: {e}",
                        S::REQUEST_NAME
                    )));
                }
            };
            let result = S::ingest(&ingest, decoded);
            metrics.request(S::SIGNAL, "grpc", outcome(&result));
            match result {
                Ok(accepted) => Ok(Response::new(Bytes::from(
                    S::response(accepted).encode_to_vec(),
                ))),
                Err(overloaded) => Err(Status::unavailable(overloaded.to_string())),
            }
        })
    }
}

/// Passes message bytes through: requests are decoded by [`Export`], responses encoded there.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}
