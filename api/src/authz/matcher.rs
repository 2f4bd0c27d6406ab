//! The value matchers an AuthorizationPolicy compiles to, each following the Envoy matcher Istio
//! generates for that field, so a value means here what it means in Istio. All are plain data
//! (serializable, so a compiled policy set can be pushed as is) and match without allocating.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Istio's string rules (`matcher.StringMatcher`): `*` alone, `abc*` prefix, `*abc` suffix,
/// anything else exact (a `*` elsewhere is a literal character, as in Istio).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatch {
    /// `*`: Istio generates the regex `.+` (any non-empty value) or, for headers, hosts and
    /// methods, a presence match; [`StringMatch::matches`] takes which one from its caller.
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
}

impl StringMatch {
    /// Parses Istio's pattern syntax. With `ignore_case` the pattern is stored lower-cased and
    /// [`StringMatch::matches_ignore_case`] must be used.
    pub fn parse(pattern: &str, ignore_case: bool) -> StringMatch {
        let p = if ignore_case {
            pattern.to_ascii_lowercase()
        } else {
            pattern.to_string()
        };
        if p == "*" {
            StringMatch::Any
        } else if let Some(rest) = p.strip_prefix('*') {
            StringMatch::Suffix(rest.to_string())
        } else if let Some(rest) = p.strip_suffix('*') {
            StringMatch::Prefix(rest.to_string())
        } else {
            StringMatch::Exact(p)
        }
    }

    /// Case-sensitive match. `*` matches any non-empty value (Istio's `.+`).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Any => !value.is_empty(),
            StringMatch::Exact(e) => value == e,
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
            StringMatch::Suffix(s) => value.ends_with(s.as_str()),
        }
    }

    /// ASCII case-insensitive match against a pattern parsed with `ignore_case`.
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        let v = value.as_bytes();
        match self {
            StringMatch::Any => !value.is_empty(),
            StringMatch::Exact(e) => value.eq_ignore_ascii_case(e),
            StringMatch::Prefix(p) => {
                v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            StringMatch::Suffix(s) => {
                v.len() >= s.len() && v[v.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
}

/// A CIDR block; a single address is a /32 (IPv4) or /128 (IPv6). Host bits are masked off,
/// as Envoy does with `CidrRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// Parses `10.1.0.0/16`, `2001:db8::/32`, `203.0.113.4` or `::1`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "`{text}`: prefix length must be a number from 0 to {max}"
                    ));
                }
            },
        };
        Ok(Cidr {
            network: mask(ip, prefix_len),
            prefix_len,
        })
    }

    /// Whether `ip` is inside the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
    /// dual-stack socket reports for IPv4 peers) is compared as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix_len) == self.network
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            // Checked: a deserialized (pushed) block could carry any length.
            let m = u32::MAX
                .checked_shl(32u32.saturating_sub(len.into()))
                .unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX
                .checked_shl(128u32.saturating_sub(len.into()))
                .unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Source namespace (`namespaces`, `source.namespace`). Istio matches the whole peer principal
/// against the regex `.*/ns/<value>/.*` with every `*` of the value turned into `.*`; this is
/// that regex as a glob, without a regex engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceMatch {
    /// The value followed by `/*`: what must match after some `/ns/` in the principal.
    glob: String,
}

impl NamespaceMatch {
    pub fn new(value: &str) -> NamespaceMatch {
        NamespaceMatch {
            glob: format!("{value}/*"),
        }
    }

    /// `principal` is the full URI SAN or the SPIFFE id without its scheme; both contain the
    /// `/ns/` segment the same way.
    pub fn matches(&self, principal: &str) -> bool {
        // A byte scan: building a substring searcher per call costs more than the search.
        let b = principal.as_bytes();
        (0..b.len().saturating_sub(3))
            .any(|i| &b[i..i + 4] == b"/ns/" && glob_match(&self.glob, &principal[i + 4..]))
    }
}

/// `*` matches any run of characters (including none); everything else is literal.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Request path (`paths`): Istio's string rules, or a path template with `{*}` (exactly one
/// path segment) and `{**}` (anything, slashes included; at most once and after every `{*}`),
/// matched as Envoy's `uri_template` does. Matched against the path without query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    String(StringMatch),
    Template(Vec<TemplateSegment>),
}

/// One `/`-separated piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSegment {
    Literal(String),
    /// `{*}`: one non-empty segment of path characters.
    One,
    /// `{**}`: zero or more path characters, `/` included.
    Many,
}

const ONE_TEMPLATE: &str = "{*}";
const MANY_TEMPLATE: &str = "{**}";

impl PathMatch {
    /// Parses a `paths` value, refusing malformed templates as Istio's validation does.
    pub fn parse(value: &str) -> Result<PathMatch, String> {
        let has_template = value.contains(ONE_TEMPLATE) || value.contains(MANY_TEMPLATE);
        if !has_template && !value.contains(['{', '}']) {
            return Ok(PathMatch::String(StringMatch::parse(value, false)));
        }
        let mut segments = Vec::new();
        let mut seen_many = false;
        for seg in value.split('/') {
            match seg {
                ONE_TEMPLATE | MANY_TEMPLATE if seen_many => {
                    return Err(format!(
                        "path template `{value}`: `{{**}}` must be the last operator"
                    ));
                }
                ONE_TEMPLATE => segments.push(TemplateSegment::One),
                MANY_TEMPLATE => {
                    seen_many = true;
                    segments.push(TemplateSegment::Many);
                }
                lit if lit.contains(['{', '}']) => {
                    return Err(format!(
                        "path template `{value}`: `{{` and `}}` are only allowed as whole `{{*}}` or `{{**}}` segments"
                    ));
                }
                lit if has_template && !lit.bytes().all(is_path_char) => {
                    return Err(format!(
                        "path template `{value}`: segment `{lit}` has characters not allowed in a path"
                    ));
                }
                lit => segments.push(TemplateSegment::Literal(lit.to_string())),
            }
        }
        Ok(PathMatch::Template(segments))
    }

