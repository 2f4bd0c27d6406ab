//! Findings that need several resources to see, in the spirit of Kiali's validations: each is a
//! warning (Istio accepts such configuration) located at the offending field of the resource that
//! is probably wrong, so `trellis analyze` and the control plane can point at file and line.
//!
//! Host declarations come from ServiceEntries only. Hosts under `.svc.cluster.local` are never
//! reported as undeclared: with a control plane, proxies register their own services under those
//! names, so a file set cannot know whether they exist.

use crate::diagnostics::{Diagnostic, Severity};
use crate::host::{self, DOMAIN_SUFFIX};
use crate::load::{ConfigSet, Resource};
use crate::resources::{Destination, Kind, Spec, VirtualService};
use crate::yaml::{index_path, join_path};
use std::collections::BTreeMap;

/// Every cross-resource finding for `config`, in no particular order (callers sort).
pub fn cross_check(config: &ConfigSet) -> Vec<Diagnostic> {
    let declared = DeclaredHosts::new(config);
    let mut out = Vec::new();
    undefined_subsets(config, &mut out);
    undeclared_destinations(config, &declared, &mut out);
    duplicate_virtual_services(config, &mut out);
    duplicate_destination_rules(config, &mut out);
    undeclared_destination_rule_hosts(config, &declared, &mut out);
    unknown_rate_limited_routes(config, &mut out);
    out
}

/// Hosts the ServiceEntries of a set declare (normalized; may be `*.` wildcards).
struct DeclaredHosts(Vec<String>);

impl DeclaredHosts {
    fn new(config: &ConfigSet) -> DeclaredHosts {
        let hosts = config
            .of_kind(Kind::ServiceEntry)
            .filter_map(|r| match &r.spec {
                Spec::ServiceEntry(se) => Some(se.hosts.iter().map(|h| host::normalize(h))),
                _ => None,
            })
            .flatten()
            .collect();
        DeclaredHosts(hosts)
    }

    /// Whether traffic to `host` (resolved; may be a wildcard) can reach a declared service.
    fn covers(&self, host: &str) -> bool {
        is_kubernetes_service(host)
            || self.0.iter().any(|declared| {
                host::match_specificity(declared, host).is_some()
                    || host::match_specificity(host, declared).is_some()
            })
    }
}

/// `name.namespace.svc.cluster.local` (or a wildcard under it): a service proxies may register.
fn is_kubernetes_service(host: &str) -> bool {
    host.ends_with(&format!(".svc.{DOMAIN_SUFFIX}"))
}

/// Every destination of a VirtualService (routes, mirrors, TCP routes) with its field path.
fn destinations(vs: &VirtualService) -> Vec<(String, &Destination)> {
    let mut out = Vec::new();
    for (i, rule) in vs.http.iter().enumerate() {
        let base = index_path("spec.http", i);
        for (j, rd) in rule.route.iter().enumerate() {
            if let Some(dest) = &rd.destination {
                let f = index_path(&join_path(&base, "route"), j);
                out.push((join_path(&f, "destination"), dest));
            }
        }
        if let Some(m) = &rule.mirror {
            out.push((join_path(&base, "mirror"), m));
        }
        for (j, m) in rule.mirrors.iter().enumerate() {
            if let Some(dest) = &m.destination {
                let f = index_path(&join_path(&base, "mirrors"), j);
                out.push((join_path(&f, "destination"), dest));
            }
        }
    }
    for (i, rule) in vs.tcp.iter().enumerate() {
        for (j, rd) in rule.route.iter().enumerate() {
            if let Some(dest) = &rd.destination {
                let f = index_path(&join_path(&index_path("spec.tcp", i), "route"), j);
                out.push((join_path(&f, "destination"), dest));
            }
        }
    }
    out
}

fn virtual_services(config: &ConfigSet) -> impl Iterator<Item = (&Resource, &VirtualService)> {
    config
        .of_kind(Kind::VirtualService)
        .filter_map(|r| match &r.spec {
            Spec::VirtualService(vs) => Some((r, vs)),
            _ => None,
        })
}

/// `file:line` of a field of `resource`, for messages that name another resource.
fn place(resource: &Resource, field: &str) -> String {
    let file = resource.source.file.as_deref().unwrap_or("<input>");
    match resource.source.position(field) {
        Some(pos) => format!("{file}:{}", pos.line),
        None => file.to_string(),
    }
}

