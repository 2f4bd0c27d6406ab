//! The trace search form: its fields as typed (so a refused search shows them again), their
//! parsing into a [`TraceQuery`], and the form itself with each message next to its field.

use super::time::{format_local_field, parse_duration, parse_local_field};
use crate::model::TraceQuery;
use crate::pages::param;
use crate::server::Params;
use leptos::prelude::*;
use std::collections::BTreeMap;

/// Results per search unless the form says otherwise; Jaeger's UI default.
pub const DEFAULT_LIMIT: usize = 20;
/// Jaeger's UI refuses more.
pub const MAX_LIMIT: usize = 1500;

/// How far back a search looks.
pub const LOOKBACKS: [(&str, &str, i64); 4] = [
    ("15m", "Last 15 minutes", 15 * 60),
    ("1h", "Last hour", 3600),
    ("6h", "Last 6 hours", 6 * 3600),
    ("custom", "Custom range", 0),
];

/// How results are ordered, as Jaeger's "Sort" menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    MostRecent,
    Longest,
    Shortest,
    MostSpans,
}

impl Sort {
    pub const ALL: [Sort; 4] = [
        Sort::MostRecent,
        Sort::Longest,
        Sort::Shortest,
        Sort::MostSpans,
    ];

    pub fn param(self) -> &'static str {
        match self {
            Sort::MostRecent => "recent",
            Sort::Longest => "longest",
            Sort::Shortest => "shortest",
            Sort::MostSpans => "most-spans",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::MostRecent => "Most recent",
            Sort::Longest => "Longest first",
            Sort::Shortest => "Shortest first",
            Sort::MostSpans => "Most spans",
        }
    }
}

/// The form's fields as the person typed them.
#[derive(Debug, Clone, Default)]
pub struct SearchForm {
    pub service: String,
    pub operation: String,
    pub tags: String,
    pub min_duration: String,
    pub max_duration: String,
    pub lookback: String,
    pub start: String,
    pub end: String,
    pub limit: String,
    pub sort: String,
}

/// A field's name and why its value was refused.
pub type FieldErrors = BTreeMap<&'static str, String>;

impl SearchForm {
    pub fn from_params(params: &Params) -> SearchForm {
        let get = |name: &str| param(params, name).unwrap_or_default().to_string();
        SearchForm {
            service: get("service"),
            operation: get("operation"),
            tags: get("tags"),
            min_duration: get("minDuration"),
            max_duration: get("maxDuration"),
            lookback: param(params, "lookback").unwrap_or("1h").to_string(),
            start: get("start"),
            end: get("end"),
            limit: get("limit"),
            sort: get("sort"),
        }
    }

