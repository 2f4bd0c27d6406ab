//! Reading resources from YAML text, files and directories into a [`ConfigSet`].
//!
//! Loading is all-or-nothing per call and reports every problem it finds: each document is parsed,
//! typed and validated independently, so one broken resource does not hide the errors of the next.
//! Each [`Resource`] keeps where it came from, so errors found later (by cross-resource checks or
//! by the control plane) still name the file, line and field.

use crate::diagnostics::{self, Diagnostic, Severity};
use crate::resources::{Kind, ObjectMeta, Spec, UNSUPPORTED};
use crate::yaml::{self, Pos, Positions, index_path, join_path};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Identity of a resource: two resources with the same key cannot coexist.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ResourceKey {
    /// `VirtualService default/reviews`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where a resource was read from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    pub file: Option<String>,
    /// 0-based document index within the file.
    pub document: usize,
    /// Field positions of the whole document (shared by the items of a `List`).
    pub positions: Arc<Positions>,
    /// Path of this resource inside its document: empty, or `items[N]` for a `List` item.
    pub prefix: String,
}

impl Source {
    /// Position of a field of this resource (or of its nearest written ancestor).
    pub fn position(&self, field: &str) -> Option<Pos> {
        let path = if self.prefix.is_empty() {
            field.to_string()
        } else if field.is_empty() {
            self.prefix.clone()
        } else {
            join_path(&self.prefix, field)
        };
        self.positions.lookup(&path)
    }

    /// A diagnostic located at `field` of this resource.
    pub fn diagnostic(
        &self,
        severity: Severity,
        resource: Option<&ResourceKey>,
        field: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let mut d = Diagnostic::error(message).with_field(field);
        d.severity = severity;
        d.file = self.file.clone();
        if let Some(pos) = self.position(field) {
            d = d.at(pos.line, pos.column);
        }
        if let Some(key) = resource {
            d = d.with_resource(key.to_string());
        }
        d
    }
}

/// One typed, validated resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub api_version: String,
    pub metadata: ObjectMeta,
    pub spec: Spec,
    pub source: Source,
    /// The document as written (nulls included), for storing and showing it unchanged.
    pub raw: Value,
    /// Non-fatal findings from validation.
    pub warnings: Vec<Diagnostic>,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace()
    }

    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind(),
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }

    /// A diagnostic about `field` of this resource, with file, line and resource filled in.
    pub fn diagnostic(
        &self,
        severity: Severity,
        field: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.source
            .diagnostic(severity, Some(&self.key()), field, message)
    }
}

/// Parses, types and validates every resource in `text`. `file_name` is only used in diagnostics.
/// On success, warnings travel on each [`Resource`]; on failure every diagnostic (errors and
/// warnings, in source order) is returned.
pub fn load_str(text: &str, file_name: &str) -> Result<Vec<Resource>, Vec<Diagnostic>> {
    let (resources, mut diagnostics) = read_str(text, Some(file_name));
    if diagnostics.iter().any(Diagnostic::is_error) {
        diagnostics.extend(resources.into_iter().flat_map(|r| r.warnings));
        diagnostics::sort(&mut diagnostics);
        return Err(diagnostics);
    }
    Ok(resources)
}

/// Like [`load_str`] but keeps the resources that are valid next to the diagnostics of those
/// that are not (for tools such as `trellis analyze` that report everything).
pub fn read_str(text: &str, file_name: Option<&str>) -> (Vec<Resource>, Vec<Diagnostic>) {
    let mut resources = Vec::new();
    let mut diagnostics = Vec::new();
    let docs = match yaml::parse(text) {
        Ok(docs) => docs,
        Err(e) => {
            let mut d =
                Diagnostic::error(format!("YAML syntax error: {}", e.message)).at(e.line, e.column);
            d.file = file_name.map(str::to_string);
            return (resources, vec![d]);
        }
    };
    for doc in docs {
        let source = Source {
            file: file_name.map(str::to_string),
            document: doc.index,
            positions: Arc::new(doc.positions),
            prefix: String::new(),
        };
        read_document(&doc.value, source, &mut resources, &mut diagnostics);
    }
    (resources, diagnostics)
}

