//! AuthorizationPolicy enforcement on inbound traffic: the request's attributes handed to the
//! compiled policies of this workload (`ProxyConfig::authorization`, see `trellis_api::authz`),
//! and what a denial looks like (HTTP 403 `RBAC: access denied`, as Envoy's RBAC filter answers;
//! a closed connection for opaque TCP), counted by policy.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use trellis_api::authz::{Decision, HeaderLookup, Outcome};

pub use trellis_api::authz::{DENIED_BODY, PolicySet, Protocol, RequestAttributes};

/// A request's headers as the engine reads them: repeated headers are one comma-joined value.
pub struct Headers<'a>(pub &'a http::HeaderMap);

impl HeaderLookup for Headers<'_> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.0.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let first = values.next()?;
        match values.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                for v in values {
                    joined.push(',');
                    joined.push_str(v);
                }
                Some(Cow::Owned(joined))
            }
        }
    }
}

/// Requests and connections denied, by the policy that denied them
/// (`trellis_authorization_denied_total`).
#[derive(Default)]
pub struct Denials(Mutex<BTreeMap<(&'static str, String), u64>>);

impl Denials {
    /// Counts `decision` if it is a denial; `true` when it is.
    pub fn denied(&self, decision: &Decision<'_>) -> bool {
        let key = match decision.outcome {
            Outcome::DeniedBy(m) => ("deny_policy", m.policy.to_string()),
            Outcome::DeniedNoAllowMatch => ("no_allow_match", String::new()),
            Outcome::AllowedBy(_) | Outcome::AllowedWithoutPolicy => return false,
        };
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(key).or_default() += 1;
        true
    }

    /// The counts in Prometheus text format.
    pub fn encode_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        const NAME: &str = "trellis_authorization_denied_total";
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP {NAME} Requests and connections denied by AuthorizationPolicy: by a DENY policy (its namespace.name), or because no ALLOW policy matched."
        );
        let _ = writeln!(out, "# TYPE {NAME} counter");
        for ((reason, policy), count) in counts.iter() {
            let _ = writeln!(
                out,
                "{NAME}{{reason=\"{reason}\",policy=\"{policy}\"}} {count}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined() {
        let mut h = http::HeaderMap::new();
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        h.insert("x-b", "only".parse().unwrap());
        let l = Headers(&h);
        assert_eq!(l.header("x-a").as_deref(), Some("1,2"));
        assert_eq!(l.header("x-b").as_deref(), Some("only"));
        assert_eq!(l.header("x-c"), None);
    }
}
