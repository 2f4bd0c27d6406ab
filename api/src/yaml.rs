//! Multi-document YAML to `serde_json::Value`, remembering where every field was written.
//!
//! Resources are deserialized from JSON values (so serde gives us typed errors with paths), but a
//! path alone is a poor error message for a human editing a file: this module keeps a map from each
//! field path (`spec.http[0].route[1].weight`, the same spelling serde_path_to_error uses) to the
//! line and column where it appears, so every later diagnostic can point at the source.
//!
//! Built on yaml-rust2's event parser, driven iteratively with an explicit stack so hostile input
//! (deep nesting, alias bombs) is refused with an error instead of exhausting the stack or memory.

use serde::Serialize;
use serde_json::{Map, Number, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting accepted; real resources stay far below it.
const MAX_DEPTH: usize = 128;
/// Upper bound on nodes per file after alias expansion (defuses "billion laughs").
const MAX_NODES: usize = 1_000_000;

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        Pos {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

/// Field path -> position, for one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions(BTreeMap<String, Pos>);

impl Positions {
    /// The position recorded for exactly this path.
    pub fn get(&self, path: &str) -> Option<Pos> {
        self.0.get(path).copied()
    }

    /// The position of `path`, or of its nearest ancestor that has one (a missing field is
    /// reported where its parent is written).
    pub fn lookup(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.0.get(p) {
                return Some(*pos);
            }
            if p.is_empty() {
                return None;
            }
            p = parent_path(p);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Pos)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn insert_if_absent(&mut self, path: String, pos: Pos) {
        self.0.entry(path).or_insert(pos);
    }

    /// Copies the positions under `from` to the same relative paths under `to` (alias expansion,
    /// merge keys), never overwriting what is already recorded.
    fn copy_subtree(&mut self, from: &str, to: &str) {
        let entries: Vec<(String, Pos)> = self
            .0
            .range(from.to_string()..)
            .take_while(|(k, _)| k.starts_with(from))
            .filter(|(k, _)| {
                let rest = &k[from.len()..];
                rest.is_empty() || from.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
            .map(|(k, v)| (format!("{to}{}", &k[from.len()..]), *v))
            .collect();
        for (k, v) in entries {
            self.insert_if_absent(k, v);
        }
    }
}

/// The path one level up: `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> ``.
pub fn parent_path(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

/// `base.key`, or `key` at the root.
pub fn join_path(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// `base[index]`.
pub fn index_path(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// One non-empty YAML document.
#[derive(Debug, Clone)]
pub struct Document {
    /// 0-based index of the document in its file, counting empty documents too.
    pub index: usize,
    pub value: Value,
    pub positions: Positions,
}

/// A syntax error (or a limit exceeded), with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for YamlError {}

impl YamlError {
    fn at(pos: Pos, message: impl Into<String>) -> YamlError {
        YamlError {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

/// Parses every document of a YAML (or JSON) stream. Empty documents (nothing, or only comments, or
/// an explicit null) are skipped. The first syntax error ends parsing.
pub fn parse(text: &str) -> Result<Vec<Document>, YamlError> {
    // The builder below never panics; the parser is third-party code fed arbitrary bytes, so a
    // panic in it is turned into an ordinary error rather than taking the process down.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_inner(text))).unwrap_or_else(
        |_| {
            Err(YamlError {
                line: 1,
                column: 1,
                message: "YAML parser failed on this input".to_string(),
            })
        },
    )
}

fn parse_inner(text: &str) -> Result<Vec<Document>, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    let mut docs = Vec::new();
    let mut index = 0usize;
    loop {
        let (event, marker) = parser.next_token().map_err(|e| YamlError {
            line: e.marker().line().max(1),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let pos = Pos::from_marker(&marker);
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing => {}
            Event::DocumentStart => builder.start_document(),
            Event::DocumentEnd => {
                if let Some((value, positions)) = builder.finish_document()
                    && !value.is_null()
                {
                    docs.push(Document {
                        index,
                        value,
                        positions,
                    });
                }
                index += 1;
            }
            other => builder.event(other, pos)?,
        }
    }
    Ok(docs)
}

enum Frame {
    Map {
        map: Map<String, Value>,
        path: String,
        anchor: usize,
        /// The key waiting for its value, and whether it was the plain merge key `<<`.
        key: Option<(String, bool)>,
        /// Values of `<<` keys, with the path their positions were recorded under.
        merges: Vec<(Value, String)>,
    },
    Seq {
        items: Vec<Value>,
        path: String,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    positions: Positions,
    /// Anchor id -> (value, path where it was defined).
    anchors: HashMap<usize, (Value, String, usize)>,
    nodes: usize,
}

/// Where the next node goes.
enum Slot {
    Root,
    Key,
    Value(String),
}

impl Builder {
    fn start_document(&mut self) {
        self.stack.clear();
        self.root = None;
        self.positions = Positions::default();
        self.anchors.clear();
    }

    fn finish_document(&mut self) -> Option<(Value, Positions)> {
        self.stack.clear();
        let root = self.root.take()?;
        Some((root, std::mem::take(&mut self.positions)))
    }

    fn slot(&self) -> Slot {
        match self.stack.last() {
            None => Slot::Root,
            Some(Frame::Map { key: None, .. }) => Slot::Key,
            Some(Frame::Map {
                key: Some((k, _)),
                path,
                ..
            }) => Slot::Value(join_path(path, k)),
            Some(Frame::Seq { items, path, .. }) => Slot::Value(index_path(path, items.len())),
        }
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError::at(
                pos,
                format!("document too large (more than {MAX_NODES} nodes after expanding aliases)"),
            ));
        }
        Ok(())
    }

    fn event(&mut self, event: Event, pos: Pos) -> Result<(), YamlError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, pos)?;
                match self.slot() {
                    Slot::Key => self.key(text, style == TScalarStyle::Plain, pos),
                    Slot::Root => {
                        self.positions.insert_if_absent(String::new(), pos);
                        let value = resolve_scalar(&text, style, tag.as_ref(), pos)?;
                        self.complete(value, anchor, String::new(), pos)
                    }
                    Slot::Value(path) => {
                        self.positions.insert_if_absent(path.clone(), pos);
                        let value = resolve_scalar(&text, style, tag.as_ref(), pos)?;
                        self.complete(value, anchor, path, pos)
                    }
                }
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                self.count(1, pos)?;
                if self.stack.len() >= MAX_DEPTH {
                    return Err(YamlError::at(
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let path = match self.slot() {
                    Slot::Key => {
                        return Err(YamlError::at(
                            pos,
                            "a mapping key must be a plain value, not a mapping or list",
                        ));
                    }
                    Slot::Root => String::new(),
                    Slot::Value(p) => p,
                };
                self.positions.insert_if_absent(path.clone(), pos);
                self.stack
                    .push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map {
                            map: Map::new(),
                            path,
                            anchor,
                            key: None,
                            merges: Vec::new(),
                        }
                    } else {
                        Frame::Seq {
                            items: Vec::new(),
                            path,
                            anchor,
                        }
                    });
                Ok(())
            }
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    mut map,
                    path,
                    anchor,
                    merges,
                    ..
                }) => {
                    self.apply_merges(&mut map, &path, merges);
                    self.complete(Value::Object(map), anchor, path, pos)
                }
                _ => Err(YamlError::at(pos, "unbalanced mapping end")),
            },
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    path,
                    anchor,
                }) => self.complete(Value::Array(items), anchor, path, pos),
                _ => Err(YamlError::at(pos, "unbalanced sequence end")),
            },
            Event::Alias(id) => {
                let Some((value, from, size)) = self.anchors.get(&id).cloned() else {
                    return Err(YamlError::at(pos, "alias refers to an unknown anchor"));
                };
                self.count(size, pos)?;
                let path = match self.slot() {
                    Slot::Key => match value {
                        Value::String(s) => return self.key(s, false, pos),
                        Value::Number(n) => return self.key(n.to_string(), false, pos),
                        Value::Bool(b) => return self.key(b.to_string(), false, pos),
                        _ => {
                            return Err(YamlError::at(
                                pos,
                                "a mapping key must be a plain value, not a mapping or list",
                            ));
                        }
                    },
                    Slot::Root => String::new(),
                    Slot::Value(p) => p,
                };
                self.positions.insert_if_absent(path.clone(), pos);
                self.positions.copy_subtree(&from, &path);
                self.complete(value, 0, path, pos)
            }
            _ => Ok(()),
        }
    }

    fn key(&mut self, text: String, plain: bool, pos: Pos) -> Result<(), YamlError> {
        let Some(Frame::Map { map, path, key, .. }) = self.stack.last_mut() else {
            return Err(YamlError::at(pos, "mapping key outside a mapping"));
        };
        let merge = plain && text == "<<";
        if !merge && map.contains_key(&text) {
            return Err(YamlError::at(pos, format!("duplicate key `{text}`")));
        }
        let field = join_path(path, &text);
        // A block mapping's start marker points after its first key; the first key is the better
        // place to report the mapping itself (e.g. a list item).
        if let Some(p) = self.positions.0.get_mut(path.as_str())
            && pos < *p
        {
            *p = pos;
        }
        self.positions.0.insert(field, pos);
        *key = Some((text, merge));
        Ok(())
    }

    /// Attaches a finished node to its parent (or makes it the document root).
    fn complete(
        &mut self,
        value: Value,
        anchor: usize,
        path: String,
        pos: Pos,
    ) -> Result<(), YamlError> {
        if anchor > 0 {
            let size = node_count(&value);
            self.anchors
                .insert(anchor, (value.clone(), path.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                Ok(())
            }
            Some(Frame::Map {
                map, key, merges, ..
            }) => match key.take() {
                Some((_, true)) => {
                    merges.push((value, path));
                    Ok(())
                }
                Some((k, false)) => {
                    map.insert(k, value);
                    Ok(())
                }
                None => Err(YamlError::at(pos, "mapping value without a key")),
            },
        }
    }

    /// YAML merge keys (`<<: *base` or `<<: [*a, *b]`): keys written in the mapping win, then
    /// earlier merged mappings over later ones.
    fn apply_merges(
        &mut self,
        map: &mut Map<String, Value>,
        path: &str,
        merges: Vec<(Value, String)>,
    ) {
        for (value, from) in merges {
            let sources: Vec<(Map<String, Value>, String)> = match value {
                Value::Object(m) => vec![(m, from)],
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| match v {
                        Value::Object(m) => Some((m, index_path(&from, i))),
                        _ => None,
                    })
                    .collect(),
                // A `<<` whose value is not a mapping is kept as an ordinary key.
                other => {
                    map.entry("<<").or_insert(other);
                    continue;
                }
            };
            for (source, source_path) in sources {
                for (k, v) in source {
                    if !map.contains_key(&k) {
                        self.positions
                            .copy_subtree(&join_path(&source_path, &k), &join_path(path, &k));
                        map.insert(k, v);
                    }
                }
            }
        }
    }
}

