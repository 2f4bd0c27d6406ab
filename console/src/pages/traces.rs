//! Traces, as Jaeger's UI shows them but rendered on the server: `/traces` searches (service,
//! operation, tags, duration, time) and shows the results as a scatter plot and a table;
//! `/traces/{id}` is the waterfall of one trace with every span's details, and a link to the
//! same trace in an external Jaeger when one is configured.

mod form;
mod results;
mod scatter;
mod time;
mod waterfall;

pub use form::{Sort, parse_tags};
pub use results::trace_href;
pub use time::{format_duration, parse_duration};
pub use waterfall::tree_order;

use crate::backend::{BackendError, ConsoleBackend};
use crate::pages::param;
use crate::server::{AppState, Params};
use crate::shell::{Nav, Page, PageError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use form::{FieldErrors, SearchForm};
use leptos::prelude::*;

/// The pages' own styles, inside the body as the graph page does.
const CSS: &str = include_str!("traces/traces.css");

/// A Jaeger trace id, lower-cased: 16 or 32 hex digits (64- or 128-bit).
pub fn normalize_trace_id(text: &str) -> Result<String, String> {
    let id = text.trim().to_ascii_lowercase();
    if matches!(id.len(), 16 | 32) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(format!(
            "{:?} is not a trace id: use 16 or 32 hexadecimal digits, e.g. 4bf92f3577b34da6a3ce929d0e0e4736",
            text.chars().take(80).collect::<String>()
        ))
    }
}

/// Where the trace-id lookup form sends a person: `Some(Ok(href))` for a well-formed id,
/// `Some(Err(_))` for a bad one (the search page shows it next to the field), `None` when the
/// form was not used.
pub fn lookup(params: &Params) -> Option<Result<String, String>> {
    param(params, "traceId").map(|id| normalize_trace_id(id).map(|id| trace_href(&id)))
}

/// `/traces`: the search form, and the results when a service is chosen.
pub async fn search(
    backend: &dyn ConsoleBackend,
    params: &Params,
    now_us: i64,
) -> Result<Page, PageError> {
    let form = SearchForm::from_params(params);
    let mut services: Vec<String> = backend
        .services(None)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    services.sort();
    services.dedup();
    let lookup_error = match lookup(params) {
        Some(Err(e)) => Some(e),
        _ => None,
    };
    let (errors, results) = match form.parse(now_us) {
        Err(errors) => (errors, None),
        Ok(None) => (FieldErrors::new(), None),
        Ok(Some((query, sort))) => {
            let mut found = backend.find_traces(&query).await?;
            results::sort(&mut found, sort);
            (FieldErrors::new(), Some(found))
        }
    };
    let status = if errors.is_empty() && lookup_error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let results_view = match results {
        None if errors.is_empty() => Some(
            view! { <p class="empty">"Choose a service and press Find traces."</p> }.into_any(),
        ),
        None => None,
        Some(found) if found.is_empty() => Some(
            view! { <p class="empty" role="status">"No trace matches this search. Widen the lookback or remove a filter."</p> }
                .into_any(),
        ),
        Some(found) => {
            let heading = match found.len() {
                1 => "1 trace".to_string(),
                n => format!("{n} traces"),
            };
            Some(
                view! {
                    <section class="trace-found" aria-label="Results">
                        <h2 role="status">{heading}</h2>
                        <figure class="scatter-wrap" inner_html=scatter::svg(&found)></figure>
                        {results::table(&found)}
                    </section>
                }
                .into_any(),
            )
        }
    };
    Ok(Page::new(
        Nav::Traces,
        "Traces",
        view! {
            <style inner_html=CSS></style>
            {lookup_form(params.get("traceId").map(|s| s.as_str()).unwrap_or_default(), lookup_error)}
            {form::form_view(&form, &errors, &services, now_us)}
            {results_view}
        },
    )
    .with_status(status))
}

/// `/traces/{id}`: the waterfall. A malformed id is a 400 with the lookup form showing why; an
/// unknown one a 404.
pub async fn trace(
    backend: &dyn ConsoleBackend,
    id: &str,
    jaeger_ui_url: Option<&str>,
) -> Result<Page, PageError> {
    let id = match normalize_trace_id(id) {
        Ok(id) => id,
        Err(message) => {
            return Ok(Page::new(
                Nav::Traces,
                "Bad trace id",
                view! { <style inner_html=CSS></style> {lookup_form(id, Some(message))} },
            )
            .with_status(StatusCode::BAD_REQUEST));
        }
    };
    let trace = backend.trace(&id).await.map_err(|e| match e {
        BackendError::NotFound(_) => PageError::NotFound(format!(
            "No trace with id {id} is stored. It may have expired, or not been sampled."
        )),
        other => PageError::Backend(other),
    })?;
    let rows = waterfall::tree_order(&trace);
    let title = rows
        .first()
        .map(|r| format!("{}: {}", r.span.service, r.span.operation))
        .unwrap_or_else(|| format!("Trace {id}"));
    let jaeger = jaeger_ui_url.map(|url| format!("{}/trace/{id}", url.trim_end_matches('/')));
    Ok(Page::new(
        Nav::Traces,
        title,
        view! {
            <style inner_html=CSS></style>
            <p><a href="/traces">"← Search traces"</a></p>
            {waterfall::view(&trace, jaeger)}
        },
    ))
}

/// "Look up by trace ID", as in Jaeger's header; the message sits next to the field.
fn lookup_form(value: &str, error: Option<String>) -> impl IntoView + use<> {
    let invalid = error.is_some();
    let aria_invalid = invalid.then_some("true");
    let described = error.as_ref().map(|_| "traceId-error");
    view! {
        <form class="trace-lookup" method="get" action="/traces" aria-label="Look up a trace by id">
            <div class="field" class:field-invalid=invalid>
                <label for="traceId">"Trace ID"</label>
                <input type="text" id="traceId" name="traceId" value=value.to_string()
                    placeholder="4bf92f3577b34da6a3ce929d0e0e4736" spellcheck="false"
                    aria-invalid=aria_invalid aria-describedby=described />
                {error.map(|e| view! { <span class="field-error" id="traceId-error" role="alert">{e}</span> })}
            </div>
            <button type="submit">"Open trace"</button>
        </form>
    }
}

/// The handler of `/traces`: a well-formed id from the lookup form goes straight to its trace.
pub async fn search_handler(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
    if let Some(Ok(href)) = lookup(&params) {
        return Redirect::to(&href).into_response();
    }
    app.respond(search(&*app.backend, &params, now_us()).await)
}

/// The handler of `/traces/{id}`.
pub async fn trace_handler(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let jaeger = app.options.jaeger_ui_url.clone();
    app.respond(trace(&*app.backend, &id, jaeger.as_deref()).await)
}

/// The wall clock in microseconds since the epoch, for lookbacks.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