const ENVELOPE_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

fn read_document(
    value: &Value,
    source: Source,
    resources: &mut Vec<Resource>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let error =
        |field: &str, message: String| source.diagnostic(Severity::Error, None, field, message);
    let Value::Object(object) = value else {
        diagnostics.push(error(
            "",
            format!(
                "expected a resource (a mapping with apiVersion, kind, metadata and spec), found {}",
                describe(value)
            ),
        ));
        return;
    };
    let api_version = match object.get("apiVersion") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            diagnostics.push(error(
                "apiVersion",
                format!("must be a string, found {}", describe(other)),
            ));
            return;
        }
        None => {
            diagnostics.push(error("", "missing field `apiVersion`".into()));
            return;
        }
    };
    let kind_name = match object.get("kind") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            diagnostics.push(error(
                "kind",
                format!("must be a string, found {}", describe(other)),
            ));
            return;
        }
        None => {
            diagnostics.push(error("", "missing field `kind`".into()));
            return;
        }
    };

    // `kubectl get -o yaml` wraps several objects in a List.
    if kind_name == "List" && api_version == "v1" {
        match object.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let item_source = Source {
                        prefix: index_path(&join_path(&source.prefix, "items"), i),
                        ..source.clone()
                    };
                    read_document(item, item_source, resources, diagnostics);
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => diagnostics.push(error(
                "items",
                format!("must be a list, found {}", describe(other)),
            )),
        }
        return;
    }

    let Some(kind) = Kind::from_name(kind_name) else {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let message = if group.ends_with("istio.io") {
            format!("kind `{kind_name}` ({api_version}) is {UNSUPPORTED}")
        } else {
            format!(
                "unknown kind `{kind_name}` ({api_version}); Trellis reads VirtualService, \
                 DestinationRule, ServiceEntry, Gateway, Sidecar (networking.istio.io), \
                 PeerAuthentication, AuthorizationPolicy (security.istio.io) and LocalRateLimit \
                 (networking.trellis.io)"
            )
        };
        let mut d = error("kind", message);
        // Name the object when it has one, so a stray manifest is easy to find.
        if let Some(meta) = object.get("metadata")
            && let Some(name) = meta.get("name").and_then(Value::as_str)
        {
            let namespace = meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            d = d.with_resource(format!("{kind_name} {namespace}/{name}"));
        }
        diagnostics.push(d);
        return;
    };
    if !kind.accepts_api_version(api_version) {
        diagnostics.push(error(
            "apiVersion",
            format!(
                "{kind} is not served as `{api_version}`; use {}/{}",
                kind.group(),
                kind.versions().join(", ")
            ),
        ));
        return;
    }

    let mut header_ok = true;
    for key in object.keys() {
        if !ENVELOPE_FIELDS.contains(&key.as_str()) {
            diagnostics.push(error(
                key,
                format!(
                    "unknown field `{key}`, expected one of `apiVersion`, `kind`, `metadata`, `spec`, `status`"
                ),
            ));
            header_ok = false;
        }
    }

    let mut metadata_value = object.get("metadata").cloned().unwrap_or(Value::Null);
    strip_nulls(&mut metadata_value);
    if metadata_value.is_null() {
        metadata_value = Value::Object(Default::default());
    }
    let metadata: ObjectMeta = match serde_path_to_error::deserialize(&metadata_value) {
        Ok(m) => m,
        Err(e) => {
            let field = join_path("metadata", &crate::resources::path_string(e.path()));
            diagnostics.push(error(&field, e.into_inner().to_string()));
            return;
        }
    };
    if metadata.name.is_empty() {
        diagnostics.push(error("metadata", "metadata.name is required".into()));
        return;
    }
    let key = ResourceKey {
        kind,
        namespace: metadata.namespace().to_string(),
        name: metadata.name.clone(),
    };
    let located = |field: &str, message: String| {
        source.diagnostic(Severity::Error, Some(&key), field, message)
    };
    if !crate::host::is_dns1123_subdomain(&metadata.name) {
        diagnostics.push(located(
            "metadata.name",
            format!(
                "name `{}` must be a DNS-1123 subdomain (lower-case letters, digits, `-` and `.`)",
                metadata.name
            ),
        ));
        header_ok = false;
    }
    if !crate::host::is_dns1123_label(metadata.namespace()) {
        diagnostics.push(located(
            "metadata.namespace",
            format!(
                "namespace `{}` must be a DNS-1123 label (lower-case letters, digits and `-`)",
                metadata.namespace()
            ),
        ));
        header_ok = false;
    }

    let mut spec_value = match object.get("spec") {
        Some(v) if !v.is_null() => v.clone(),
        _ => {
            diagnostics.push(located("", "missing field `spec`".into()));
            return;
        }
    };
    strip_nulls(&mut spec_value);
    let spec = match Spec::parse(kind, &spec_value) {
        Ok(spec) => spec,
        Err((path, message)) => {
            // serde_path_to_error already ends an unknown-field path with the offending key.
            let field = join_path("spec", &path);
            let message = if message == UNSUPPORTED {
                let name = field.rsplit('.').next().unwrap_or_default().to_string();
                format!("`{name}` is {UNSUPPORTED}")
            } else {
                message
            };
            diagnostics.push(located(&field, message));
            return;
        }
    };
    if !header_ok {
        return;
    }

    let mut resource = Resource {
        api_version: api_version.to_string(),
        metadata,
        spec,
        source,
        raw: value.clone(),
        warnings: Vec::new(),
    };
    let findings = crate::validate::validate(&resource);
    let (errors, warnings): (Vec<_>, Vec<_>) = findings.into_iter().partition(Diagnostic::is_error);
    resource.warnings = warnings;
    if errors.is_empty() {
        resources.push(resource);
    } else {
        diagnostics.extend(errors);
        diagnostics.extend(std::mem::take(&mut resource.warnings));
    }
}

