//! The graph page's query string: reading it into a [`GraphQuery`] with messages that name the
//! bad parameter (a 400 page), and writing it back into links (focus a node, keep the rest).
//!
//! Parameters, Kiali's names where Kiali has one: `graphType`, `namespaces` (comma-separated),
//! `duration` (`60s`, `10m`, `1h`, `1d` or whole seconds), `end` (the replay window's end:
//! `YYYY-MM-DDTHH:MM[:SS]` in UTC as a `datetime-local` field sends it, or unix milliseconds),
//! `edges` (edge labels), `find`, `hide`, `injectServiceNodes` (`true`/`false`), `focus`
//! (`node:<id>` or `edge:<id>`). Empty values count as absent (untouched form fields).

use super::model::{EdgeLabel, Focus, GraphQuery, GraphType};
use std::collections::HashMap;

/// The longest window: what the control plane answers.
pub const MAX_DURATION_SECS: u64 = 7 * 24 * 3600;
/// Longest find/hide expression accepted.
pub const MAX_EXPRESSION_CHARS: usize = 500;
/// How far ahead of the server's clock `end` may be (browser clock skew).
const FUTURE_SLACK_MS: i64 = 60_000;

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Reads the query string, checking `end` against the system clock.
pub fn parse_graph_query(params: &HashMap<String, String>) -> Result<GraphQuery, String> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    parse_graph_query_at(params, now_ms)
}

/// Reads the query string; `now_ms` is the server's clock (unix milliseconds).
pub fn parse_graph_query_at(
    params: &HashMap<String, String>,
    now_ms: i64,
) -> Result<GraphQuery, String> {
    let mut query = GraphQuery::default();
    if let Some(t) = param(params, "graphType") {
        query.graph_type = GraphType::parse(t).ok_or_else(|| {
            format!("`graphType` must be one of workload, app, versionedApp, service; got {t:?}")
        })?;
    }
    if let Some(list) = param(params, "namespaces") {
        let mut namespaces = Vec::new();
        for ns in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !is_dns_label(ns) {
                return Err(format!(
                    "`namespaces`: {ns:?} is not a namespace name (lowercase letters, digits and \
                     '-', at most 63)"
                ));
            }
            namespaces.push(ns.to_string());
        }
        namespaces.sort();
        namespaces.dedup();
        query.namespaces = namespaces;
    }
    if let Some(d) = param(params, "duration") {
        query.duration_secs = parse_duration(d)?;
    }
    if let Some(end) = param(params, "end") {
        let ms = parse_end(end)?;
        if ms > now_ms + FUTURE_SLACK_MS {
            return Err(format!(
                "`end` {end:?} is in the future; leave it empty for now"
            ));
        }
        query.query_time_ms = Some(ms);
    }
    if let Some(l) = param(params, "edges") {
        query.edge_label = EdgeLabel::parse(l).ok_or_else(|| {
            let names: Vec<&str> = EdgeLabel::ALL.iter().map(|l| l.as_str()).collect();
            format!("`edges` must be one of {}; got {l:?}", names.join(", "))
        })?;
    }
    for (name, slot) in [("find", &mut query.find), ("hide", &mut query.hide)] {
        if let Some(text) = param(params, name) {
            if text.chars().count() > MAX_EXPRESSION_CHARS {
                return Err(format!(
                    "`{name}` is longer than {MAX_EXPRESSION_CHARS} characters"
                ));
            }
            *slot = text.to_string();
        }
    }
    match param(params, "injectServiceNodes") {
        None | Some("true") => query.inject_service_nodes = true,
        Some("false") => query.inject_service_nodes = false,
        Some(other) => {
            return Err(format!(
                "`injectServiceNodes` must be true or false, got {other:?}"
            ));
        }
    }
    if let Some(f) = param(params, "focus") {
        query.focus = Some(match f.split_once(':') {
            Some(("node", id)) if !id.is_empty() => Focus::Node(id.to_string()),
            Some(("edge", id)) if !id.is_empty() => Focus::Edge(id.to_string()),
            _ => return Err(format!("`focus` must be node:<id> or edge:<id>, got {f:?}")),
        });
    }
    Ok(query)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `60s`, `10m`, `1h`, `1d` or whole seconds; 1 s to 7 days.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("`duration` must be like 60s, 10m, 1h or whole seconds, got {text:?}");
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(scale).ok_or_else(bad)?;
    if secs == 0 {
        return Err("`duration` must be at least 1s".to_string());
    }
    if secs > MAX_DURATION_SECS {
        return Err("`duration` must be at most 7 days".to_string());
    }
    Ok(secs)
}

