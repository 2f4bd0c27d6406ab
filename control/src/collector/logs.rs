//! OTLP log records flattened into storage rows. A record with a trace or span id of the wrong
//! length is rejected (OTLP partial success); ids are optional otherwise.

use super::json;
use super::spans::{UNKNOWN_SERVICE, micros};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use trellis_api::time::now_millis;

/// One log record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub time_us: i64,
    pub observed_us: i64,
    pub severity_number: i64,
    pub severity_text: String,
    /// A string body as is; any other body as JSON.
    pub body: String,
    /// JSON object.
    pub attributes: String,
    /// JSON object of the resource's attributes.
    pub resource: String,
    pub service: String,
    pub scope_name: String,
    pub trace_id: String,
    pub span_id: String,
}

/// What became of a request's log records.
#[derive(Debug, Default)]
pub struct LogRows {
    pub rows: Vec<LogRow>,
    pub rejected: usize,
    pub first_error: Option<String>,
}

/// Counts the log records of a request.
pub fn count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Flattens a request into rows.
pub fn rows(request: &ExportLogsServiceRequest) -> LogRows {
    let now_us = now_millis().saturating_mul(1000);
    let mut out = LogRows {
        rows: Vec::with_capacity(count(request)),
        ..LogRows::default()
    };
    for resource_logs in &request.resource_logs {
        let attributes = resource_logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let service = json::string_attribute(attributes, "service.name").unwrap_or(UNKNOWN_SERVICE);
        let resource = json::object(attributes);
        for scope_logs in &resource_logs.scope_logs {
            let scope_name = scope_logs
                .scope
                .as_ref()
                .map(|s| s.name.as_str())
                .unwrap_or_default();
            for record in &scope_logs.log_records {
                match row(record, now_us) {
                    Ok(mut row) => {
                        row.service = json::column_text(service);
                        row.resource = resource.clone();
                        row.scope_name = json::column_text(scope_name);
                        out.rows.push(row);
                    }
                    Err(why) => {
                        out.rejected += 1;
                        out.first_error
                            .get_or_insert_with(|| format!("log record of {service:?}: {why}"));
                    }
                }
            }
        }
    }
    out
}

/// An optional id: empty (or all zeroes) for none, else exactly `len` bytes.
fn optional_id(bytes: &[u8], len: usize, what: &str) -> Result<String, String> {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return Ok(String::new());
    }
    if bytes.len() != len {
        return Err(format!(
            "{what} must be empty or {len} bytes, got {} bytes",
            bytes.len()
        ));
    }
    Ok(hex::encode(bytes))
}

fn row(record: &LogRecord, now_us: i64) -> Result<LogRow, String> {
    let trace_id = optional_id(&record.trace_id, 16, "trace_id")?;
    let span_id = optional_id(&record.span_id, 8, "span_id")?;
    let observed_us = match record.observed_time_unix_nano {
        0 => now_us,
        nanos => micros(nanos),
    };
    let time_us = match record.time_unix_nano {
        0 => observed_us,
        nanos => micros(nanos),
    };
    let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => json::column_text(s),
        Some(_) => {
            let mut text = String::new();
            json::push_value(&mut text, record.body.as_ref());
            text
        }
        None => String::new(),
    };
    Ok(LogRow {
        time_us,
        observed_us,
        severity_number: i64::from(record.severity_number),
        severity_text: json::column_text(&record.severity_text),
        body,
        attributes: json::object(&record.attributes),
        resource: String::new(),
        service: String::new(),
        scope_name: String::new(),
        trace_id,
        span_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    #[test]
    fn records_become_rows_and_bad_ids_are_rejected() {
        let good = LogRecord {
            time_unix_nano: 5_000_000,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue("GET /x 200".into())),
            }),
            attributes: vec![KeyValue {
                key: "code".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(200)),
                }),
                ..Default::default()
            }],
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            ..Default::default()
        };
        let bad = LogRecord {
            trace_id: vec![7; 3],
            ..good.clone()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("web.default".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![good, bad],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = rows(&request);
        assert_eq!((out.rows.len(), out.rejected), (1, 1));
        let row = &out.rows[0];
        assert_eq!(row.time_us, 5000);
        assert_eq!(row.body, "GET /x 200");
        assert_eq!(row.attributes, r#"{"code":200}"#);
        assert_eq!(row.service, "web.default");
        assert_eq!(row.trace_id, "07".repeat(16));
        assert!(
            out.first_error
                .unwrap()
                .contains("trace_id must be empty or 16 bytes")
        );
    }
}
