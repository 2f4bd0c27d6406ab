//! OTLP attribute values written as JSON text, straight into a `String` (no intermediate
//! `serde_json::Value`): span attributes as Jaeger tags (`{"key","type","value"}`, the shape the
//! Jaeger query API serves, so reading a trace only splices stored text), and log attributes as a
//! plain JSON object.
//!
//! Values are bounded: strings longer than [`MAX_VALUE_BYTES`] are cut (at a character
//! boundary) and marked, and at most [`MAX_ATTRIBUTES`] attributes of one span, event, resource
//! or record are kept, so one huge attribute cannot blow up storage.

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest string value stored; longer ones are cut and end with [`TRUNCATED`].
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// Most attributes stored per span, event, resource or log record; the rest are dropped.
pub const MAX_ATTRIBUTES: usize = 256;
/// Marks a value that was cut.
pub const TRUNCATED: &str = "...[truncated]";

/// Appends `text` as a JSON string literal.
pub fn push_str(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// `text`, cut to [`MAX_VALUE_BYTES`] (at a character boundary) and marked when longer.
pub fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_VALUE_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_VALUE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = String::with_capacity(end + TRUNCATED.len());
    cut.push_str(&text[..end]);
    cut.push_str(TRUNCATED);
    Cow::Owned(cut)
}

/// Text for a plain (not JSON) column: bounded, and without NUL characters, which PostgreSQL's
/// TEXT cannot hold (one such span would otherwise fail its whole batch).
pub fn column_text(text: &str) -> String {
    let text = bounded(text);
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text.into_owned()
    }
}

/// Appends a string value, cut to [`MAX_VALUE_BYTES`].
fn push_bounded_str(out: &mut String, text: &str) {
    push_str(out, &bounded(text));
}

/// Appends a float, always with a fraction or exponent (`1.0`, not `1`, so it reads back as a
/// float); JSON has no NaN or infinities, so those become strings.
fn push_f64(out: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(out, "{value:?}");
    } else {
        push_str(out, &value.to_string());
    }
}

/// Appends `value` as plain JSON: strings, numbers, booleans, base64 for bytes, arrays and
/// objects for OTLP arrays and key-value lists; `null` when unset.
pub fn push_value(out: &mut String, value: Option<&AnyValue>) {
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        out.push_str("null");
        return;
    };
    match value {
        Value::StringValue(s) => push_bounded_str(out, s),
        Value::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::IntValue(i) => {
            let _ = write!(out, "{i}");
        }
        Value::StringValueStrindex(i) => {
            let _ = write!(out, "{i}");
        }
        Value::DoubleValue(d) => push_f64(out, *d),
        Value::BytesValue(bytes) => push_bounded_str(
            out,
            &base64::engine::general_purpose::STANDARD.encode(bytes),
        ),
        Value::ArrayValue(array) => {
            out.push('[');
            for (i, item) in array.values.iter().take(MAX_ATTRIBUTES).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, Some(item));
            }
            out.push(']');
        }
        Value::KvlistValue(list) => push_object(out, &list.values),
    }
}

/// Appends key-value pairs as a JSON object (later duplicates of a key win when read).
pub fn push_object(out: &mut String, attributes: &[KeyValue]) {
    out.push('{');
    for (i, kv) in attributes.iter().take(MAX_ATTRIBUTES).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &kv.key);
        out.push(':');
        push_value(out, kv.value.as_ref());
    }
    out.push('}');
}

