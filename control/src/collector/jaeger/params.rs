//! Query parameters of the Jaeger query API, parsed as Jaeger's own query service does: times
//! in microseconds since the epoch, durations in Go's syntax (`1.5s`, `100ms`, `1h30m`), tags as
//! a JSON object (`tags={"http.status_code":"500"}`, what Jaeger UI and Grafana send) or repeated
//! `tag=key:value`.

/// A raw query string, keys possibly repeated.
pub type Query = [(String, String)];

/// Default search window when neither `start` nor `lookback` is given.
const DEFAULT_LOOKBACK_US: i64 = 3_600_000_000;
/// Default and largest number of traces a search returns.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1500;

/// A `GET /api/traces` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceSearch {
    pub service: String,
    pub operation: Option<String>,
    pub tags: Vec<(String, String)>,
    pub start_us: i64,
    pub end_us: i64,
    pub min_duration_us: Option<i64>,
    pub max_duration_us: Option<i64>,
    pub limit: usize,
    /// `traceID=...` (repeatable): fetch these traces instead of searching.
    pub trace_ids: Vec<String>,
}

fn all<'a>(query: &'a Query, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    query
        .iter()
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The last non-empty value of `key`.
pub fn one<'a>(query: &'a Query, key: &'a str) -> Option<&'a str> {
    all(query, key).filter(|v| !v.is_empty()).last()
}

fn integer(query: &Query, key: &str) -> Result<Option<i64>, String> {
    one(query, key)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|e| format!("unable to parse param '{key}': {v:?}: {e}"))
        })
        .transpose()
}

fn duration(query: &Query, key: &str) -> Result<Option<i64>, String> {
    one(query, key)
        .map(|v| go_duration_us(v).map_err(|e| format!("unable to parse param '{key}': {e}")))
        .transpose()
}

/// A Go duration (`300ms`, `1.5s`, `2h45m`; Jaeger's syntax) in microseconds.
pub fn go_duration_us(text: &str) -> Result<i64, String> {
    let nanos = trellis_api::duration::parse_nanos(text)?;
    i64::try_from(nanos / 1000).map_err(|_| format!("duration `{text}` is too long"))
}

/// `tags={json object}` and `tag=key:value` pairs.
fn tags(query: &Query) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for text in all(query, "tags").filter(|t| !t.is_empty()) {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| format!("malformed 'tags' parameter {text:?}: {e}"))?;
        for (key, value) in object {
            let value = match value {
                serde_json::Value::String(s) => s,
                other @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)) => {
                    other.to_string()
                }
                other => {
                    return Err(format!(
                        "malformed 'tags' parameter: the value of {key:?} must be a string, got {other}"
                    ));
                }
            };
            out.push((key, value));
        }
    }
    for pair in all(query, "tag") {
        let (key, value) = pair
            .split_once(':')
            .ok_or_else(|| format!("malformed 'tag' parameter {pair:?}: expected key:value"))?;
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// A lowercase 32-hex trace id from Jaeger's form (1 to 32 hex digits, leading zeros optional).
pub fn trace_id(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "malformed trace ID {text:?}: expected up to 32 hexadecimal digits"
        ));
    }
    Ok(format!("{:0>32}", text.to_ascii_lowercase()))
}

impl TraceSearch {
    /// Parses `/api/traces` parameters; `now_us` is the default end of the window.
    pub fn parse(query: &Query, now_us: i64) -> Result<TraceSearch, String> {
        let trace_ids = all(query, "traceID")
            .filter(|t| !t.is_empty())
            .map(trace_id)
            .collect::<Result<Vec<_>, _>>()?;
        let service = one(query, "service").unwrap_or_default().to_string();
        if service.is_empty() && trace_ids.is_empty() {
            return Err("parameter 'service' is required".into());
        }
        let end_us = integer(query, "end")?.unwrap_or(now_us);
        let start_us = match integer(query, "start")? {
            Some(start) => start,
            None => end_us - duration(query, "lookback")?.unwrap_or(DEFAULT_LOOKBACK_US),
        };
        if start_us > end_us {
            return Err("'start' must not be after 'end'".into());
        }
        let min_duration_us = duration(query, "minDuration")?;
        let max_duration_us = duration(query, "maxDuration")?;
        if let (Some(min), Some(max)) = (min_duration_us, max_duration_us)
            && max < min
        {
            return Err("'maxDuration' should be greater than 'minDuration'".into());
        }
        let limit = match integer(query, "limit")? {
            None | Some(0) => DEFAULT_LIMIT,
            Some(n) if n < 0 => return Err(format!("'limit' must not be negative, got {n}")),
            Some(n) => (n as usize).min(MAX_LIMIT),
        };
        Ok(TraceSearch {
            service,
            operation: one(query, "operation").map(str::to_string),
            tags: tags(query)?,
            start_us,
            end_us,
            min_duration_us,
            max_duration_us,
            limit,
            trace_ids,
        })
    }
}

