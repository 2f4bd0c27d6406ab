//! The trace view: spans in tree order (each child under its parent, siblings by start time),
//! indented by depth, with bars placed on the trace's time axis. Each row opens with
//! `<details>` (no script) to its tags, process attributes, events and ids.

use super::time::{format_duration, format_utc, rfc3339};
use crate::model::{Span, Trace};
use leptos::prelude::*;
use std::collections::{HashMap, HashSet};

/// Service colours, in order of first appearance; none is red, which means "error".
const PALETTE: [&str; 9] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
    "#7f7f7f",
];

/// A span with its place in the tree.
pub struct Row<'a> {
    pub span: &'a Span,
    pub depth: usize,
}

/// Spans depth first from the roots. A span whose parent is not in the trace (not received
/// yet, or from outside the mesh) is a root; every span appears exactly once even if ids
/// repeat or form a cycle.
pub fn tree_order<'a>(trace: &'a Trace) -> Vec<Row<'a>> {
    let ids: HashSet<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, span) in trace.spans.iter().enumerate() {
        match span
            .parent_id
            .as_deref()
            .filter(|p| ids.contains(p) && *p != span.span_id)
        {
            Some(parent) => children.entry(parent).or_default().push(i),
            None => roots.push(i),
        }
    }
    let by_start = |list: &mut Vec<usize>| list.sort_by_key(|&i| trace.spans[i].start_us);
    by_start(&mut roots);
    children.values_mut().for_each(by_start);
    let mut rows = Vec::with_capacity(trace.spans.len());
    let mut seen = vec![false; trace.spans.len()];
    let visit = |start: usize, rows: &mut Vec<Row<'a>>, seen: &mut Vec<bool>| {
        let mut stack = vec![(start, 0)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            let span = &trace.spans[i];
            rows.push(Row { span, depth });
            if let Some(kids) = children.get(span.span_id.as_str()) {
                stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
            }
        }
    };
    for root in roots {
        visit(root, &mut rows, &mut seen);
    }
    // Spans only reachable through a cycle: shown as roots rather than lost.
    for i in 0..trace.spans.len() {
        if !seen[i] {
            visit(i, &mut rows, &mut seen);
        }
    }
    rows
}

/// The trace's start and length in microseconds (at least 1, to divide by).
pub fn bounds(trace: &Trace) -> (i64, u64) {
    let start = trace.spans.iter().map(|s| s.start_us).min().unwrap_or(0);
    let end = trace
        .spans
        .iter()
        .map(|s| s.start_us.saturating_add(s.duration_us as i64))
        .max()
        .unwrap_or(start);
    (start, (end - start).max(1) as u64)
}

/// A bar's `left` and `width` in percent of the trace, three decimals.
pub fn bar_style(span: &Span, (start, total): (i64, u64), colour: &str) -> String {
    let left = (span.start_us - start) as f64 / total as f64 * 100.0;
    let width = span.duration_us as f64 / total as f64 * 100.0;
    format!(
        "left:{:.3}%;width:{:.3}%;background:{colour}",
        left.clamp(0.0, 100.0),
        width.clamp(0.0, 100.0 - left.clamp(0.0, 100.0))
    )
}