fn node_count(value: &Value) -> usize {
    let mut n = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        n += 1;
        match v {
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    n
}

const CORE_TAG: &str = "tag:yaml.org,2002:";

/// Resolves a scalar by YAML 1.2 core schema (plain scalars) or its explicit `!!` tag.
fn resolve_scalar(
    text: &str,
    style: TScalarStyle,
    tag: Option<&Tag>,
    pos: Pos,
) -> Result<Value, YamlError> {
    if let Some(tag) = tag
        && tag.handle == CORE_TAG
    {
        let bad = || YamlError::at(pos, format!("`{text}` is not a valid !!{}", tag.suffix));
        return match tag.suffix.as_str() {
            "str" => Ok(Value::String(text.to_string())),
            "null" => match text {
                "" | "~" | "null" | "Null" | "NULL" => Ok(Value::Null),
                _ => Err(bad()),
            },
            "bool" => parse_bool(text).map(Value::Bool).ok_or_else(bad),
            "int" => parse_int(text).ok_or_else(bad),
            "float" => parse_int(text)
                .and_then(|v| v.as_f64())
                .or_else(|| parse_float(text))
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad),
            _ => Ok(Value::String(text.to_string())),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    Ok(resolve_plain(text))
}

/// YAML 1.2 core schema for an untagged plain scalar.
pub(crate) fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        _ => {}
    }
    if let Some(b) = parse_bool(text) {
        return Value::Bool(b);
    }
    if let Some(v) = parse_int(text) {
        return v;
    }
    if let Some(n) = parse_float(text).and_then(Number::from_f64) {
        return Value::Number(n);
    }
    // `.inf` / `.nan` have no JSON form: they stay strings, so a numeric field rejects them.
    Value::String(text.to_string())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<Value> {
    let (radix, digits, negative) = if let Some(d) = text.strip_prefix("0o") {
        (8, d, false)
    } else if let Some(d) = text.strip_prefix("0x") {
        (16, d, false)
    } else if let Some(d) = text.strip_prefix('-') {
        (10, d, true)
    } else {
        (10, text.strip_prefix('+').unwrap_or(text), false)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    match (negative, u64::from_str_radix(digits, radix).ok()) {
        (false, Some(m)) => Some(Value::Number(m.into())),
        (true, Some(m)) if m <= i64::MAX as u64 + 1 => {
            Some(Value::Number(0i64.wrapping_sub_unsigned(m).into()))
        }
        // Beyond 64 bits: still a number, approximately.
        _ => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
    }
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn parse_float(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - s;
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Document {
        let mut docs = parse(text).expect("parses");
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    #[test]
    fn records_field_positions() {
        let doc = one(
            "spec:\n  http:\n  - route:\n    - destination:\n        host: reviews\n      weight: 50\n",
        );
        let p = &doc.positions;
        assert_eq!(p.get("spec"), Some(Pos { line: 1, column: 1 }));
        assert_eq!(p.get("spec.http"), Some(Pos { line: 2, column: 3 }));
        assert_eq!(p.get("spec.http[0]"), Some(Pos { line: 3, column: 5 }));
        assert_eq!(
            p.get("spec.http[0].route[0].destination.host"),
            Some(Pos { line: 5, column: 9 })
        );
        assert_eq!(
            p.get("spec.http[0].route[0].weight"),
            Some(Pos { line: 6, column: 7 })
        );
        assert_eq!(
            p.lookup("spec.http[0].route[0].destination.port.number"),
            Some(Pos { line: 4, column: 7 })
        );
        assert_eq!(
            doc.value["spec"]["http"][0]["route"][0]["weight"],
            json!(50)
        );
    }

    #[test]
    fn core_schema_scalars() {
        let doc = one(
            "a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: '1'\ng: \"true\"\nh: 0x1f\ni: 0o17\nj: 1e3\nk: v1\nl:\nm: .inf\nn: 1_000\no: !!str 5\np: !!int \"7\"\nq: 99999999999999999999\nr: +3\n",
        );
        assert_eq!(
            doc.value,
            json!({"a": 1, "b": -2, "c": 1.5, "d": true, "e": null, "f": "1", "g": "true",
                   "h": 31, "i": 15, "j": 1000.0, "k": "v1", "l": null, "m": ".inf", "n": "1_000",
                   "o": "5", "p": 7, "q": 1e20, "r": 3})
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let doc = one(
            "base: &b\n  x: 1\n  y: [a, b]\ncopy: *b\nmerged:\n  <<: *b\n  x: 2\nlist:\n- &item {k: v}\n- *item\n",
        );
        assert_eq!(doc.value["copy"], json!({"x": 1, "y": ["a", "b"]}));
        assert_eq!(doc.value["merged"], json!({"x": 2, "y": ["a", "b"]}));
        assert_eq!(doc.value["list"], json!([{"k": "v"}, {"k": "v"}]));
        // Positions inside an alias point at the anchored definition.
        assert_eq!(
            doc.positions.get("copy.x"),
            Some(Pos { line: 2, column: 3 })
        );
        assert_eq!(doc.positions.get("copy"), Some(Pos { line: 4, column: 1 }));
        assert_eq!(
            doc.positions.get("merged.y"),
            Some(Pos { line: 3, column: 3 })
        );
        assert_eq!(
            doc.positions.get("merged.x"),
            Some(Pos { line: 7, column: 3 })
        );
    }

    #[test]
    fn multiple_documents_skip_empty_ones() {
        let docs =
            parse("---\n# only a comment\n---\na: 1\n---\n---\nb: 2\n...\n---\n~\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value, json!({"a": 1}));
        assert_eq!(docs[1].value, json!({"b": 2}));
        assert_eq!(docs[1].positions.get("b"), Some(Pos { line: 7, column: 1 }));
        assert!(docs[0].index < docs[1].index);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn json_with_tabs() {
        let doc = one("{\n\t\"a\": 1,\n\t\"b\": [1,\n\t\t\"x\"]\n}\n");
        assert_eq!(doc.value, json!({"a": 1, "b": [1, "x"]}));
        assert_eq!(doc.positions.get("b[1]"), Some(Pos { line: 4, column: 3 }));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 1));
        assert!(err.message.contains("duplicate key `a`"));
        let err = parse("x: *nope\n").unwrap_err();
        assert!(err.message.contains("unknown anchor"), "{err}");
        let err = parse("? [a]\n: 1\n").unwrap_err();
        assert!(err.message.contains("mapping key"), "{err}");
    }

    #[test]
    fn limits_are_enforced() {
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).is_err());
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains("too large"), "{err}");
    }

    #[test]
    fn path_helpers() {
        assert_eq!(parent_path("a.b[2].c"), "a.b[2]");
        assert_eq!(parent_path("a.b[2]"), "a.b");
        assert_eq!(parent_path("a"), "");
        assert_eq!(join_path("", "a"), "a");
        assert_eq!(index_path("a", 3), "a[3]");
    }
}
