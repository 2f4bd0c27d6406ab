//! Checks on resource values beyond their types, following Istio's own validation where it has
//! one, so a configuration Istio would refuse is refused here too, and one Trellis would silently
//! misread never reaches a proxy.
//!
//! Every check records its finding and carries on, so one run reports every problem in a resource,
//! each located by field path (and through it, file and line).

mod cross;
mod destination_rule;
mod others;
mod rate_limit;
mod service_entry;
mod virtual_service;

pub use cross::cross_check;
pub(crate) use virtual_service::GRPC_STATUS;

use crate::diagnostics::{Diagnostic, Severity};
use crate::host;
use crate::load::Resource;
use crate::resources::{Spec, StringMatch};
use crate::yaml::{index_path, join_path};
use std::collections::BTreeMap;

/// Every finding (errors and warnings) about one resource, located in its source.
pub fn validate(resource: &Resource) -> Vec<Diagnostic> {
    let mut c = Checker {
        resource,
        out: Vec::new(),
    };
    match &resource.spec {
        Spec::VirtualService(vs) => virtual_service::check(&mut c, vs),
        Spec::DestinationRule(dr) => destination_rule::check(&mut c, dr),
        Spec::ServiceEntry(se) => service_entry::check(&mut c, se),
        Spec::Gateway(gw) => others::check_gateway(&mut c, gw),
        Spec::Sidecar(sc) => others::check_sidecar(&mut c, sc),
        Spec::PeerAuthentication(pa) => others::check_peer_authentication(&mut c, pa),
        Spec::AuthorizationPolicy(ap) => others::check_authorization_policy(&mut c, ap),
        Spec::LocalRateLimit(lrl) => rate_limit::check(&mut c, lrl),
    }
    c.out
}

