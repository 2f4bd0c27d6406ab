//! Rendering stored resources (JSON values) as YAML, for `-o yaml` and for revision diffs.
//!
//! Keys keep the order of the `serde_json::Value` (sorted, as the workspace's serde_json does not
//! preserve insertion order), so the same resource always renders the same text and diffs show
//! only real changes.

use serde_json::Value;
use yaml_rust2::yaml::{Hash, Yaml};
use yaml_rust2::{YamlEmitter, YamlLoader};

/// One YAML document (without a leading `---`), ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let yaml = to_yaml_value(value);
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(literal_blocks_are_exact(value));
    if emitter.dump(&yaml).is_err() {
        // Writing to a String cannot fail; JSON is a fallback that is still valid YAML.
        return format!("{value}\n");
    }
    let body = out.strip_prefix("---\n").unwrap_or(&out).to_string();
    // A bare scalar document is emitted after `--- ` on the same line.
    let body = body.strip_prefix("--- ").unwrap_or(&body);
    let mut body = body.to_string();
    body.push('\n');
    body
}

/// Several documents separated by `---` lines, as `kubectl get -o yaml` of many objects would be
/// read back by `kubectl apply -f`.
pub fn to_yaml_documents(values: &[Value]) -> String {
    values.iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}

fn to_yaml_value(value: &Value) -> Yaml {
    match value {
        // The emitter writes `Yaml::Null` as `~`; `Real` is written verbatim, so `null` reads as
        // kubectl shows it.
        Value::Null => Yaml::Real("null".into()),
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml_value).collect()),
        Value::Object(map) => {
            let mut hash = Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), to_yaml_value(v));
            }
            Yaml::Hash(hash)
        }
    }
}

/// Literal blocks (`|`) read best for multi-line strings (scripts, PEM, Lua), but the emitter
/// writes them without indentation indicators or keep-chomping, so they are only used when every
/// multi-line string in the document reads back exactly; otherwise strings are quoted.
fn literal_blocks_are_exact(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.contains('\n') || literal_block_round_trips(s),
        Value::Array(items) => items.iter().all(literal_blocks_are_exact),
        Value::Object(map) => map.values().all(literal_blocks_are_exact),
        _ => true,
    }
}

fn literal_block_round_trips(s: &str) -> bool {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    let doc = Yaml::Array(vec![Yaml::String(s.to_string())]);
    if emitter.dump(&doc).is_err() {
        return false;
    }
    matches!(
        YamlLoader::load_from_str(&out).as_deref(),
        Ok([Yaml::Array(items)]) if items.len() == 1 && items[0].as_str() == Some(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a YAML reader makes of the rendering, as JSON.
    fn read_back(text: &str) -> Value {
        let docs = YamlLoader::load_from_str(text).unwrap();
        fn conv(y: &Yaml) -> Value {
            match y {
                Yaml::Null => Value::Null,
                Yaml::Boolean(b) => json!(b),
                Yaml::Integer(i) => json!(i),
                Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
                Yaml::String(s) => json!(s),
                Yaml::Array(a) => Value::Array(a.iter().map(conv).collect()),
                Yaml::Hash(h) => Value::Object(
                    h.iter()
                        .map(|(k, v)| (k.as_str().unwrap().to_string(), conv(v)))
                        .collect(),
                ),
                other => panic!("unexpected {other:?}"),
            }
        }
        conv(&docs[0])
    }

    #[test]
    fn renders_resources_as_yaml() {
        let v = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "reviews", "labels": {}},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "port": {"number": 9080}}, "weight": 100}]}]}
        });
        assert_eq!(
            to_yaml(&v),
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  labels: {}\n  name: reviews\nspec:\n  hosts:\n    - reviews\n  http:\n    - route:\n        - destination:\n            host: reviews\n            port:\n              number: 9080\n          weight: 100\n"
        );
        assert_eq!(read_back(&to_yaml(&v)), v);
    }

    #[test]
    fn scalars_that_need_care_read_back_the_same() {
        let v = json!({
            "s": ["true", "1", "1.5", "null", "", " x", "a: b", "#c", "-", "0x1", "yes"],
            "n": [null, true, 1, -2, 2.5, 1e300, 18446744073709551615u64],
            "text": "line one\nline two\n",
            "exact": "no newline at end\nsecond",
            "tricky": "  indented first\nline\n\n",
            "empty": {"a": [], "b": {}}
        });
        let text = to_yaml(&v);
        let back = read_back(&text);
        // u64::MAX reads back as a float through yaml-rust2; everything else is exact.
        let mut expected = v.clone();
        expected["n"][6] = json!(18446744073709551615u64 as f64);
        assert_eq!(back, expected, "{text}");
        assert!(text.contains("- null\n"), "{text}");
    }

    #[test]
    fn literal_blocks_when_exact() {
        let v = json!({"script": "echo a\necho b\n"});
        assert_eq!(to_yaml(&v), "script: |\n  echo a\n  echo b\n");
    }

    #[test]
    fn documents_are_separated() {
        let out = to_yaml_documents(&[json!({"a": 1}), json!({"b": [2]})]);
        assert_eq!(out, "a: 1\n---\nb:\n  - 2\n");
        assert_eq!(to_yaml_documents(&[]), "");
        assert_eq!(to_yaml(&json!("x")), "x\n");
    }
}
