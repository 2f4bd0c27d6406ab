//! The graph page: model, layered layout, SVG drawing and the find/hide language.
//!
//! The page pipeline: [`page::parse_graph_query`] → the backend's [`GraphData`] → hide
//! ([`find::hide`]) → [`layout_graph`] → [`svg::render_svg`] inside [`page::render_graph_page`].

pub mod find;
pub mod layout;
pub mod model;
pub mod page;
pub mod query;
pub mod sample;
pub mod svg;

pub use model::{
    Badges, Edge, EdgeLabel, Focus, GraphData, GraphQuery, GraphType, Health, Latency, Node,
    NodeKind, Protocol, Rates, Window,
};

use layout::{Layout, Route, Spacing};
use std::collections::HashMap;

/// Lays out `data`: the result's nodes and routes are aligned with `data.nodes` and `data.edges`.
/// `unknown` and root nodes start the flow. An edge naming a node that is not in `data` gets an
/// empty route (and is not drawn) rather than failing the page.
pub fn layout_graph(data: &GraphData, spacing: &Spacing) -> Layout {
    let index: HashMap<&str, usize> = data
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut kept = Vec::with_capacity(data.edges.len());
    let mut pairs = Vec::with_capacity(data.edges.len());
    for (i, e) in data.edges.iter().enumerate() {
        if let (Some(&s), Some(&t)) = (index.get(e.source.as_str()), index.get(e.target.as_str())) {
            kept.push(i);
            pairs.push((s, t));
        }
    }
    let first: Vec<bool> = data
        .nodes
        .iter()
        .map(|n| n.kind == NodeKind::Unknown || n.badges.is_root)
        .collect();
    let mut laid = layout::layout(data.nodes.len(), &pairs, &first, spacing);
    if kept.len() != data.edges.len() {
        let mut routes = vec![
            Route {
                points: Vec::new(),
                reversed: false,
            };
            data.edges.len()
        ];
        for (route, i) in laid.routes.into_iter().zip(kept) {
            routes[i] = route;
        }
        laid.routes = routes;
    }
    laid
}
