//! The AuthorizationPolicy matrix: each case is policies as YAML (read by the normal loader),
//! one request to a workload, and the outcome Istio gives for it.

use super::*;
use crate::load_str;
use crate::resources::{AuthorizationPolicy, Spec};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The workload and request of a case; each case changes what it needs.
struct Req {
    namespace: &'static str,
    labels: &'static [(&'static str, &'static str)],
    protocol: Protocol,
    principal: Option<&'static str>,
    source_ip: &'static str,
    remote_ip: Option<&'static str>,
    destination_ip: &'static str,
    port: u16,
    sni: Option<&'static str>,
    host: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

fn base() -> Req {
    Req {
        namespace: "foo",
        labels: &[("app", "httpbin"), ("version", "v1")],
        protocol: Protocol::Http,
        principal: Some("spiffe://cluster.local/ns/default/sa/sleep"),
        source_ip: "10.0.0.5",
        remote_ip: None,
        destination_ip: "10.0.0.9",
        port: 8000,
        sni: None,
        host: Some("httpbin.foo"),
        method: "GET",
        path: "/ip",
        headers: &[],
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Policies `(namespace/name, spec in YAML flow style)` as one multi-document file.
fn yaml(policies: &[(&str, &str)]) -> String {
    policies
        .iter()
        .map(|(id, spec)| {
            let (ns, name) = id.split_once('/').unwrap();
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
                 metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Every policy given compiled into one set, scope aside (for tests of the set itself).
fn compile_all(policies: &[(&str, &str)]) -> PolicySet {
    let resources = load_str(&yaml(policies), "a.yaml").unwrap();
    let list: Vec<(&str, &str, &AuthorizationPolicy)> = resources
        .iter()
        .map(|r| match &r.spec {
            Spec::AuthorizationPolicy(ap) => (r.name(), r.namespace(), ap),
            _ => unreachable!(),
        })
        .collect();
    compile(&list).unwrap()
}

/// What Istio does with the request, as `ALLOW|DENY [ns.name]` (no name: no policy decided),
/// with ` audit ns.name` when an AUDIT policy matched, or `ERR <messages>`.
fn outcome(policies: &[(&str, &str)], req: &Req) -> String {
    let text = yaml(policies);
    // Validation at load time refuses what the engine cannot compile, with the same words.
    let resources = match load_str(&text, "case.yaml") {
        Ok(resources) => resources,
        Err(diagnostics) => {
            let msgs: Vec<String> = diagnostics
                .iter()
                .map(|d| {
                    format!(
                        "{}: {}: {}",
                        d.resource.as_deref().unwrap_or("?"),
                        d.field.as_deref().unwrap_or("?"),
                        d.message
                    )
                })
                .collect();
            return format!("ERR {}", msgs.join("; "));
        }
    };
    let labels: BTreeMap<String, String> = req
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let applicable: Vec<(&str, &str, &AuthorizationPolicy)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::AuthorizationPolicy(ap)
                if applies_to(
                    r.namespace(),
                    ap.selector.as_ref(),
                    DEFAULT_ROOT_NAMESPACE,
                    req.namespace,
                    &labels,
                ) =>
            {
                Some((r.name(), r.namespace(), ap))
            }
            _ => None,
        })
        .collect();
    let set = match compile(&applicable) {
        Ok(set) => set,
        Err(errors) => {
            let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return format!("ERR {}", msgs.join("; "));
        }
    };
    let headers = HeaderList(req.headers);
    let attrs = RequestAttributes {
        protocol: req.protocol,
        peer_principal: req.principal,
        remote_ip: req.remote_ip.map(ip),
        sni: req.sni,
        host: req.host,
        method: Some(req.method),
        path: Some(req.path),
        headers: &headers,
        ..RequestAttributes::new(ip(req.source_ip), ip(req.destination_ip), req.port)
    };
    let d = set.evaluate(&attrs);
    let mut out = match d.outcome {
        Outcome::AllowedWithoutPolicy | Outcome::DeniedNoAllowMatch => String::new(),
        Outcome::AllowedBy(m) | Outcome::DeniedBy(m) => format!(" {}", m.policy),
    };
    out.insert_str(0, if d.is_allowed() { "ALLOW" } else { "DENY" });
    if let Some(a) = d.audit {
        out.push_str(&format!(" audit {}", a.policy));
    }
    out
}

type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    fn(&mut Req),
    &'static str,
);

fn same(_: &mut Req) {}

const ALLOW_ALL: (&str, &str) = ("foo/allow-all", "{rules: [{}]}");

#[rustfmt::skip]
const CASES: &[Case] = &[
    ("no policy allows", &[], same, "ALLOW"),
    // Principals: SPIFFE id without the scheme; exact, prefix, suffix, presence, negation.
    ("principal exact", &[("foo/p", "{rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]}")], same, "ALLOW foo.p"),
    ("principal other", &[("foo/p", "{rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/other]}}]}]}")], same, "DENY"),
    ("principal without mTLS", &[("foo/p", "{rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]}")], |r| r.principal = None, "DENY"),
    ("principal without scheme given", &[("foo/p", "{rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]}")], |r| r.principal = Some("cluster.local/ns/default/sa/sleep"), "ALLOW foo.p"),
    ("principal prefix", &[("foo/p", "{rules: [{from: [{source: {principals: [\"cluster.local/ns/default/*\"]}}]}]}")], same, "ALLOW foo.p"),
    ("principal suffix", &[("foo/p", "{rules: [{from: [{source: {principals: [\"*/sa/sleep\"]}}]}]}")], same, "ALLOW foo.p"),
    ("principal any, mTLS", &[("foo/p", "{rules: [{from: [{source: {principals: [\"*\"]}}]}]}")], same, "ALLOW foo.p"),
    ("principal any, plaintext", &[("foo/p", "{rules: [{from: [{source: {principals: [\"*\"]}}]}]}")], |r| r.principal = None, "DENY"),
    ("notPrincipals excludes", &[("foo/p", "{rules: [{from: [{source: {notPrincipals: [cluster.local/ns/default/sa/sleep]}}]}]}")], same, "DENY"),
    ("notPrincipals, plaintext passes", &[("foo/p", "{rules: [{from: [{source: {notPrincipals: [cluster.local/ns/default/sa/sleep]}}]}]}")], |r| r.principal = None, "ALLOW foo.p"),
    // Namespaces come from the principal.
    ("namespace match", &[("foo/n", "{rules: [{from: [{source: {namespaces: [default]}}]}]}")], same, "ALLOW foo.n"),
    ("namespace other", &[("foo/n", "{rules: [{from: [{source: {namespaces: [test]}}]}]}")], same, "DENY"),
    ("namespace prefix", &[("foo/n", "{rules: [{from: [{source: {namespaces: [\"def*\"]}}]}]}")], same, "ALLOW foo.n"),
    ("namespace without mTLS", &[("foo/n", "{rules: [{from: [{source: {namespaces: [default]}}]}]}")], |r| r.principal = None, "DENY"),
    ("notNamespaces", &[("foo/n", "{rules: [{from: [{source: {notNamespaces: [default]}}]}]}")], same, "DENY"),
    // Sources ORed, fields ANDed.
    ("sources ORed", &[("foo/s", "{rules: [{from: [{source: {namespaces: [test]}}, {source: {principals: [cluster.local/ns/default/sa/sleep]}}]}]}")], same, "ALLOW foo.s"),
    ("source fields ANDed", &[("foo/s", "{rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep], ipBlocks: [192.168.0.0/16]}}]}]}")], same, "DENY"),
    // IP blocks.
    ("ipBlocks CIDR", &[("foo/i", "{rules: [{from: [{source: {ipBlocks: [10.0.0.0/24]}}]}]}")], same, "ALLOW foo.i"),
    ("ipBlocks single IP", &[("foo/i", "{rules: [{from: [{source: {ipBlocks: [10.0.0.5]}}]}]}")], same, "ALLOW foo.i"),
    ("ipBlocks outside", &[("foo/i", "{rules: [{from: [{source: {ipBlocks: [10.1.0.0/16]}}]}]}")], same, "DENY"),
    ("notIpBlocks", &[("foo/i", "{rules: [{from: [{source: {notIpBlocks: [10.0.0.0/8]}}]}]}")], same, "DENY"),
    ("ipBlocks IPv6", &[("foo/i", "{rules: [{from: [{source: {ipBlocks: [\"fd00::/8\"]}}]}]}")], |r| r.source_ip = "fd00::7", "ALLOW foo.i"),
    ("remoteIpBlocks defaults to the peer", &[("foo/i", "{rules: [{from: [{source: {remoteIpBlocks: [10.0.0.5]}}]}]}")], same, "ALLOW foo.i"),
    ("remoteIpBlocks uses the original client", &[("foo/i", "{rules: [{from: [{source: {remoteIpBlocks: [10.0.0.5]}}]}]}")], |r| r.remote_ip = Some("198.51.100.1"), "DENY"),
    // Operations.
    ("method match", &[("foo/m", "{rules: [{to: [{operation: {methods: [GET]}}]}]}")], same, "ALLOW foo.m"),
    ("method other", &[("foo/m", "{rules: [{to: [{operation: {methods: [GET]}}]}]}")], |r| r.method = "POST", "DENY"),
    ("method is case-sensitive", &[("foo/m", "{rules: [{to: [{operation: {methods: [get]}}]}]}")], same, "DENY"),
    ("notMethods", &[("foo/m", "{rules: [{to: [{operation: {notMethods: [DELETE]}}]}]}")], |r| r.method = "DELETE", "DENY"),
    ("path exact", &[("foo/p", "{rules: [{to: [{operation: {paths: [/ip]}}]}]}")], same, "ALLOW foo.p"),
    ("path exact, trailing slash differs", &[("foo/p", "{rules: [{to: [{operation: {paths: [/ip]}}]}]}")], |r| r.path = "/ip/", "DENY"),
    ("path exact ignores query", &[("foo/p", "{rules: [{to: [{operation: {paths: [/ip]}}]}]}")], |r| r.path = "/ip?verbose=1", "ALLOW foo.p"),
    ("path prefix", &[("foo/p", "{rules: [{to: [{operation: {paths: [\"/status/*\"]}}]}]}")], |r| r.path = "/status/200", "ALLOW foo.p"),
    ("path prefix miss", &[("foo/p", "{rules: [{to: [{operation: {paths: [\"/status/*\"]}}]}]}")], |r| r.path = "/statusx", "DENY"),
    ("path suffix", &[("foo/p", "{rules: [{to: [{operation: {paths: [\"*.json\"]}}]}]}")], |r| r.path = "/a/b.json", "ALLOW foo.p"),
    ("path any", &[("foo/p", "{rules: [{to: [{operation: {paths: [\"*\"]}}]}]}")], same, "ALLOW foo.p"),
    ("path is case-sensitive", &[("foo/p", "{rules: [{to: [{operation: {paths: [/IP]}}]}]}")], same, "DENY"),
    ("notPaths", &[("foo/p", "{rules: [{to: [{operation: {notPaths: [\"/admin*\"]}}]}]}")], |r| r.path = "/admin/users", "DENY"),
    ("path template one segment", &[("foo/p", "{rules: [{to: [{operation: {paths: [\"/api/{*}/items\"]}}]}]}")], |r| r.path = "/api/v1/items", "ALLOW foo.p"),
    ("path template one segment only", &[("foo/p", "{rules: [{to: [{operation: {paths: [\"/api/{*}/items\"]}}]}]}")], |r| r.path = "/api/v1/x/items", "DENY"),
    ("path template many", &[("foo/p", "{rules: [{to: [{operation: {paths: [\"/files/{**}\"]}}]}]}")], |r| r.path = "/files/a/b/c.txt", "ALLOW foo.p"),
    ("host ignores case", &[("foo/h", "{rules: [{to: [{operation: {hosts: [httpbin.foo]}}]}]}")], |r| r.host = Some("HTTPBIN.Foo"), "ALLOW foo.h"),
    ("host exact does not match with port", &[("foo/h", "{rules: [{to: [{operation: {hosts: [httpbin.foo]}}]}]}")], |r| r.host = Some("httpbin.foo:8000"), "DENY"),
    ("host prefix covers the port", &[("foo/h", "{rules: [{to: [{operation: {hosts: [\"httpbin.foo:*\"]}}]}]}")], |r| r.host = Some("httpbin.foo:8000"), "ALLOW foo.h"),
    ("host suffix", &[("foo/h", "{rules: [{to: [{operation: {hosts: [\"*.foo\"]}}]}]}")], same, "ALLOW foo.h"),
    ("notHosts", &[("foo/h", "{rules: [{to: [{operation: {notHosts: [httpbin.foo]}}]}]}")], same, "DENY"),
    ("ports", &[("foo/o", "{rules: [{to: [{operation: {ports: [\"8000\"]}}]}]}")], same, "ALLOW foo.o"),
    ("ports other", &[("foo/o", "{rules: [{to: [{operation: {ports: [\"9000\"]}}]}]}")], same, "DENY"),
    ("notPorts", &[("foo/o", "{rules: [{to: [{operation: {notPorts: [\"8000\"]}}]}]}")], same, "DENY"),
    ("operations ORed", &[("foo/o", "{rules: [{to: [{operation: {methods: [POST]}}, {operation: {paths: [/ip]}}]}]}")], same, "ALLOW foo.o"),
    ("operation fields ANDed", &[("foo/o", "{rules: [{to: [{operation: {methods: [GET], paths: [/headers]}}]}]}")], same, "DENY"),
    ("from and to ANDed", &[("foo/o", "{rules: [{from: [{source: {namespaces: [default]}}], to: [{operation: {methods: [POST]}}]}]}")], same, "DENY"),
    // Conditions.
    ("header value", &[("foo/w", "{rules: [{when: [{key: \"request.headers[x-token]\", values: [secret]}]}]}")], |r| r.headers = &[("X-Token", "secret")], "ALLOW foo.w"),
    ("header missing", &[("foo/w", "{rules: [{when: [{key: \"request.headers[x-token]\", values: [secret]}]}]}")], same, "DENY"),
    ("header name case-insensitive, value prefix", &[("foo/w", "{rules: [{when: [{key: \"request.headers[Authorization]\", values: [\"Bearer *\"]}]}]}")], |r| r.headers = &[("authorization", "Bearer abc")], "ALLOW foo.w"),
    ("header presence accepts an empty value", &[("foo/w", "{rules: [{when: [{key: \"request.headers[x-debug]\", values: [\"*\"]}]}]}")], |r| r.headers = &[("x-debug", "")], "ALLOW foo.w"),
    ("header repeated values joined", &[("foo/w", "{rules: [{when: [{key: \"request.headers[x-a]\", values: [\"1,2\"]}]}]}")], |r| r.headers = &[("x-a", "1"), ("x-a", "2")], "ALLOW foo.w"),
    ("header notValues, absent passes", &[("foo/w", "{rules: [{when: [{key: \"request.headers[x-env]\", notValues: [prod]}]}]}")], same, "ALLOW foo.w"),
    ("conditions ANDed", &[("foo/w", "{rules: [{when: [{key: source.namespace, values: [default]}, {key: destination.port, values: [\"9000\"]}]}]}")], same, "DENY"),
    ("source.principal", &[("foo/w", "{rules: [{when: [{key: source.principal, values: [cluster.local/ns/default/sa/sleep]}]}]}")], same, "ALLOW foo.w"),
    ("source.ip notValues", &[("foo/w", "{rules: [{when: [{key: source.ip, notValues: [10.0.0.0/8]}]}]}")], same, "DENY"),
    ("destination.ip and port", &[("foo/w", "{rules: [{when: [{key: destination.ip, values: [10.0.0.9]}, {key: destination.port, values: [\"8000\"]}]}]}")], same, "ALLOW foo.w"),
    ("connection.sni", &[("foo/w", "{rules: [{when: [{key: connection.sni, values: [\"*.svc.cluster.local\"]}]}]}")], |r| r.sni = Some("outbound_.8000_._.httpbin.foo.svc.cluster.local"), "ALLOW foo.w"),
    ("JWT claims never match without JWT", &[("foo/w", "{rules: [{when: [{key: \"request.auth.claims[iss]\", values: [\"https://accounts.google.com\"]}]}]}")], same, "DENY"),
    ("requestPrincipals need a JWT", &[("foo/r", "{rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]}")], same, "DENY"),
    ("DENY notRequestPrincipals denies requests without JWT", &[("foo/d", "{action: DENY, rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]}")], same, "DENY foo.d"),
    // Actions and special policies.
    ("DENY overrides ALLOW", &[ALLOW_ALL, ("foo/deny-post", "{action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}")], |r| r.method = "POST", "DENY foo.deny-post"),
    ("DENY not matching leaves ALLOW", &[ALLOW_ALL, ("foo/deny-post", "{action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}")], same, "ALLOW foo.allow-all"),
    ("DENY alone, not matching", &[("foo/deny-post", "{action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}")], same, "ALLOW"),
    ("allow-nothing denies all", &[("foo/allow-nothing", "{}")], same, "DENY"),
    ("allow-nothing plus an ALLOW", &[("foo/allow-nothing", "{}"), ("foo/get", "{rules: [{to: [{operation: {methods: [GET]}}]}]}")], same, "ALLOW foo.get"),
    ("allow-nothing plus an ALLOW, not matching", &[("foo/allow-nothing", "{}"), ("foo/get", "{rules: [{to: [{operation: {methods: [GET]}}]}]}")], |r| r.method = "PUT", "DENY"),
    ("empty rule allows all", &[ALLOW_ALL], |r| { r.principal = None; r.method = "DELETE"; }, "ALLOW foo.allow-all"),
    ("DENY without rules does nothing", &[("foo/d", "{action: DENY}")], same, "ALLOW"),
    ("DENY with an empty rule denies all", &[("foo/d", "{action: DENY, rules: [{}]}")], same, "DENY foo.d"),
    ("ALLOW policies ORed", &[("foo/a", "{rules: [{to: [{operation: {methods: [GET]}}]}]}"), ("foo/b", "{rules: [{to: [{operation: {paths: [/post]}}]}]}")], |r| { r.method = "POST"; r.path = "/post"; }, "ALLOW foo.b"),
    ("AUDIT does not allow or deny", &[("foo/audit", "{action: AUDIT, rules: [{to: [{operation: {methods: [GET]}}]}]}")], same, "ALLOW audit foo.audit"),
    ("AUDIT beside a denial", &[("foo/allow-nothing", "{}"), ("foo/audit", "{action: AUDIT, rules: [{}]}")], same, "DENY audit foo.audit"),
    ("AUDIT not matching", &[("foo/audit", "{action: AUDIT, rules: [{to: [{operation: {methods: [POST]}}]}]}")], same, "ALLOW"),
    // Scope: root namespace, namespace, selector.
    ("root namespace applies mesh-wide", &[("istio-system/deny-all", "{action: DENY, rules: [{}]}")], same, "DENY istio-system.deny-all"),
    ("root namespace selector in any namespace", &[("istio-system/v1-only", "{selector: {matchLabels: {version: v1}}, action: DENY, rules: [{}]}")], same, "DENY istio-system.v1-only"),
    ("root namespace selector not matching", &[("istio-system/v2-only", "{selector: {matchLabels: {version: v2}}, action: DENY, rules: [{}]}")], same, "ALLOW"),
    ("other namespace does not apply", &[("bar/allow-nothing", "{}")], same, "ALLOW"),
    ("selector matching", &[("foo/httpbin", "{selector: {matchLabels: {app: httpbin}}}")], same, "DENY"),
    ("selector not matching", &[("foo/other", "{selector: {matchLabels: {app: other}}}")], same, "ALLOW"),
    // TCP: HTTP-only fields.
    ("TCP: ALLOW rule with HTTP fields never matches", &[("foo/get", "{rules: [{to: [{operation: {methods: [GET]}}]}]}")], |r| r.protocol = Protocol::Tcp, "DENY"),
    ("TCP: ALLOW by port", &[("foo/port", "{rules: [{to: [{operation: {ports: [\"8000\"]}}]}]}")], |r| r.protocol = Protocol::Tcp, "ALLOW foo.port"),
    ("TCP: ALLOW keeps its TCP rules", &[("foo/mixed", "{rules: [{to: [{operation: {paths: [/ip]}}]}, {from: [{source: {namespaces: [default]}}]}]}")], |r| r.protocol = Protocol::Tcp, "ALLOW foo.mixed"),
    ("TCP: DENY drops HTTP fields, keeps port", &[("foo/d", "{action: DENY, rules: [{to: [{operation: {methods: [GET], ports: [\"8000\"]}}]}]}")], |r| r.protocol = Protocol::Tcp, "DENY foo.d"),
    ("TCP: DENY on another port", &[("foo/d", "{action: DENY, rules: [{to: [{operation: {methods: [GET], ports: [\"9000\"]}}]}]}")], |r| r.protocol = Protocol::Tcp, "ALLOW"),
    ("TCP: DENY with only HTTP fields denies all", &[("foo/d", "{action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}")], |r| r.protocol = Protocol::Tcp, "DENY foo.d"),
    ("TCP: same DENY on HTTP", &[("foo/d", "{action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}")], same, "ALLOW"),
    ("TCP: DENY with header condition", &[("foo/d", "{action: DENY, rules: [{from: [{source: {namespaces: [default]}}], when: [{key: \"request.headers[x-a]\", values: [b]}]}]}")], |r| r.protocol = Protocol::Tcp, "DENY foo.d"),
    // Compile errors.
    ("unknown condition key", &[("foo/bad", "{rules: [{when: [{key: request.colour, values: [red]}]}]}")], same, "ERR AuthorizationPolicy foo/bad: spec.rules[0].when[0].key: unknown condition key `request.colour`"),
    ("CUSTOM is unsupported", &[("foo/ext", "{action: CUSTOM, provider: {name: opa}, rules: [{}]}")], same, "ERR AuthorizationPolicy foo/ext: spec.action: action CUSTOM (external authorization) is unsupported by Trellis"),
    ("envoy filter keys are unsupported", &[("foo/bad", "{rules: [{when: [{key: \"experimental.envoy.filters.network.mysql_proxy[db.table]\", values: [\"[update]\"]}]}]}")], same, "ERR AuthorizationPolicy foo/bad: spec.rules[0].when[0].key: condition key `experimental.envoy.filters.network.mysql_proxy[db.table]` is unsupported by Trellis"),
    ("header key without a name", &[("foo/bad", "{rules: [{when: [{key: \"request.headers[]\", values: [x]}]}]}")], same, "ERR AuthorizationPolicy foo/bad: spec.rules[0].when[0].key: bad key `request.headers[]`: expected `request.headers[name]`"),
    ("bad CIDR", &[("foo/bad", "{rules: [{from: [{source: {ipBlocks: [10.0.0.0/40]}}]}]}")], same, "ERR AuthorizationPolicy foo/bad: spec.rules[0].from[0].source.ipBlocks[0]: `10.0.0.0/40`: prefix length must be a number from 0 to 32"),
    ("bad port condition", &[("foo/bad", "{rules: [{when: [{key: destination.port, values: [http]}]}]}")], same, "ERR AuthorizationPolicy foo/bad: spec.rules[0].when[0].values[0]: `http` is not a port number (0-65535)"),
    ("empty source", &[("foo/bad", "{rules: [{from: [{source: {}}]}]}")], same, "ERR AuthorizationPolicy foo/bad: spec.rules[0].from[0].source: `source` must not be empty"),
    ("bad path template", &[("foo/bad", "{rules: [{to: [{operation: {paths: [\"/a/{**}/{*}\"]}}]}]}")], same, "ERR AuthorizationPolicy foo/bad: spec.rules[0].to[0].operation.paths[0]: path template `/a/{**}/{*}`: `{**}` must be the last operator"),
    ("errors of every policy reported", &[("foo/a", "{action: CUSTOM, provider: {name: x}}"), ("foo/b", "{rules: [{when: [{key: nope, values: [x]}]}]}")], same, "ERR AuthorizationPolicy foo/a: spec.action: action CUSTOM (external authorization) is unsupported by Trellis; AuthorizationPolicy foo/b: spec.rules[0].when[0].key: unknown condition key `nope`"),
];

#[test]
fn istio_matrix() {
    assert!(CASES.len() >= 40);
    let mut failures = Vec::new();
    for (name, policies, change, expected) in CASES {
        let mut req = base();
        change(&mut req);
        let got = outcome(policies, &req);
        if got != *expected {
            failures.push(format!("{name}: expected `{expected}`, got `{got}`"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn audit_matches_lists_every_audit_rule() {
    let set = compile_all(&[
        (
            "foo/a1",
            "{action: AUDIT, rules: [{to: [{operation: {methods: [POST]}}]}, {}]}",
        ),
        ("foo/a2", "{action: AUDIT, rules: [{}]}"),
    ]);
    let http = RequestAttributes {
        protocol: Protocol::Http,
        method: Some("GET"),
        ..RequestAttributes::new(ip("10.0.0.1"), ip("10.0.0.2"), 80)
    };
    let all: Vec<(String, usize)> = set
        .audit_matches(&http)
        .map(|m| (m.policy.to_string(), m.rule))
        .collect();
    assert_eq!(all, [("foo.a1".to_string(), 1), ("foo.a2".to_string(), 0)]);
    assert_eq!(
        set.evaluate(&http).audit,
        Some(PolicyMatch {
            policy: "foo.a1",
            rule: 1
        })
    );
    // On TCP the AUDIT rule's HTTP-only `methods` is left out, so rule 0 matches too.
    let attrs = RequestAttributes::new(ip("10.0.0.1"), ip("10.0.0.2"), 80);
    let all: Vec<(String, usize)> = set
        .audit_matches(&attrs)
        .map(|m| (m.policy.to_string(), m.rule))
        .collect();
    assert_eq!(
        all,
        [
            ("foo.a1".to_string(), 0),
            ("foo.a1".to_string(), 1),
            ("foo.a2".to_string(), 0)
        ]
    );
    assert!(set.evaluate(&attrs).is_allowed());
}

#[test]
fn compiled_set_survives_json() {
    let set = compile_all(&[
        (
            "foo/a",
            "{rules: [{from: [{source: {namespaces: [\"prod*\"], ipBlocks: [10.0.0.0/8]}}], to: [{operation: {paths: [\"/api/{*}/x\"], hosts: [\"*.Foo\"]}}], when: [{key: \"request.headers[x-a]\", values: [\"*\"]}]}]}",
        ),
        (
            "foo/d",
            "{action: DENY, rules: [{when: [{key: \"request.auth.claims[iss]\", notValues: [x]}]}]}",
        ),
    ]);
    let json = serde_json::to_string(&set).unwrap();
    let back: PolicySet = serde_json::from_str(&json).unwrap();
    assert_eq!(back, set);
    assert!(!set.is_empty());
    let names: Vec<_> = set.policy_names().collect();
    assert_eq!(names, [("DENY", "foo.d"), ("ALLOW", "foo.a")]);
}

#[test]
fn malformed_pushed_set_is_refused_not_panicking() {
    for bad in [
        r#"{"allow": [{"id": "x", "rules": "nope"}]}"#,
        r#"{"deny": [{"id": 1}]}"#,
        r#"{"allow": [{"id": "x", "rules": [{"index": 0, "from": [[{"source_ip": {"values": [{"network": "1.2.3.4", "prefix_len": 99}]}}]], "to": [], "when": [], "http_only": false}]}]}"#,
    ] {
        let parsed: Result<PolicySet, _> = serde_json::from_str(bad);
        if let Ok(set) = parsed {
            // A structurally valid but odd set must still evaluate without panicking.
            let attrs = RequestAttributes::new(ip("1.2.3.4"), ip("10.0.0.2"), 80);
            let _ = set.evaluate(&attrs);
        }
    }
}

/// Counts allocations made by the current thread, to hold evaluation to "no allocation".
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        pub static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub fn count() -> usize {
        ALLOCATIONS.with(|c| c.get())
    }
}

#[test]
fn evaluation_does_not_allocate() {
    let set = compile_all(&[
        (
            "istio-system/deny-ext",
            "{action: DENY, rules: [{from: [{source: {notIpBlocks: [10.0.0.0/8, \"fd00::/8\"]}}]}]}",
        ),
        (
            "foo/audit",
            "{action: AUDIT, rules: [{to: [{operation: {paths: [\"/admin/*\"]}}]}]}",
        ),
        (
            "foo/a",
            "{rules: [{from: [{source: {namespaces: [test, \"prod*\"]}}], to: [{operation: {methods: [POST], paths: [\"/api/{*}/x\"]}}]}]}",
        ),
        (
            "foo/b",
            "{rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}], to: [{operation: {hosts: [\"httpbin.foo\", \"httpbin.foo:*\"], methods: [GET, HEAD], paths: [\"/ip\", \"/status/*\"]}}], when: [{key: \"request.headers[x-token]\", values: [\"s*\"]}, {key: destination.port, values: [\"8000\"]}]}]}",
        ),
    ]);
    let headers = HeaderList(&[("x-token", "secret"), ("accept", "*/*")]);
    let attrs = RequestAttributes {
        protocol: Protocol::Http,
        peer_principal: Some("spiffe://cluster.local/ns/default/sa/sleep"),
        host: Some("httpbin.foo:8000"),
        method: Some("GET"),
        path: Some("/status/200?x=1"),
        headers: &headers,
        ..RequestAttributes::new(ip("10.0.0.5"), ip("10.0.0.9"), 8000)
    };
    assert_eq!(
        set.evaluate(&attrs).policy().map(|m| m.policy),
        Some("foo.b")
    );
    const N: u32 = 100_000;
    let before = counting::count();
    let start = std::time::Instant::now();
    let mut allowed = 0;
    for _ in 0..N {
        allowed += usize::from(std::hint::black_box(&set).evaluate(&attrs).is_allowed());
    }
    let elapsed = start.elapsed();
    assert_eq!(counting::count() - before, 0, "evaluate allocated");
    assert_eq!(allowed, N as usize);
    println!("evaluate: {:?} per request", elapsed / N);
}
