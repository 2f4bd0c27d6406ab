//! Draws a laid-out graph as an SVG string, in Kiali's visual language: workloads are circles,
//! apps rounded squares, services triangles, `unknown` a dashed circle with a question mark;
//! borders and edges take Kiali's health colours; TCP edges are blue and dashed; mTLS edges carry a
//! padlock; badges VS / FI / CB mark VirtualService, fault injection and circuit breakers.
//!
//! Built as a string (not a Leptos view) because it is the hot path for a 1,000-node mesh; every
//! piece of text goes through [`escape`]. Every node and edge is an `<a href>` (focusable; its
//! `<title>` is both the hover text and the accessible name) to its details. Colours are presentation attributes so the
//! drawing reads right without the stylesheet; classes let CSS add focus and highlight styles.

use super::find::Highlight;
use super::layout::{Layout, Point};
use super::model::{Edge, EdgeLabel, Focus, GraphData, Health, Node, NodeKind, Protocol};
use std::fmt::Write;

/// Kiali's (PatternFly's) status colours.
pub const COLOUR_HEALTHY: &str = "#3e8635";
pub const COLOUR_DEGRADED: &str = "#f0ab00";
pub const COLOUR_FAILURE: &str = "#c9190b";
pub const COLOUR_IDLE: &str = "#8a8d90";
pub const COLOUR_TCP: &str = "#0066cc";
/// Node border when healthy: Kiali keeps healthy nodes neutral and colours only trouble.
const COLOUR_NODE: &str = "#393f44";

/// Half the size of a node shape: edges stop this far from a centre.
pub const NODE_RADIUS: f64 = 17.0;

/// What the drawing needs besides the graph and its layout.
pub struct SvgOptions<'a> {
    pub edge_label: EdgeLabel,
    /// Nodes and edges a find expression matched.
    pub highlight: &'a Highlight,
    pub focus: Option<&'a Focus>,
    /// Show each node's namespace under its name (a graph over several namespaces).
    pub show_namespace: bool,
    /// The link that opens the details of a node or edge.
    pub href: &'a dyn Fn(&Focus) -> String,
}

/// Escapes text for SVG/HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

pub fn health_colour(h: Health) -> &'static str {
    match h {
        Health::NoTraffic => COLOUR_IDLE,
        Health::Healthy => COLOUR_HEALTHY,
        Health::Degraded => COLOUR_DEGRADED,
        Health::Failure => COLOUR_FAILURE,
    }
}

fn edge_colour(e: &Edge) -> &'static str {
    match (e.protocol, e.health) {
        (_, Health::Degraded | Health::Failure) => health_colour(e.health),
        (Protocol::Tcp, _) => COLOUR_TCP,
        (_, h) => health_colour(h),
    }
}

fn node_colour(h: Health) -> &'static str {
    match h {
        Health::Degraded | Health::Failure => health_colour(h),
        Health::NoTraffic => COLOUR_IDLE,
        Health::Healthy => COLOUR_NODE,
    }
}

/// A request rate: "12 rps", "0.25 rps".
pub fn format_rate(per_second: f64) -> String {
    format!("{} rps", format_number(per_second))
}

