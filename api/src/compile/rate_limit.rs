//! LocalRateLimit -> the proxy's [`RateLimits`].
//!
//! - Inbound: the `tokenBucket` of the LocalRateLimit that applies to the workload, with the
//!   precedence PeerAuthentication and Sidecar use: one whose `workloadSelector` matches the
//!   workload, in its namespace, over one without a selector in its namespace. Several at one
//!   level: the first by name wins (resources carry no creation time to pick the oldest by).
//!   LocalRateLimits with only `routes` take no part in this choice.
//! - Routes: every `routes` entry whose VirtualService (same namespace as the LocalRateLimit)
//!   produced a route of that name in one of this proxy's virtual hosts. It applies to every
//!   calling proxy that has the route, whatever the selector says; each caller has its own bucket.

use super::scope::{Scope, labels_match};
use crate::load::ConfigSet;
use crate::model::{NodeIdentity, RateLimit, RateLimits, VirtualHost};
use crate::resources::{LocalRateLimit, Spec, TokenBucket};
use std::collections::BTreeMap;

/// The rate limits `node` enforces, given the virtual hosts compiled for it.
pub(super) fn rate_limits(
    config: &ConfigSet,
    node: &NodeIdentity,
    scope: &Scope<'_>,
    virtual_hosts: &[VirtualHost],
) -> RateLimits {
    RateLimits {
        inbound: inbound(config, node, scope.namespace()),
        routes: routes(config, scope, virtual_hosts),
    }
}

fn inbound(config: &ConfigSet, node: &NodeIdentity, namespace: &str) -> Option<RateLimit> {
    let mut for_namespace: Option<(&str, &TokenBucket)> = None;
    let mut for_workload: Option<(&str, &TokenBucket)> = None;
    for resource in config.iter() {
        let Spec::LocalRateLimit(lrl) = &resource.spec else {
            continue;
        };
        let Some(bucket) = &lrl.token_bucket else {
            continue;
        };
        if resource.namespace() != namespace {
            continue;
        }
        let selector = lrl
            .workload_selector
            .as_ref()
            .filter(|s| !s.labels.is_empty());
        let slot = match selector {
            None => &mut for_namespace,
            Some(s) if labels_match(&s.labels, &node.labels) => &mut for_workload,
            Some(_) => continue,
        };
        let name = resource.name();
        if slot.is_none_or(|(held, _)| name < held) {
            *slot = Some((name, bucket));
        }
    }
    let (name, bucket) = for_workload.or(for_namespace)?;
    limit(format!("{namespace}/{name}"), bucket)
}

fn routes(
    config: &ConfigSet,
    scope: &Scope<'_>,
    virtual_hosts: &[VirtualHost],
) -> BTreeMap<String, BTreeMap<String, RateLimit>> {
    // (namespace, virtual service, route) -> limit; the first LocalRateLimit by name wins.
    let mut wanted: BTreeMap<(&str, &str, &str), (&str, RateLimit)> = BTreeMap::new();
    for resource in config.iter() {
        let Spec::LocalRateLimit(LocalRateLimit { routes, .. }) = &resource.spec else {
            continue;
        };
        let ns = resource.namespace();
        for entry in routes {
            let Some(bucket) = &entry.token_bucket else {
                continue;
            };
            let name = format!("{ns}/{}/{}", entry.virtual_service, entry.route);
            let Some(limit) = limit(name, bucket) else {
                continue;
            };
            let key = (ns, entry.virtual_service.as_str(), entry.route.as_str());
            let held_by_earlier = wanted
                .get(&key)
                .is_some_and(|(held, _)| *held < resource.name());
            if !held_by_earlier {
                wanted.insert(key, (resource.name(), limit));
            }
        }
    }
    let mut out: BTreeMap<String, BTreeMap<String, RateLimit>> = BTreeMap::new();
    if wanted.is_empty() {
        return out;
    }
    for vh in virtual_hosts {
        for entry in scope.virtual_services_for(&vh.service) {
            let named = entry.vs.http.iter().filter_map(|r| r.name.as_deref());
            for route in named {
                let Some((_, limit)) = wanted.get(&(entry.namespace, entry.name, route)) else {
                    continue;
                };
                if vh.http_routes.iter().any(|r| r.name == route) {
                    out.entry(vh.name.clone())
                        .or_default()
                        .entry(route.to_string())
                        .or_insert_with(|| limit.clone());
                }
            }
        }
    }
    out
}

