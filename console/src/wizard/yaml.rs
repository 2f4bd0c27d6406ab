//! A small YAML emitter for the resources the wizard writes: block style as `kubectl` prints it
//! (`key:` then items as `- ...` at the same indent), strings plain when that cannot change their
//! meaning and JSON-quoted otherwise (a JSON string is a valid YAML double-quoted scalar), so what
//! the preview shows is exactly what `trellis apply` reads back.

use serde_json::Value;

/// One document, ending in a newline.
pub fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// Several documents separated by `---`.
pub fn documents<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    values
        .into_iter()
        .map(document)
        .collect::<Vec<_>>()
        .join("---\n")
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        write_value_after_key(out, value, indent);
    }
}

/// After `key:`: a scalar on the same line, a mapping indented below, a sequence at the
/// key's own indent (kubectl's style).
fn write_value_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key shares the dash's line; the rest line up under it.
                let mut first = true;
                for (key, value) in map {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        out.push_str(&" ".repeat(indent + 2));
                    }
                    out.push_str(&string(key));
                    out.push(':');
                    write_value_after_key(out, value, indent + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

/// Words YAML (1.1 or 1.2) reads as something other than a string.
const SPECIAL_WORDS: [&str; 11] = [
    "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", "nan",
];

/// Plain when it is a letter or `/` followed by letters, digits and `._/-` and is no special
/// word; quoted otherwise (numbers-as-strings, spaces, `:`, `#`, quotes, newlines, ...).
fn string(text: &str) -> String {
    let mut chars = text.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !SPECIAL_WORDS.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reparse(text: &str) -> Value {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).expect("valid YAML");
        to_json(&docs[0])
    }

    fn to_json(yaml: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match yaml {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Integer(i) => json!(i),
            Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
            Yaml::String(s) => json!(s),
            Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
            Yaml::Hash(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), to_json(v)))
                    .collect(),
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kubectl_style_blocks() {
        let value = json!({
            "kind": "VirtualService",
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "r", "subset": "v1"}, "weight": 80}]}]}
        });
        assert_eq!(
            document(&value),
            "kind: VirtualService\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: r\n        subset: v1\n      weight: 80\n"
        );
    }

    #[test]
    fn strings_that_would_change_meaning_are_quoted() {
        for text in [
            "80",
            "1e3",
            "0x1F",
            "true",
            "No",
            "~",
            "",
            "a: b",
            "# x",
            "-1",
            ".5",
            "say \"hi\"",
            "line\nbreak",
            "^/api/.*$",
            "5xx,reset",
            " lead",
            "x ",
        ] {
            let value = json!({ "k": text, "list": [text] });
            assert_eq!(reparse(&document(&value)), value, "{text:?}");
        }
        assert_eq!(document(&json!({"k": "v1"})), "k: v1\n");
        assert_eq!(document(&json!({"k": "80"})), "k: \"80\"\n");
    }

    #[test]
    fn round_trips_nested_values() {
        let value = json!({
            "a": [{"b": [1, 2], "c": {}}, [], [["x"]], 2.5, null, false],
            "d": {"e": {"f": -3}},
            "g": []
        });
        assert_eq!(reparse(&document(&value)), value);
    }
}