/// Kubernetes treats an explicit `null` as an absent field; so do we, before typing.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A set of resources, unique by kind, namespace and name, in a stable order. Resources are shared,
/// so copying a set to change a few of them (what every apply does) costs little.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigSet {
    resources: BTreeMap<ResourceKey, Arc<Resource>>,
}

impl ConfigSet {
    pub fn new() -> ConfigSet {
        ConfigSet::default()
    }

    /// Builds a set; two resources with the same key are an error naming both places.
    pub fn from_resources(resources: Vec<Resource>) -> Result<ConfigSet, Vec<Diagnostic>> {
        let mut set = ConfigSet::new();
        let mut diagnostics = Vec::new();
        for resource in resources {
            let key = resource.key();
            if let Some(first) = set.resources.get(&key) {
                diagnostics.push(resource.diagnostic(
                    Severity::Error,
                    "metadata.name",
                    format!("{key} is defined twice: first at {}", place(&first.source)),
                ));
                continue;
            }
            set.resources.insert(key, Arc::new(resource));
        }
        if diagnostics.is_empty() {
            Ok(set)
        } else {
            Err(diagnostics)
        }
    }

    /// Adds or replaces a resource, returning the one it replaced.
    pub fn insert(&mut self, resource: Resource) -> Option<Arc<Resource>> {
        self.resources.insert(resource.key(), Arc::new(resource))
    }

    pub fn remove(&mut self, key: &ResourceKey) -> Option<Arc<Resource>> {
        self.resources.remove(key)
    }

