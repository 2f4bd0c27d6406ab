//! The wizard's axum handlers and its static files; `crate::server::router` routes to them.

use crate::server::{AppState, Params, same_origin, static_file};
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

pub async fn show(
    State(app): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Response {
    app.respond(super::show(&*app.backend, &namespace, &name, &params).await)
}

/// Posts must come from the console's own pages (see `same_origin`).
pub async fn submit(
    State(app): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<Params>,
) -> Response {
    if let Err(e) = same_origin(&headers) {
        return app.respond(Err(e));
    }
    app.respond(super::submit(&*app.backend, &namespace, &name, &form).await)
}

const JS: &str = include_str!("../../static/wizard.js");
const CSS: &str = include_str!("wizard.css");

pub async fn script() -> Response {
    static_file(JS, "text/javascript; charset=utf-8")
}

pub async fn stylesheet() -> Response {
    static_file(CSS, "text/css; charset=utf-8")
}
