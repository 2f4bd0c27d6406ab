//! The compiled form of a workload's AuthorizationPolicies and its evaluation.

use super::matcher::{Cidr, NamespaceMatch, PathMatch, StringMatch};
use super::request::{Decision, Outcome, PolicyMatch, Protocol, RequestAttributes};
use serde::{Deserialize, Serialize};

/// Every AuthorizationPolicy that applies to one workload, compiled once per config and
/// evaluated per request without allocating. Plain data: it can travel in the proxy config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) deny: Vec<CompiledPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) allow: Vec<CompiledPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) audit: Vec<CompiledPolicy>,
}

/// One AuthorizationPolicy; its action is the list of the [`PolicySet`] holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompiledPolicy {
    /// `namespace.name`.
    pub(crate) id: String,
    /// No rules: the policy never matches.
    pub(crate) rules: Vec<CompiledRule>,
}

/// A rule matches when one `from` branch, one `to` branch and every `when` condition match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompiledRule {
    /// Index in `spec.rules`.
    pub(crate) index: usize,
    /// ORed sources, each a list of ANDed checks; empty: any source.
    pub(crate) from: Vec<Vec<Check>>,
    /// ORed operations, each a list of ANDed checks; empty: any operation.
    pub(crate) to: Vec<Vec<Check>>,
    pub(crate) when: Vec<Check>,
    /// The rule uses a field that only HTTP has (see [`Check::http_only`]).
    pub(crate) http_only: bool,
}

/// Values ORed, then not-values ORed and negated; the two ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Field<M> {
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub(crate) values: Vec<M>,
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub(crate) not_values: Vec<M>,
}

impl<M> Field<M> {
    fn eval(&self, mut one: impl FnMut(&M) -> bool) -> bool {
        (self.values.is_empty() || self.values.iter().any(&mut one))
            && !self.not_values.iter().any(one)
    }
}

/// One attribute test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Check {
    /// `principals`, `source.principal`: the peer's SPIFFE id without `spiffe://`.
    Principal(Field<StringMatch>),
    /// `namespaces`, `source.namespace`.
    Namespace(Field<NamespaceMatch>),
    /// `ipBlocks`, `source.ip`.
    SourceIp(Field<Cidr>),
    /// `remoteIpBlocks`, `remote.ip`.
    RemoteIp(Field<Cidr>),
    /// `destination.ip`.
    DestinationIp(Field<Cidr>),
    /// `ports`, `destination.port`.
    DestinationPort(Field<u16>),
    /// `connection.sni`.
    Sni(Field<StringMatch>),
    /// `hosts` (patterns lower-cased; matched ignoring ASCII case).
    Host(Field<StringMatch>),
    /// `methods`.
    Method(Field<StringMatch>),
    /// `paths`.
    Path(Field<PathMatch>),
    /// `request.headers[name]` (name lower-cased).
    Header {
        name: String,
        field: Field<StringMatch>,
    },
    /// `requestPrincipals`, `request.auth.*`: derived from a validated JWT, which Trellis
    /// does not do, so no value ever matches (not-values therefore always pass), exactly as
    /// in Istio when no RequestAuthentication applies.
    RequestAuth { has_values: bool },
}

impl Check {
    /// Fields Envoy can only evaluate on HTTP requests (Istio's "is HTTP only" list).
    pub(crate) fn http_only(&self) -> bool {
        matches!(
            self,
            Check::Host(_)
                | Check::Method(_)
                | Check::Path(_)
                | Check::Header { .. }
                | Check::RequestAuth { .. }
        )
    }