/// LocalRateLimit route entries naming a VirtualService of their namespace that does not exist,
/// or an http route it does not have: nothing is limited until one appears.
fn unknown_rate_limited_routes(config: &ConfigSet, out: &mut Vec<Diagnostic>) {
    for r in config.of_kind(Kind::LocalRateLimit) {
        let Spec::LocalRateLimit(lrl) = &r.spec else {
            continue;
        };
        for (i, entry) in lrl.routes.iter().enumerate() {
            let field = index_path("spec.routes", i);
            let vs = virtual_services(config)
                .find(|(v, _)| v.namespace() == r.namespace() && v.name() == entry.virtual_service);
            let (field, message) = match vs {
                None => (
                    join_path(&field, "virtualService"),
                    format!(
                        "no VirtualService `{}` in namespace `{}`; this limit applies to nothing",
                        entry.virtual_service,
                        r.namespace()
                    ),
                ),
                Some((_, vs))
                    if !vs
                        .http
                        .iter()
                        .any(|h| h.name.as_deref() == Some(&entry.route)) =>
                {
                    (
                        join_path(&field, "route"),
                        format!(
                            "VirtualService {}/{} has no http route named `{}`; this limit applies to nothing",
                            r.namespace(),
                            entry.virtual_service,
                            entry.route
                        ),
                    )
                }
                Some(_) => continue,
            };
            out.push(r.diagnostic(Severity::Warning, &field, message));
        }
    }
}

/// Routes to a subset no DestinationRule defines (Kiali KIA1107): the cluster has no endpoints.
fn undefined_subsets(config: &ConfigSet, out: &mut Vec<Diagnostic>) {
    let mut subsets: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in config.of_kind(Kind::DestinationRule) {
        if let Spec::DestinationRule(dr) = &r.spec {
            subsets
                .entry(host::resolve(&dr.host, r.namespace()))
                .or_default()
                .extend(dr.subsets.iter().map(|s| s.name.as_str()));
        }
    }
    for (r, vs) in virtual_services(config) {
        for (field, dest) in destinations(vs) {
            let Some(subset) = dest.subset.as_deref() else {
                continue;
            };
            let host = host::resolve(&dest.host, r.namespace());
            let known = subsets.iter().any(|(pattern, names)| {
                host::match_specificity(pattern, &host).is_some() && names.contains(&subset)
            });
            if !known {
                out.push(r.diagnostic(
                    Severity::Warning,
                    &join_path(&field, "subset"),
                    format!(
                        "no DestinationRule defines subset `{subset}` for host `{host}`; requests routed here get 503"
                    ),
                ));
            }
        }
    }
}

/// Route and mirror destinations whose host no ServiceEntry declares (Kiali KIA1101): the
/// proxy builds a cluster without endpoints for them.
fn undeclared_destinations(
    config: &ConfigSet,
    declared: &DeclaredHosts,
    out: &mut Vec<Diagnostic>,
) {
    for (r, vs) in virtual_services(config) {
        for (field, dest) in destinations(vs) {
            let host = host::resolve(&dest.host, r.namespace());
            if dest.host.is_empty() || declared.covers(&host) {
                continue;
            }
            out.push(r.diagnostic(
                Severity::Warning,
                &join_path(&field, "host"),
                format!(
                    "host `{host}` is not declared by any ServiceEntry (and is not a `*.svc.{DOMAIN_SUFFIX}` service); it has no endpoints, so requests routed here get 503"
                ),
            ));
        }
    }
}

/// Gateways a VirtualService binds to, as `mesh` or `namespace/name`.
fn bound_gateways(vs: &VirtualService, namespace: &str) -> Vec<String> {
    if vs.gateways.is_empty() {
        return vec!["mesh".to_string()];
    }
    vs.gateways
        .iter()
        .map(|g| {
            if g == "mesh" || g.contains('/') {
                g.clone()
            } else {
                format!("{namespace}/{g}")
            }
        })
        .collect()
}

