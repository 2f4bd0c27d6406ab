//! Workload identity for Trellis, shared by the control plane and the proxy.
//!
//! - [`SpiffeId`]: the one kind of name a workload certificate carries,
//!   `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//! - [`TrustBundle`]: the roots peers' certificates must chain to (old and new during a root
//!   rotation).
//! - [`verify_chain_der`] / [`verify_leaf`]: path, validity and key usage checked by
//!   rustls-webpki, then the SPIFFE ID read from the leaf's one URI SAN.
//! - [`tls`]: the rustls 0.23 configs for mutual TLS between proxies: swappable
//!   [`Credentials`](tls::Credentials), verifiers that check SPIFFE identities, and ALPN.
//!
//! The control plane's CA issues what this crate verifies; the proxy depends on this crate and
//! never on the control plane.

mod bundle;
pub mod pem;
pub mod spiffe;
pub mod tls;
mod verify;

pub use bundle::{BundleError, TrustBundle};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use verify::{
    PeerRole, VerifyError, spiffe_id_of, verify_chain_der, verify_leaf, verify_leaf_at,
};
