//! LocalRateLimit checks: Envoy's `TokenBucket` rules (`max_tokens` and `tokens_per_fill` above
//! zero, a fill interval of at least 50ms, which Envoy's local rate limit requires to avoid
//! too aggressive refills), and route entries that name something.

use super::Checker;
use crate::resources::{LocalRateLimit, TokenBucket};
use crate::yaml::{index_path, join_path};

/// Envoy's floor for a local rate limit's `fill_interval`.
pub(crate) const MIN_FILL_INTERVAL_MS: u64 = 50;

pub(super) fn check(c: &mut Checker<'_>, lrl: &LocalRateLimit) {
    if let Some(sel) = &lrl.workload_selector {
        c.selector("spec.workloadSelector.labels", &sel.labels);
    }
    if lrl.token_bucket.is_none() && lrl.routes.is_empty() {
        c.error(
            "spec",
            "nothing to limit: set `tokenBucket` (inbound requests) or `routes`",
        );
    }
    if let Some(bucket) = &lrl.token_bucket {
        token_bucket(c, "spec.tokenBucket", bucket);
    }
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (i, entry) in lrl.routes.iter().enumerate() {
        let f = index_path("spec.routes", i);
        if entry.virtual_service.is_empty() {
            c.error(
                &join_path(&f, "virtualService"),
                "the VirtualService's name is required",
            );
        } else if entry.virtual_service.contains('/') || entry.virtual_service.contains('.') {
            c.error(
                &join_path(&f, "virtualService"),
                format!(
                    "`{}` must be the name of a VirtualService in this namespace",
                    entry.virtual_service
                ),
            );
        }
        if entry.route.is_empty() {
            c.error(
                &join_path(&f, "route"),
                "the `name` of one of the VirtualService's http routes is required",
            );
        }
        match &entry.token_bucket {
            Some(bucket) => token_bucket(c, &join_path(&f, "tokenBucket"), bucket),
            None => c.error(&join_path(&f, "tokenBucket"), "`tokenBucket` is required"),
        }
        let key = (entry.virtual_service.as_str(), entry.route.as_str());
        if seen.contains(&key) {
            c.error(
                &f,
                format!(
                    "route `{}` of VirtualService `{}` is limited twice in this resource",
                    entry.route, entry.virtual_service
                ),
            );
        }
        seen.push(key);
    }
}

fn token_bucket(c: &mut Checker<'_>, field: &str, bucket: &TokenBucket) {
    if bucket.max_tokens == 0 {
        c.error(
            &join_path(field, "maxTokens"),
            "maxTokens must be at least 1",
        );
    }
    if bucket.tokens_per_fill == Some(0) {
        c.error(
            &join_path(field, "tokensPerFill"),
            "tokensPerFill must be at least 1",
        );
    }
    let f = join_path(field, "fillInterval");
    if bucket.fill_interval.is_empty() {
        c.error(&f, "fillInterval is required");
    } else if let Some(ms) = c.duration(&f, &bucket.fill_interval, false)
        && ms < MIN_FILL_INTERVAL_MS
    {
        c.error(
            &f,
            format!(
                "fillInterval {} is below {MIN_FILL_INTERVAL_MS}ms, the shortest Envoy's local rate limit accepts",
                bucket.fill_interval
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::load::load_str;

    fn errors(spec: &str) -> Vec<String> {
        let yaml = format!(
            "apiVersion: networking.trellis.io/v1alpha1\nkind: LocalRateLimit\nmetadata: {{name: rl, namespace: default}}\nspec:\n{spec}"
        );
        match load_str(&yaml, "rl.yaml") {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_valid_resource_loads() {
        let ok = "  workloadSelector: {labels: {app: reviews}}\n  tokenBucket: {maxTokens: 100, tokensPerFill: 100, fillInterval: 1s}\n  routes:\n  - virtualService: reviews\n    route: v2-only\n    tokenBucket: {maxTokens: 10, fillInterval: 50ms}\n";
        assert_eq!(errors(ok), Vec::<String>::new());
    }

    #[test]
    fn bucket_values_are_checked_with_their_field_paths() {
        assert_eq!(
            errors("  tokenBucket: {maxTokens: 0, tokensPerFill: 0, fillInterval: 10ms}\n"),
            [
                "rl.yaml:5:17: LocalRateLimit default/rl: spec.tokenBucket.maxTokens: maxTokens must be at least 1",
                "rl.yaml:5:31: LocalRateLimit default/rl: spec.tokenBucket.tokensPerFill: tokensPerFill must be at least 1",
                "rl.yaml:5:49: LocalRateLimit default/rl: spec.tokenBucket.fillInterval: fillInterval 10ms is below 50ms, the shortest Envoy's local rate limit accepts",
            ]
        );
        let e = errors("  tokenBucket: {maxTokens: 1, fillInterval: soon}\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("spec.tokenBucket.fillInterval: invalid duration `soon`"),
            "{e:?}"
        );
        let e = errors("  tokenBucket: {maxTokens: 1}\n");
        assert!(
            e[0].ends_with("spec.tokenBucket.fillInterval: fillInterval is required"),
            "{e:?}"
        );
        let e = errors("  tokenBucket: {maxTokens: -1, fillInterval: 1s}\n");
        assert!(e[0].contains("spec.tokenBucket.maxTokens"), "{e:?}");
    }

    #[test]
    fn route_entries_must_name_a_route_and_a_bucket() {
        let e = errors(
            "  routes:\n  - virtualService: ''\n    route: ''\n  - virtualService: other/reviews\n    route: a\n    tokenBucket: {maxTokens: 1, fillInterval: 1s}\n  - virtualService: x\n    route: a\n    tokenBucket: {maxTokens: 1, fillInterval: 1s}\n  - virtualService: x\n    route: a\n    tokenBucket: {maxTokens: 1, fillInterval: 1s}\n",
        );
        let fields: Vec<&str> = e
            .iter()
            .map(|d| d.split(": ").nth(2).unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.routes[0].virtualService",
                "spec.routes[0].tokenBucket",
                "spec.routes[0].route",
                "spec.routes[1].virtualService",
                "spec.routes[3]",
            ],
            "{e:?}"
        );
    }

    #[test]
    fn nothing_to_limit_and_unknown_fields_are_errors() {
        let e = errors("  workloadSelector: {labels: {app: a}}\n");
        assert!(
            e[0].ends_with(
                "spec: nothing to limit: set `tokenBucket` (inbound requests) or `routes`"
            ),
            "{e:?}"
        );
        let e = errors("  tokenBucket: {maxTokens: 1, fillInterval: 1s, burst: 3}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("rl.yaml:5:"), "{e:?}");
        assert!(e[0].contains("unknown field `burst`"), "{e:?}");
        // Only the Trellis group serves the kind.
        let yaml = "apiVersion: networking.istio.io/v1\nkind: LocalRateLimit\nmetadata: {name: rl}\nspec:\n  tokenBucket: {maxTokens: 1, fillInterval: 1s}\n";
        let e: Vec<String> = load_str(yaml, "rl.yaml")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(e[0].contains("use networking.trellis.io/v1alpha1"), "{e:?}");
    }
}
