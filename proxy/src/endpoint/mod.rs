//! The last stage: connect to one endpoint and exchange HTTP with it over pooled connections.
//! HTTP/1.1 connections are kept idle and reused one request at a time; HTTP/2 uses one shared,
//! multiplexed connection per endpoint.

mod pool;

pub use pool::{ConnPool, PoolSettings, UpstreamError, UpstreamProtocol};
