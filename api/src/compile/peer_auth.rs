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
use crate::model::{InboundMtls, MtlsMode};
use crate::resources::{self, MutualTls, PeerAuthentication, Spec};
use std::collections::BTreeMap;

/// A config's PeerAuthentications by namespace, so one compile can resolve the mode of every
/// endpoint's workload (auto mTLS) looking only at the mesh policy and that namespace's.
pub(super) struct PeerAuthentications<'a> {
    by_namespace: BTreeMap<&'a str, Vec<Named<'a>>>,
    /// Some policy sets DISABLE (for a workload or a port): without one, no endpoint's mode
    /// needs resolving for auto mTLS.
    any_disable: bool,
}

/// A policy and its name (the tie-break within a level).
type Named<'a> = (&'a str, &'a PeerAuthentication);

impl<'a> PeerAuthentications<'a> {
    pub fn new(config: &'a ConfigSet) -> Self {
        let mut by_namespace: BTreeMap<&str, Vec<Named<'a>>> = BTreeMap::new();
        let mut any_disable = false;
        for resource in config.iter() {
            let Spec::PeerAuthentication(pa) = &resource.spec else {
                continue;
            };
            let disables = |m: Option<&MutualTls>| {
                m.and_then(|m| m.mode) == Some(resources::MtlsMode::Disable)
            };
            any_disable |= disables(pa.mtls.as_ref())
                || pa.port_level_mtls.values().any(|m| disables(Some(m)));
            by_namespace
                .entry(resource.namespace())
                .or_default()
                .push((resource.name(), pa));
        }
        PeerAuthentications {
            by_namespace,
            any_disable,
        }
    }

    /// The inbound modes of the workload with `labels` in `namespace`.
    pub fn for_workload(&self, namespace: &str, labels: &BTreeMap<String, String>) -> InboundMtls {
        let mut mesh: Option<Named> = None;
        let mut own_namespace: Option<Named> = None;
        let mut workload: Option<Named> = None;
        let namespaces: &[&str] = if namespace == ROOT_NAMESPACE {
            &[ROOT_NAMESPACE]
        } else {
            &[ROOT_NAMESPACE, namespace]
        };
        for &ns in namespaces {
            for &(name, pa) in self.by_namespace.get(ns).into_iter().flatten() {
                let selector = pa.selector.as_ref().filter(|s| !s.match_labels.is_empty());
                let slot = match selector {
                    None if ns == namespace => &mut own_namespace,
                    None => &mut mesh,
                    Some(s)
                        if ns == namespace
                            && ns != ROOT_NAMESPACE
                            && labels_match(&s.match_labels, labels) =>
                    {
                        &mut workload
                    }
                    _ => continue,
                };
                if slot.is_none_or(|(held, _)| name < held) {
                    *slot = Some((name, pa));
                }
            }
        }

        let mut mode = MtlsMode::Permissive;
        for level in [mesh, own_namespace, workload].into_iter().flatten() {
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

    /// Whether the workload with `labels` in `namespace` has mutual TLS DISABLEd on its `port`:
    /// its sidecar then passes TLS through to the application, so auto mTLS must not send it
    /// (Istio's endpoint builder checks the same before labelling an endpoint for mTLS).
    pub fn disables(&self, namespace: &str, labels: &BTreeMap<String, String>, port: u16) -> bool {
        self.any_disable && self.for_workload(namespace, labels).mode_for(port) == MtlsMode::Disable
    }
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
    use crate::model::NodeIdentity;
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
        PeerAuthentications::new(&config(yaml)).for_workload(&node.namespace, &node.labels)
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
