//! Problems found in configuration, each pointing at the file, line, resource and field.
//!
//! One type serves the CLI (`Display`, compiler-style), the REST API and the console (`Serialize`),
//! so a user sees the same words wherever a configuration is rejected.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration is rejected.
    Error,
    /// Accepted, but probably not what the author meant (or not yet acted on by Trellis).
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Option<String>,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based.
    pub column: Option<usize>,
    /// `Kind namespace/name`, e.g. `VirtualService default/reviews`.
    pub resource: Option<String>,
    /// Field path inside the resource, e.g. `spec.http[0].route[1].weight`.
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: None,
            line: None,
            column: None,
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    pub fn with_file(mut self, file: impl Into<String>) -> Diagnostic {
        self.file = Some(file.into());
        self
    }

    pub fn at(mut self, line: usize, column: usize) -> Diagnostic {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub fn with_resource(mut self, resource: impl Into<String>) -> Diagnostic {
        self.resource = Some(resource.into());
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Diagnostic {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Sort key: file, then position, so reports read top to bottom.
    fn sort_key(&self) -> (Option<&str>, usize, usize, Severity) {
        (
            self.file.as_deref(),
            self.line.unwrap_or(0),
            self.column.unwrap_or(0),
            self.severity,
        )
    }
}

/// Orders diagnostics by file and position (stable for equal positions).
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
}

/// One diagnostic per line, for logs and terminals.
pub fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `file:line:col: [warning: ]resource: field: message`, leaving out what is unknown.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut location = String::new();
        if let Some(file) = &self.file {
            location.push_str(file);
        }
        if let Some(line) = self.line {
            if !location.is_empty() {
                location.push(':');
            }
            location.push_str(&line.to_string());
            if let Some(column) = self.column {
                location.push_str(&format!(":{column}"));
            }
        }
        if !location.is_empty() {
            write!(f, "{location}: ")?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let Some(resource) = &self.resource {
            write!(f, "{resource}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_like_a_compiler() {
        let d = Diagnostic::error("must be 0..=100")
            .with_file("reviews.yaml")
            .at(14, 9)
            .with_resource("VirtualService default/reviews")
            .with_field("spec.http[0].route[1].weight");
        assert_eq!(
            d.to_string(),
            "reviews.yaml:14:9: VirtualService default/reviews: spec.http[0].route[1].weight: must be 0..=100"
        );
        assert_eq!(Diagnostic::error("boom").to_string(), "boom");
        assert_eq!(
            render(&[Diagnostic::error("a"), Diagnostic::error("b")]),
            "a\nb"
        );
        assert_eq!(
            Diagnostic::warning("odd").with_file("a.yaml").to_string(),
            "a.yaml: warning: odd"
        );
    }

    #[test]
    fn serializes_as_json() {
        let d = Diagnostic::error("bad").with_file("a.yaml").at(1, 2);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["severity"], "error");
        assert_eq!(v["line"], 1);
        assert_eq!(v["field"], serde_json::Value::Null);
        let back: Diagnostic = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }
}
