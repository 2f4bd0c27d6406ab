//! Search results: sorted as Jaeger sorts them, drawn as a scatter plot and listed in a table.

use super::form::Sort;
use super::time::{format_duration, format_utc, rfc3339};
use crate::model::TraceSummary;
use crate::pages::encode;
use leptos::prelude::*;

/// The trace's own page.
pub fn trace_href(trace_id: &str) -> String {
    format!("/traces/{}", encode(trace_id))
}

/// Orders results in place; ties keep the newest first so the order is stable.
pub fn sort(traces: &mut [TraceSummary], sort: Sort) {
    traces.sort_by(|a, b| {
        let newest = b.start_us.cmp(&a.start_us);
        match sort {
            Sort::MostRecent => newest,
            Sort::Longest => b.duration_us.cmp(&a.duration_us).then(newest),
            Sort::Shortest => a.duration_us.cmp(&b.duration_us).then(newest),
            Sort::MostSpans => b.spans.cmp(&a.spans).then(newest),
        }
    });
}

/// The results table, one row per trace in the given order.
pub fn table(traces: &[TraceSummary]) -> impl IntoView + use<> {
    let rows = traces
        .iter()
        .map(|t| {
            let errors = (t.errors > 0).then(|| {
                let word = if t.errors == 1 { "error" } else { "errors" };
                view! { <span class="badge state-nacked">{format!("{} {word}", t.errors)}</span> }
            });
            let services = t.services.join(", ");
            let failed = t.errors > 0;
            view! {
                <tr class:trace-error=failed>
                    <th scope="row">
                        <a href=trace_href(&t.trace_id)>
                            {format!("{}: {}", t.root_service, t.root_operation)}
                        </a>
                        <code class="trace-id">{t.trace_id[..t.trace_id.len().min(7)].to_string()}</code>
                    </th>
                    <td class="num">{t.spans}</td>
                    <td>{format!("{} ({services})", t.services.len())}</td>
                    <td>{errors.map_or_else(|| view! { <span class="muted">"none"</span> }.into_any(), |e| e.into_any())}</td>
                    <td class="num">{format_duration(t.duration_us)}</td>
                    <td><time datetime=rfc3339(t.start_us)>{format_utc(t.start_us)}</time></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table class="trace-results">
                <thead>
                    <tr>
                        <th scope="col">"Trace"</th>
                        <th scope="col">"Spans"</th>
                        <th scope="col">"Services"</th>
                        <th scope="col">"Errors"</th>
                        <th scope="col">"Duration"</th>
                        <th scope="col">"Started"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}
