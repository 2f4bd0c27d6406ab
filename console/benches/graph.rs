//! The graph page on a large mesh: 1,000 nodes and 3,000 edges, the target being the
//! whole page rendered on the server in under 300 ms. A plain timing program (`harness = false`):
//! `cargo bench -p trellis-console --bench graph` prints p50 and max per stage.

use std::hint::black_box;
use std::time::{Duration, Instant};
use trellis_console::graph::layout::Spacing;
use trellis_console::graph::page::render_graph_page;
use trellis_console::graph::sample::mesh;
use trellis_console::graph::svg::{SvgOptions, render_svg};
use trellis_console::graph::{
    EdgeLabel, GraphQuery, find::Highlight, layout_graph, query::graph_href,
};

const RUNS: usize = 15;

fn time(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    f(); // warm up
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

fn report(stage: &str, (p50, max): (Duration, Duration)) {
    println!(
        "{stage:<34} p50 {:>8.1} ms   max {:>8.1} ms",
        p50.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
}

fn main() {
    let (nodes, edges) = (1000, 3000);
    let data = mesh(nodes, edges, 10);
    println!(
        "graph page bench: {} nodes, {} edges, {RUNS} runs each",
        data.nodes.len(),
        data.edges.len()
    );
    let spacing = Spacing::default();
    report(
        "layout",
        time(RUNS, || {
            black_box(layout_graph(black_box(&data), &spacing));
        }),
    );
    let layout = layout_graph(&data, &spacing);
    let bends: usize = layout
        .routes
        .iter()
        .map(|r| r.points.len().saturating_sub(2))
        .sum();
    let reversed = layout.routes.iter().filter(|r| r.reversed).count();
    println!(
        "drawing: {:.0} x {:.0} units, {bends} edge bends, {reversed} edges reversed to break cycles",
        layout.width, layout.height
    );
    let query = GraphQuery {
        edge_label: EdgeLabel::RequestRate,
        find: "%httperr > 1".to_string(),
        ..GraphQuery::default()
    };
    let highlight = Highlight::of(&data, None);
    let href = |f: &trellis_console::graph::Focus| graph_href(&query, Some(f));
    let options = SvgOptions {
        edge_label: EdgeLabel::RequestRate,
        highlight: &highlight,
        focus: None,
        show_namespace: true,
        href: &href,
    };
    report(
        "svg",
        time(RUNS, || {
            black_box(render_svg(&data, &layout, &options));
        }),
    );
    let mut size = 0;
    report(
        "whole page (find, layout, svg, html)",
        time(RUNS, || {
            size = black_box(render_graph_page(&query, &data)).len();
        }),
    );
    let hiding = GraphQuery {
        hide: "protocol = tcp".to_string(),
        focus: Some(trellis_console::graph::Focus::Node(
            data.nodes[500].id.clone(),
        )),
        ..query.clone()
    };
    report(
        "whole page, hide + focused node",
        time(RUNS, || {
            black_box(render_graph_page(&hiding, &data));
        }),
    );
    println!("page body: {:.1} MB", size as f64 / 1e6);
}
