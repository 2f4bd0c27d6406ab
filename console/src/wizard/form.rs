//! The wizard's form: its fields are plain form values (what the operator typed is shown back
//! unchanged), read into a [`Change`] with a message per field that is wrong, filled in from the
//! stored resources, and the validator's messages mapped back to the fields they concern.

use super::generate::{
    Change, CircuitBreaker, Fault, MatchOn, MatchRule, Retries, Timeouts, has_match,
};
use crate::model::Diagnostic;
use crate::server::Params;
use serde_json::Value;
use std::collections::BTreeMap;
use trellis_api::duration::parse_ms;

/// The wizard's sections, as Kiali's service actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Weights,
    Routing,
    Fault,
    Timeouts,
    CircuitBreaking,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Weights,
        Tab::Routing,
        Tab::Fault,
        Tab::Timeouts,
        Tab::CircuitBreaking,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Tab::Weights => "weights",
            Tab::Routing => "routing",
            Tab::Fault => "fault",
            Tab::Timeouts => "timeouts",
            Tab::CircuitBreaking => "circuit-breaking",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Tab::Weights => "Weighted routing",
            Tab::Routing => "Request routing",
            Tab::Fault => "Fault injection",
            Tab::Timeouts => "Timeouts and retries",
            Tab::CircuitBreaking => "Circuit breaking",
        }
    }

    pub fn parse(slug: Option<&str>) -> Result<Tab, String> {
        match slug {
            None => Ok(Tab::Weights),
            Some(s) => Tab::ALL.into_iter().find(|t| t.slug() == s).ok_or_else(|| {
                let known: Vec<&str> = Tab::ALL.iter().map(|t| t.slug()).collect();
                format!("`tab` must be one of {}, got {s:?}", known.join(", "))
            }),
        }
    }

    /// Whether a form field (or field group) belongs to this section.
    fn owns(self, key: &str) -> bool {
        match self {
            Tab::Weights => key == "weights" || key.starts_with("weight."),
            Tab::Routing => key == "default" || key.starts_with("rule"),
            Tab::Fault => key.starts_with("delay.") || key.starts_with("abort."),
            Tab::Timeouts => key == "timeout" || key.starts_with("retries."),
            Tab::CircuitBreaking => key.starts_with("cb."),
        }
    }
}

/// Messages by form field name (or group: `weights`, `rule0`).
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Rows shown for new match rules below the existing ones.
pub const BLANK_RULES: usize = 2;

/// The circuit breaker's fields: form name, where it sits under `trafficPolicy`, what it is.
pub const CB_FIELDS: [(&str, &str, &str); 8] = [
    (
        "cb.maxConnections",
        "/connectionPool/tcp/maxConnections",
        "Maximum TCP connections to each host",
    ),
    (
        "cb.http1MaxPendingRequests",
        "/connectionPool/http/http1MaxPendingRequests",
        "Maximum requests waiting for a connection",
    ),
    (
        "cb.maxRequestsPerConnection",
        "/connectionPool/http/maxRequestsPerConnection",
        "Maximum requests per connection (1 turns keep-alive off)",
    ),
    (
        "cb.http2MaxRequests",
        "/connectionPool/http/http2MaxRequests",
        "Maximum concurrent requests to the service",
    ),
    (
        "cb.consecutive5xxErrors",
        "/outlierDetection/consecutive5xxErrors",
        "5xx answers in a row before a host is ejected",
    ),
    (
        "cb.interval",
        "/outlierDetection/interval",
        "How often hosts are checked (e.g. 10s)",
    ),
    (
        "cb.baseEjectionTime",
        "/outlierDetection/baseEjectionTime",
        "Minimum ejection time (e.g. 30s)",
    ),
    (
        "cb.maxEjectionPercent",
        "/outlierDetection/maxEjectionPercent",
        "Most hosts ejected at once, in percent",
    ),
];

fn text<'a>(form: &'a Params, name: &str) -> Option<&'a str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn refuse(errors: &mut FieldErrors, key: impl Into<String>, message: impl Into<String>) {
    errors.entry(key.into()).or_default().push(message.into());
}

/// Reads the section's fields; every wrong field gets its message.
pub fn read(tab: Tab, form: &Params, versions: &[String]) -> Result<Change, FieldErrors> {
    let mut errors = FieldErrors::new();
    let change = match tab {
        Tab::Weights => Change::Weights(read_weights(form, versions, &mut errors)),
        Tab::Routing => read_routing(form, versions, &mut errors),
        Tab::Fault => Change::Fault(read_fault(form, &mut errors)),
        Tab::Timeouts => Change::Timeouts(read_timeouts(form, &mut errors)),
        Tab::CircuitBreaking => Change::CircuitBreaking(read_circuit_breaker(form, &mut errors)),
    };
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}