/// A resolved limit; `None` for a bucket validation would have refused.
fn limit(name: String, bucket: &TokenBucket) -> Option<RateLimit> {
    let fill_interval_ms = crate::duration::parse_positive_ms(&bucket.fill_interval).ok()?;
    let tokens_per_fill = bucket.tokens_per_fill.unwrap_or(1);
    (bucket.max_tokens >= 1 && tokens_per_fill >= 1).then_some(RateLimit {
        name,
        max_tokens: bucket.max_tokens,
        tokens_per_fill,
        fill_interval_ms,
    })
}

#[cfg(test)]
mod tests {
    use crate::compile::tests::config;
    use crate::compile::{compile_standalone, labels_in_use};
    use crate::model::{NodeIdentity, ProxyConfig, RateLimit};

    const SERVICES: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  endpoints: [{address: 127.0.0.1}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - name: v2-only\n    match: [{uri: {prefix: /v2}}]\n    route: [{destination: {host: reviews}}]\n  - name: rest\n    route: [{destination: {host: reviews}}]\n";

    const LIMITS: &str = "---\napiVersion: networking.trellis.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: all}\nspec:\n  tokenBucket: {maxTokens: 100, fillInterval: 1s}\n---\napiVersion: networking.trellis.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: reviews}\nspec:\n  workloadSelector: {labels: {app: reviews}}\n  tokenBucket: {maxTokens: 5, tokensPerFill: 5, fillInterval: 60s}\n  routes:\n  - virtualService: reviews\n    route: v2-only\n    tokenBucket: {maxTokens: 2, tokensPerFill: 1, fillInterval: 500ms}\n---\napiVersion: networking.trellis.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {name: elsewhere, namespace: other}\nspec:\n  tokenBucket: {maxTokens: 7, fillInterval: 1s}\n";

    fn compiled(namespace: &str, labels: &[(&str, &str)]) -> ProxyConfig {
        let set = config(&format!("{SERVICES}{LIMITS}"));
        let node = NodeIdentity {
            namespace: namespace.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..NodeIdentity::default()
        };
        compile_standalone(&set, &node)
    }

    fn limit(name: &str, max: u32, per_fill: u32, ms: u64) -> RateLimit {
        RateLimit {
            name: name.into(),
            max_tokens: max,
            tokens_per_fill: per_fill,
            fill_interval_ms: ms,
        }
    }

    #[test]
    fn the_workload_selector_wins_over_the_namespace_wide_limit() {
        let reviews = compiled("default", &[("app", "reviews")]);
        assert_eq!(
            reviews.rate_limits.inbound,
            Some(limit("default/reviews", 5, 5, 60_000))
        );
        let other_app = compiled("default", &[("app", "ratings")]);
        assert_eq!(
            other_app.rate_limits.inbound,
            Some(limit("default/all", 100, 1, 1000))
        );
        let other_ns = compiled("other", &[("app", "reviews")]);
        assert_eq!(
            other_ns.rate_limits.inbound,
            Some(limit("other/elsewhere", 7, 1, 1000))
        );
        assert_eq!(compiled("third", &[]).rate_limits.inbound, None);
        // The version follows the limits: a proxy with different limits gets a different one.
        assert_ne!(reviews.version, other_app.version);
    }

    #[test]
    fn route_limits_reach_every_caller_of_the_route() {
        let route = limit("default/reviews/v2-only", 2, 1, 500);
        for (ns, labels) in [("default", vec![("app", "productpage")]), ("other", vec![])] {
            let cfg = compiled(ns, &labels);
            let vh = "reviews.default.svc.cluster.local:9080";
            assert_eq!(
                cfg.rate_limits.for_route(vh, "v2-only"),
                Some(&route),
                "{ns}"
            );
            assert_eq!(cfg.rate_limits.for_route(vh, "rest"), None);
            assert_eq!(cfg.rate_limits.routes[vh].len(), 1);
        }
    }

    #[test]
    fn selector_labels_are_in_use() {
        assert!(labels_in_use(&config(LIMITS)).contains("app"));
    }
}
