//! Differences between two stored states: per resource what happened, and a unified diff of the
//! YAML a user would read (`kubectl diff` style), one file section per resource.

use super::yaml_out::to_yaml;
use super::{Action, Change, Diff};
use serde_json::Value;
use similar::TextDiff;
use std::collections::{BTreeMap, BTreeSet};
use trellis_api::ResourceKey;

/// From the state at revision `from` to the state at revision `to` (`from` may be the later one:
/// then the diff shows what going back would change).
pub(super) fn diff(
    from: u64,
    before: &BTreeMap<ResourceKey, Value>,
    to: u64,
    after: &BTreeMap<ResourceKey, Value>,
) -> Diff {
    let keys: BTreeSet<&ResourceKey> = before.keys().chain(after.keys()).collect();
    let mut changes = Vec::new();
    let mut text = String::new();
    for key in keys {
        let (old, new) = (before.get(key), after.get(key));
        let Some(action) = Action::between(old, new) else {
            continue;
        };
        changes.push(Change::new(key, action));
        let render = |v: Option<&Value>| v.map(to_yaml).unwrap_or_default();
        let label = |v: Option<&Value>, rev: u64| match v {
            Some(_) => format!("{key}@{rev}"),
            None => "/dev/null".to_string(),
        };
        let (old_text, new_text) = (render(old), render(new));
        let section = TextDiff::from_lines(&old_text, &new_text)
            .unified_diff()
            .context_radius(3)
            .header(&label(old, from), &label(new, to))
            .to_string();
        text.push_str(&section);
    }
    Diff {
        from,
        to,
        changes,
        diff: text,
    }
}
