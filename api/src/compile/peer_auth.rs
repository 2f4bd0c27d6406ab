//! PeerAuthentication -> the workload's [`InboundMtls`], with Istio's precedence
//! (`ComposePeerAuthentication`):
//!
//! 1. the workload policy: one with a non-empty selector matching the workload, in the workload's
//!    own namespace (a policy with a selector in the root namespace applies to no workload, as in
//!    Istio);
//! 2. the namespace policy: no selector, in the workload's namespace;
//! 3. the mesh policy: no selector, in the root namespace ([`super::scope::ROOT_NAMESPACE`]);
//! 4. PERMISSIVE when none says otherwise.
//!
//! A level whose `mtls.mode` is `UNSET` (or absent) inherits from the level above it, and a port
//! whose `portLevelMtls` mode is `UNSET` inherits the workload's mode. Istio picks the oldest policy
//! when several compete at one level; resources here carry no creation time, so the first by name
//! wins instead (deterministic, and the same in every process).

use super::scope::{ROOT_NAMESPACE, labels_match};
use crate::load::ConfigSet;
use crate::model::{InboundMtls, MtlsMode, NodeIdentity};
use crate::resources::{self, MutualTls, PeerAuthentication, Spec};

/// The inbound mutual TLS modes for `node`'s workload.
pub(super) fn inbound_mtls(config: &ConfigSet, node: &NodeIdentity) -> InboundMtls {
    let mut mesh: Option<(&str, &PeerAuthentication)> = None;
    let mut namespace: Option<(&str, &PeerAuthentication)> = None;
    let mut workload: Option<(&str, &PeerAuthentication)> = None;
    for resource in config.iter() {
        let Spec::PeerAuthentication(pa) = &resource.spec else {
            continue;
        };
        let ns = resource.namespace();
        let selector = pa.selector.as_ref().filter(|s| !s.match_labels.is_empty());
        let slot = match selector {
            None if ns == node.namespace => &mut namespace,
            None if ns == ROOT_NAMESPACE => &mut mesh,
            Some(s)
                if ns == node.namespace
                    && ns != ROOT_NAMESPACE
                    && labels_match(&s.match_labels, &node.labels) =>
            {
                &mut workload
            }
            _ => continue,
        };
        let name = resource.name();
        if slot.is_none_or(|(held, _)| name < held) {
            *slot = Some((name, pa));
        }
    }

    let mut mode = MtlsMode::Permissive;
    for level in [mesh, namespace, workload].into_iter().flatten() {
        if let Some(m) = resolved(level.1.mtls.as_ref()) {
            mode = m;
        }
    }
    let ports = workload
        .map(|(_, pa)| {
            pa.port_level_mtls
                .iter()
                .filter_map(|(port, mtls)| {
                    // Validation refuses ports outside 1..=65535; skip them should one slip by.
                    let port = u16::try_from(*port).ok().filter(|p| *p != 0)?;
                    Some((port, resolved(Some(mtls)).unwrap_or(mode)))
                })
                .collect()
        })
        .unwrap_or_default();
    InboundMtls { mode, ports }
}

