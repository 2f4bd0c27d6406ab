//! The Proxies page's live tap: `/proxies/tap` shows the requests proxies report, newest
//! first. Without script it lists the last few (read from the tap for a moment); with script
//! the table fills live from `/proxies/tap/events`, server-sent events whose data is a
//! ready-made (escaped) table row. A tap is bounded: at most [`MAX_PER_SECOND`] events a
//! second (the rest dropped and counted on the page) and [`MAX_DURATION`] long; it stops as
//! soon as the browser goes.

use crate::backend::ConsoleBackend;
use crate::model::{TapEvent, TapFilter};
use crate::pages::{encode, param};
use crate::server::{AppState, Params};
use crate::shell::{Nav, Page, PageError};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{BoxStream, Stream, StreamExt};
use leptos::prelude::*;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;

/// Events a second a tap passes on; a browser table cannot be read faster anyway.
pub const MAX_PER_SECOND: u32 = 20;
/// How long one tap stream lasts; the page offers to start again.
pub const MAX_DURATION: Duration = Duration::from_secs(5 * 60);
/// Rows the page renders before any script runs.
pub const FIRST_ROWS: usize = 20;
/// How long the page waits for those rows.
const FIRST_ROWS_WAIT: Duration = Duration::from_millis(300);

const CSS: &str = "\
.tap-status { font-weight: 600; }
.tap-status[data-state=live] { color: var(--ok); }
.tap-table td { white-space: nowrap; }
.tap-table .tap-path { white-space: normal; overflow-wrap: anywhere; }
.status-error { color: var(--bad); font-weight: 700; }
.field { display: flex; flex-direction: column; gap: 2px; }
.field label { font-weight: 600; font-size: 13px; }
.field-error { color: var(--bad); font-size: 13px; font-weight: 600; }
";

/// The filter from `?namespace=&workload=`; a malformed name is refused with its field.
pub fn filter(params: &Params) -> Result<TapFilter, (&'static str, String)> {
    let name = |field: &'static str| -> Result<Option<String>, (&'static str, String)> {
        match param(params, field) {
            None => Ok(None),
            Some(v)
                if v.len() <= 253
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
            {
                Ok(Some(v.to_string()))
            }
            Some(v) => Err((
                field,
                format!("{v:?} is not a {field} name (letters, digits, '-', '.', '_')"),
            )),
        }
    };
    Ok(TapFilter {
        namespace: name("namespace")?,
        workload: name("workload")?,
        max_per_second: MAX_PER_SECOND,
    })
}

/// `/proxies/tap/events?...` for this filter.
pub fn events_href(filter: &TapFilter) -> String {
    let mut query = Vec::new();
    if let Some(ns) = &filter.namespace {
        query.push(format!("namespace={}", encode(ns)));
    }
    if let Some(w) = &filter.workload {
        query.push(format!("workload={}", encode(w)));
    }
    if query.is_empty() {
        "/proxies/tap/events".to_string()
    } else {
        format!("/proxies/tap/events?{}", query.join("&"))
    }
}

/// `/proxies/tap`: the filter form, the status line and the table.
pub async fn render(backend: &dyn ConsoleBackend, params: &Params) -> Result<Page, PageError> {
    let proxies = backend.proxies().await?;
    let mut namespaces: Vec<String> = proxies.iter().map(|p| p.namespace.clone()).collect();
    let mut workloads: Vec<String> = proxies.iter().map(|p| p.workload.clone()).collect();
    for list in [&mut namespaces, &mut workloads] {
        list.sort();
        list.dedup();
    }
    let (filter, error) = match filter(params) {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(e)),
    };
    let body = match &filter {
        Some(f) => {
            let first = first_events(backend.tap(f.clone())?).await;
            Some(table(f, &first))
        }
        None => None,
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let (ns_value, w_value) = (
        param(params, "namespace").unwrap_or_default().to_string(),
        param(params, "workload").unwrap_or_default().to_string(),
    );
    Ok(Page::new(
        Nav::Proxies,
        "Live tap",
        view! {
            <style inner_html=CSS></style>
            <p><a href="/proxies">"← Proxies"</a></p>
            <form class="filters" method="get" action="/proxies/tap" aria-label="Tap filter">
                {select_field("namespace", "Namespace", &namespaces, &ns_value, &error)}
                {select_field("workload", "Workload", &workloads, &w_value, &error)}
                <button type="submit" class="primary">"Start tap"</button>
            </form>
            {body}
        },
    )
    .with_status(status))
}

fn select_field(
    name: &'static str,
    label: &'static str,
    options: &[String],
    value: &str,
    error: &Option<(&'static str, String)>,
) -> impl IntoView + use<> {
    let message = error
        .as_ref()
        .filter(|(f, _)| *f == name)
        .map(|(_, m)| m.clone());
    let mut options = options.to_vec();
    if !value.is_empty() && !options.iter().any(|o| o == value) {
        options.push(value.to_string());
    }
    let items = options
        .into_iter()
        .map(|o| {
            let selected = o == value;
            view! { <option value=o.clone() selected=selected>{o.clone()}</option> }
        })
        .collect_view();
    let invalid = message.as_ref().map(|_| "true");
    let described = message.as_ref().map(|_| format!("{name}-error"));
    let id = format!("{name}-error");
    view! {
        <div class="field">
            <label for=name>{label}</label>
            <select id=name name=name aria-invalid=invalid aria-describedby=described>
                <option value="" selected=value.is_empty()>"any"</option>
                {items}
            </select>
            {message.map(|m| view! { <span class="field-error" id=id role="alert">{m}</span> })}
        </div>
    }
}

/// Up to [`FIRST_ROWS`] events that arrive within a moment, newest first.
async fn first_events(mut stream: BoxStream<'static, TapEvent>) -> Vec<TapEvent> {
    let deadline = Instant::now() + FIRST_ROWS_WAIT;
    let mut events = VecDeque::new();
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, stream.next()).await {
        if events.len() == FIRST_ROWS {
            events.pop_back();
        }
        events.push_front(event);
    }
    events.into()
}

