//! Config history: revisions newest first, and the diff between two of them
//! (`?from=&to=`), each with a link to roll back.

use super::number_param;
use crate::backend::ConsoleBackend;
use crate::model::RevisionSummary;
use crate::server::Params;
use crate::shell::{Nav, Page, PageError};
use leptos::prelude::*;

/// How many revisions the page lists (`?limit=` changes it).
const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 1000;

pub async fn render(backend: &dyn ConsoleBackend, params: &Params) -> Result<Page, PageError> {
    let limit = number_param(params, "limit")?.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(PageError::BadRequest(format!(
            "`limit` must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    let from = number_param(params, "from")?;
    let to = number_param(params, "to")?;
    let pair = match (from, to) {
        (Some(f), Some(t)) => Some((f, t)),
        (None, None) => None,
        _ => {
            let missing = if from.is_none() { "from" } else { "to" };
            return Err(PageError::BadRequest(format!(
                "`{missing}` is required when comparing revisions"
            )));
        }
    };
    let revisions = backend.revisions(limit as usize).await?;
    let diff = match pair {
        Some((from, to)) => Some(backend.diff(from, to).await?),
        None => None,
    };
    let latest = revisions.first().map_or(0, |r| r.number);
    let diff_view = diff.map(|d| {
        view! {
            <section class="panel" aria-labelledby="diff-title">
                <h2 id="diff-title">{format!("Changes from revision {} to {}", d.from, d.to)}</h2>
                {diff_lines(&d.unified)}
            </section>
        }
    });
    let rows = revisions.iter().map(|r| row(r, latest)).collect_view();
    Ok(Page::new(
        Nav::Config,
        "Config history",
        view! {
            <form class="filters" method="get" action="/config/history">
                <label>"From revision " <input type="number" name="from" min="0" value=from.map(|f| f.to_string()).unwrap_or_default() /></label>
                <label>"To revision " <input type="number" name="to" min="0" value=to.map(|t| t.to_string()).unwrap_or_default() /></label>
                <button type="submit">"Compare"</button>
            </form>
            {diff_view}
            <div class="table-wrap">
                <table>
                    <thead>
                        <tr>
                            <th scope="col">"Revision"</th>
                            <th scope="col">"Time"</th>
                            <th scope="col">"Author"</th>
                            <th scope="col">"Summary"</th>
                            <th scope="col">"Actions"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        },
    ))
}

fn row(r: &RevisionSummary, latest: u64) -> impl IntoView + use<> {
    let n = r.number;
    let compare = (n > 0).then(|| {
        view! { <a href=format!("/config/history?from={}&to={n}", n - 1)>"Changes"</a> }
    });
    let rollback = (n > 0 && n < latest).then(|| {
        view! { <a href=format!("/config/rollback?revision={n}")>"Roll back to this"</a> }
    });
    let current =
        (n == latest).then(|| view! { <span class="badge state-synced">"current"</span> });
    view! {
        <tr>
            <th scope="row">{n}" "{current}</th>
            <td><time datetime=r.time.clone()>{r.time.clone()}</time></td>
            <td>{r.author.clone()}</td>
            <td>{r.summary.clone()}</td>
            <td class="row-actions">{compare}" "{rollback}</td>
        </tr>
    }
}

/// A unified diff with each line classed as added, removed, hunk header or context.
pub fn diff_lines(unified: &str) -> impl IntoView + use<> {
    if unified.trim().is_empty() {
        return view! { <p class="empty">"No differences."</p> }.into_any();
    }
    let lines = unified
        .lines()
        .map(|line| {
            let class = if line.starts_with("+++") || line.starts_with("---") {
                "diff-file"
            } else if line.starts_with('+') {
                "diff-add"
            } else if line.starts_with('-') {
                "diff-del"
            } else if line.starts_with("@@") {
                "diff-hunk"
            } else {
                "diff-ctx"
            };
            view! { <span class=class>{format!("{line}\n")}</span> }
        })
        .collect_view();
    view! { <pre class="diff"><code>{lines}</code></pre> }.into_any()
}