    /// `path` is the request path; anything from `?` or `#` on is ignored, as Envoy's
    /// `PathMatcher` and `uri_template` do.
    pub fn matches(&self, path: &str) -> bool {
        let end = path.find(['?', '#']).unwrap_or(path.len());
        let path = &path[..end];
        match self {
            PathMatch::String(m) => m.matches(path),
            PathMatch::Template(segments) => template_match(segments, path),
        }
    }
}

/// RFC 3986 `pchar` minus `/`: the characters a template wildcard may match (Envoy's set).
fn is_path_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&c)
}

fn segment_match(t: &TemplateSegment, seg: &str) -> bool {
    match t {
        TemplateSegment::Literal(l) => seg == l,
        TemplateSegment::One => !seg.is_empty() && seg.bytes().all(is_path_char),
        // Only reachable through a hand-built (deserialized) template with two `{**}`.
        TemplateSegment::Many => false,
    }
}

fn template_match(template: &[TemplateSegment], path: &str) -> bool {
    match template.iter().position(|s| *s == TemplateSegment::Many) {
        None => {
            let mut segs = path.split('/');
            template
                .iter()
                .all(|t| segs.next().is_some_and(|s| segment_match(t, s)))
                && segs.next().is_none()
        }
        Some(k) => {
            let (head, tail) = (&template[..k], &template[k + 1..]);
            // The head's segments from the front, the tail's from the back; `{**}` takes the
            // rest, which must be path characters and slashes only.
            let mut rest = path;
            for t in head {
                let Some((seg, after)) = rest.split_once('/') else {
                    return false;
                };
                if !segment_match(t, seg) {
                    return false;
                }
                rest = after;
            }
            for t in tail.iter().rev() {
                let Some((before, seg)) = rest.rsplit_once('/') else {
                    return false;
                };
                if !segment_match(t, seg) {
                    return false;
                }
                rest = before;
            }
            rest.bytes().all(|c| c == b'/' || is_path_char(c))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_rules() {
        let m = |p: &str, v: &str| StringMatch::parse(p, false).matches(v);
        assert!(m("/info*", "/info") && m("/info*", "/info/x") && !m("/info*", "/inf"));
        assert!(m("*.json", "/a.json") && !m("*.json", "/a.jsonx"));
        assert!(m("*", "x") && !m("*", ""));
        assert!(m("a*b", "a*b") && !m("a*b", "axb"));
        let h = |p: &str, v: &str| StringMatch::parse(p, true).matches_ignore_case(v);
        assert!(h("Example.COM", "example.com") && h("*.Example.com", "API.example.COM"));
        assert!(h("api.*", "API.example.com") && !h("example.com", "example.com:80"));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.2.3/16").unwrap();
        assert!(c.contains("10.1.200.1".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("203.0.113.4").unwrap();
        assert!(one.contains("203.0.113.4".parse().unwrap()));
        assert!(!one.contains("203.0.113.5".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaces() {
        let p = "cluster.local/ns/prod-eu/sa/web";
        assert!(NamespaceMatch::new("prod-eu").matches(p));
        assert!(NamespaceMatch::new("prod*").matches(p));
        assert!(NamespaceMatch::new("*-eu").matches(p));
        assert!(NamespaceMatch::new("*").matches(p));
        assert!(!NamespaceMatch::new("prod").matches(p));
        assert!(NamespaceMatch::new("prod-eu").matches(&format!("spiffe://{p}")));
        assert!(!NamespaceMatch::new("default").matches("cluster.local/sa/default"));
    }

    #[test]
    fn templates() {
        let t = |p: &str, v: &str| PathMatch::parse(p).unwrap().matches(v);
        assert!(t("/foo/{*}", "/foo/bar") && !t("/foo/{*}", "/foo/bar/baz"));
        assert!(!t("/foo/{*}", "/foo/"));
        assert!(t("/foo/{*}/baz", "/foo/x/baz") && !t("/foo/{*}/baz", "/foo/x/y/baz"));
        assert!(t("/foo/{**}", "/foo/a/b/c") && t("/foo/{**}", "/foo/"));
        assert!(t("/foo/{**}/end", "/foo/a/b/end") && !t("/foo/{**}/end", "/foo/a/b"));
        assert!(t("/foo/{*}/{**}", "/foo/a/b/c?q=1"));
        assert!(PathMatch::parse("/foo/{**}/{*}").is_err());
        assert!(PathMatch::parse("/foo/{x}").is_err());
        assert!(PathMatch::parse("/foo/a{*}").is_err());
        assert!(PathMatch::parse("/foo/a b/{*}").is_err());
        let s = PathMatch::parse("/admin").unwrap();
        assert!(s.matches("/admin?x=1") && s.matches("/admin#f") && !s.matches("/admin/"));
    }
}