/// Appends one Jaeger tag: `{"key":K,"type":T,"value":V}`. Arrays and key-value lists become
/// their JSON text as a string tag, as the OpenTelemetry-to-Jaeger mapping says.
pub fn push_tag(out: &mut String, key: &str, value: Option<&AnyValue>) {
    out.push_str("{\"key\":");
    push_str(out, key);
    match value.and_then(|v| v.value.as_ref()) {
        None => out.push_str(",\"type\":\"string\",\"value\":\"\""),
        Some(Value::StringValue(s)) => {
            out.push_str(",\"type\":\"string\",\"value\":");
            push_bounded_str(out, s);
        }
        Some(Value::BoolValue(b)) => {
            out.push_str(",\"type\":\"bool\",\"value\":");
            out.push_str(if *b { "true" } else { "false" });
        }
        Some(Value::IntValue(i)) => {
            let _ = write!(out, ",\"type\":\"int64\",\"value\":{i}");
        }
        Some(Value::StringValueStrindex(i)) => {
            let _ = write!(out, ",\"type\":\"int64\",\"value\":{i}");
        }
        Some(Value::DoubleValue(d)) if d.is_finite() => {
            out.push_str(",\"type\":\"float64\",\"value\":");
            push_f64(out, *d);
        }
        Some(Value::DoubleValue(d)) => {
            out.push_str(",\"type\":\"string\",\"value\":");
            push_str(out, &d.to_string());
        }
        Some(Value::BytesValue(bytes)) => {
            out.push_str(",\"type\":\"binary\",\"value\":");
            push_bounded_str(
                out,
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            );
        }
        Some(other @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            let mut text = String::new();
            push_value(
                &mut text,
                Some(&AnyValue {
                    value: Some(other.clone()),
                }),
            );
            out.push_str(",\"type\":\"string\",\"value\":");
            push_bounded_str(out, &text);
        }
    }
    out.push('}');
}

/// Appends attributes as Jaeger tags, leaving out `skip` (e.g. `service.name`, which Jaeger
/// shows as the process's service instead). Writes the separating commas itself; `first` says
/// whether something was already written into the enclosing array.
pub fn push_tags(out: &mut String, attributes: &[KeyValue], skip: Option<&str>, mut first: bool) {
    for kv in attributes.iter().take(MAX_ATTRIBUTES) {
        if Some(kv.key.as_str()) == skip {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_tag(out, &kv.key, kv.value.as_ref());
    }
}

/// Attributes as a Jaeger tag array.
pub fn tags(attributes: &[KeyValue], skip: Option<&str>) -> String {
    let mut out = String::with_capacity(2 + attributes.len() * 48);
    out.push('[');
    push_tags(&mut out, attributes, skip, true);
    out.push(']');
    out
}

/// Attributes as a JSON object.
pub fn object(attributes: &[KeyValue]) -> String {
    let mut out = String::with_capacity(2 + attributes.len() * 32);
    push_object(&mut out, attributes);
    out
}

/// The string value of attribute `key`, if it is a non-empty string.
pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn tags_are_typed_and_valid_json() {
        let attrs = vec![
            kv("s", Value::StringValue("a\"b\\c\n\u{1}é".into())),
            kv("b", Value::BoolValue(true)),
            kv("i", Value::IntValue(-7)),
            kv("d", Value::DoubleValue(1.5)),
            kv("nan", Value::DoubleValue(f64::NAN)),
            kv("bytes", Value::BytesValue(vec![1, 2, 3])),
            kv(
                "arr",
                Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(Value::IntValue(1)),
                        },
                        AnyValue {
                            value: Some(Value::StringValue("x".into())),
                        },
                    ],
                }),
            ),
            kv("service.name", Value::StringValue("skip me".into())),
        ];
        let text = tags(&attrs, Some("service.name"));
        let parsed: serde_json::Value = serde_json::from_str(&text).expect(&text);
        let expected = serde_json::json!([
            {"key": "s", "type": "string", "value": "a\"b\\c\n\u{1}é"},
            {"key": "b", "type": "bool", "value": true},
            {"key": "i", "type": "int64", "value": -7},
            {"key": "d", "type": "float64", "value": 1.5},
            {"key": "nan", "type": "string", "value": "NaN"},
            {"key": "bytes", "type": "binary", "value": "AQID"},
            {"key": "arr", "type": "string", "value": "[1,\"x\"]"},
        ]);
        assert_eq!(parsed, expected);
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_VALUE_BYTES);
        let text = object(&[kv("k", Value::StringValue(long))]);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let value = parsed["k"].as_str().unwrap();
        assert!(value.ends_with(TRUNCATED));
        assert!(value.len() <= MAX_VALUE_BYTES + TRUNCATED.len());
    }

    #[test]
    fn attribute_count_is_bounded() {
        let many: Vec<KeyValue> = (0..1000)
            .map(|i| kv(&format!("k{i}"), Value::IntValue(i)))
            .collect();
        let parsed: serde_json::Value = serde_json::from_str(&tags(&many, None)).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), MAX_ATTRIBUTES);
    }
}
