//! The control plane's certificate authority: workload identities for mutual TLS.
//!
//! Proxies make their own keys and send CSRs; the [`Authority`] checks that each asks for exactly
//! the SPIFFE ID its bootstrap credential (a [`tokens`] join token in local mode) entitles it to,
//! and issues a short-lived X.509 SVID. The [`TrustBundle`] is what proxies trust; rotating the
//! root keeps the old one in it for a grace period. [`verify_leaf`] checks a peer's certificate
//! against a bundle, for tests now and the proxy's TLS verifier later.

mod authority;
mod bundle;
mod cert;
mod csr;
mod error;
mod files;
mod spiffe;
pub mod tokens;
mod verify;

pub use authority::{
    Authority, AuthorityOptions, CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, IssuedCert, Layout,
    ROOT_CERT_FILE, ROOT_KEY_FILE,
};
pub use bundle::{PREVIOUS_ROOTS_FILE, TrustBundle};
pub use error::{CaError, CsrError};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use tokens::{JoinTokens, TokenError};
pub use verify::{
    PeerRole, VerifyError, spiffe_id_of, verify_chain_der, verify_leaf, verify_leaf_at,
};

#[cfg(test)]
mod tests;
