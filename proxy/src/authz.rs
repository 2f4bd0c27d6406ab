//! AuthorizationPolicy enforcement on inbound traffic: the request's attributes handed to the
//! compiled policies of this workload (`ProxyConfig::authorization`, see `trellis_api::authz`),
//! and what a denial looks like (HTTP 403 `RBAC: access denied`, as Envoy's RBAC filter answers;
//! a closed connection for opaque TCP), counted by policy.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// (`trellis_authorization_denied_total`). A repeated denial allocates nothing.
#[derive(Default)]
pub struct Denials {
    /// By the DENY policy (`namespace.name`) that matched.
    by_policy: Mutex<BTreeMap<String, u64>>,
    /// Because no ALLOW policy matched.
    no_allow_match: AtomicU64,
}

impl Denials {
    /// Counts `decision` if it is a denial; `true` when it is.
    pub fn denied(&self, decision: &Decision<'_>) -> bool {
        match decision.outcome {
            Outcome::DeniedBy(m) => {
                let mut counts = self.by_policy.lock().unwrap_or_else(|p| p.into_inner());
                match counts.get_mut(m.policy) {
                    Some(count) => *count += 1,
                    None => {
                        counts.insert(m.policy.to_string(), 1);
                    }
                }
                true
            }
            Outcome::DeniedNoAllowMatch => {
                self.no_allow_match.fetch_add(1, Ordering::Relaxed);
                true
            }
            Outcome::AllowedBy(_) | Outcome::AllowedWithoutPolicy => false,
        }
    }

    /// The counts in Prometheus text format.
    pub fn encode_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        const NAME: &str = "trellis_authorization_denied_total";
        let _ = writeln!(
            out,
            "# HELP {NAME} Requests and connections denied by AuthorizationPolicy: by a DENY policy (its namespace.name), or because no ALLOW policy matched."
        );
        let _ = writeln!(out, "# TYPE {NAME} counter");
        let counts = self.by_policy.lock().unwrap_or_else(|p| p.into_inner());
        for (policy, count) in counts.iter() {
            let _ = writeln!(
                out,
                "{NAME}{{reason=\"deny_policy\",policy=\"{policy}\"}} {count}"
            );
        }
        drop(counts);
        let no_allow_match = self.no_allow_match.load(Ordering::Relaxed);
        if no_allow_match > 0 {
            let _ = writeln!(
                out,
                "{NAME}{{reason=\"no_allow_match\",policy=\"\"}} {no_allow_match}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_counted_by_reason_and_policy() {
        use trellis_api::authz::PolicyMatch;
        let decision = |outcome| Decision {
            outcome,
            audit: None,
        };
        let deny = |policy| decision(Outcome::DeniedBy(PolicyMatch { policy, rule: 0 }));
        let d = Denials::default();
        let mut text = String::new();
        d.encode_prometheus(&mut text);
        assert!(
            !text.contains("trellis_authorization_denied_total{"),
            "{text}"
        );
        assert!(!d.denied(&decision(Outcome::AllowedWithoutPolicy)));
        assert!(d.denied(&deny("default.b")));
        assert!(d.denied(&deny("default.a")));
        assert!(d.denied(&deny("default.b")));
        assert!(d.denied(&decision(Outcome::DeniedNoAllowMatch)));
        let mut text = String::new();
        d.encode_prometheus(&mut text);
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            series,
            [
                "trellis_authorization_denied_total{reason=\"deny_policy\",policy=\"default.a\"} 1",
                "trellis_authorization_denied_total{reason=\"deny_policy\",policy=\"default.b\"} 2",
                "trellis_authorization_denied_total{reason=\"no_allow_match\",policy=\"\"} 1",
            ]
        );
    }

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
