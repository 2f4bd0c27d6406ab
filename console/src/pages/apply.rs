//! Edit and apply YAML: the form (prefilled with a resource when `?kind=&namespace=&name=`
//! name one), validation on request, and apply through the same path as `trellis apply`. An
//! invalid edit is refused with its messages next to the field; nothing is written.

use super::config::parse_kind;
use super::{param, resource_href};
use crate::backend::{BackendError, ConsoleBackend};
use crate::model::{ApplyResult, Diagnostic, ResourceRef};
use crate::server::Params;
use crate::shell::{Nav, Page, PageError, messages_list};
use axum::http::StatusCode;
use leptos::prelude::*;

/// Largest YAML the form accepts, in bytes (a few hundred resources).
const MAX_YAML_BYTES: usize = 1024 * 1024;

pub async fn form(backend: &dyn ConsoleBackend, params: &Params) -> Result<Page, PageError> {
    let names = (
        param(params, "kind"),
        param(params, "namespace"),
        param(params, "name"),
    );
    let yaml = match names {
        (Some(kind), Some(namespace), Some(name)) => {
            let id = ResourceRef {
                kind: parse_kind(kind)?,
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            backend.resource(&id).await?.yaml
        }
        (None, None, None) => String::new(),
        _ => {
            return Err(PageError::BadRequest(
                "to edit a resource give all of `kind`, `namespace` and `name`".into(),
            ));
        }
    };
    Ok(editor(&yaml, None))
}

pub async fn submit(backend: &dyn ConsoleBackend, form: &Params) -> Result<Page, PageError> {
    let yaml = form.get("yaml").map(String::as_str).unwrap_or_default();
    if yaml.trim().is_empty() {
        let empty = [Diagnostic::error(
            "the YAML is empty: paste one or more resources",
        )];
        return Ok(editor(yaml, Some(&empty)).with_status(StatusCode::BAD_REQUEST));
    }
    if yaml.len() > MAX_YAML_BYTES {
        return Err(PageError::BadRequest(format!(
            "the YAML is {} bytes; the console accepts at most {MAX_YAML_BYTES}",
            yaml.len()
        )));
    }
    match param(form, "action").unwrap_or("apply") {
        "validate" => {
            let messages = backend.validate(yaml).await?;
            let status = if messages.iter().any(Diagnostic::is_error) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            Ok(editor(yaml, Some(&messages)).with_status(status))
        }
        "apply" => {
            let author = param(form, "author").unwrap_or("console");
            match backend.apply(yaml, author).await {
                Ok(result) => Ok(applied(result)),
                Err(BackendError::Invalid(messages)) => {
                    Ok(editor(yaml, Some(&messages)).with_status(StatusCode::UNPROCESSABLE_ENTITY))
                }
                Err(e) => Err(e.into()),
            }
        }
        other => Err(PageError::BadRequest(format!(
            "`action` must be `validate` or `apply`, got {other:?}"
        ))),
    }
}

/// The form; `messages` (when the YAML was checked) go right under the field it describes.
fn editor(yaml: &str, messages: Option<&[Diagnostic]>) -> Page {
    let has_errors = messages.is_some_and(|m| m.iter().any(Diagnostic::is_error));
    let summary = messages.map(|m| {
        let text = if has_errors {
            "Refused: fix the errors below. Nothing was applied."
        } else if m.is_empty() {
            "Valid: no messages."
        } else {
            "Valid, with warnings."
        };
        let class = if has_errors {
            "notice notice-error"
        } else {
            "notice"
        };
        view! { <p class=class role="alert">{text}</p> }
    });
    let list = messages.map(|m| messages_list(m, "yaml-messages"));
    let described = messages.map(|_| "yaml-messages");
    Page::new(
        Nav::Config,
        "Apply YAML",
        view! {
            <form method="post" action="/config/apply" class="editor">
                <label for="yaml">"Resources (YAML, several documents separated by ---)"</label>
                {summary}
                <textarea
                    id="yaml"
                    name="yaml"
                    rows="24"
                    spellcheck="false"
                    aria-invalid=has_errors.to_string()
                    aria-describedby=described
                >
                    {yaml.to_string()}
                </textarea>
                {list}
                <div class="actions">
                    <button type="submit" name="action" value="validate">"Validate"</button>
                    <button type="submit" name="action" value="apply" class="primary">"Apply"</button>
                    <a href="/config">"Cancel"</a>
                </div>
            </form>
        },
    )
}

fn applied(result: ApplyResult) -> Page {
    let headline = match result.revision {
        Some(n) => format!("Applied as revision {n}."),
        None => "Nothing changed: the configuration already says this.".to_string(),
    };
    let changed = result
        .changed
        .iter()
        .map(|id| view! { <li><a href=resource_href(id)>{id.to_string()}</a></li> })
        .collect_view();
    let warnings =
        (!result.warnings.is_empty()).then(|| messages_list(&result.warnings, "warnings"));
    Page::new(
        Nav::Config,
        "Applied",
        view! {
            <p class="success" role="status">{headline}</p>
            <ul class="changed">{changed}</ul>
            {warnings}
            <p><a href="/config/history">"See the history"</a></p>
        },
    )
}