/// Two decimals below 10, one below 100, none above.
pub fn format_number(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub fn format_percent(p: f64) -> String {
    format!("{}%", format_number(p))
}

pub fn format_ms(ms: f64) -> String {
    format!("{} ms", format_number(ms))
}

/// Bytes per second in B/s, kB/s, MB/s, GB/s (decimal units).
pub fn format_bytes(per_second: f64) -> String {
    let units = ["B/s", "kB/s", "MB/s", "GB/s"];
    let mut v = per_second;
    let mut unit = 0;
    while v.abs() >= 1000.0 && unit + 1 < units.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{} {}", format_number(v), units[unit])
}

/// The label an edge carries for `choice`; `None` when it has none (TCP has no latency).
pub fn edge_label_text(e: &Edge, choice: EdgeLabel) -> Option<String> {
    let tcp = e.protocol == Protocol::Tcp;
    match choice {
        EdgeLabel::None => None,
        EdgeLabel::RequestRate if tcp => Some(format_bytes(e.bytes_per_second)),
        EdgeLabel::RequestRate => Some(format_rate(e.requests_per_second)),
        EdgeLabel::TrafficShare => Some(format_percent(e.traffic_share_percent)),
        EdgeLabel::ErrorPercent if tcp || e.error_percent <= 0.0 => None,
        EdgeLabel::ErrorPercent => Some(format_percent(e.error_percent)),
        EdgeLabel::P50 => e.latency_ms.map(|l| format_ms(l.p50)),
        EdgeLabel::P95 => e.latency_ms.map(|l| format_ms(l.p95)),
        EdgeLabel::P99 => e.latency_ms.map(|l| format_ms(l.p99)),
        EdgeLabel::Throughput => Some(format_bytes(e.bytes_per_second)),
    }
}

/// "workload reviews-v2 (bookinfo)".
pub fn node_name(n: &Node) -> String {
    match &n.namespace {
        Some(ns) if n.kind != NodeKind::Unknown => {
            format!("{} {} ({ns})", n.kind.as_str(), n.label())
        }
        _ => format!("{} {}", n.kind.as_str(), n.label()),
    }
}

fn node_summary(n: &Node) -> String {
    let mut s = format!("{}, {}", node_name(n), n.health.as_str());
    if n.traffic_in.requests_per_second > 0.0 {
        let _ = write!(s, ", in {}", format_rate(n.traffic_in.requests_per_second));
    }
    if n.traffic_out.requests_per_second > 0.0 {
        let _ = write!(
            s,
            ", out {}",
            format_rate(n.traffic_out.requests_per_second)
        );
    }
    for (on, what) in [
        (n.badges.virtual_service, "has a VirtualService"),
        (n.badges.fault_injection, "injects faults"),
        (n.badges.circuit_breaker, "has a circuit breaker"),
        (n.badges.is_outside, "outside the selected namespaces"),
    ] {
        if on {
            let _ = write!(s, ", {what}");
        }
    }
    s
}

fn edge_summary(e: &Edge, source: &str, target: &str) -> String {
    let mut s = format!(
        "{} from {source} to {target}: ",
        e.protocol.as_str().to_uppercase()
    );
    if e.protocol == Protocol::Tcp {
        s.push_str(&format_bytes(e.bytes_per_second));
    } else {
        let _ = write!(
            s,
            "{}, {} errors",
            format_rate(e.requests_per_second),
            format_percent(e.error_percent)
        );
        if let Some(l) = e.latency_ms {
            let _ = write!(s, ", p95 {}", format_ms(l.p95));
        }
    }
    let _ = write!(
        s,
        ", {} of the source's traffic",
        format_percent(e.traffic_share_percent)
    );
    if e.is_mtls() {
        let _ = write!(s, ", mTLS {}", format_percent(e.mtls_percent));
    }
    s
}

/// Styles every edge and label shares, once instead of as attributes on each of thousands of
/// elements. Inside the SVG, so the drawing still reads right without the page's stylesheet;
/// single-class selectors, so the page's hover/focus/found rules (more specific) win.
const SHARED_STYLE: &str = concat!(
    "<style>",
    ".graph-svg .hit{fill:none;stroke:transparent;stroke-width:10px}",
    ".graph-svg .line{fill:none}",
    ".graph-svg .edge-label,.graph-svg .node-label{fill:#151515;stroke:#fff;stroke-width:3px;paint-order:stroke;text-anchor:middle}",
    ".graph-svg .edge-label{font-size:10px}",
    ".graph-svg .node-label{font-size:11px}",
    // graph.js marks a drawing zoomed out too far to read labels: not drawing them keeps
    // pan and zoom quick on a large mesh.
    ".graph-svg.zoomed-out .edge-labels,.graph-svg.zoomed-out .node-label{display:none}",
    "</style>"
);

const DEFS: &str = concat!(
    "<defs>",
    "<marker id=\"arrow-ok\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"#3e8635\"/></marker>",
    "<marker id=\"arrow-degraded\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"#f0ab00\"/></marker>",
    "<marker id=\"arrow-failure\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"#c9190b\"/></marker>",
    "<marker id=\"arrow-idle\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"#8a8d90\"/></marker>",
    "<marker id=\"arrow-tcp\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"#0066cc\"/></marker>",
    // A padlock 10 wide, 12 high, centred on its origin.
    "<symbol id=\"padlock\" viewBox=\"-5 -6 10 12\" width=\"10\" height=\"12\" overflow=\"visible\">",
    "<path d=\"M-3,-1V-3.2A3,3 0 0 1 3,-3.2V-1\" fill=\"none\" stroke=\"#393f44\" stroke-width=\"1.4\"/>",
    "<rect x=\"-4.5\" y=\"-1\" width=\"9\" height=\"7\" rx=\"1.2\" fill=\"#393f44\"/>",
    "</symbol>",
    "</defs>"
);

fn marker(e: &Edge) -> &'static str {
    match (e.protocol, e.health) {
        (_, Health::Degraded) => "arrow-degraded",
        (_, Health::Failure) => "arrow-failure",
        (Protocol::Tcp, _) => "arrow-tcp",
        (_, Health::Healthy) => "arrow-ok",
        (_, Health::NoTraffic) => "arrow-idle",
    }
}