/// `/api/dependencies`: `endTs` and `lookback` in milliseconds; the window in microseconds.
pub fn dependencies_window(query: &Query, now_ms: i64) -> Result<(i64, i64), String> {
    let end_ms = integer(query, "endTs")?.unwrap_or(now_ms);
    let lookback_ms = integer(query, "lookback")?.unwrap_or(24 * 3_600_000);
    if lookback_ms < 0 {
        return Err(format!(
            "'lookback' must not be negative, got {lookback_ms}"
        ));
    }
    Ok((
        end_ms.saturating_sub(lookback_ms).saturating_mul(1000),
        end_ms.saturating_mul(1000),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_us("100ms"), Ok(100_000));
        assert_eq!(go_duration_us("1.5s"), Ok(1_500_000));
        assert_eq!(go_duration_us("1h30m"), Ok(5_400_000_000));
        assert_eq!(go_duration_us("250us"), Ok(250));
        assert_eq!(go_duration_us("0"), Ok(0));
        assert!(go_duration_us("10").is_err());
        assert!(go_duration_us("1d").is_err());
        assert!(go_duration_us("").is_err());
    }

    #[test]
    fn search_parameters() {
        let s = TraceSearch::parse(
            &q(&[
                ("service", "cart"),
                ("operation", "GET /"),
                ("tags", r#"{"http.status_code":"500","error":true}"#),
                ("tag", "a:b:c"),
                ("start", "10"),
                ("end", "20"),
                ("minDuration", "1ms"),
                ("maxDuration", "2s"),
                ("limit", "5"),
            ]),
            0,
        )
        .unwrap();
        assert_eq!(s.operation.as_deref(), Some("GET /"));
        assert_eq!(
            s.tags,
            [
                ("error".to_string(), "true".to_string()),
                ("http.status_code".into(), "500".into()),
                ("a".into(), "b:c".into())
            ]
        );
        assert_eq!((s.start_us, s.end_us, s.limit), (10, 20, 5));
        assert_eq!(
            (s.min_duration_us, s.max_duration_us),
            (Some(1000), Some(2_000_000))
        );

        let d = TraceSearch::parse(&q(&[("service", "x"), ("lookback", "2h")]), 10_000_000_000)
            .unwrap();
        assert_eq!(
            (d.start_us, d.end_us, d.limit),
            (10_000_000_000 - 7_200_000_000, 10_000_000_000, 100)
        );
    }

    #[test]
    fn bad_parameters_name_what_is_wrong() {
        let err = |pairs: &[(&str, &str)]| TraceSearch::parse(&q(pairs), 0).unwrap_err();
        assert_eq!(err(&[]), "parameter 'service' is required");
        assert!(err(&[("service", "x"), ("start", "abc")]).contains("'start'"));
        assert!(err(&[("service", "x"), ("minDuration", "fast")]).contains("'minDuration'"));
        assert!(err(&[("service", "x"), ("tags", "{nope")]).contains("'tags'"));
        assert!(
            err(&[
                ("service", "x"),
                ("minDuration", "2s"),
                ("maxDuration", "1s")
            ])
            .contains("maxDuration")
        );
        assert!(err(&[("traceID", "xyz")]).contains("malformed trace ID"));
    }

    #[test]
    fn short_trace_ids_are_padded() {
        assert_eq!(trace_id("ABC").unwrap(), format!("{}abc", "0".repeat(29)));
    }
}
