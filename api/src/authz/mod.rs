//! Istio `security.istio.io/v1` AuthorizationPolicy enforcement: [`applies_to`] picks the
//! policies of a workload, [`compile`] turns them into a [`PolicySet`] once per config, and
//! [`PolicySet::evaluate`] decides each request without allocating.
//!
//! Semantics, as Istio generates them for Envoy's RBAC filter:
//! - Order: CUSTOM (unsupported: refused at compile), then DENY (any matching rule denies),
//!   then ALLOW (if any ALLOW policy applies, a request must match one of its rules; else it
//!   is allowed). AUDIT policies are evaluated on the side and never change the outcome. A
//!   denied HTTP request gets 403 [`DENIED_BODY`].
//! - A policy without rules never matches: as the only ALLOW policy (`spec: {}`, allow-nothing)
//!   it denies everything; as DENY or AUDIT it does nothing. An empty rule (`rules: [{}]`)
//!   matches everything.
//! - In a rule, `from` sources are ORed, `to` operations ORed, `when` conditions ANDed, and the
//!   three ANDed. In a source, operation or condition, fields are ANDed, the values of a field
//!   ORed, and `notX` values negated (`notX: [a, b]` means neither a nor b).
//! - Strings: `abc` exact, `abc*` prefix, `*abc` suffix, `*` any non-empty value (a presence
//!   test for hosts, methods and headers). Hosts ignore ASCII case and are compared with the
//!   port if the request carries one (`example.com` does not match `example.com:8080`; write
//!   `example.com:*` too, as Istio's security best practices say). Paths are case-sensitive,
//!   compared without query string, and also take Istio's `{*}`/`{**}` templates.
//! - Principals are the peer's SPIFFE id without `spiffe://` (`cluster.local/ns/default/sa/x`);
//!   namespaces come from the principal's `/ns/<namespace>/` segment. Both need mTLS: for a
//!   plaintext peer `principals`/`namespaces` never match and their `not` forms always do.
//! - `requestPrincipals` and `request.auth.*` need a validated JWT (RequestAuthentication),
//!   which Trellis does not do: their values never match and their not-values always do.
//! - TCP (`Protocol::Tcp`): hosts, methods, paths, headers, `requestPrincipals` and
//!   `request.auth.*` cannot be evaluated. An ALLOW rule using any of them never matches; in
//!   DENY and AUDIT rules those fields are left out, so the rule matches more broadly (a DENY
//!   with only `methods: [GET]` denies every TCP connection), as Istio documents.

mod compile;
mod matcher;
mod policy;
mod request;
mod scope;

pub use compile::{CompileError, check, compile};
pub use policy::PolicySet;
pub use request::{
    DENIED_BODY, Decision, HeaderList, HeaderLookup, NoHeaders, Outcome, PolicyMatch, Protocol,
    RequestAttributes,
};
pub use scope::{DEFAULT_ROOT_NAMESPACE, applies_to};

#[cfg(test)]
mod tests;
