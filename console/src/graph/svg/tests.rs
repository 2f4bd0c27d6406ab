use super::*;
use crate::graph::find::{self, Highlight};
use crate::graph::layout::Spacing;
use crate::graph::sample::bookinfo;
use crate::graph::{EdgeLabel, Focus, GraphData, layout_graph};

fn href(f: &Focus) -> String {
    format!("/graph?namespaces=bookinfo&focus={}", f.param())
}

fn draw_with(data: &GraphData, label: EdgeLabel, find: &str, focus: Option<&Focus>) -> String {
    let layout = layout_graph(data, &Spacing::default());
    let filter = find::parse(find).unwrap();
    let highlight = Highlight::of(data, filter.as_ref());
    render_svg(
        data,
        &layout,
        &SvgOptions {
            edge_label: label,
            highlight: &highlight,
            focus,
            show_namespace: false,
            href: &href,
        },
    )
}

fn draw(label: EdgeLabel) -> String {
    draw_with(&bookinfo(), label, "", None)
}

#[test]
fn nodes_are_links_with_names_and_shapes() {
    let svg = draw(EdgeLabel::None);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.contains("aria-label=\"Traffic graph: 13 nodes, 13 edges\""));
    assert!(svg.contains(
        "href=\"/graph?namespaces=bookinfo&amp;focus=node:workload:bookinfo/reviews-v2\""
    ));
    assert!(svg.contains(">reviews-v2</text>"));
    assert!(svg.contains("<title>workload reviews-v2 (bookinfo), failure"));
    assert_eq!(svg.matches("<a class=\"node node-service").count(), 5);
    assert_eq!(svg.matches("<a class=\"node node-workload").count(), 7);
    assert_eq!(svg.matches("<a class=\"node node-unknown").count(), 1);
    // Services are triangles, workloads circles, unknown a dashed circle with "?".
    assert_eq!(svg.matches("<path class=\"shape\"").count(), 5);
    assert_eq!(svg.matches("stroke-dasharray=\"4 3\"").count(), 1);
    assert_eq!(svg.matches("<a class=\"edge ").count(), 13);
}

#[test]
fn padlock_only_on_mtls_edges() {
    let data = bookinfo();
    let mtls = data.edges.iter().filter(|e| e.is_mtls()).count();
    assert_eq!(mtls, 10);
    assert_eq!(
        draw(EdgeLabel::None).matches("href=\"#padlock\"").count(),
        mtls
    );
}

#[test]
fn edge_labels_follow_the_choice() {
    assert!(!draw(EdgeLabel::None).contains("class=\"edge-label\""));
    let rate = draw(EdgeLabel::RequestRate);
    assert!(rate.contains(">12.0 rps</text>"));
    assert!(rate.contains(">600 B/s</text>"), "TCP edges show bytes");
    let share = draw(EdgeLabel::TrafficShare);
    assert!(share.contains(">33.3%</text>"));
    let errors = draw(EdgeLabel::ErrorPercent);
    assert_eq!(errors.matches("class=\"edge-label\"").count(), 2);
    assert!(errors.contains(">20.0%</text>"));
    let p95 = draw(EdgeLabel::P95);
    assert!(p95.contains(">28.0 ms</text>"));
    assert_eq!(
        p95.matches("class=\"edge-label\"").count(),
        11,
        "no latency on TCP"
    );
    let p99 = draw(EdgeLabel::P99);
    assert!(p99.contains(">44.8 ms</text>"));
    let bytes = draw(EdgeLabel::Throughput);
    assert!(bytes.contains(">14.4 kB/s</text>"));
}

#[test]
fn health_and_error_colours() {
    let svg = draw(EdgeLabel::None);
    assert!(svg.contains("class=\"edge edge-http health-failure\""));
    assert!(svg.contains(&format!(
        "stroke=\"{COLOUR_FAILURE}\" stroke-width=\"1.8\" marker-end=\"url(#arrow-failure)\""
    )));
    assert!(svg.contains("class=\"edge edge-tcp health-idle\""));
    assert!(svg.contains("stroke-dasharray=\"6 4\""));
    assert!(
        svg.contains(&format!("stroke=\"{COLOUR_FAILURE}\" stroke-width=\"2.5\"")),
        "failing node border"
    );
}