/// Two VirtualServices for the same host on the same gateway (Kiali KIA1106): their rules are
/// merged in namespace/name order, so which rule wins depends on names. Reported on the later one.
fn duplicate_virtual_services(config: &ConfigSet, out: &mut Vec<Diagnostic>) {
    // (host, gateway) -> the first VirtualService and the field naming the host there.
    let mut seen: BTreeMap<(String, String), (&Resource, String)> = BTreeMap::new();
    for (r, vs) in virtual_services(config) {
        let gateways = bound_gateways(vs, r.namespace());
        for (i, written) in vs.hosts.iter().enumerate() {
            let field = index_path("spec.hosts", i);
            let host = host::resolve(written, r.namespace());
            let mut reported = false;
            for gateway in &gateways {
                let key = (host.clone(), gateway.clone());
                match seen.get(&key) {
                    Some((first, first_field)) if first.key() != r.key() => {
                        if !reported {
                            out.push(r.diagnostic(
                                Severity::Warning,
                                &field,
                                format!(
                                    "more than one VirtualService for host `{host}` (gateway `{gateway}`): {} at {} has it too; their rules are merged in namespace/name order",
                                    first.key(),
                                    place(first, first_field)
                                ),
                            ));
                            reported = true;
                        }
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(key, (r, field.clone()));
                    }
                }
            }
        }
    }
}

/// Two DestinationRules without workload selector for the same host in one namespace (Kiali
/// KIA0201): only the first by name is used, so the later one has no effect.
fn duplicate_destination_rules(config: &ConfigSet, out: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<(String, String), &Resource> = BTreeMap::new();
    for r in config.of_kind(Kind::DestinationRule) {
        let Spec::DestinationRule(dr) = &r.spec else {
            continue;
        };
        let selects = dr
            .workload_selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty());
        if selects {
            continue;
        }
        let host = host::resolve(&dr.host, r.namespace());
        let key = (r.namespace().to_string(), host.clone());
        match seen.get(&key) {
            Some(first) => out.push(r.diagnostic(
                Severity::Warning,
                "spec.host",
                format!(
                    "more than one DestinationRule for host `{host}`: {} at {} has it too and wins (first by name), so this one has no effect",
                    first.key(),
                    place(first, "spec.host")
                ),
            )),
            None => {
                seen.insert(key, r);
            }
        }
    }
}