    pub fn get(&self, key: &ResourceKey) -> Option<&Resource> {
        self.resources.get(key).map(|r| &**r)
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// All resources, ordered by kind, namespace and name.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values().map(|r| &**r)
    }

    /// Resources of one kind, ordered by namespace and name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.resources
            .range(
                ResourceKey {
                    kind,
                    namespace: String::new(),
                    name: String::new(),
                }..,
            )
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, r)| &**r)
    }

    /// Warnings of every resource plus those that need several resources to see (a route to a
    /// subset no DestinationRule defines, ...), in source order.
    pub fn warnings(&self) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = self
            .iter()
            .flat_map(|r| r.warnings.iter().cloned())
            .collect();
        out.extend(crate::validate::cross_check(self));
        diagnostics::sort(&mut out);
        out
    }
}

/// `file:line` (or what is known of it) for "defined twice" messages.
fn place(source: &Source) -> String {
    let file = source.file.as_deref().unwrap_or("<input>");
    match source.position("") {
        Some(pos) => format!("{file}:{}", pos.line),
        None => file.to_string(),
    }
}

/// The text of a config file, or of every `*.yaml`, `*.yml` and `*.json` file under a directory
/// (recursively, in sorted path order, skipping hidden entries such as Kubernetes' `..data`
/// ConfigMap links), each named by its path. Files that cannot be read, or are not UTF-8, are
/// diagnostics naming them; the others are still returned.
pub fn read_config_files(path: &Path) -> (Vec<(String, String)>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    if path.is_dir() {
        collect_files(path, &mut files, &mut diagnostics, 0);
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        let name = file.display().to_string();
        match std::fs::read(&file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => texts.push((name, text)),
                Err(_) => {
                    diagnostics.push(Diagnostic::error("file is not valid UTF-8").with_file(name))
                }
            },
            Err(e) => {
                diagnostics.push(Diagnostic::error(format!("cannot read: {e}")).with_file(name))
            }
        }
    }
    (texts, diagnostics)
}

/// Loads a file, or every config file under a directory (see [`read_config_files`]).
pub fn load_path(path: &Path) -> Result<ConfigSet, Vec<Diagnostic>> {
    let (texts, mut diagnostics) = read_config_files(path);
    let mut resources = Vec::new();
    for (name, text) in texts {
        let (mut found, problems) = read_str(&text, Some(&name));
        diagnostics.extend(problems);
        resources.append(&mut found);
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        diagnostics.extend(resources.into_iter().flat_map(|r| r.warnings));
        diagnostics::sort(&mut diagnostics);
        return Err(diagnostics);
    }
    ConfigSet::from_resources(resources).map_err(|mut d| {
        diagnostics::sort(&mut d);
        d
    })
}

/// Directory depth limit, against symlink loops.
const MAX_DIR_DEPTH: usize = 32;