#[test]
fn badges_show() {
    let svg = draw(EdgeLabel::None);
    assert_eq!(svg.matches("class=\"node-badge node-badge-vs\"").count(), 2);
    assert_eq!(svg.matches("class=\"node-badge node-badge-fi\"").count(), 1);
    assert_eq!(svg.matches("class=\"node-badge node-badge-cb\"").count(), 1);
}

#[test]
fn text_is_escaped() {
    let mut data = bookinfo();
    data.nodes[1].workload = Some("<script>alert(\"x\")</script>&".to_string());
    data.nodes[1].id = "workload:bookinfo/\"><script>".to_string();
    data.edges[1].target = data.nodes[1].id.clone();
    let svg = draw_with(&data, EdgeLabel::None, "", None);
    assert!(!svg.contains("<script>"));
    assert!(svg.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"));
    assert!(svg.contains("focus=node:workload:bookinfo/&quot;&gt;&lt;script&gt;"));
}

#[test]
fn find_highlights_and_focus_marks() {
    let data = bookinfo();
    let focus = Focus::Node("service:bookinfo/reviews".to_string());
    let svg = draw_with(&data, EdgeLabel::None, "app = reviews", Some(&focus));
    assert_eq!(svg.matches(" found").count(), 4);
    assert_eq!(svg.matches("class=\"halo\"").count(), 4);
    assert!(svg.contains("class=\"node node-service health-ok found focused\""));
}

#[test]
fn dangling_edges_are_skipped() {
    let mut data = bookinfo();
    data.edges[0].source = "nowhere".to_string();
    let svg = draw_with(&data, EdgeLabel::None, "", None);
    assert_eq!(svg.matches("<a class=\"edge ").count(), 12);
}

#[test]
fn formats() {
    assert_eq!(format_bytes(14_400.0), "14.4 kB/s");
    assert_eq!(format_bytes(3.5e9), "3.50 GB/s");
    assert_eq!(format_rate(0.25), "0.25 rps");
    assert_eq!(format_percent(100.0), "100%");
}

#[test]
fn parallel_edges_do_not_overlap() {
    let mut data = bookinfo();
    let mut back = data.edges[1].clone();
    std::mem::swap(&mut back.source, &mut back.target);
    back.id = "back".to_string();
    data.edges.push(back);
    let svg = draw_with(&data, EdgeLabel::None, "", None);
    let path_of = |id: &str| {
        let at = svg.find(&format!("focus=edge:{}\"", escape(id))).unwrap();
        let line = &svg[at..];
        let d = &line[line.find("class=\"line\"").unwrap()..];
        let d = &d[d.find(" d=\"").unwrap() + 4..];
        d[..d.find('"').unwrap()].to_string()
    };
    let forward = path_of(&data.edges[1].id.clone());
    let backward = path_of("back");
    assert_ne!(forward, backward);
    assert_eq!(parallel_shift(0), 0.0);
    assert_eq!((parallel_shift(1), parallel_shift(2)), (8.0, -8.0));
}

#[test]
fn shared_styles_are_written_once_not_per_element() {
    let svg = draw(EdgeLabel::RequestRate);
    let edges = bookinfo().edges.len();
    assert_eq!(svg.matches("<style>").count(), 1);
    assert!(svg.contains(".graph-svg .hit{fill:none;stroke:transparent;stroke-width:10px}"));
    // Every edge still has its wide click target and its label, without repeated attributes.
    assert_eq!(svg.matches("<path class=\"hit\" d=\"").count(), edges);
    assert!(svg.contains("<text class=\"edge-label\" x=\""));
    assert!(!svg.contains("stroke=\"transparent\""));
    assert!(!svg.contains("paint-order=\"stroke\""));
}