/// DestinationRules whose host matches no declared service (Kiali KIA0202): they apply to nothing.
fn undeclared_destination_rule_hosts(
    config: &ConfigSet,
    declared: &DeclaredHosts,
    out: &mut Vec<Diagnostic>,
) {
    for r in config.of_kind(Kind::DestinationRule) {
        let Spec::DestinationRule(dr) = &r.spec else {
            continue;
        };
        let host = host::resolve(&dr.host, r.namespace());
        if dr.host.is_empty() || declared.covers(&host) {
            continue;
        }
        out.push(r.diagnostic(
            Severity::Warning,
            "spec.host",
            format!(
                "host `{host}` is not declared by any ServiceEntry (and is not a `*.svc.{DOMAIN_SUFFIX}` service); this DestinationRule applies to no traffic"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::load::{ConfigSet, load_str};

    const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [api.example.com, '*.wild.example.com']\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: NONE\n";

    /// Cross-resource warnings (rendered) for a multi-document text.
    fn warnings(text: &str) -> Vec<String> {
        let set = ConfigSet::from_resources(load_str(text, "t.yaml").unwrap()).unwrap();
        super::cross_check(&set)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn vs(name: &str, hosts: &str, dest: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: {hosts}\n  http:\n  - route:\n    - destination: {{host: {dest}}}\n"
        )
    }

    fn dr(name: &str, host: &str, extra: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: {host}\n{extra}"
        )
    }

    #[test]
    fn rate_limited_routes_that_do_not_exist() {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - name: v2-only\n    route:\n    - destination: {host: reviews}\n---\napiVersion: networking.trellis.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: rl}\nspec:\n  routes:\n  - virtualService: reviews\n    route: v2-only\n    tokenBucket: {maxTokens: 1, fillInterval: 1s}\n  - virtualService: reviews\n    route: v3\n    tokenBucket: {maxTokens: 1, fillInterval: 1s}\n  - virtualService: ratings\n    route: v2-only\n    tokenBucket: {maxTokens: 1, fillInterval: 1s}\n";
        assert_eq!(
            warnings(text),
            [
                "t.yaml:20:5: warning: LocalRateLimit default/rl: spec.routes[1].route: VirtualService default/reviews has no http route named `v3`; this limit applies to nothing",
                "t.yaml:22:5: warning: LocalRateLimit default/rl: spec.routes[2].virtualService: no VirtualService `ratings` in namespace `default`; this limit applies to nothing",
            ]
        );
    }

    #[test]
    fn subset_no_destination_rule_defines() {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subset: v9}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  subsets: [{name: v1, labels: {version: v1}}]\n";
        let set = ConfigSet::from_resources(load_str(text, "t.yaml").unwrap()).unwrap();
        let warnings: Vec<String> = set.warnings().iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "t.yaml:8:30: warning: VirtualService default/r: spec.http[0].route[0].destination.subset: no DestinationRule defines subset `v9` for host `r.default.svc.cluster.local`; requests routed here get 503"
            ]
        );
    }

    #[test]
    fn destination_host_not_declared() {
        let text = format!(
            "{SE}{}{}",
            vs("a", "[a.example.com]", "api.example.com"),
            vs("b", "[b.example.com]", "nowhere.example.com")
        );
        assert_eq!(
            warnings(&text),
            [
                "t.yaml:25:21: warning: VirtualService default/b: spec.http[0].route[0].destination.host: host `nowhere.example.com` is not declared by any ServiceEntry (and is not a `*.svc.cluster.local` service); it has no endpoints, so requests routed here get 503"
            ]
        );
        // Wildcard declarations, Kubernetes names and short names (which resolve to them) pass.
        let ok = format!(
            "{SE}{}{}{}",
            vs("a", "[a.example.com]", "x.wild.example.com"),
            vs("b", "[b.example.com]", "reviews"),
            vs("c", "[c.example.com]", "ratings.prod.svc.cluster.local")
        );
        assert_eq!(warnings(&ok), Vec::<String>::new());
        // Mirrors and TCP routes are destinations too.
        let text = format!(
            "{SE}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: m}}\nspec:\n  hosts: [api.example.com]\n  http:\n  - route: [{{destination: {{host: api.example.com}}}}]\n    mirror: {{host: shadow.example.com}}\n  tcp:\n  - route: [{{destination: {{host: db.example.com}}}}]\n"
        );
        let w = warnings(&text);
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w[0].contains("spec.http[0].mirror.host: host `shadow.example.com`"));
        assert!(w[1].contains("spec.tcp[0].route[0].destination.host: host `db.example.com`"));
    }

    #[test]
    fn two_virtual_services_for_one_host() {
        let text = format!(
            "{}{}{}",
            vs("first", "[reviews]", "reviews"),
            vs(
                "second",
                "[ratings, reviews.default.svc.cluster.local]",
                "reviews"
            ),
            // Bound to a gateway only: no conflict with the mesh ones.
            vs("third", "[reviews]\n  gateways: [gw]", "reviews"),
        );
        assert_eq!(
            warnings(&text),
            [
                "t.yaml:15:20: warning: VirtualService default/second: spec.hosts[1]: more than one VirtualService for host `reviews.default.svc.cluster.local` (gateway `mesh`): VirtualService default/first at t.yaml:6 has it too; their rules are merged in namespace/name order"
            ]
        );
        // Another namespace with a short name is another host.
        let other = vs("b", "[reviews]", "reviews").replace("name: b", "name: b, namespace: prod");
        let text = format!("{}{other}", vs("a", "[reviews]", "reviews"));
        assert_eq!(warnings(&text), Vec::<String>::new());
    }

    #[test]
    fn two_destination_rules_for_one_host() {
        let text = format!(
            "{}{}{}{}",
            dr("a", "reviews", ""),
            dr("b", "reviews.default.svc.cluster.local", ""),
            dr(
                "c",
                "reviews",
                "  workloadSelector: {matchLabels: {app: x}}\n"
            ),
            dr("d", "reviews", "").replace("name: d", "name: d, namespace: prod"),
        );
        assert_eq!(
            warnings(&text),
            [
                "t.yaml:12:3: warning: DestinationRule default/b: spec.host: more than one DestinationRule for host `reviews.default.svc.cluster.local`: DestinationRule default/a at t.yaml:6 has it too and wins (first by name), so this one has no effect"
            ]
        );
    }

    #[test]
    fn destination_rule_host_not_declared() {
        let text = format!(
            "{SE}{}{}{}",
            dr("a", "api.example.com", ""),
            dr("b", "'*.example.com'", ""),
            dr("c", "gone.example.com", "")
        );
        assert_eq!(
            warnings(&text),
            [
                "t.yaml:25:3: warning: DestinationRule default/c: spec.host: host `gone.example.com` is not declared by any ServiceEntry (and is not a `*.svc.cluster.local` service); this DestinationRule applies to no traffic"
            ]
        );
    }
}