/// A short duration for the select and links: `90s`, `5m`, `1h`.
pub fn format_duration(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DDTHH:MM[:SS]` (UTC; a trailing `Z` is allowed) or unix milliseconds.
pub fn parse_end(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "`end` must be a UTC date and time like 2026-11-21T10:30 or unix milliseconds, got {text:?}"
        )
    };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    let t = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = t.split_once(['T', ' ']).ok_or_else(bad)?;
    let num = |s: &str, len: usize| -> Result<i64, String> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let d: Vec<&str> = date.split('-').collect();
    let h: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || !(2..=3).contains(&h.len()) {
        return Err(bad());
    }
    let (year, month, day) = (num(d[0], 4)?, num(d[1], 2)?, num(d[2], 2)?);
    let (hour, minute) = (num(h[0], 2)?, num(h[1], 2)?);
    let second = if h.len() == 3 { num(h[2], 2)? } else { 0 };
    let days_in_month = days_from_civil(year + (month == 12) as i64, month % 12 + 1, 1)
        - days_from_civil(year, month, 1);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(format!("`end` {text:?} is not a real date and time"));
    }
    Ok(((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC: what a `datetime-local` field shows.
pub fn format_end(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/graph?…` for `query` with `focus` instead of its own; defaults are left out.
pub fn graph_href(query: &GraphQuery, focus: Option<&Focus>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let default = GraphQuery::default();
    if query.graph_type != default.graph_type {
        parts.push(format!("graphType={}", query.graph_type.as_str()));
    }
    if !query.namespaces.is_empty() {
        parts.push(format!(
            "namespaces={}",
            encode(&query.namespaces.join(","))
        ));
    }
    if query.duration_secs != default.duration_secs {
        parts.push(format!("duration={}", format_duration(query.duration_secs)));
    }
    if let Some(ms) = query.query_time_ms {
        parts.push(format!("end={}", encode(&format_end(ms))));
    }
    if query.edge_label != default.edge_label {
        parts.push(format!("edges={}", query.edge_label.as_str()));
    }
    if !query.find.is_empty() {
        parts.push(format!("find={}", encode(&query.find)));
    }
    if !query.hide.is_empty() {
        parts.push(format!("hide={}", encode(&query.hide)));
    }
    if !query.inject_service_nodes {
        parts.push("injectServiceNodes=false".to_string());
    }
    if let Some(f) = focus {
        parts.push(format!("focus={}", encode(&f.param())));
    }
    if parts.is_empty() {
        "/graph".to_string()
    } else {
        format!("/graph?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NOW: i64 = 1_763_720_000_000; // 2025-11-21T10:13:20Z

    fn parse(pairs: &[(&str, &str)]) -> Result<GraphQuery, String> {
        parse_graph_query_at(&params(pairs), NOW)
    }

    #[test]
    fn defaults_and_empty_fields() {
        let q = parse(&[("graphType", ""), ("end", ""), ("find", "  ")]).unwrap();
        assert_eq!(q, GraphQuery::default());
    }

    #[test]
    fn reads_every_parameter() {
        let q = parse(&[
            ("graphType", "versionedApp"),
            ("namespaces", "shop, bookinfo,shop"),
            ("duration", "10m"),
            ("end", "2025-11-21T09:30"),
            ("edges", "p95"),
            ("find", "rt > 100"),
            ("hide", "namespace=shop"),
            ("injectServiceNodes", "false"),
            ("focus", "node:service:shop/cart"),
        ])
        .unwrap();
        assert_eq!(q.graph_type, GraphType::VersionedApp);
        assert_eq!(q.namespaces, ["bookinfo", "shop"]);
        assert_eq!(q.duration_secs, 600);
        assert_eq!(q.query_time_ms, Some(1_763_717_400_000));
        assert_eq!(q.edge_label, EdgeLabel::P95);
        assert_eq!(
            (q.find.as_str(), q.hide.as_str()),
            ("rt > 100", "namespace=shop")
        );
        assert!(!q.inject_service_nodes);
        assert_eq!(q.focus, Some(Focus::Node("service:shop/cart".to_string())));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let cases: &[(&str, &str, &str)] = &[
            ("graphType", "flow", "`graphType` must be one of"),
            (
                "namespaces",
                "Shop",
                "`namespaces`: \"Shop\" is not a namespace name",
            ),
            ("duration", "5x", "`duration` must be like"),
            ("duration", "0", "at least 1s"),
            ("duration", "8d", "at most 7 days"),
            (
                "duration",
                "99999999999999999999",
                "`duration` must be like",
            ),
            ("end", "yesterday", "`end` must be a UTC date"),
            ("end", "2025-02-30T10:00", "not a real date"),
            ("end", "2030-01-01T00:00", "in the future"),
            (
                "edges",
                "colour",
                "`edges` must be one of none, rate, share",
            ),
            (
                "injectServiceNodes",
                "yes",
                "`injectServiceNodes` must be true or false",
            ),
            (
                "focus",
                "cluster:x",
                "`focus` must be node:<id> or edge:<id>",
            ),
        ];
        for (name, value, message) in cases {
            let err = parse(&[(name, value)]).unwrap_err();
            assert!(err.contains(message), "{name}={value}: {err}");
        }
        let long = "a".repeat(MAX_EXPRESSION_CHARS + 1);
        assert!(
            parse(&[("find", &long)])
                .unwrap_err()
                .contains("`find` is longer")
        );
    }

    #[test]
    fn end_round_trips() {
        for ms in [0, NOW, 951_782_400_000 /* 2000-02-29 */] {
            let text = format_end(ms);
            assert_eq!(parse_end(&text), Ok(ms - ms % 1000), "{text}");
        }
        assert_eq!(format_end(NOW), "2025-11-21T10:13:20");
        assert_eq!(parse_end("2025-11-21T10:13:20Z"), Ok(NOW));
        assert_eq!(parse_end("1763720000000"), Ok(NOW));
    }

    #[test]
    fn href_keeps_the_query_and_encodes() {
        let q = parse(&[
            ("namespaces", "bookinfo"),
            ("duration", "300"),
            ("find", "app = reviews && rt > 1"),
            ("focus", "node:x"),
        ])
        .unwrap();
        let edge = Focus::Edge("a>b:http".to_string());
        assert_eq!(
            graph_href(&q, Some(&edge)),
            "/graph?namespaces=bookinfo&duration=5m&find=app%20%3D%20reviews%20%26%26%20rt%20%3E%201\
             &focus=edge%3Aa%3Eb%3Ahttp"
        );
        assert_eq!(graph_href(&GraphQuery::default(), None), "/graph");
    }
}