/// Moves `from` towards `to` by `by` units.
fn toward(from: Point, to: Point, by: f64) -> Point {
    let (dx, dy) = (to.x - from.x, to.y - from.y);
    let len = (dx * dx + dy * dy).sqrt();
    if len <= by || len == 0.0 {
        return from;
    }
    Point {
        x: from.x + dx / len * by,
        y: from.y + dy / len * by,
    }
}

/// A smooth path through the route: cubic curves with horizontal tangents at each bend, ends
/// trimmed to the node borders so the arrowhead shows. Also returns where the label goes.
fn edge_path(points: &[Point], out: &mut String) -> Point {
    if let [p] = points {
        // A self loop above the node.
        let (x, y, r) = (p.x, p.y, NODE_RADIUS);
        let _ = write!(
            out,
            "M{:.1},{:.1}C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
            x - 6.0,
            y - r,
            x - 34.0,
            y - r - 46.0,
            x + 34.0,
            y - r - 46.0,
            x + 6.0,
            y - r - 2.0
        );
        return Point { x, y: y - r - 40.0 };
    }
    let last = points.len() - 1;
    let start = toward(points[0], points[1], NODE_RADIUS + 2.0);
    let end = toward(points[last], points[last - 1], NODE_RADIUS + 4.0);
    let at = |i: usize| match i {
        0 => start,
        i if i == last => end,
        i => points[i],
    };
    let _ = write!(out, "M{:.1},{:.1}", start.x, start.y);
    for i in 1..=last {
        let (a, b) = (at(i - 1), at(i));
        let mid = (a.x + b.x) / 2.0;
        let _ = write!(
            out,
            "C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
            mid, a.y, mid, b.y, b.x, b.y
        );
    }
    // The label sits on the middle segment's midpoint (curves through (a+b)/2 by symmetry).
    let i = points.len() / 2;
    let (a, b) = (at(i - 1), at(i));
    Point {
        x: (a.x + b.x) / 2.0,
        y: (a.y + b.y) / 2.0,
    }
}

fn node_shape(n: &Node, p: Point, colour: &str, out: &mut String) {
    let (x, y, r) = (p.x, p.y, NODE_RADIUS);
    let stroke = format!("fill=\"#fff\" stroke=\"{colour}\" stroke-width=\"2.5\"");
    let _ = match n.kind {
        NodeKind::Workload => write!(
            out,
            "<circle class=\"shape\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" {stroke}/>"
        ),
        NodeKind::App => write!(
            out,
            "<rect class=\"shape\" x=\"{:.1}\" y=\"{:.1}\" width=\"{}\" height=\"{}\" rx=\"7\" {stroke}/>",
            x - r,
            y - r + 2.0,
            2.0 * r,
            2.0 * r - 4.0
        ),
        NodeKind::Service => write!(
            out,
            "<path class=\"shape\" d=\"M{x:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}z\" {stroke}/>",
            y - r,
            x + r,
            y + r - 3.0,
            x - r,
            y + r - 3.0
        ),
        NodeKind::Unknown => write!(
            out,
            "<circle class=\"shape\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"{r}\" {stroke} stroke-dasharray=\"4 3\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\" fill=\"{colour}\">?</text>",
            y + 6.0
        ),
    };
}

