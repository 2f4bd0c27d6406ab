//! The last stage: connect to one endpoint and exchange HTTP with it over pooled connections.
//! HTTP/1.1 connections are kept idle and reused one request at a time; HTTP/2 uses one shared,
//! multiplexed connection per endpoint. Connections to another proxy are mesh mutual TLS
//! (`tls.rs`) when the cluster's TLS mode says so, or TLS originated to a server outside the mesh
//! (`origination.rs`, SIMPLE/MUTUAL); the transport is part of the pool's identity.

pub mod origination;
mod pool;
pub mod tls;

pub use pool::{ConnPool, PoolSettings, UpstreamError, UpstreamProtocol, Wire};
pub use tls::{MeshPeer, MeshTarget, Transport, UpstreamIo};
