//! The OTLP resource every export of this proxy carries, and attribute helpers.
//!
//! `service.name` is `<canonical service>.<namespace>`, as Istio names services in Jaeger, so the
//! mesh's spans land under the same service names as Istio's. `trellis.proxy` (the proxy id) is
//! on every resource: the collector tells the mesh's own telemetry from the applications' by it.

use super::super::TelemetrySettings;
use super::super::peer::PeerMeta;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// What every export names as its source.
#[derive(Debug, Clone)]
pub struct Source {
    pub resource: Resource,
    pub scope: InstrumentationScope,
    /// Istio's per-span tags of the local workload (`istio.canonical_service`, ...).
    pub span_tags: Vec<KeyValue>,
}

impl Source {
    pub fn new(settings: &TelemetrySettings) -> Source {
        let local = PeerMeta::from_node(&settings.node, &settings.cluster);
        let namespace = &settings.node.namespace;
        let mut attributes = vec![
            string(
                "service.name",
                format!("{}.{namespace}", local.canonical_service),
            ),
            string("service.namespace", namespace.clone()),
            string("service.version", local.canonical_revision.clone()),
            string("service.instance.id", settings.proxy_id.clone()),
            string("k8s.namespace.name", namespace.clone()),
            string("trellis.proxy", settings.proxy_id.clone()),
            string("trellis.workload", settings.node.workload.clone()),
        ];
        if !settings.cluster.is_empty() {
            attributes.push(string("trellis.cluster", settings.cluster.clone()));
        }
        let span_tags = vec![
            string("istio.canonical_service", local.canonical_service.clone()),
            string("istio.canonical_revision", local.canonical_revision.clone()),
            string("istio.namespace", namespace.clone()),
            string("node_id", settings.proxy_id.clone()),
        ];
        Source {
            resource: Resource {
                attributes,
                ..Resource::default()
            },
            scope: InstrumentationScope {
                name: "trellis-proxy".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..InstrumentationScope::default()
            },
            span_tags,
        }
    }
}

pub fn string(key: &str, value: impl Into<String>) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.into()))
}

pub fn int(key: &str, value: i64) -> KeyValue {
    attribute(key, any_value::Value::IntValue(value))
}

pub fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_api::model::NodeIdentity;

    fn value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn services_are_named_as_istio_names_them() {
        let mut settings = TelemetrySettings {
            node: NodeIdentity {
                workload: "reviews-v2".into(),
                namespace: "shop".into(),
                service_account: "reviews".into(),
                labels: [
                    ("app".to_string(), "reviews".to_string()),
                    ("version".to_string(), "v2".to_string()),
                ]
                .into(),
            },
            proxy_id: "reviews-v2-0123456789abcdef.shop".into(),
            ..TelemetrySettings::default()
        };
        let s = Source::new(&settings);
        let attrs = &s.resource.attributes;
        let text = |k| match value(attrs, k) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(text("service.name"), "reviews.shop");
        assert_eq!(text("service.version"), "v2");
        assert_eq!(text("k8s.namespace.name"), "shop");
        assert_eq!(text("trellis.proxy"), "reviews-v2-0123456789abcdef.shop");
        // Without labels, the workload name is the canonical service.
        settings.node.labels.clear();
        let s = Source::new(&settings);
        assert_eq!(
            value(&s.resource.attributes, "service.name"),
            Some(&any_value::Value::StringValue("reviews-v2.shop".into()))
        );
    }
}