/// Collects findings for one resource.
pub(crate) struct Checker<'a> {
    resource: &'a Resource,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(crate) fn error(&mut self, field: &str, message: impl Into<String>) {
        self.out
            .push(self.resource.diagnostic(Severity::Error, field, message));
    }

    /// The resource being checked.
    pub(crate) fn resource(&self) -> &Resource {
        self.resource
    }

    /// Whether an error was found so far (later checks that would repeat it can be skipped).
    pub(crate) fn has_errors(&self) -> bool {
        self.out.iter().any(|d| d.severity == Severity::Error)
    }

    pub(crate) fn warn(&mut self, field: &str, message: impl Into<String>) {
        self.out
            .push(self.resource.diagnostic(Severity::Warning, field, message));
    }

    pub(crate) fn namespace(&self) -> &str {
        self.resource.namespace()
    }

    pub(crate) fn resource_name(&self) -> &str {
        self.resource.name()
    }

    /// 1..=65535.
    pub(crate) fn port(&mut self, field: &str, port: u32) {
        if !(1..=65535).contains(&port) {
            self.error(field, format!("port {port} must be within 1..=65535"));
        }
    }

    /// Istio's Percent: 0, or 0.0001..=100.
    pub(crate) fn percentage(&mut self, field: &str, value: f64) {
        if !value.is_finite() || !(0.0..=100.0).contains(&value) || (value > 0.0 && value < 0.0001)
        {
            self.error(field, format!("percentage {value} must be within 0..=100"));
        }
    }

    /// A duration of whole milliseconds, at least 1ms unless `allow_zero`.
    pub(crate) fn duration(&mut self, field: &str, text: &str, allow_zero: bool) -> Option<u64> {
        let parsed = if allow_zero {
            crate::duration::parse_ms(text)
        } else {
            crate::duration::parse_positive_ms(text)
        };
        match parsed {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.error(field, e);
                None
            }
        }
    }

    /// An RE2-style regex (compiled as Istio does: it must match the whole value).
    pub(crate) fn regex(&mut self, field: &str, pattern: &str) {
        if let Err(e) = compile_regex(pattern) {
            self.error(field, e);
        }
    }

    /// A StringMatch with exactly one of exact/prefix/regex, or none at all when `allow_empty`
    /// (header and query matches, where an empty match tests presence).
    pub(crate) fn string_match(&mut self, field: &str, m: &StringMatch, allow_empty: bool) {
        let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set > 1 {
            self.error(field, "set only one of `exact`, `prefix`, `regex`");
        } else if set == 0 && !allow_empty {
            self.error(field, "set one of `exact`, `prefix`, `regex`");
        }
        if let Some(r) = &m.regex {
            self.regex(&join_path(field, "regex"), r);
        }
    }

    /// Kubernetes label keys and values.
    pub(crate) fn labels(&mut self, field: &str, labels: &BTreeMap<String, String>) {
        for (k, v) in labels {
            let f = join_path(field, k);
            if let Err(e) = label_key(k) {
                self.error(&f, e);
            }
            if let Err(e) = label_value(v) {
                self.error(&f, e);
            }
        }
    }

    /// Labels used to select workloads: as [`Checker::labels`], and no wildcards.
    pub(crate) fn selector(&mut self, field: &str, labels: &BTreeMap<String, String>) {
        self.labels(field, labels);
        for (k, v) in labels {
            if k.contains('*') || v.contains('*') {
                self.error(
                    &join_path(field, k),
                    "wildcards are not supported in selectors",
                );
            }
        }
    }

    /// `exportTo`: `.`, `*`, `~` (ServiceEntry only) or namespace names.
    pub(crate) fn export_to(&mut self, field: &str, values: &[String], service_entry: bool) {
        let own = self.namespace().to_string();
        let mut seen = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let f = index_path(field, i);
            let key = if v == "." { own.clone() } else { v.clone() };
            if seen.contains(&key) {
                self.error(&f, format!("duplicate exportTo entry `{v}`"));
            }
            seen.push(key);
            match v.as_str() {
                "." | "*" => {}
                "~" if service_entry => {}
                _ if host::is_dns1123_label(v) => {}
                _ => self.error(
                    &f,
                    format!(
                        "`{v}` is not `.`, `*`{} or a namespace name",
                        if service_entry { ", `~`" } else { "" }
                    ),
                ),
            }
        }
        if values.len() > 1 {
            if values.iter().any(|v| v == "*") {
                self.error(
                    field,
                    "`*` exports everywhere and cannot be combined with other entries",
                );
            }
            if values.iter().any(|v| v == "~") {
                self.error(
                    field,
                    "`~` exports nowhere and cannot be combined with other entries",
                );
            }
        }
    }

    /// An HTTP header name (a token), as used in matches and header operations.
    pub(crate) fn header_name(&mut self, field: &str, name: &str) {
        if name.is_empty() {
            self.error(field, "header name must not be empty");
        } else if !name.bytes().all(is_tchar) {
            self.error(field, format!("`{name}` is not a valid HTTP header name"));
        }
    }

    /// An HTTP header value: no control characters (CR/LF would split the header).
    pub(crate) fn header_value(&mut self, field: &str, value: &str) {
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            self.error(field, "header value must not contain control characters");
        }
    }

    /// Gateway references in a VirtualService: `mesh`, `name` or `namespace/name`.
    pub(crate) fn gateway_names(&mut self, field: &str, names: &[String]) {
        for (i, name) in names.iter().enumerate() {
            let f = index_path(field, i);
            if name == "mesh" {
                continue;
            }
            let ok = match name.split_once('/') {
                Some((ns, gw)) => host::is_dns1123_label(ns) && host::is_dns1123_label(gw),
                None => host::is_dns1123_subdomain(name),
            };
            if !ok {
                self.error(
                    &f,
                    format!("`{name}` is not `mesh`, a gateway name or `namespace/name`"),
                );
            }
        }
    }

    /// An IP address or a CIDR block.
    pub(crate) fn ip_or_cidr(&mut self, field: &str, value: &str) {
        if !is_ip_or_cidr(value) {
            self.error(
                field,
                format!("`{value}` is not an IP address or CIDR block"),
            );
        }
    }
}

/// Compiles `pattern` anchored at both ends, with a size limit so configuration cannot make the
/// proxy build huge automata.
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&detail)
                .trim();
            let last = last.strip_prefix("error: ").unwrap_or(last);
            format!("invalid regex `{pattern}` (RE2 syntax): {last}")
        })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(crate) fn is_ip_or_cidr(value: &str) -> bool {
    match value.split_once('/') {
        None => value.parse::<std::net::IpAddr>().is_ok(),
        Some((ip, bits)) => match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
    }
}

