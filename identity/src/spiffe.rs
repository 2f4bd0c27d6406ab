//! SPIFFE IDs in Istio's workload form, `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! The rules are the SPIFFE ID specification's: a trust domain of lowercase letters, digits, `.`,
//! `-` and `_` (no port, no user info), path segments of letters, digits, `.`, `-` and `_` that are
//! neither empty nor `.`/`..`, and at most 2048 bytes in all.

use std::fmt;
use std::str::FromStr;

/// The longest SPIFFE ID the specification allows, in bytes.
const MAX_ID_LEN: usize = 2048;
/// The longest trust domain the specification allows, in bytes.
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A workload identity: the only kind of name Trellis puts in or accepts from a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a string is not a SPIFFE ID of the form `spiffe://<td>/ns/<ns>/sa/<sa>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("{0:?} is not a SPIFFE ID: it must start with spiffe://")]
    Scheme(String),
    #[error("SPIFFE ID {id:?}: bad trust domain: {why}")]
    TrustDomain { id: String, why: String },
    #[error(
        "SPIFFE ID {0:?} is not a workload identity: the path must be /ns/<namespace>/sa/<service-account>"
    )]
    Path(String),
    #[error("SPIFFE ID {id:?}: bad {what} {segment:?}: {why}")]
    Segment {
        id: String,
        what: &'static str,
        segment: String,
        why: &'static str,
    },
    #[error("SPIFFE ID is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong { len: usize },
}

impl SpiffeId {
    /// Builds `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`, checking every part.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<SpiffeId, SpiffeIdError> {
        let id = SpiffeId {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        };
        let text = id.to_string();
        if text.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: text.len() });
        }
        check_trust_domain(trust_domain).map_err(|why| SpiffeIdError::TrustDomain {
            id: text.clone(),
            why,
        })?;
        for (what, segment) in [
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            check_segment(segment).map_err(|why| SpiffeIdError::Segment {
                id: text.clone(),
                what,
                segment: segment.to_string(),
                why,
            })?;
        }
        Ok(id)
    }

    /// The trust domain (`cluster.local` in Istio's default mesh).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The workload's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The workload's service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: s.len() });
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| SpiffeIdError::Scheme(s.to_string()))?;
        let (trust_domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        check_trust_domain(trust_domain).map_err(|why| SpiffeIdError::TrustDomain {
            id: s.to_string(),
            why,
        })?;
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["ns", namespace, "sa", service_account] => {
                SpiffeId::new(trust_domain, namespace, service_account)
            }
            _ => Err(SpiffeIdError::Path(s.to_string())),
        }
    }
}

/// Checks a trust domain name: lowercase letters, digits, `.`, `-` and `_` only.
pub fn check_trust_domain(td: &str) -> Result<(), String> {
    if td.is_empty() {
        return Err("it is empty".into());
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(format!(
            "it is {} bytes long; at most {MAX_TRUST_DOMAIN_LEN} are allowed",
            td.len()
        ));
    }
    if let Some(c) = td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        let why = match c {
            ':' => "a port is not allowed".to_string(),
            '@' => "user info is not allowed".to_string(),
            'A'..='Z' => "it must be lowercase".to_string(),
            _ => format!("character {c:?} is not allowed (only a-z, 0-9, '.', '-', '_')"),
        };
        return Err(why);
    }
    Ok(())
}

/// Checks one path segment (a namespace or service account name).
pub fn check_segment(segment: &str) -> Result<(), &'static str> {
    if segment.is_empty() {
        return Err("it is empty");
    }
    if segment == "." || segment == ".." {
        return Err("'.' and '..' are not allowed");
    }
    if !segment
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err("only letters, digits, '.', '-' and '_' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_workload_ids() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
            .parse()
            .unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "default");
        assert_eq!(id.service_account(), "bookinfo-reviews");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
        );
        assert_eq!(
            SpiffeId::new("cluster.local", "default", "bookinfo-reviews").unwrap(),
            id
        );
    }

    #[test]
    fn refuses_malformed_ids_saying_why() {
        let cases = [
            (
                "http://cluster.local/ns/a/sa/b",
                "must start with spiffe://",
            ),
            ("spiffe:///ns/a/sa/b", "bad trust domain: it is empty"),
            ("spiffe://Cluster.local/ns/a/sa/b", "must be lowercase"),
            ("spiffe://td:8080/ns/a/sa/b", "a port is not allowed"),
            ("spiffe://user@td/ns/a/sa/b", "user info is not allowed"),
            ("spiffe://td/ns/a/sa/b/c", "not a workload identity"),
            ("spiffe://td/ns/a", "not a workload identity"),
            ("spiffe://td", "not a workload identity"),
            ("spiffe://td/ns//sa/b", "bad namespace \"\": it is empty"),
            ("spiffe://td/ns/a/sa/..", "'.' and '..' are not allowed"),
            ("spiffe://td/ns/a b/sa/c", "only letters, digits"),
            ("spiffe://td/ns/a/sa/b?x=1", "only letters, digits"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<SpiffeId>().unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
        let long = format!("spiffe://td/ns/{}/sa/b", "a".repeat(3000));
        assert!(matches!(
            long.parse::<SpiffeId>(),
            Err(SpiffeIdError::TooLong { .. })
        ));
    }
}