fn table(filter: &TapFilter, first: &[TapEvent]) -> impl IntoView + use<> {
    let rows = first.iter().map(row_html).collect::<String>();
    let note = format!(
        "Live tap needs JavaScript; here are the last {} requests.",
        first.len()
    );
    let limits = format!(
        "At most {MAX_PER_SECOND} requests a second are shown; a tap runs for {} minutes.",
        MAX_DURATION.as_secs() / 60
    );
    let dropped: u64 = first.iter().map(|e| e.dropped_before).sum();
    view! {
        <p class="tap-status" id="tap-status" role="status" data-state="static">{note}</p>
        <p class="muted">{limits} " Dropped: " <output id="tap-dropped">{dropped}</output></p>
        <div class="table-wrap">
            <table class="tap-table">
                <thead>
                    <tr>
                        <th scope="col">"Time"</th>
                        <th scope="col">"Direction"</th>
                        <th scope="col">"Source"</th>
                        <th scope="col">"Destination"</th>
                        <th scope="col">"Request"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Duration"</th>
                        <th scope="col">"Flags"</th>
                        <th scope="col">"mTLS"</th>
                    </tr>
                </thead>
                <tbody id="tap-rows" data-tap-src=events_href(filter) data-tap-max="200" inner_html=rows></tbody>
            </table>
        </div>
    }
}

/// One request as a table row, escaped; the page and the event stream share it.
pub fn row_html(e: &TapEvent) -> String {
    let status = if e.status == 0 {
        "—".to_string()
    } else {
        e.status.to_string()
    };
    let status_class = (e.status == 0 || e.status >= 500).then_some("status-error");
    let mtls = if e.mtls { "🔒 yes" } else { "no" };
    view! {
        <tr>
            <td><time datetime=e.time.clone()>{e.time.clone()}</time></td>
            <td>{e.direction.label()}</td>
            <td>{e.source.clone()}</td>
            <td>{e.destination.clone()}</td>
            <td class="tap-path"><code>{format!("{} {}{}", e.method, e.authority, e.path)}</code></td>
            <td class=status_class>{status}</td>
            <td>{format!("{:.1} ms", e.duration_ms)}</td>
            <td><code>{e.flags.clone()}</code></td>
            <td>{mtls}</td>
        </tr>
    }
    .to_html()
}

/// `/proxies/tap/events?...`: `request` events (data: a table row), `dropped` events (data:
/// the total dropped so far) and a last `end` event (data: why) so the browser does not
/// reconnect by itself.
pub fn events(backend: &dyn ConsoleBackend, params: &Params) -> Response {
    let filter = match filter(params) {
        Ok(f) => f,
        Err((_, message)) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let max = filter.max_per_second.max(1);
    match backend.tap(filter) {
        Ok(source) => Sse::new(bounded(source, max, MAX_DURATION))
            .keep_alive(KeepAlive::default())
            .into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// The rate limit, the time limit and the drop count, as SSE events.
pub fn bounded(
    source: BoxStream<'static, TapEvent>,
    max_per_second: u32,
    limit: Duration,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    struct Tap {
        source: BoxStream<'static, TapEvent>,
        deadline: Instant,
        window: Instant,
        in_window: u32,
        dropped: u64,
        reported: u64,
        pending: VecDeque<Event>,
        done: bool,
    }
    let start = Tap {
        source,
        deadline: Instant::now() + limit,
        window: Instant::now(),
        in_window: 0,
        dropped: 0,
        reported: 0,
        pending: VecDeque::new(),
        done: false,
    };
    futures_util::stream::unfold(start, move |mut tap| async move {
        loop {
            if let Some(event) = tap.pending.pop_front() {
                return Some((Ok(event), tap));
            }
            if tap.done {
                return None;
            }
            let next = tokio::time::timeout_at(tap.deadline, tap.source.next()).await;
            let end = |reason: &str| Event::default().event("end").data(reason);
            match next {
                Err(_) => {
                    tap.pending.push_back(end("time limit reached"));
                    tap.done = true;
                }
                Ok(None) => {
                    tap.pending.push_back(end("the tap source ended"));
                    tap.done = true;
                }
                Ok(Some(request)) => {
                    tap.dropped += request.dropped_before;
                    if tap.window.elapsed() >= Duration::from_secs(1) {
                        tap.window = Instant::now();
                        tap.in_window = 0;
                    }
                    if tap.in_window >= max_per_second {
                        tap.dropped += 1;
                        continue;
                    }
                    tap.in_window += 1;
                    if tap.dropped != tap.reported {
                        tap.reported = tap.dropped;
                        tap.pending.push_back(
                            Event::default()
                                .event("dropped")
                                .data(tap.dropped.to_string()),
                        );
                    }
                    tap.pending
                        .push_back(Event::default().event("request").data(row_html(&request)));
                }
            }
            if tap.done && tap.dropped != tap.reported {
                tap.reported = tap.dropped;
                tap.pending.push_front(
                    Event::default()
                        .event("dropped")
                        .data(tap.dropped.to_string()),
                );
            }
        }
    })
}

/// The handler of `/proxies/tap`.
pub async fn page_handler(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
    app.respond(render(&*app.backend, &params).await)
}

/// The handler of `/proxies/tap/events`.
pub async fn events_handler(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
    events(&*app.backend, &params)
}