    /// The search to run (`None` until a service is chosen, as Jaeger requires one), or every
    /// refused field with its message.
    pub fn parse(&self, now_us: i64) -> Result<Option<(TraceQuery, Sort)>, FieldErrors> {
        let mut errors = FieldErrors::new();
        let tags = check(&mut errors, "tags", parse_tags(&self.tags));
        let min = check(
            &mut errors,
            "minDuration",
            optional(&self.min_duration, parse_duration),
        );
        let max = check(
            &mut errors,
            "maxDuration",
            optional(&self.max_duration, parse_duration),
        );
        let limit = check(&mut errors, "limit", parse_limit(&self.limit));
        let sort = check(&mut errors, "sort", parse_sort(&self.sort));
        let window = match LOOKBACKS.iter().find(|(v, ..)| *v == self.lookback) {
            Some(("custom", ..)) => {
                let start = check(&mut errors, "start", required_time(&self.start, "start"));
                let end = check(&mut errors, "end", optional(&self.end, parse_local_field));
                match (start, end) {
                    (Some(s), Some(Some(e))) if e < s => {
                        errors.insert("end", "the end is before the start".into());
                        None
                    }
                    // The end minute is included, as a person reads "to 10:05".
                    (Some(s), Some(e)) => Some((s, e.map_or(now_us, |e| e + 59_999_999))),
                    _ => None,
                }
            }
            Some((_, _, seconds)) => Some((now_us - seconds * 1_000_000, now_us)),
            None => {
                errors.insert("lookback", format!("unknown lookback {:?}", self.lookback));
                None
            }
        };
        if let (Some(Some(min)), Some(Some(max))) = (min, max)
            && max < min
        {
            errors.insert("maxDuration", "the maximum is below the minimum".into());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if self.service.is_empty() {
            return Ok(None);
        }
        let (start, end) = window.unwrap_or_default();
        Ok(Some((
            TraceQuery {
                service: self.service.clone(),
                operation: (!self.operation.is_empty()).then(|| self.operation.clone()),
                tags: tags.unwrap_or_default(),
                min_duration_us: min.flatten(),
                max_duration_us: max.flatten(),
                start_us: Some(start),
                end_us: Some(end),
                limit: limit.unwrap_or(DEFAULT_LIMIT),
            },
            sort.unwrap_or(Sort::MostRecent),
        )))
    }
}

/// The value, or `None` with the field's message recorded.
fn check<T>(errors: &mut FieldErrors, field: &'static str, result: Result<T, String>) -> Option<T> {
    result.map_err(|e| errors.insert(field, e)).ok()
}

fn optional<T>(text: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    (!text.is_empty()).then(|| parse(text)).transpose()
}

fn required_time(text: &str, name: &str) -> Result<i64, String> {
    if text.is_empty() {
        return Err(format!("a custom range needs a {name} time"));
    }
    parse_local_field(text)
}

fn parse_limit(text: &str) -> Result<usize, String> {
    if text.is_empty() {
        return Ok(DEFAULT_LIMIT);
    }
    match text.parse::<usize>() {
        Ok(n @ 1..=MAX_LIMIT) => Ok(n),
        _ => Err(format!(
            "the limit must be a whole number from 1 to {MAX_LIMIT}, got {text:?}"
        )),
    }
}

fn parse_sort(text: &str) -> Result<Sort, String> {
    if text.is_empty() {
        return Ok(Sort::MostRecent);
    }
    Sort::ALL
        .into_iter()
        .find(|s| s.param() == text)
        .ok_or_else(|| {
            format!("unknown sort {text:?}: use recent, longest, shortest or most-spans")
        })
}

/// Jaeger's tag syntax (logfmt): `key=value` pairs separated by spaces, a value with spaces in
/// double quotes (`error=true http.route="/a b"`).
pub fn parse_tags(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .filter(|(k, _)| !k.is_empty() && !k.contains(char::is_whitespace))
            .ok_or_else(|| {
                let word = rest.split_whitespace().next().unwrap_or(rest);
                format!("{word:?} is not key=value (separate tags with spaces, e.g. error=true http.response.status_code=503)")
            })?;
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let close = quoted
                .find('"')
                .ok_or_else(|| format!("the value of {key:?} has no closing quote"))?;
            (&quoted[..close], &quoted[close + 1..])
        } else {
            after.split_at(after.find(char::is_whitespace).unwrap_or(after.len()))
        };
        tags.push((key.to_string(), value.to_string()));
        rest = after.trim_start();
    }
    Ok(tags)
}

