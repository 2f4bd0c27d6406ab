//! trellis-proxy: the Trellis data plane.
//!
//! A request walks the stages the field names alike (Envoy's listener -> route -> cluster ->
//! endpoint), one module each, so its path reads top to bottom:
//! - [`listener`]: accept, original destination, protocol detection, HTTP serving, TCP proxying;
//! - [`route`]: match the compiled VirtualService rules, filters, retries and timeouts;
//! - [`cluster`]: load balancing, outlier detection, circuit breakers;
//! - [`endpoint`]: connect and pooled HTTP/1 and HTTP/2 clients.
//!
//! Beside them: [`config`] (where config comes from, and the atomically swapped snapshot the
//! request path reads), [`telemetry`] (response flags, access log), [`ratelimit`] (the local rate
//! limit's token bucket), [`admin`] and [`drain`].

pub mod admin;
pub mod authz;
pub mod body;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod drain;
pub mod endpoint;
pub mod forward;
pub mod identity;
pub mod listener;
pub mod ratelimit;
pub mod replay;
pub mod route;
pub mod server;
pub mod telemetry;
pub mod worker;
