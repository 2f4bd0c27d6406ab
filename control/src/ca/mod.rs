//! The control plane's certificate authority: workload identities for mutual TLS.
//!
//! Proxies make their own keys and send CSRs; the [`Authority`] checks that each asks for exactly
//! the SPIFFE ID its bootstrap credential (a [`tokens`] join token in local mode) entitles it to,
//! and issues a short-lived X.509 SVID. The [`TrustBundle`] is what proxies trust; rotating the
//! root keeps the old one in it for a grace period. [`verify_leaf`] checks a peer's certificate
//! against a bundle. The identity types and verification live in `trellis-identity`, shared with
//! the proxy, and are re-exported here.

mod authority;
mod cert;
mod csr;
mod error;
mod files;
mod pending_root;
mod previous_roots;
mod service;
pub mod tokens;

pub use authority::{
    Authority, AuthorityOptions, CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, IssuedCert, Layout,
    ROOT_CERT_FILE, ROOT_KEY_FILE, RootRole, RootView,
};
pub use error::{CaError, CsrError};
pub use pending_root::PENDING_ROOT_FILE;
pub use previous_roots::PREVIOUS_ROOTS_FILE;
pub use service::{
    CaMetrics, DEFAULT_PROPAGATION, IdentityService, RotateError, Rotation, describe_roots,
};
pub use tokens::{JoinTokens, TokenError};
pub use trellis_identity::{
    BundleError, PeerRole, SpiffeId, SpiffeIdError, TrustBundle, VerifyError, spiffe_id_of,
    verify_chain_der, verify_leaf, verify_leaf_at,
};

#[cfg(test)]
mod tests;