/// The header facts, the axis, the legend and the rows.
pub fn view(trace: &Trace, jaeger_url: Option<String>) -> impl IntoView + use<> {
    let rows = tree_order(trace);
    let (start, total) = bounds(trace);
    let mut colours: HashMap<String, &'static str> = HashMap::new();
    let mut services: Vec<String> = Vec::new();
    for row in &rows {
        if !colours.contains_key(&row.span.service) {
            colours.insert(
                row.span.service.clone(),
                PALETTE[services.len() % PALETTE.len()],
            );
            services.push(row.span.service.clone());
        }
    }
    let depth = rows.iter().map(|r| r.depth + 1).max().unwrap_or(0);
    let errors = trace.spans.iter().filter(|s| s.error).count();
    let legend = services
        .iter()
        .map(|s| {
            let style = format!("background:{}", colours[s]);
            view! { <li><span class="swatch" style=style></span>{s.clone()}</li> }
        })
        .collect_view();
    let ticks = [0.0, 25.0, 50.0, 75.0, 100.0]
        .into_iter()
        .map(|p| {
            let label = format_duration((total as f64 * p / 100.0).round() as u64);
            let style = format!("left:{p}%");
            view! { <span class="tick" style=style>{label}</span> }
        })
        .collect_view();
    let row_views = rows
        .iter()
        .map(|row| span_row(row, (start, total), colours[&row.span.service]))
        .collect_view();
    let jaeger = jaeger_url.map(|url| {
        view! {
            <p class="links">
                <a class="button" href=url rel="noopener noreferrer" target="_blank">
                    "Open in Jaeger"
                </a>
            </p>
        }
    });
    view! {
        <section class="panel trace-header" aria-label="Trace summary">
            <dl class="facts">
                <dt>"Trace ID"</dt><dd><code>{trace.trace_id.clone()}</code></dd>
                <dt>"Started"</dt><dd><time datetime=rfc3339(start)>{format_utc(start)}</time></dd>
                <dt>"Duration"</dt><dd>{format_duration(total)}</dd>
                <dt>"Services"</dt><dd>{format!("{} ({})", services.len(), services.join(", "))}</dd>
                <dt>"Depth"</dt><dd>{depth}</dd>
                <dt>"Total spans"</dt><dd>{trace.spans.len()}</dd>
                <dt>"Errors"</dt><dd>{errors}</dd>
            </dl>
            {jaeger}
        </section>
        <ul class="legend" aria-label="Service colours">{legend}</ul>
        <div class="waterfall">
            <div class="waterfall-axis" aria-hidden="true">
                <span class="span-label">"Service: operation"</span>
                <span class="span-track">{ticks}</span>
            </div>
            <ol class="spans">{row_views}</ol>
        </div>
    }
}

fn span_row(row: &Row<'_>, bounds: (i64, u64), colour: &str) -> impl IntoView + use<> {
    let span = row.span;
    let offset = format_duration((span.start_us - bounds.0).max(0) as u64);
    let duration = format_duration(span.duration_us);
    let style = format!("--depth:{}", row.depth);
    let label_style = format!("border-left-color:{colour}");
    let error = span
        .error
        .then(|| view! { <span class="span-error" title="This span failed">"⚠ error"</span> });
    let kind = if span.kind.is_empty() {
        "unspecified".to_string()
    } else {
        span.kind.clone()
    };
    let events = (!span.events.is_empty()).then(|| {
        let items = span
            .events
            .iter()
            .map(|e| {
                let at = format_duration((e.time_us - bounds.0).max(0) as u64);
                view! {
                    <li>
                        <span class="event-time">{at}</span>
                        " "
                        <strong>{e.name.clone()}</strong>
                        {attributes(&e.attributes)}
                    </li>
                }
            })
            .collect_view();
        view! { <h3>"Events"</h3><ul class="events">{items}</ul> }
    });
    view! {
        <li class="span-row" class:span-failed=span.error data-depth=row.depth style=style>
            <details>
                <summary>
                    <span class="span-label" style=label_style>
                        <strong>{span.service.clone()}</strong>
                        ": "
                        {span.operation.clone()}
                        {error}
                    </span>
                    <span class="span-track">
                        <span class="span-bar" style=bar_style(span, bounds, colour)></span>
                        <span class="span-duration">{duration.clone()}</span>
                    </span>
                </summary>
                <div class="span-details">
                    <dl class="facts">
                        <dt>"Span ID"</dt><dd><code>{span.span_id.clone()}</code></dd>
                        <dt>"Parent"</dt><dd><code>{span.parent_id.clone().unwrap_or_else(|| "none (root)".into())}</code></dd>
                        <dt>"Kind"</dt><dd>{kind}</dd>
                        <dt>"Start"</dt><dd>{format!("+{offset}")}</dd>
                        <dt>"Duration"</dt><dd>{duration}</dd>
                    </dl>
                    <h3>"Tags"</h3>
                    {attributes(&span.tags)}
                    <h3>"Process"</h3>
                    {attributes(&span.resource)}
                    {events}
                </div>
            </details>
        </li>
    }
}

/// Key–value attributes as a small table; "none" when empty.
fn attributes(pairs: &[(String, String)]) -> AnyView {
    if pairs.is_empty() {
        return view! { <p class="muted">"none"</p> }.into_any();
    }
    let rows = pairs
        .iter()
        .map(|(k, v)| view! { <tr><th scope="row"><code>{k.clone()}</code></th><td><code>{v.clone()}</code></td></tr> })
        .collect_view();
    view! { <table class="attributes"><tbody>{rows}</tbody></table> }.into_any()
}
