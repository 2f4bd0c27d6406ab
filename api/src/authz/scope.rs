//! Which AuthorizationPolicies apply to a workload (Istio's scope rules).

use crate::resources::MatchLabelsSelector;
use std::collections::BTreeMap;

/// Istio's default root namespace (`meshConfig.rootNamespace`).
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// Whether a policy in `policy_namespace` with `selector` applies to a workload.
///
/// - no selector (or empty `matchLabels`): every workload of the policy's namespace, and of
///   every namespace when the policy is in the root namespace (mesh-wide);
/// - a selector: the workloads carrying all its labels, in the policy's namespace, or in any
///   namespace when the policy is in the root namespace.
pub fn applies_to(
    policy_namespace: &str,
    selector: Option<&MatchLabelsSelector>,
    root_namespace: &str,
    workload_namespace: &str,
    workload_labels: &BTreeMap<String, String>,
) -> bool {
    if policy_namespace != workload_namespace && policy_namespace != root_namespace {
        return false;
    }
    selector.is_none_or(|s| {
        s.match_labels
            .iter()
            .all(|(k, v)| workload_labels.get(k) == Some(v))
    })
}
