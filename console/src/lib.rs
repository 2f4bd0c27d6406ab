//! The Trellis console: a Kiali-like web UI served by the control plane on `:20001`.
//!
//! Pages are rendered on the server with Leptos (no wasm build) and read well before any script
//! runs; the little browser script they need is plain JavaScript the console serves itself. The
//! console defines the [`backend::ConsoleBackend`] it needs; the control plane implements it, and
//! tests use the in-memory backend.

pub mod backend;
pub mod chart;
pub mod graph;
pub mod memory;
pub mod model;
pub mod pages;
pub mod server;
pub mod shell;
pub mod wizard;

#[cfg(test)]
mod test_support;

pub use backend::{BackendError, ConsoleBackend};
pub use memory::MemoryBackend;
pub use server::{ConsoleOptions, router};
