//! `/metrics` in Prometheus' text format 0.0.4, from prometheus-client's OpenMetrics output.
//!
//! OpenMetrics names a counter family without `_total` (`# TYPE x counter`, samples `x_total`);
//! the 0.0.4 format, which `promtool check metrics` and older scrapers read, names the family as
//! its samples. So counter `HELP`/`TYPE` lines get the `_total` name, and the OpenMetrics-only
//! `# EOF` and `# UNIT` lines are left out. Everything else passes through unchanged.

/// The content type of what [`to_prometheus`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as Prometheus 0.0.4 text.
pub fn to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Held until the TYPE line says whether the family is a counter.
            if let Some(previous) = help.replace(rest) {
                push_line(&mut out, &format!("# HELP {previous}"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                push_line(&mut out, &format!("# HELP {name} {text}"));
            }
            push_line(&mut out, &format!("# TYPE {name} {kind}"));
            continue;
        }
        if let Some(h) = help.take() {
            push_line(&mut out, &format!("# HELP {h}"));
        }
        push_line(&mut out, line);
    }
    if let Some(h) = help {
        push_line(&mut out, &format!("# HELP {h}"));
    }
    out
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_as_their_samples() {
        let om = "# HELP req Requests.\n# TYPE req counter\nreq_total{a=\"b\"} 3\n\
                  # HELP up Up.\n# TYPE up gauge\n# UNIT up seconds\nup 1\n# EOF\n";
        assert_eq!(
            to_prometheus(om),
            "# HELP req_total Requests.\n# TYPE req_total counter\nreq_total{a=\"b\"} 3\n\
             # HELP up Up.\n# TYPE up gauge\nup 1\n"
        );
    }
}
