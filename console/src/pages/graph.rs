//! Graph: the service graph of a window, laid out and drawn on the server (see [`crate::graph`]).

use crate::backend::ConsoleBackend;
use crate::graph::page::{parse_graph_query, render_graph_page};
use crate::shell::{Nav, Page, PageError};
use axum::http::StatusCode;
use std::collections::HashMap;

pub async fn render(
    backend: &dyn ConsoleBackend,
    params: &HashMap<String, String>,
) -> Result<Page, PageError> {
    let query = parse_graph_query(params).map_err(PageError::BadRequest)?;
    let data = backend.graph(&query).await?;
    Ok(Page {
        status: StatusCode::OK,
        title: "Graph".into(),
        nav: Nav::Graph,
        body: render_graph_page(&query, &data),
    })
}