    fn matches(&self, a: &RequestAttributes<'_>) -> bool {
        match self {
            Check::Principal(f) => f.eval(|m| match a.peer_principal {
                None => false,
                Some(p) => match m {
                    StringMatch::Any => !p.is_empty(),
                    m => m.matches(p.strip_prefix("spiffe://").unwrap_or(p)),
                },
            }),
            Check::Namespace(f) => f.eval(|m| a.peer_principal.is_some_and(|p| m.matches(p))),
            Check::SourceIp(f) => f.eval(|c| c.contains(a.source_ip)),
            Check::RemoteIp(f) => f.eval(|c| c.contains(a.remote_ip())),
            Check::DestinationIp(f) => f.eval(|c| c.contains(a.destination_ip)),
            Check::DestinationPort(f) => f.eval(|p| *p == a.destination_port),
            Check::Sni(f) => f.eval(|m| m.matches(a.sni.unwrap_or(""))),
            // `*` for hosts, methods and headers is a presence match (Envoy `present_match`).
            Check::Host(f) => f.eval(|m| match (m, a.host) {
                (_, None) => false,
                (StringMatch::Any, Some(_)) => true,
                (m, Some(h)) => m.matches_ignore_case(h),
            }),
            Check::Method(f) => f.eval(|m| match (m, a.method) {
                (_, None) => false,
                (StringMatch::Any, Some(_)) => true,
                (m, Some(v)) => m.matches(v),
            }),
            Check::Path(f) => f.eval(|m| a.path.is_some_and(|p| m.matches(p))),
            Check::Header { name, field } => {
                let value = a.headers.header(name);
                field.eval(|m| match (m, value.as_deref()) {
                    (_, None) => false,
                    (StringMatch::Any, Some(_)) => true,
                    (m, Some(v)) => m.matches(v),
                })
            }
            Check::RequestAuth { has_values } => !has_values,
        }
    }
}

impl CompiledRule {
    /// With `skip_http_only`, HTTP-only checks count as absent (Istio's DENY/AUDIT on TCP).
    fn matches(&self, a: &RequestAttributes<'_>, skip_http_only: bool) -> bool {
        let pass = |c: &Check| (skip_http_only && c.http_only()) || c.matches(a);
        let branch = |bs: &[Vec<Check>]| bs.is_empty() || bs.iter().any(|b| b.iter().all(pass));
        branch(&self.from) && branch(&self.to) && self.when.iter().all(pass)
    }
}

/// How the action of the list being evaluated treats HTTP-only fields on TCP.
#[derive(Clone, Copy)]
enum TcpFields {
    /// ALLOW: a rule with an HTTP-only field never matches (a smaller allow).
    RuleNeverMatches,
    /// DENY, AUDIT: the HTTP-only fields are left out (a wider deny).
    Ignored,
}

fn first_match<'s>(
    policies: &'s [CompiledPolicy],
    a: &RequestAttributes<'_>,
    tcp_fields: TcpFields,
) -> Option<PolicyMatch<'s>> {
    let tcp = a.protocol == Protocol::Tcp;
    policies.iter().find_map(|p| {
        p.rules
            .iter()
            .find(|r| match (tcp, tcp_fields) {
                (false, _) => r.matches(a, false),
                (true, TcpFields::RuleNeverMatches) => !r.http_only && r.matches(a, false),
                (true, TcpFields::Ignored) => r.matches(a, true),
            })
            .map(|r| PolicyMatch {
                policy: &p.id,
                rule: r.index,
            })
    })
}

impl PolicySet {
    /// Istio's order: DENY (any match denies), then ALLOW (when any ALLOW policy applies, one
    /// must match), else allowed. AUDIT is evaluated on the side and never changes the outcome.
    pub fn evaluate(&self, a: &RequestAttributes<'_>) -> Decision<'_> {
        let audit = first_match(&self.audit, a, TcpFields::Ignored);
        let outcome = if let Some(m) = first_match(&self.deny, a, TcpFields::Ignored) {
            Outcome::DeniedBy(m)
        } else if self.allow.is_empty() {
            Outcome::AllowedWithoutPolicy
        } else if let Some(m) = first_match(&self.allow, a, TcpFields::RuleNeverMatches) {
            Outcome::AllowedBy(m)
        } else {
            Outcome::DeniedNoAllowMatch
        };
        Decision { outcome, audit }
    }

    /// Every AUDIT policy rule that matches (the [`Decision`] carries only the first).
    pub fn audit_matches<'s>(
        &'s self,
        a: &'s RequestAttributes<'_>,
    ) -> impl Iterator<Item = PolicyMatch<'s>> + 's {
        let tcp = a.protocol == Protocol::Tcp;
        self.audit.iter().flat_map(move |p| {
            p.rules
                .iter()
                .filter(move |r| r.matches(a, tcp))
                .map(move |r| PolicyMatch {
                    policy: &p.id,
                    rule: r.index,
                })
        })
    }

    /// No policy applies: every request is allowed and the proxy can skip evaluation.
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty() && self.audit.is_empty()
    }

    /// `namespace.name` of every policy in the set, by action, for logs and status pages.
    pub fn policy_names(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.deny
            .iter()
            .map(|p| ("DENY", p.id.as_str()))
            .chain(self.allow.iter().map(|p| ("ALLOW", p.id.as_str())))
            .chain(self.audit.iter().map(|p| ("AUDIT", p.id.as_str())))
    }
}