fn read_weights(
    form: &Params,
    versions: &[String],
    errors: &mut FieldErrors,
) -> Vec<(String, u32)> {
    if versions.is_empty() {
        refuse(
            errors,
            "weights",
            "No workload behind this service has a `version` label, so there are no versions to split traffic between.",
        );
        return Vec::new();
    }
    let mut weights = Vec::new();
    for version in versions {
        let name = format!("weight.{version}");
        match text(form, &name).map(str::parse::<u32>) {
            None => weights.push((version.clone(), 0)),
            Some(Ok(w)) if w <= 100 => weights.push((version.clone(), w)),
            Some(_) => refuse(
                errors,
                name,
                format!("the weight of {version} must be a whole number from 0 to 100"),
            ),
        }
    }
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    if errors.is_empty() && total != 100 {
        refuse(
            errors,
            "weights",
            format!("The weights add up to {total} %; they must total 100 %."),
        );
    }
    weights
}

/// How many rule rows the form carries (`rule0.*`, `rule1.*`, ...).
pub fn rule_rows(form: &Params) -> usize {
    (0..)
        .take_while(|i| form.contains_key(&format!("rule{i}.on")))
        .count()
}

fn read_routing(form: &Params, versions: &[String], errors: &mut FieldErrors) -> Change {
    let mut rules = Vec::new();
    for i in 0..rule_rows(form) {
        let field = |f: &str| text(form, &format!("rule{i}.{f}"));
        let key = format!("rule{i}");
        let (Some(value), header) = (field("value"), field("header")) else {
            if field("header").is_some() {
                refuse(errors, key, "give the value the header must match");
            }
            continue;
        };
        let op = field("op").unwrap_or("exact");
        if !matches!(op, "exact" | "prefix" | "regex") {
            refuse(
                errors,
                &key,
                format!("the match must be exact, prefix or regex, got {op:?}"),
            );
        }
        let on = match field("on") {
            Some("uri") => {
                if op == "regex" {
                    refuse(errors, &key, "a URI matches by exact path or by prefix");
                }
                if !value.starts_with('/') {
                    refuse(errors, &key, "a URI starts with `/`");
                }
                MatchOn::Uri
            }
            _ => match header {
                None => {
                    refuse(errors, &key, "name the header to match");
                    continue;
                }
                Some(h) if !valid_header_name(h) => {
                    refuse(
                        errors,
                        &key,
                        format!("header {h:?}: Istio takes lowercase letters, digits and `-`"),
                    );
                    continue;
                }
                Some(h) => MatchOn::Header(h.to_string()),
            },
        };
        let version = match field("version") {
            Some(v) if versions.iter().any(|known| known == v) => v.to_string(),
            Some(v) => {
                refuse(
                    errors,
                    &key,
                    format!("{v:?} is not a version of this service"),
                );
                continue;
            }
            None => {
                refuse(errors, &key, "choose the version these requests go to");
                continue;
            }
        };
        rules.push(MatchRule {
            on,
            op: op.to_string(),
            value: value.to_string(),
            version,
        });
    }
    let default = match text(form, "default") {
        None => None,
        Some(v) if versions.iter().any(|known| known == v) => Some(v.to_string()),
        Some(v) => {
            refuse(
                errors,
                "default",
                format!("{v:?} is not a version of this service"),
            );
            None
        }
    };
    Change::Routing { rules, default }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn checked(form: &Params, name: &str) -> bool {
    text(form, name).is_some_and(|v| v != "off" && v != "false")
}

fn percent(form: &Params, name: &str, errors: &mut FieldErrors) -> Option<f64> {
    match text(form, name).map(str::parse::<f64>) {
        Some(Ok(p)) if p > 0.0 && p <= 100.0 => Some(p),
        _ => {
            refuse(errors, name, "a percentage above 0 and at most 100");
            None
        }
    }
}

fn duration(form: &Params, name: &str, errors: &mut FieldErrors) -> Option<String> {
    let value = text(form, name)?;
    match parse_ms(value) {
        Ok(ms) if ms > 0 => Some(value.to_string()),
        Ok(_) => {
            refuse(errors, name, "must be at least 1ms");
            None
        }
        Err(e) => {
            refuse(errors, name, e);
            None
        }
    }
}

fn required_duration(form: &Params, name: &str, errors: &mut FieldErrors) -> Option<String> {
    if text(form, name).is_none() {
        refuse(errors, name, "required, e.g. 5s or 200ms");
        return None;
    }
    duration(form, name, errors)
}

fn whole(form: &Params, name: &str, min: u64, max: u64, errors: &mut FieldErrors) -> Option<u64> {
    match text(form, name).map(str::parse::<u64>)? {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            let message = if max == u64::MAX {
                format!("a whole number of {min} or more")
            } else {
                format!("a whole number from {min} to {max}")
            };
            refuse(errors, name, message);
            None
        }
    }
}