fn collect_files(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    diagnostics: &mut Vec<Diagnostic>,
    depth: usize,
) {
    if depth > MAX_DIR_DEPTH {
        diagnostics.push(
            Diagnostic::error(format!(
                "directories nested deeper than {MAX_DIR_DEPTH} levels"
            ))
            .with_file(dir.display().to_string()),
        );
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diagnostics.push(
                Diagnostic::error(format!("cannot read directory: {e}"))
                    .with_file(dir.display().to_string()),
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, files, diagnostics, depth + 1);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n";

    fn errors(text: &str) -> Vec<String> {
        load_str(text, "t.yaml")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn loads_a_resource() {
        let rs = load_str(VS, "vs.yaml").unwrap();
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].key().to_string(), "VirtualService default/reviews");
        assert_eq!(rs[0].source.file.as_deref(), Some("vs.yaml"));
        assert_eq!(rs[0].source.position("spec.hosts").map(|p| p.line), Some(6));
    }

    #[test]
    fn unknown_and_unsupported_fields() {
        let e = errors(&VS.replace("  hosts:", "  tls: []\n  hosts:"));
        assert_eq!(
            e,
            vec![
                "t.yaml:6:3: VirtualService default/reviews: spec.tls: `tls` is unsupported by Trellis"
            ]
        );
        let e = errors(&VS.replace("        host: reviews", "        hots: reviews"));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.yaml:10:9: VirtualService default/reviews: spec.http[0].route[0].destination.hots: unknown field `hots`, expected one of `host`, `subset`, `port`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn unknown_kinds_and_versions() {
        let e = errors("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n");
        assert!(
            e[0].starts_with(
                "t.yaml:2:1: Deployment default/x: kind: unknown kind `Deployment` (apps/v1)"
            ),
            "{}",
            e[0]
        );
        let e = errors(
            "apiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: x}\nspec: {}\n",
        );
        assert!(
            e[0].contains("kind `EnvoyFilter` (networking.istio.io/v1) is unsupported by Trellis"),
            "{}",
            e[0]
        );
        let e = errors(&VS.replace("networking.istio.io/v1", "networking.istio.io/v2"));
        assert!(
            e[0].starts_with(
                "t.yaml:1:1: apiVersion: VirtualService is not served as `networking.istio.io/v2`"
            ),
            "{}",
            e[0]
        );
    }

    #[test]
    fn metadata_rules() {
        let text = VS.replace("  name: reviews", "  name: reviews\n  namespace: prod\n  uid: abc\n  creationTimestamp: null\n  managedFields: [{manager: kubectl}]");
        let rs = load_str(&text, "x.yaml").unwrap();
        assert_eq!(rs[0].namespace(), "prod");
        let e = errors(&VS.replace("  name: reviews", "  name: Reviews_1"));
        assert!(
            e[0].contains("metadata.name: name `Reviews_1` must be a DNS-1123 subdomain"),
            "{}",
            e[0]
        );
        let e = errors(&VS.replace("  name: reviews", "  labels: {a: b}"));
        assert!(e[0].contains("metadata.name is required"), "{}", e[0]);
    }

    #[test]
    fn lists_and_multiple_documents() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1beta1\n  kind: Sidecar\n  metadata: {name: s}\n  spec:\n    egress:\n    - hosts: ['./*']\n    bogus: 1\n";
        let e = errors(list);
        assert_eq!(
            e,
            vec![
                "t.yaml:10:5: Sidecar default/s: spec.bogus: unknown field `bogus`, expected one of `workloadSelector`, `ingress`, `egress`, `outboundTrafficPolicy`, `inboundConnectionPool`"
            ]
        );
        let two = format!("{VS}---\n{}", VS.replace("name: reviews", "name: other"));
        assert_eq!(load_str(&two, "t.yaml").unwrap().len(), 2);
    }

    #[test]
    fn duplicates_name_both_places() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), VS).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), format!("# copy\n{VS}")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "bad: [").unwrap();
        let e = load_path(dir.path()).unwrap_err();
        assert_eq!(e.len(), 1);
        let msg = e[0].to_string();
        assert!(msg.contains("sub/b.yml:5:3: VirtualService default/reviews: metadata.name: VirtualService default/reviews is defined twice: first at "), "{msg}");
        assert!(msg.contains("a.yaml:1"), "{msg}");
    }

    #[test]
    fn of_kind_is_ordered() {
        let text = format!(
            "{}---\n{VS}---\n{}",
            VS.replace("name: reviews", "name: zeta"),
            VS.replace("name: reviews", "name: alpha\n  namespace: a")
        );
        let set = ConfigSet::from_resources(load_str(&text, "t.yaml").unwrap()).unwrap();
        let names: Vec<String> = set
            .of_kind(Kind::VirtualService)
            .map(|r| r.key().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "VirtualService a/alpha",
                "VirtualService default/reviews",
                "VirtualService default/zeta"
            ]
        );
        assert_eq!(set.of_kind(Kind::Sidecar).count(), 0);
    }
}
