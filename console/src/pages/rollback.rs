//! Rollback: a confirmation page showing what rolling back to a revision changes (GET), then
//! the rollback itself (POST), which writes the old configuration as a new revision.

use super::history::diff_lines;
use super::required_number;
use crate::backend::ConsoleBackend;
use crate::server::Params;
use crate::shell::{Nav, Page, PageError, messages_list};
use leptos::prelude::*;

pub async fn confirm(backend: &dyn ConsoleBackend, params: &Params) -> Result<Page, PageError> {
    let revision = required_number(params, "revision")?;
    let latest = backend.revisions(1).await?.first().map_or(0, |r| r.number);
    if revision == 0 {
        return Err(PageError::BadRequest(
            "revision 0 is the empty configuration; delete resources explicitly to remove them all"
                .into(),
        ));
    }
    let diff = backend.diff(latest, revision).await?;
    Ok(Page::new(
        Nav::Config,
        format!("Roll back to revision {revision}?"),
        view! {
            <p>
                {format!(
                    "The configuration of revision {revision} will be written as a new revision after {latest}. These are the changes:",
                )}
            </p>
            {diff_lines(&diff.unified)}
            <form method="post" action="/config/rollback" class="confirm">
                <input type="hidden" name="revision" value=revision.to_string() />
                <button type="submit" class="danger">{format!("Roll back to revision {revision}")}</button>
                <a href="/config/history">"Cancel"</a>
            </form>
        },
    ))
}

pub async fn submit(backend: &dyn ConsoleBackend, form: &Params) -> Result<Page, PageError> {
    let revision = required_number(form, "revision")?;
    if revision == 0 {
        return Err(PageError::BadRequest(
            "revision 0 is the empty configuration; delete resources explicitly to remove them all"
                .into(),
        ));
    }
    let result = backend.rollback(revision).await?;
    let outcome = match result.revision {
        Some(written) => view! {
            <p class="success" role="status">
                {format!("Rolled back to revision {revision}: written as revision {written}.")}
            </p>
            <p>
                <a href=format!("/config/history?from={}&to={written}", written - 1)>"See the changes"</a>
            </p>
        }
        .into_any(),
        None => view! {
            <p class="success" role="status">
                {format!("Nothing to do: the configuration already equals revision {revision}.")}
            </p>
        }
        .into_any(),
    };
    let changed = result
        .changed
        .iter()
        .map(|id| view! { <li><a href=super::resource_href(id)>{id.to_string()}</a></li> })
        .collect_view();
    let warnings =
        (!result.warnings.is_empty()).then(|| messages_list(&result.warnings, "warnings"));
    Ok(Page::new(
        Nav::Config,
        "Rollback done",
        view! {
            {outcome}
            <ul class="changed">{changed}</ul>
            {warnings}
            <p><a href="/config/history">"Back to the history"</a></p>
        },
    ))
}
