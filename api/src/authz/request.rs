//! What the proxy tells the engine about a request, and what the engine answers.

use std::borrow::Cow;
use std::net::IpAddr;

/// The body Envoy (and so Istio) answers a denied HTTP request with, status 403.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// Whether the request is HTTP (every field applies) or opaque TCP (HTTP-only fields cannot be
/// evaluated; see the module documentation for what Istio does with them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
}

/// Request headers, looked up by lower-case name. Implement it over the proxy's header map
/// (a newtype around `&http::HeaderMap`; the api crate does not depend on `http`).
pub trait HeaderLookup {
    /// The value of header `name` (given lower-case), or `None` when absent. A header sent more
    /// than once is seen as its values joined with `,`, as Envoy's header matchers see it (the
    /// only case that needs to allocate).
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// No headers at all (TCP connections, or tests).
pub struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn header(&self, _: &str) -> Option<Cow<'_, str>> {
        None
    }
}

/// Headers as `(name, value)` pairs, names compared case-insensitively.
pub struct HeaderList<'a>(pub &'a [(&'a str, &'a str)]);

impl HeaderLookup for HeaderList<'_> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut found = self.0.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next()?.1;
        match found.next() {
            None => Some(Cow::Borrowed(first)),
            Some((_, second)) => {
                let mut joined = format!("{first},{second}");
                for (_, v) in found {
                    joined.push(',');
                    joined.push_str(v);
                }
                Some(Cow::Owned(joined))
            }
        }
    }
}

/// Everything a policy can look at, borrowed from the proxy's view of one request (HTTP) or
/// connection (TCP).
#[derive(Clone, Copy)]
pub struct RequestAttributes<'a> {
    pub protocol: Protocol,
    /// The peer certificate's SPIFFE id (`spiffe://cluster.local/ns/default/sa/sleep`, the
    /// `spiffe://` scheme optional); `None` for plaintext peers. Policies name principals
    /// without the scheme (`cluster.local/ns/default/sa/sleep`), as Istio does.
    pub peer_principal: Option<&'a str>,
    /// The directly connected peer's address (`source.ip`, `ipBlocks`).
    pub source_ip: IpAddr,
    /// The original client (`remote.ip`, `remoteIpBlocks`) when the proxy trusts an
    /// X-Forwarded-For or PROXY protocol hop; `None` means the direct peer, as on a sidecar.
    pub remote_ip: Option<IpAddr>,
    /// The address and port the connection was made to (`destination.ip`, `ports`).
    pub destination_ip: IpAddr,
    pub destination_port: u16,
    /// TLS server name the peer asked for (`connection.sni`).
    pub sni: Option<&'a str>,
    /// `:authority` / `Host` as sent (`hosts`; a port, if sent, is part of it, as in Envoy).
    pub host: Option<&'a str>,
    pub method: Option<&'a str>,
    /// The request path as normalized by the proxy; a query string or fragment is ignored.
    pub path: Option<&'a str>,
    pub headers: &'a dyn HeaderLookup,
}

impl<'a> RequestAttributes<'a> {
    /// A plaintext TCP connection with only addresses known; set the other fields as needed
    /// (`RequestAttributes { protocol: Protocol::Http, method: Some("GET"), ..base }`).
    pub fn new(source_ip: IpAddr, destination_ip: IpAddr, destination_port: u16) -> Self {
        RequestAttributes {
            protocol: Protocol::Tcp,
            peer_principal: None,
            source_ip,
            remote_ip: None,
            destination_ip,
            destination_port,
            sni: None,
            host: None,
            method: None,
            path: None,
            headers: &NoHeaders,
        }
    }

    pub(crate) fn remote_ip(&self) -> IpAddr {
        self.remote_ip.unwrap_or(self.source_ip)
    }
}

/// One matching rule of one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMatch<'a> {
    /// `namespace.name` of the AuthorizationPolicy.
    pub policy: &'a str,
    /// Index of the matching rule in `spec.rules`.
    pub rule: usize,
}

/// Why a request is allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// No DENY policy matched and no ALLOW policy applies to the workload.
    AllowedWithoutPolicy,
    /// An ALLOW policy matched (the first, in namespace/name order).
    AllowedBy(PolicyMatch<'a>),
    /// A DENY policy matched (the first, in namespace/name order).
    DeniedBy(PolicyMatch<'a>),
    /// ALLOW policies apply to the workload and none matched (this is how an allow-nothing
    /// policy, `spec: {}`, denies everything).
    DeniedNoAllowMatch,
}

/// The engine's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub outcome: Outcome<'a>,
    /// The first AUDIT policy that matched, if any. Auditing never changes the outcome.
    pub audit: Option<PolicyMatch<'a>>,
}

impl<'a> Decision<'a> {
    pub fn is_allowed(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::AllowedWithoutPolicy | Outcome::AllowedBy(_)
        )
    }

    /// The policy that decided (DENY that matched, or ALLOW that matched), for counting
    /// `denied by policy X`; `None` when no policy matched.
    pub fn policy(&self) -> Option<PolicyMatch<'a>> {
        match self.outcome {
            Outcome::AllowedBy(m) | Outcome::DeniedBy(m) => Some(m),
            Outcome::AllowedWithoutPolicy | Outcome::DeniedNoAllowMatch => None,
        }
    }
}