/// The form, filled with what was typed; each refused field is marked and followed by its
/// message. `services` offers the known ones; a typed unknown service stays selected.
pub fn form_view(
    form: &SearchForm,
    errors: &FieldErrors,
    services: &[String],
    now_us: i64,
) -> impl IntoView + use<> {
    let mut names = services.to_vec();
    if !form.service.is_empty() && !names.contains(&form.service) {
        names.push(form.service.clone());
    }
    let service_options = names
        .into_iter()
        .map(|name| {
            let selected = name == form.service;
            view! { <option value=name.clone() selected=selected>{name.clone()}</option> }
        })
        .collect_view();
    let lookback_options = LOOKBACKS
        .iter()
        .map(|(value, label, _)| {
            let selected = *value == form.lookback;
            view! { <option value=*value selected=selected>{*label}</option> }
        })
        .collect_view();
    let sort_options = Sort::ALL
        .into_iter()
        .map(|s| {
            let selected =
                s.param() == form.sort || (form.sort.is_empty() && s == Sort::MostRecent);
            view! { <option value=s.param() selected=selected>{s.label()}</option> }
        })
        .collect_view();
    let start = if form.start.is_empty() && form.lookback == "custom" {
        format_local_field(now_us - 3_600_000_000)
    } else {
        form.start.clone()
    };
    let field = |name: &'static str, label: &'static str, hint: &'static str, input: AnyView| {
        let error = errors.get(name).cloned();
        let invalid = error.is_some();
        let id = format!("{name}-error");
        view! {
            <div class="field" class:field-invalid=invalid>
                <label for=name>{label}</label>
                {input}
                {(!hint.is_empty()).then(|| view! { <span class="field-hint">{hint}</span> })}
                {error.map(|e| view! { <span class="field-error" id=id role="alert">{e}</span> })}
            </div>
        }
    };
    let text = |name: &'static str, value: &str, placeholder: &'static str| {
        let invalid = errors.contains_key(name).then_some("true");
        let described = invalid.map(|_| format!("{name}-error"));
        view! {
            <input type="text" id=name name=name value=value.to_string() placeholder=placeholder
                aria-invalid=invalid aria-describedby=described />
        }
        .into_any()
    };
    let local = |name: &'static str, value: &str| {
        let invalid = errors.contains_key(name).then_some("true");
        let described = invalid.map(|_| format!("{name}-error"));
        view! {
            <input type="datetime-local" id=name name=name value=value.to_string()
                aria-invalid=invalid aria-describedby=described />
        }
        .into_any()
    };
    let no_service = (services.is_empty() && form.service.is_empty())
        .then(|| view! { <p class="empty">"No service has reported spans yet."</p> });
    view! {
        <form class="trace-search panel" method="get" action="/traces" aria-label="Find traces">
            {no_service}
            <div class="trace-fields">
                {field("service", "Service", "", view! {
                    <select id="service" name="service" required>
                        <option value="" selected=form.service.is_empty()>"Choose a service"</option>
                        {service_options}
                    </select>
                }.into_any())}
                {field("operation", "Operation", "empty: all", text("operation", &form.operation, "GET /reviews/{id}"))}
                {field("tags", "Tags", "key=value, space-separated", text("tags", &form.tags, "error=true http.response.status_code=503"))}
                {field("minDuration", "Min duration", "e.g. 100ms, 1.5s", text("minDuration", &form.min_duration, "100ms"))}
                {field("maxDuration", "Max duration", "", text("maxDuration", &form.max_duration, "1.5s"))}
                {field("lookback", "Lookback", "", view! {
                    <select id="lookback" name="lookback">{lookback_options}</select>
                }.into_any())}
                {field("start", "From (UTC)", "custom range", local("start", &start))}
                {field("end", "To (UTC)", "custom range; empty: now", local("end", &form.end))}
                {field("limit", "Limit", "", text("limit", &form.limit, "20"))}
                {field("sort", "Sort", "", view! {
                    <select id="sort" name="sort">{sort_options}</select>
                }.into_any())}
            </div>
            <button type="submit" class="primary">"Find traces"</button>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_jaeger_logfmt() {
        assert_eq!(
            parse_tags(r#"error=true  http.route="/a b" x="#),
            Ok(vec![
                ("error".into(), "true".into()),
                ("http.route".into(), "/a b".into()),
                ("x".into(), String::new()),
            ])
        );
        assert!(
            parse_tags("error")
                .unwrap_err()
                .contains("\"error\" is not key=value")
        );
        assert!(
            parse_tags(r#"a="open"#)
                .unwrap_err()
                .contains("no closing quote")
        );
    }

    #[test]
    fn bad_fields_are_all_reported_by_name() {
        let form = SearchForm {
            service: "reviews".into(),
            min_duration: "2s".into(),
            max_duration: "1s".into(),
            limit: "0".into(),
            lookback: "custom".into(),
            ..SearchForm::default()
        };
        let errors = form.parse(0).unwrap_err();
        assert_eq!(
            errors.keys().copied().collect::<Vec<_>>(),
            ["limit", "maxDuration", "start"]
        );
    }
}
