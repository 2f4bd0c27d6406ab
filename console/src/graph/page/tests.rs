use super::*;
use crate::graph::sample::bookinfo;
use std::collections::HashMap;

const NOW: i64 = 1_763_720_000_000;

fn query(pairs: &[(&str, &str)]) -> GraphQuery {
    let params: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_graph_query_at(&params, NOW).unwrap()
}

fn render(pairs: &[(&str, &str)]) -> String {
    render_graph_page(&query(pairs), &bookinfo())
}

#[test]
fn form_keeps_its_values() {
    let html = render(&[
        ("graphType", "versionedApp"),
        ("namespaces", "bookinfo"),
        ("duration", "10m"),
        ("end", "2025-11-21T09:30"),
        ("edges", "p99"),
        ("find", "app = reviews"),
        ("hide", "protocol = tcp"),
        ("injectServiceNodes", "false"),
    ]);
    assert!(
        html.contains(r#"<option value="versionedApp" selected"#),
        "graph type"
    );
    assert!(html.contains(r#"name="namespaces" value="bookinfo""#));
    assert!(html.contains(r#"<option value="10m" selected"#));
    assert!(html.contains(r#"name="end" step="1" value="2025-11-21T09:30:00""#));
    assert!(html.contains(r#"<option value="p99" selected"#));
    assert!(html.contains(r#"name="find" value="app = reviews""#));
    assert!(html.contains(r#"name="hide" value="protocol = tcp""#));
    assert!(html.contains(r#"<option value="false" selected"#));
    assert!(html.contains("Window: 10m ending 2025-11-21 09:30:00 UTC"));
    let form = &html[html.find("<form").unwrap()..];
    assert!(form.starts_with("<form"), "{}", &form[..200]);
    assert!(
        form[..200].contains(r#"method="get" action="/graph""#),
        "{}",
        &form[..200]
    );
}

#[test]
fn odd_window_is_kept_in_the_select() {
    let html = render(&[("duration", "2h")]);
    assert!(html.contains(r#"<option value="2h" selected"#));
    assert!(html.contains("Last 2h"));
}

#[test]
fn draws_the_graph_with_links_that_keep_the_query() {
    let html = render(&[("namespaces", "bookinfo"), ("edges", "rate")]);
    assert!(html.contains("<strong>13 nodes, 13 edges</strong>"));
    assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(html.contains(
        "href=\"/graph?namespaces=bookinfo&amp;edges=rate&amp;focus=node:workload:bookinfo/reviews-v2\""
    ));
    assert!(html.contains(">12.0 rps</text>"));
    assert!(html.contains("id=\"legend-title\""));
}

#[test]
fn hide_and_find_apply() {
    let html = render(&[("hide", "protocol = tcp"), ("find", "%httperr > 1")]);
    assert!(
        html.contains("<strong>11 nodes, 11 edges</strong>"),
        "{}",
        &html[..2000.min(html.len())]
    );
    assert!(html.contains("(2 nodes and 2 edges hidden)"));
    assert!(html.contains("<span class=\"found-count\"> · Find: 2 matches</span>"));
    assert!(!html.contains(">mysqldb</text>"));
}

#[test]
fn bad_expressions_show_next_to_the_field() {
    let html = render(&[("find", "rt > fast"), ("hide", "colour = red")]);
    assert!(html.contains(r#"aria-invalid="true" aria-describedby="find-error""#));
    assert!(html.contains("id=\"find-error\""));
    assert!(html.contains("at column 6: `rt` compares numbers; `fast` is not a number"));
    assert!(html.contains("rt &gt; fast\n     ^"));
    assert!(html.contains("at column 1: unknown attribute `colour`"));
    // The graph is still drawn, unfiltered.
    assert!(html.contains("<strong>13 nodes, 13 edges</strong>"));
}

#[test]
fn node_details_panel() {
    let html = render(&[("focus", "node:service:bookinfo/reviews")]);
    assert!(html.contains(r#"<h2 id="details-title" class="health-ok">reviews</h2>"#));
    assert!(html.contains("<dt>Flags</dt><dd>VirtualService, circuit breaker</dd>"));
    assert!(
        html.contains(
            r#"href="/namespaces/bookinfo/services/reviews">Service reviews details</a>"#
        )
    );
    assert!(html.contains("<caption>Inbound (1)</caption>"));
    assert!(html.contains("<caption>Outbound (3)</caption>"));
    assert!(html.contains(">reviews-v2</a></th>"));
    assert!(html.contains("<dt>Inbound</dt><dd>12.0 rps, 0.00% errors</dd>"));
    // The focus survives a form submit, and the node is marked in the drawing.
    assert!(
        html.contains(r#"<input type="hidden" name="focus" value="node:service:bookinfo/reviews""#)
    );
    assert!(html.contains("class=\"node node-service health-ok focused\""));
}

#[test]
fn edge_details_panel() {
    let id = "workload:bookinfo/reviews-v2>service:bookinfo/ratings:http";
    let html = render(&[("focus", &format!("edge:{id}"))]);
    assert!(html.contains("reviews-v2 → ratings</h2>"));
    assert!(html.contains("<dt>Traffic</dt><dd>4.00 rps, 20.0% errors</dd>"));
    assert!(html.contains("<dt>p99</dt><dd>14.4 ms</dd>"));
    assert!(html.contains("<dt>mTLS</dt><dd>100%</dd>"));
    assert!(html.contains("<dt>Health</dt><dd>failure</dd>"));
}

#[test]
fn unknown_focus_and_empty_graph() {
    let html = render(&[("focus", "node:service:shop/cart")]);
    assert!(html.contains("Not in this graph"));
    assert!(html.contains("<code>service:shop/cart</code>"));
    let empty = render_graph_page(&query(&[("namespaces", "shop")]), &GraphData::default());
    assert!(empty.contains("No traffic in shop in the 1m window."));
    assert!(!empty.contains("<svg xmlns"));
}

#[test]
fn attention_list_without_focus() {
    let html = render(&[]);
    assert!(html.contains("Needs attention"));
    assert!(html.contains(">workload reviews-v2 (bookinfo)</a>"));
    assert!(!html.contains("every node in this graph is healthy"));
    let mut calm = crate::graph::sample::bookinfo();
    for n in &mut calm.nodes {
        n.health = crate::graph::model::Health::Healthy;
    }
    let html = render_graph_page(&query(&[]), &calm);
    assert!(
        html.contains("Nothing: every node in this graph is healthy."),
        "{html}"
    );
}

#[test]
fn user_text_is_escaped() {
    let html = render(&[("find", "name = \"<img src=x>\"")]);
    assert!(!html.contains("<img src=x>"));
    assert!(html.contains("&lt;img src=x&gt;") || html.contains("&quot;&lt;img"));
}

/// Writes the Bookinfo page to `target/graph-bookinfo.html` (and the SVG alone) to look at.
#[test]
#[ignore]
fn write_sample_page() {
    let html = render(&[
        ("edges", "rate"),
        ("focus", "node:service:bookinfo/reviews"),
        ("find", "%httperr > 1"),
    ]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("graph-bookinfo.html"), &html).unwrap();
    let svg = &html[html.find("<svg xmlns").unwrap()..];
    let svg = &svg[..svg.find("</svg>").unwrap() + 6];
    std::fs::write(dir.join("graph-bookinfo.svg"), svg).unwrap();
}

#[test]
fn generated_mesh_renders_small_and_tiny() {
    for (nodes, edges) in [(2, 5), (3, 3), (60, 150)] {
        let data = crate::graph::sample::mesh(nodes, edges, 3);
        assert_eq!(data.nodes.len(), nodes);
        let html = render_graph_page(&GraphQuery::default(), &data);
        assert!(html.contains(&format!(
            "<strong>{nodes} nodes, {} edges</strong>",
            data.edges.len()
        )));
    }
}
