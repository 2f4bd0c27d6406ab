//! trellis-control: the control plane and the `trellis` command line.
//!
//! One process holds the [`store`] (every applied resource, with its revision history), the
//! [`registry`] (services and endpoints), and the [`push`] server that compiles each connected
//! proxy's config and streams it to the proxy. The [`rest`] API is how the CLI ([`cli`]) and the
//! console change and read all of it. The [`collector`] takes the proxies' telemetry over OTLP and
//! serves the live service graph, traces and metrics.

pub mod ca;
pub mod cli;
pub mod collector;
pub mod console;
pub mod demo;
pub mod memory;
pub mod push;
pub mod registry;
pub mod rest;
pub mod server;
pub mod store;