/// The mode a `mtls` block sets, `None` when it inherits (absent or `UNSET`).
fn resolved(mtls: Option<&MutualTls>) -> Option<MtlsMode> {
    match mtls?.mode? {
        resources::MtlsMode::Unset => None,
        resources::MtlsMode::Strict => Some(MtlsMode::Strict),
        resources::MtlsMode::Permissive => Some(MtlsMode::Permissive),
        resources::MtlsMode::Disable => Some(MtlsMode::Disable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::tests::config;
    use std::collections::BTreeMap;

    fn node(namespace: &str, app: &str) -> NodeIdentity {
        NodeIdentity {
            workload: app.into(),
            namespace: namespace.into(),
            service_account: app.into(),
            labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        }
    }

    /// One PeerAuthentication: `mode` of `None` leaves out `mtls`; `ports` is the YAML of
    /// `portLevelMtls` entries.
    fn pa(name: &str, ns: &str, app: Option<&str>, mode: Option<&str>, ports: &str) -> String {
        let mut spec = String::new();
        if let Some(app) = app {
            spec.push_str(&format!("  selector: {{matchLabels: {{app: {app}}}}}\n"));
        }
        if let Some(mode) = mode {
            spec.push_str(&format!("  mtls: {{mode: {mode}}}\n"));
        }
        if !ports.is_empty() {
            spec.push_str(&format!("  portLevelMtls: {{{ports}}}\n"));
        }
        if spec.is_empty() {
            spec.push_str("  {}\n");
        }
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}---\n"
        )
    }

    fn modes(yaml: &str, node: &NodeIdentity) -> InboundMtls {
        inbound_mtls(&config(yaml), node)
    }

    fn only(mode: MtlsMode) -> InboundMtls {
        InboundMtls {
            mode,
            ports: BTreeMap::new(),
        }
    }

    use MtlsMode::{Disable, Permissive, Strict};

    #[test]
    fn no_policy_is_permissive() {
        assert_eq!(modes("", &node("default", "a")), only(Permissive));
    }

    #[test]
    fn precedence_workload_over_namespace_over_mesh() {
        let a = node("default", "a");
        let mesh = pa("mesh", ROOT_NAMESPACE, None, Some("STRICT"), "");
        let ns = pa("ns", "default", None, Some("DISABLE"), "");
        let wl = pa("wl", "default", Some("a"), Some("PERMISSIVE"), "");
        // (policies present, expected mode) — the whole table.
        let table: [(&[&str], MtlsMode); 7] = [
            (&[&mesh], Strict),
            (&[&ns], Disable),
            (&[&wl], Permissive),
            (&[&mesh, &ns], Disable),
            (&[&mesh, &wl], Permissive),
            (&[&ns, &wl], Permissive),
            (&[&mesh, &ns, &wl], Permissive),
        ];
        for (policies, expected) in table {
            let yaml = policies.concat();
            assert_eq!(modes(&yaml, &a), only(expected), "{yaml}");
        }
    }

    #[test]
    fn unset_inherits_from_the_level_above() {
        let a = node("default", "a");
        let yaml = [
            pa("mesh", ROOT_NAMESPACE, None, Some("STRICT"), ""),
            pa("ns", "default", None, Some("UNSET"), ""),
            pa("wl", "default", Some("a"), None, ""),
        ]
        .concat();
        assert_eq!(modes(&yaml, &a), only(Strict));
        // Unset everywhere: Istio's default.
        let yaml = [
            pa("mesh", ROOT_NAMESPACE, None, Some("UNSET"), ""),
            pa("wl", "default", Some("a"), Some("UNSET"), ""),
        ]
        .concat();
        assert_eq!(modes(&yaml, &a), only(Permissive));
    }

    #[test]
    fn policies_elsewhere_do_not_apply() {
        let a = node("default", "a");
        let yaml = [
            // Another namespace, namespace-wide and selecting `a`.
            pa("other-ns", "other", None, Some("STRICT"), ""),
            pa("other-wl", "other", Some("a"), Some("STRICT"), ""),
            // This namespace, selecting another workload.
            pa(
                "wl-b",
                "default",
                Some("b"),
                Some("STRICT"),
                "8080: {mode: DISABLE}",
            ),
            // Root namespace with a selector: applies to no workload in Istio.
            pa("root-wl", ROOT_NAMESPACE, Some("a"), Some("STRICT"), ""),
        ]
        .concat();
        assert_eq!(modes(&yaml, &a), only(Permissive));
        // In the root namespace itself, the no-selector policy is the mesh one.
        let root = node(ROOT_NAMESPACE, "a");
        let yaml = pa("mesh", ROOT_NAMESPACE, None, Some("STRICT"), "");
        assert_eq!(modes(&yaml, &root), only(Strict));
    }

    #[test]
    fn first_by_name_wins_within_a_level() {
        let a = node("default", "a");
        let yaml = [
            pa("zz", "default", None, Some("DISABLE"), ""),
            pa("aa", "default", None, Some("STRICT"), ""),
            pa("wl-z", "default", Some("a"), Some("PERMISSIVE"), ""),
            pa("wl-a", "default", Some("a"), Some("UNSET"), ""),
        ]
        .concat();
        // `wl-a` wins the workload level and inherits STRICT from `aa`.
        assert_eq!(modes(&yaml, &a), only(Strict));
    }

    #[test]
    fn port_level_modes_and_their_inheritance() {
        let a = node("default", "a");
        let yaml = [
            pa("ns", "default", None, Some("STRICT"), ""),
            pa(
                "wl",
                "default",
                Some("a"),
                None,
                "8080: {mode: DISABLE}, 9090: {mode: UNSET}, 9443: {}",
            ),
        ]
        .concat();
        let got = modes(&yaml, &a);
        assert_eq!(got.mode, Strict);
        assert_eq!(
            got.ports,
            BTreeMap::from([(8080, Disable), (9090, Strict), (9443, Strict)])
        );
        assert_eq!(got.mode_for(8080), Disable);
        assert_eq!(got.mode_for(80), Strict);
    }
}
