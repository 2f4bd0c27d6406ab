//! A finished request as an OTLP log record: the access log over OTLP.
//!
//! The body is the JSON access log line itself (`access_log::to_json`, the same fields as
//! stdout), and each of its fields is also an attribute so backends can filter on them; the
//! trace and span ids are set when the request was sampled. `connection_security_policy` and
//! the `*_uri_san` fields say whether (and between which identities) mutual TLS carried it.

use super::Finished;
use super::resource::{Source, attribute};
use super::spans::unix_nanos;
use crate::telemetry::access_log;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use std::sync::Arc;

/// The event name of access log records.
pub const EVENT_NAME: &str = "trellis.access_log";

pub fn request(source: &Source, batch: &[Arc<Finished>]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(source.resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(source.scope.clone()),
                log_records: batch.iter().map(|f| record(f)).collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

pub fn record(finished: &Finished) -> LogRecord {
    let r = &finished.record;
    let json = access_log::to_json(r);
    let attributes = match &json {
        serde_json::Value::Object(fields) => fields
            .iter()
            .filter_map(|(k, v)| Some(attribute(k, value(v)?)))
            .collect(),
        _ => Vec::<KeyValue>::new(),
    };
    let (trace_id, span_id, flags) = match &r.span {
        Some(ctx) => (
            ctx.trace_id_bytes().to_vec(),
            ctx.span_id_bytes().to_vec(),
            1,
        ),
        None => (Vec::new(), Vec::new(), 0),
    };
    LogRecord {
        time_unix_nano: unix_nanos(r.start_time),
        observed_time_unix_nano: unix_nanos(finished.end),
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(json.to_string())),
        }),
        attributes,
        flags,
        trace_id,
        span_id,
        event_name: EVENT_NAME.into(),
        ..LogRecord::default()
    }
}

/// A JSON field as an attribute value; `null` fields are left out.
fn value(v: &serde_json::Value) -> Option<any_value::Value> {
    Some(match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => any_value::Value::BoolValue(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => any_value::Value::StringValue(s.clone()),
        other => any_value::Value::StringValue(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::record::{Direction, RequestRecord};
    use crate::telemetry::trace::SpanContext;

    #[test]
    fn access_log_fields_become_body_and_attributes() {
        let mut r = RequestRecord::new(Direction::Inbound, "HTTP/1.1");
        r.method = Some(http::Method::GET);
        r.path = Some("/ratings/1".parse().unwrap());
        r.status = 200;
        r.span = Some(SpanContext {
            trace_id: 7,
            span_id: 9,
            ..SpanContext::default()
        });
        let end = r.start_time;
        let log = record(&Finished { record: r, end });
        let body = match log.body.unwrap().value.unwrap() {
            any_value::Value::StringValue(s) => s,
            other => panic!("{other:?}"),
        };
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["path"], "/ratings/1");
        assert_eq!(json["response_code"], 200);
        let code = log
            .attributes
            .iter()
            .find(|kv| kv.key == "response_code")
            .and_then(|kv| kv.value.clone()?.value);
        assert_eq!(code, Some(any_value::Value::IntValue(200)));
        // Null fields (no grpc_status, no peer identity) are left out.
        assert!(!log.attributes.iter().any(|kv| kv.key == "grpc_status"));
        assert!(
            !log.attributes
                .iter()
                .any(|kv| kv.key == "downstream_peer_uri_san")
        );
        // Whether the request came over mutual TLS, for the console's tap and log backends.
        assert_eq!(json["connection_security_policy"], "none");
        let policy = log
            .attributes
            .iter()
            .find(|kv| kv.key == "connection_security_policy")
            .and_then(|kv| kv.value.clone()?.value);
        assert_eq!(policy, Some(any_value::Value::StringValue("none".into())));
        assert_eq!(log.trace_id, 7u128.to_be_bytes());
        assert_eq!(log.span_id, 9u64.to_be_bytes());
    }
}