fn read_fault(form: &Params, errors: &mut FieldErrors) -> Fault {
    let delay = checked(form, "delay.enabled").then(|| {
        let p = percent(form, "delay.percent", errors);
        let d = required_duration(form, "delay.fixed", errors);
        p.zip(d)
    });
    let abort = checked(form, "abort.enabled").then(|| {
        let p = percent(form, "abort.percent", errors);
        let status = whole(form, "abort.status", 200, 599, errors);
        if text(form, "abort.status").is_none() {
            refuse(
                errors,
                "abort.status",
                "required: the HTTP status to answer, e.g. 503",
            );
        }
        p.zip(status.map(|s| s as u32))
    });
    Fault {
        delay: delay.flatten(),
        abort: abort.flatten(),
    }
}

fn read_timeouts(form: &Params, errors: &mut FieldErrors) -> Timeouts {
    let timeout = duration(form, "timeout", errors);
    let attempts = whole(form, "retries.attempts", 0, 100, errors);
    let per_try_timeout = duration(form, "retries.perTryTimeout", errors);
    let retry_on = text(form, "retries.retryOn").map(str::to_string);
    let retries = match attempts {
        Some(attempts) => Some(Retries {
            attempts: attempts as u32,
            per_try_timeout,
            retry_on,
        }),
        None if per_try_timeout.is_some() || retry_on.is_some() => {
            refuse(errors, "retries.attempts", "set how many attempts to retry");
            None
        }
        None => None,
    };
    Timeouts { timeout, retries }
}

fn read_circuit_breaker(form: &Params, errors: &mut FieldErrors) -> CircuitBreaker {
    let count = |name: &str, errors: &mut FieldErrors| whole(form, name, 1, u64::MAX, errors);
    CircuitBreaker {
        max_connections: count("cb.maxConnections", errors),
        http1_max_pending_requests: count("cb.http1MaxPendingRequests", errors),
        max_requests_per_connection: count("cb.maxRequestsPerConnection", errors),
        http2_max_requests: count("cb.http2MaxRequests", errors),
        consecutive_5xx_errors: whole(form, "cb.consecutive5xxErrors", 0, u64::MAX, errors),
        interval: duration(form, "cb.interval", errors),
        base_ejection_time: duration(form, "cb.baseEjectionTime", errors),
        max_ejection_percent: whole(form, "cb.maxEjectionPercent", 0, 100, errors),
    }
}