/// `[prefix/]name`: prefix a DNS subdomain, name 1..=63 alphanumerics with `-_.` inside.
fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty() || !host::is_dns1123_subdomain(p))
    {
        return Err(format!("label key `{key}` has an invalid prefix `{p}`"));
    }
    if name.is_empty() || !label_name_ok(name) {
        return Err(format!(
            "label key `{key}` must be at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || label_name_ok(value) {
        Ok(())
    } else {
        Err(format!(
            "label value `{value}` must be at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit"
        ))
    }
}

fn label_name_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Checks a port's `protocol`; UDP exists in Istio but Trellis does not carry it.
pub(crate) fn check_protocol(c: &mut Checker<'_>, field: &str, protocol: &str) {
    if protocol.eq_ignore_ascii_case("UDP") {
        c.error(field, "protocol `UDP` is unsupported by Trellis");
    } else if crate::registry::parse_protocol(protocol).is_none() {
        c.error(
            field,
            format!(
                "unknown protocol `{protocol}`, expected one of HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TLS, TCP, MONGO, MYSQL, REDIS"
            ),
        );
    }
}

/// Decodes base64 (standard or URL-safe alphabet, padding optional), as protobuf JSON does.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 {
        return None;
    }
    for c in trimmed.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character cannot encode a byte.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode_base64(""), Some(vec![]));
        assert_eq!(decode_base64("_-8="), Some(vec![0xff, 0xef]));
        assert_eq!(decode_base64("a"), None);
        assert_eq!(decode_base64("a!=="), None);
    }

    #[test]
    fn labels_and_addresses() {
        assert!(label_key("app").is_ok());
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("-app").is_err());
        assert!(label_key("/app").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_x").is_ok());
        assert!(label_value("bad value").is_err());
        assert!(is_ip_or_cidr("10.0.0.0/8"));
        assert!(is_ip_or_cidr("2001:db8::/32"));
        assert!(is_ip_or_cidr("1.2.3.4"));
        assert!(!is_ip_or_cidr("1.2.3.4/33"));
        assert!(!is_ip_or_cidr("example.com"));
    }

    #[test]
    fn regexes_must_compile() {
        assert!(compile_regex("/api/v[0-9]+/.*").is_ok());
        assert!(compile_regex("(unclosed").is_err());
        // RE2 has no backreferences.
        assert!(compile_regex(r"(a)\1").is_err());
    }

    /// `field: message` of every finding for a one-resource document.
    fn findings(kind: &str, spec: &str) -> Vec<String> {
        let group = if kind.ends_with("Authentication") || kind == "AuthorizationPolicy" {
            "security.istio.io"
        } else {
            "networking.istio.io"
        };
        let text = format!(
            "apiVersion: {group}/v1\nkind: {kind}\nmetadata: {{name: x, namespace: ns}}\nspec:\n{spec}"
        );
        let (_, mut diagnostics) = crate::load::read_str(&text, None);
        if let Ok(rs) = crate::load::load_str(&text, "t.yaml") {
            diagnostics.extend(rs.into_iter().flat_map(|r| r.warnings));
        }
        diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.field.as_deref().unwrap_or(""), d.message))
            .collect()
    }

    fn has(found: &[String], expected: &str) {
        assert!(
            found.iter().any(|f| f.contains(expected)),
            "expected `{expected}` in {found:#?}"
        );
    }

    #[test]
    fn virtual_service_rules() {
        let f = findings(
            "VirtualService",
            "  hosts: ['*', reviews, reviews.ns.svc.cluster.local]\n  exportTo: ['*', '.']\n  http:\n  - route: [{destination: {host: a}}]\n    redirect: {uri: /x}\n    rewrite: {uri: /y, uriRegexRewrite: {match: '(', rewrite: x}}\n    retries: {attempts: 0, retryOn: 5xx}\n    mirror: {host: b}\n    mirrors: [{destination: {host: c}, percentage: {value: 101}}]\n    corsPolicy: {allowMethods: [FETCH], maxAge: 1500ms}\n    headers: {request: {set: {'bad header': x}}}\n",
        );
        has(
            &f,
            "spec.hosts[0]: host `*` is not allowed for VirtualServices bound to the mesh",
        );
        has(
            &f,
            "spec.hosts[2]: host `reviews.ns.svc.cluster.local` overlaps host `reviews.ns.svc.cluster.local`",
        );
        has(&f, "spec.exportTo: `*` exports everywhere");
        has(
            &f,
            "spec.http[0]: a rule takes only one of `route`, `redirect` or `directResponse`",
        );
        has(
            &f,
            "spec.http[0].rewrite: `rewrite` cannot be combined with `redirect`",
        );
        has(
            &f,
            "spec.http[0].rewrite: set only one of `uri` or `uriRegexRewrite`",
        );
        has(
            &f,
            "spec.http[0].rewrite.uriRegexRewrite.match: invalid regex `(`",
        );
        has(
            &f,
            "spec.http[0].retries: retry settings given while `attempts` is 0",
        );
        has(
            &f,
            "spec.http[0].mirrors: set only one of `mirror` or `mirrors`",
        );
        has(
            &f,
            "spec.http[0].mirrors[0].percentage.value: percentage 101 must be within 0..=100",
        );
        has(
            &f,
            "spec.http[0].corsPolicy.allowMethods[0]: `FETCH` is not an HTTP method",
        );
        has(
            &f,
            "spec.http[0].corsPolicy.maxAge: maxAge is counted in whole seconds",
        );
        has(
            &f,
            "spec.http[0].headers.request.set.bad header: `bad header` is not a valid HTTP header name",
        );
    }

    #[test]
    fn service_entry_rules() {
        let f = findings(
            "ServiceEntry",
            "  hosts: ['*.example.com', a.example.com]\n  addresses: [10.0.0.0/8]\n  resolution: DNS\n  ports: [{number: 5432, name: db, protocol: TCP}, {number: 5432, name: db}, {number: 53, name: dns, protocol: UDP}]\n  exportTo: ['~', ns]\n",
        );
        has(
            &f,
            "spec.hosts[0]: a wildcard host cannot be resolved by DNS",
        );
        has(
            &f,
            "spec.addresses: CIDR addresses need resolution NONE or STATIC",
        );
        has(&f, "spec.ports[1].number: port 5432 is declared twice");
        has(&f, "spec.ports[1].name: port name `db` is used twice");
        has(
            &f,
            "spec.ports[2].protocol: protocol `UDP` is unsupported by Trellis",
        );
        has(&f, "spec.hosts: several hosts need HTTP or TLS ports");
        has(&f, "spec.exportTo: `~` exports nowhere");
        let f = findings(
            "ServiceEntry",
            "  hosts: [db.internal]\n  ports: [{number: 5432, name: db}]\n  endpoints: [{address: 10.0.0.1}]\n",
        );
        has(&f, "spec.endpoints: resolution NONE takes no endpoints");
    }

    #[test]
    fn gateway_sidecar_and_security_rules() {
        let f = findings(
            "Gateway",
            "  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ['bookinfo/*.example.com']\n  - port: {number: 80, name: https, protocol: HTTP}\n    hosts: []\n",
        );
        has(
            &f,
            "spec.servers[0]: HTTPS and TLS servers need `tls` settings",
        );
        has(
            &f,
            "spec.servers[1].port.name: port name `https` is used by another server",
        );
        has(&f, "spec.servers[1].hosts: at least one host is required");

        let f = findings(
            "Sidecar",
            "  egress:\n  - hosts: [reviews]\n  - port: {number: 9080, name: http, protocol: HTTP}\n    hosts: ['./reviews', 'bad ns/*']\n  ingress:\n  - port: {number: 9080, name: http, protocol: HTTP}\n    defaultEndpoint: 127.0.0.1:8080\n",
        );
        has(
            &f,
            "spec.egress[0]: only the last egress listener may leave out `port`",
        );
        has(
            &f,
            "spec.egress[0].hosts[0]: `reviews` must be `namespace/host`",
        );
        has(&f, "spec.egress[1].hosts[0]: `reviews` is a short name");
        has(
            &f,
            "spec.egress[1].hosts[1]: `bad ns` is not `*`, `.`, `~` or a namespace name",
        );
        has(
            &f,
            "spec.ingress: ingress listeners are accepted but not applied by Trellis yet",
        );

        let f = findings(
            "AuthorizationPolicy",
            "  action: CUSTOM\n  rules:\n  - to: [{operation: {ports: ['0']}}]\n    when: [{key: 'request.auth.claims[iss]'}]\n",
        );
        has(&f, "spec.provider: action CUSTOM needs a `provider`");
        has(&f, "`0` (entry 0) is not a port number");
        has(&f, "spec.rules[0].when[0]: set `values` or `notValues`");
        let f = findings(
            "PeerAuthentication",
            "  portLevelMtls: {8080: {mode: DISABLE}}\n",
        );
        has(
            &f,
            "spec.portLevelMtls: port-level mTLS needs a workload `selector`",
        );
    }
}
