//! The console's axum router: pages, static files, error pages. The control plane mounts it on
//! its console listener (`:20001`) next to its REST API.

use crate::backend::ConsoleBackend;
use crate::pages;
use crate::shell::{Page, PageError};
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::Arc;

/// How the console presents itself.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Shown in the header and every `<title>`.
    pub title: String,
    /// An external Jaeger UI (e.g. `http://jaeger:16686`): traces get an "open in Jaeger" link.
    pub jaeger_ui_url: Option<String>,
}

impl Default for ConsoleOptions {
    fn default() -> ConsoleOptions {
        ConsoleOptions {
            title: "Trellis".to_string(),
            jaeger_ui_url: None,
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn ConsoleBackend>,
    pub options: Arc<ConsoleOptions>,
}

impl AppState {
    /// A page or its error page, inside the shell.
    pub fn respond(&self, page: Result<Page, PageError>) -> Response {
        let page = page.unwrap_or_else(|e| {
            if let PageError::Backend(crate::backend::BackendError::Unavailable(m)) = &e {
                tracing::warn!(error = %m, "console backend failed");
            }
            e.page()
        });
        page.into_response(&self.options.title)
    }
}

/// Query parameters and form fields, parsed by the pages so a bad value gets a message naming it.
pub type Params = HashMap<String, String>;

/// The console's pages and static files.
pub fn router(backend: Arc<dyn ConsoleBackend>, options: ConsoleOptions) -> Router {
    let state = AppState {
        backend,
        options: Arc::new(options),
    };
    Router::new()
        .route("/", get(overview))
        .route("/graph", get(graph))
        // Live refresh and pan/zoom of the graph, live Overview (engineer K).
        .route("/graph/fragment", get(crate::graph::page::fragment_handler))
        .route("/static/graph.js", get(graph_script))
        .route("/static/overview.js", get(overview_script))
        .route("/proxies", get(proxies))
        .route("/config", get(config_list))
        .route("/config/history", get(config_history))
        .route("/config/apply", get(apply_form).post(apply_submit))
        .route(
            "/config/rollback",
            get(rollback_confirm).post(rollback_submit),
        )
        .route("/config/{kind}/{namespace}/{name}", get(config_resource))
        .route("/services", get(pages::services::handlers::list))
        .route(
            "/namespaces/{namespace}/services/{name}",
            get(pages::services::handlers::detail),
        )
        .route("/workloads", get(pages::workloads::handlers::list))
        .route(
            "/namespaces/{namespace}/workloads/{name}",
            get(pages::workloads::handlers::detail),
        )
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        // Traces and the live tap (engineer H).
        .route("/traces", get(pages::traces::search_handler))
        .route("/traces/{id}", get(pages::traces::trace_handler))
        .route("/proxies/tap", get(pages::tap::page_handler))
        .route("/proxies/tap/events", get(pages::tap::events_handler))
        // The traffic wizard (engineer I).
        .route(
            "/namespaces/{namespace}/services/{name}/wizard",
            get(crate::wizard::handlers::show).post(crate::wizard::handlers::submit),
        )
        .route("/static/wizard.js", get(crate::wizard::handlers::script))
        .route(
            "/static/wizard.css",
            get(crate::wizard::handlers::stylesheet),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn overview(State(app): State<AppState>) -> Response {
    app.respond(pages::overview::render(&*app.backend).await)
}

async fn graph(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
    app.respond(pages::graph::render(&*app.backend, &params).await)
}

async fn proxies(State(app): State<AppState>) -> Response {
    app.respond(pages::proxies::render(&*app.backend).await)
}

async fn config_list(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
    app.respond(pages::config::list(&*app.backend, &params).await)
}

async fn config_resource(
    State(app): State<AppState>,
    Path((kind, namespace, name)): Path<(String, String, String)>,
) -> Response {
    app.respond(pages::config::resource(&*app.backend, kind, namespace, name).await)
}

async fn config_history(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
    app.respond(pages::history::render(&*app.backend, &params).await)
}

async fn rollback_confirm(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
    app.respond(pages::rollback::confirm(&*app.backend, &params).await)
}

async fn rollback_submit(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    if let Err(e) = same_origin(&headers) {
        return app.respond(Err(e));
    }
    app.respond(pages::rollback::submit(&*app.backend, &form).await)
}

async fn apply_form(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
    app.respond(pages::apply::form(&*app.backend, &params).await)
}

async fn apply_submit(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    if let Err(e) = same_origin(&headers) {
        return app.respond(Err(e));
    }
    app.respond(pages::apply::submit(&*app.backend, &form).await)
}

/// Changes must come from the console's own pages: browsers send `Sec-Fetch-Site` (and
/// `Origin`) on form posts, so another site cannot make an operator's browser roll back config.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(PageError::BadRequest(format!(
            "refused a change sent from another site (Sec-Fetch-Site: {site})"
        )));
    }
    if let (Some(origin), Some(host)) = (text(header::ORIGIN), text(header::HOST)) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return Err(PageError::BadRequest(format!(
                "refused a change sent from another origin ({origin})"
            )));
        }
    }
    Ok(())
}

async fn not_found(State(app): State<AppState>, uri: axum::http::Uri) -> Response {
    app.respond(Err(PageError::NotFound(format!(
        "There is no page at {}.",
        uri.path()
    ))))
}

const CSS: &str = include_str!("../static/console.css");
const JS: &str = include_str!("../static/console.js");

async fn stylesheet() -> Response {
    static_file(CSS, "text/css; charset=utf-8")
}

async fn script() -> Response {
    static_file(JS, "text/javascript; charset=utf-8")
}

async fn graph_script() -> Response {
    static_file(
        include_str!("../static/graph.js"),
        "text/javascript; charset=utf-8",
    )
}

async fn overview_script() -> Response {
    static_file(
        include_str!("../static/overview.js"),
        "text/javascript; charset=utf-8",
    )
}

/// Static files change only with a new build: cache for an hour, then revalidate.
pub(crate) fn static_file(body: &'static str, content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}
