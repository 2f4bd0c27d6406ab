//! The REST API's answers as the CLI reads them. Defined here rather than shared with the server
//! so the CLI stays a plain HTTP client; every field is optional and `null` reads as its default,
//! so a newer or older server does not break decoding.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use trellis_api::Diagnostic;

/// `null` (or absent, with `#[serde(default)]`) as the type's default.
fn lenient<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Any non-2xx answer.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default, deserialize_with = "lenient")]
    pub error: String,
    #[serde(default, deserialize_with = "lenient")]
    pub diagnostics: Vec<Diagnostic>,
}

/// Result of apply, delete and rollback.
#[derive(Debug, Default, Deserialize)]
pub struct ApplyOutcome {
    /// `None` when nothing changed, or for a dry run.
    #[serde(default)]
    pub revision: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub dry_run: bool,
    #[serde(default, deserialize_with = "lenient")]
    pub changes: Vec<Change>,
    #[serde(default, deserialize_with = "lenient")]
    pub warnings: Vec<Diagnostic>,
}

/// What happened to one resource: `created`, `configured`, `unchanged` or `deleted`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Change {
    #[serde(default, deserialize_with = "lenient")]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient")]
    pub namespace: String,
    #[serde(default, deserialize_with = "lenient")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub action: String,
}

impl Change {
    /// `VirtualService default/reviews configured`.
    pub fn summary(&self) -> String {
        format!(
            "{} {}/{} {}",
            self.kind, self.namespace, self.name, self.action
        )
    }
}

/// One stored resource.
#[derive(Debug, Default, Deserialize)]
pub struct ResourceItem {
    #[serde(default, deserialize_with = "lenient")]
    pub namespace: String,
    #[serde(default, deserialize_with = "lenient")]
    pub name: String,
    /// The document as applied.
    #[serde(default)]
    pub resource: Value,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResourceList {
    #[serde(default, deserialize_with = "lenient")]
    pub items: Vec<ResourceItem>,
}

/// One history entry.
#[derive(Debug, Default, Deserialize)]
pub struct Revision {
    #[serde(default, deserialize_with = "lenient")]
    pub revision: u64,
    /// RFC 3339 UTC.
    #[serde(default, deserialize_with = "lenient")]
    pub time: String,
    #[serde(default, deserialize_with = "lenient")]
    pub author: String,
    #[serde(default, deserialize_with = "lenient")]
    pub message: String,
    #[serde(default, deserialize_with = "lenient")]
    pub changes: Vec<Change>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RevisionList {
    #[serde(default, deserialize_with = "lenient")]
    pub revisions: Vec<Revision>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DiffBody {
    #[serde(default, deserialize_with = "lenient")]
    pub changes: Vec<Change>,
    #[serde(default, deserialize_with = "lenient")]
    pub diff: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ProxyList {
    #[serde(default, deserialize_with = "lenient")]
    pub proxies: Vec<ProxyInfo>,
}

/// One proxy as the push server sees it. Versions are shown as sent (number or string).
#[derive(Debug, Default, Deserialize)]
pub struct ProxyInfo {
    #[serde(default, deserialize_with = "lenient")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient")]
    pub namespace: String,
    #[serde(default, deserialize_with = "lenient")]
    pub connected: bool,
    /// RFC 3339.
    #[serde(default)]
    pub connected_since: Option<String>,
    /// The same instant, when the server sends it (preferred: no parsing).
    #[serde(default)]
    pub connected_since_unix_ms: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    pub status: String,
    #[serde(default)]
    pub version_acked: Value,
    #[serde(default)]
    pub latest_version: Value,
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_nulls_and_missing_fields() {
        let o: ApplyOutcome = serde_json::from_str(
            r#"{"revision":null,"changes":[{"kind":"VirtualService","namespace":"default","name":"r","action":"unchanged"}],"warnings":null,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(o.revision, None);
        assert_eq!(o.changes[0].summary(), "VirtualService default/r unchanged");
        let p: ProxyList =
            serde_json::from_str(r#"{"proxies":[{"id":"a","status":null,"version_acked":3}]}"#)
                .unwrap();
        assert_eq!(p.proxies[0].status, "");
        assert_eq!(p.proxies[0].version_acked, 3);
    }
}