/// The form as the stored resources say, so a section opens showing what is in force.
pub fn prefill(vs: Option<&Value>, dr: Option<&Value>, versions: &[String]) -> Params {
    let mut form = Params::new();
    let routes: Vec<Value> = vs
        .and_then(|v| v.pointer("/spec/http"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    prefill_weights(&mut form, &routes, versions);
    let mut rows = 0;
    for route in routes.iter().filter(|r| has_match(r)) {
        if let Some(rule) = rule_of(route) {
            for (field, value) in rule {
                form.insert(format!("rule{rows}.{field}"), value);
            }
            rows += 1;
        }
    }
    for i in rows..rows + BLANK_RULES {
        form.insert(format!("rule{i}.on"), "header".into());
    }
    if let Some(fault) = routes.iter().find_map(|r| r.get("fault")) {
        if let Some(delay) = fault.get("delay") {
            form.insert("delay.enabled".into(), "on".into());
            put(
                &mut form,
                "delay.percent",
                delay.pointer("/percentage/value"),
            );
            put(&mut form, "delay.fixed", delay.get("fixedDelay"));
        }
        if let Some(abort) = fault.get("abort") {
            form.insert("abort.enabled".into(), "on".into());
            put(
                &mut form,
                "abort.percent",
                abort.pointer("/percentage/value"),
            );
            put(&mut form, "abort.status", abort.get("httpStatus"));
        }
    }
    put(
        &mut form,
        "timeout",
        routes.iter().find_map(|r| r.get("timeout")),
    );
    if let Some(retries) = routes.iter().find_map(|r| r.get("retries")) {
        put(&mut form, "retries.attempts", retries.get("attempts"));
        put(
            &mut form,
            "retries.perTryTimeout",
            retries.get("perTryTimeout"),
        );
        put(&mut form, "retries.retryOn", retries.get("retryOn"));
    }
    if let Some(policy) = dr.and_then(|d| d.pointer("/spec/trafficPolicy")) {
        for (name, pointer, _) in CB_FIELDS {
            put(&mut form, name, policy.pointer(pointer));
        }
    }
    form
}

/// Weights of the default route; an even split when there is none to read.
fn prefill_weights(form: &mut Params, routes: &[Value], versions: &[String]) {
    let destinations: Vec<(String, u64)> = routes
        .iter()
        .find(|r| !has_match(r))
        .and_then(|r| r.get("route"))
        .and_then(Value::as_array)
        .map(|ds| {
            let single = ds.len() == 1;
            ds.iter()
                .filter_map(|d| {
                    let subset = d.pointer("/destination/subset")?.as_str()?.to_string();
                    let weight = d.get("weight").and_then(Value::as_u64);
                    Some((subset, weight.unwrap_or(if single { 100 } else { 0 })))
                })
                .collect()
        })
        .unwrap_or_default();
    if destinations.is_empty() {
        let n = versions.len() as u64;
        for (i, version) in versions.iter().enumerate() {
            let share = 100 / n + u64::from((i as u64) < 100 % n);
            form.insert(format!("weight.{version}"), share.to_string());
        }
    } else {
        for version in versions {
            let weight = destinations
                .iter()
                .find(|(s, _)| s == version)
                .map_or(0, |(_, w)| *w);
            form.insert(format!("weight.{version}"), weight.to_string());
        }
    }
}

/// A match route the form can show: its first condition on a header or the URI.
fn rule_of(route: &Value) -> Option<Vec<(&'static str, String)>> {
    let condition = route.pointer("/match/0")?;
    let version = route
        .pointer("/route/0/destination/subset")?
        .as_str()?
        .to_string();
    let (on, header, string_match) = if let Some(uri) = condition.get("uri") {
        ("uri", String::new(), uri)
    } else {
        let (name, m) = condition.get("headers")?.as_object()?.iter().next()?;
        ("header", name.clone(), m)
    };
    let (op, value) = string_match.as_object()?.iter().next()?;
    Some(vec![
        ("on", on.to_string()),
        ("header", header),
        ("op", op.clone()),
        ("value", value.as_str()?.to_string()),
        ("version", version),
    ])
}

fn put(form: &mut Params, name: &str, value: Option<&Value>) {
    let text = match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        _ => return,
    };
    form.insert(name.to_string(), text);
}

/// The form field a validator message concerns, when it is one of `tab`'s; `None` puts it
/// above the form. `rules` is how many match routes precede the default route.
pub fn field_of(diagnostic: &Diagnostic, tab: Tab, rules: usize) -> Option<String> {
    let path = diagnostic.field.as_deref()?;
    let plain: String = strip_indices(path);
    let last = plain.rsplit('.').next().unwrap_or_default();
    let key = if plain.contains("trafficPolicy.connectionPool")
        || plain.contains("trafficPolicy.outlierDetection")
    {
        format!("cb.{last}")
    } else if plain.contains("fault.delay") {
        if last == "fixedDelay" {
            "delay.fixed"
        } else if plain.contains("percent") {
            "delay.percent"
        } else {
            "delay.fixed"
        }
        .to_string()
    } else if plain.contains("fault.abort") {
        if plain.contains("percent") {
            "abort.percent"
        } else {
            "abort.status"
        }
        .to_string()
    } else if plain.contains(".retries") {
        match last {
            "perTryTimeout" => "retries.perTryTimeout",
            "retryOn" => "retries.retryOn",
            _ => "retries.attempts",
        }
        .to_string()
    } else if last == "timeout" {
        "timeout".to_string()
    } else if let Some(i) = http_index(path).filter(|i| *i < rules && tab == Tab::Routing) {
        format!("rule{i}")
    } else if plain.starts_with("spec.http") && tab == Tab::Routing {
        "default".to_string()
    } else if plain.starts_with("spec.http") || plain.starts_with("spec.subsets") {
        "weights".to_string()
    } else {
        return None;
    };
    tab.owns(&key).then_some(key)
}

fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn http_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("spec.http[")?;
    rest.split(']').next()?.parse().ok()
}