fn badges(n: &Node, p: Point, out: &mut String) {
    let mut x = p.x + NODE_RADIUS - 2.0;
    let y = p.y - NODE_RADIUS - 12.0;
    for (on, letters, title) in [
        (n.badges.virtual_service, "VS", "Has a VirtualService"),
        (n.badges.fault_injection, "FI", "Fault injection"),
        (n.badges.circuit_breaker, "CB", "Has a circuit breaker"),
    ] {
        if !on {
            continue;
        }
        let _ = write!(
            out,
            "<g class=\"node-badge node-badge-{}\"><title>{title}</title>\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"20\" height=\"13\" rx=\"3\" fill=\"#4f5255\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\" font-weight=\"bold\" fill=\"#fff\">{letters}</text></g>",
            letters.to_ascii_lowercase(),
            x + 10.0,
            y + 10.0
        );
        x += 22.0;
    }
}

/// The vertical offset of the `nth` edge between the same two nodes: 0, +8, -8, +16, -16, …
fn parallel_shift(nth: usize) -> f64 {
    let step = nth.div_ceil(2) as f64 * 8.0;
    if nth % 2 == 1 { step } else { -step }
}

/// Draws `data` laid out by `layout` (whose nodes and routes are aligned with `data`'s).
pub fn render_svg(data: &GraphData, layout: &Layout, options: &SvgOptions<'_>) -> String {
    let mut out = String::with_capacity(512 + data.nodes.len() * 700 + data.edges.len() * 650);
    let labels: Vec<String> = data.nodes.iter().map(Node::label).collect();
    let index: std::collections::HashMap<&str, usize> = data
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"graph-svg\" viewBox=\"0 0 {w:.0} {h:.0}\" \
         width=\"{w:.0}\" height=\"{h:.0}\" role=\"group\" aria-label=\"Traffic graph: {} nodes, {} edges\" \
         font-family=\"system-ui, sans-serif\">",
        data.nodes.len(),
        data.edges.len(),
        w = layout.width,
        h = layout.height,
    );
    out.push_str(SHARED_STYLE);
    out.push_str(DEFS);

    out.push_str("<g class=\"edges\">");
    let mut label_at: Vec<Option<Point>> = vec![None; data.edges.len()];
    // Edges between the same two nodes (two protocols, or both ways) would be drawn on top of
    // each other: each further one is shifted up or down a little.
    let mut parallel: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::new();
    let mut shifted: Vec<Point> = Vec::new();
    for (i, e) in data.edges.iter().enumerate() {
        let Some(route) = layout.routes.get(i).filter(|r| !r.points.is_empty()) else {
            continue;
        };
        let name = |id: &str| index.get(id).map_or(id.to_string(), |&n| labels[n].clone());
        let (source, target) = (name(&e.source), name(&e.target));
        let focus = Focus::Edge(e.id.clone());
        let mut class = format!(
            "edge edge-{} health-{}",
            e.protocol.as_str(),
            e.health.class()
        );
        if options.highlight.edges.get(i).copied().unwrap_or(false) {
            class.push_str(" found");
        }
        if options.focus == Some(&focus) {
            class.push_str(" focused");
        }
        if route.reversed {
            class.push_str(" reversed");
        }
        let summary = edge_summary(e, &source, &target);
        out.push_str("<a class=\"");
        out.push_str(&class);
        out.push_str("\" href=\"");
        escape_into(&mut out, &(options.href)(&focus));
        out.push_str("\"><title>");
        escape_into(&mut out, &summary);
        out.push_str("</title><path class=\"hit\" d=\"");
        let start = out.len();
        let pair = if e.source <= e.target {
            (e.source.as_str(), e.target.as_str())
        } else {
            (e.target.as_str(), e.source.as_str())
        };
        let nth = parallel.entry(pair).or_insert(0);
        let shift = parallel_shift(*nth);
        *nth += 1;
        shifted.clear();
        shifted.extend(route.points.iter().map(|p| Point {
            x: p.x,
            y: p.y + shift,
        }));
        let points = if route.points.len() > 1 {
            &shifted[..]
        } else {
            &route.points[..]
        };
        let label = edge_path(points, &mut out);
        let d = out[start..].to_string();
        let colour = edge_colour(e);
        let width = if e.requests_per_second > 0.0 || e.bytes_per_second > 0.0 {
            1.8
        } else {
            1.0
        };
        let dash = if e.protocol == Protocol::Tcp {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "\"/><path class=\"line\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash} marker-end=\"url(#{})\" d=\"{d}\"/></a>",
            marker(e)
        );
        label_at[i] = Some(label);
    }
    out.push_str("</g><g class=\"edge-labels\" aria-hidden=\"true\">");
    for (i, e) in data.edges.iter().enumerate() {
        let Some(p) = label_at[i] else { continue };
        let text = edge_label_text(e, options.edge_label);
        let mut x = p.x;
        if e.is_mtls() {
            let offset = if text.is_some() { -7.0 } else { 0.0 };
            let _ = write!(
                out,
                "<use class=\"padlock\" href=\"#padlock\" x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"12\"/>",
                p.x - 5.0,
                p.y - 6.0 + offset
            );
            x = p.x;
        }
        if let Some(text) = text {
            let y = if e.is_mtls() { p.y + 9.0 } else { p.y + 4.0 };
            let _ = write!(out, "<text class=\"edge-label\" x=\"{x:.1}\" y=\"{y:.1}\">");
            escape_into(&mut out, &text);
            out.push_str("</text>");
        }
    }
    out.push_str("</g><g class=\"nodes\">");
    for (i, n) in data.nodes.iter().enumerate() {
        let Some(&p) = layout.nodes.get(i) else {
            continue;
        };
        let focus = Focus::Node(n.id.clone());
        let mut class = format!("node node-{} health-{}", n.kind.as_str(), n.health.class());
        if options.highlight.nodes.get(i).copied().unwrap_or(false) {
            class.push_str(" found");
        }
        if options.focus == Some(&focus) {
            class.push_str(" focused");
        }
        if n.badges.is_outside {
            class.push_str(" outside");
        }
        if n.badges.is_root {
            class.push_str(" root");
        }
        let summary = node_summary(n);
        out.push_str("<a class=\"");
        out.push_str(&class);
        out.push_str("\" href=\"");
        escape_into(&mut out, &(options.href)(&focus));
        out.push_str("\"><title>");
        escape_into(&mut out, &summary);
        out.push_str("</title>");
        if options.highlight.nodes.get(i).copied().unwrap_or(false) {
            let _ = write!(
                out,
                "<circle class=\"halo\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"none\" stroke=\"#73bcf7\" stroke-width=\"5\"/>",
                p.x,
                p.y,
                NODE_RADIUS + 6.0
            );
        }
        node_shape(n, p, node_colour(n.health), &mut out);
        let _ = write!(
            out,
            "<text class=\"node-label\" x=\"{:.1}\" y=\"{:.1}\">",
            p.x,
            p.y + NODE_RADIUS + 14.0
        );
        escape_into(&mut out, &labels[i]);
        if (options.show_namespace || n.badges.is_outside)
            && let Some(ns) = &n.namespace
        {
            let _ = write!(
                out,
                "<tspan x=\"{:.1}\" dy=\"12\" font-size=\"9\" fill=\"#6a6e73\">",
                p.x
            );
            escape_into(&mut out, ns);
            out.push_str("</tspan>");
        }
        out.push_str("</text>");
        badges(n, p, &mut out);
        out.push_str("</a>");
    }
    out.push_str("</g></svg>");
    out
}

#[cfg(test)]
mod tests;
