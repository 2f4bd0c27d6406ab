//! The graph page's body: the form, the drawing, a legend and the details of the focused node or
//! edge. D's shell wraps it (`Page { body, .. }`); it works with no script.
//!
//! Wiring `/graph` (signatures):
//!
//! ```ignore
//! pub fn parse_graph_query(params: &HashMap<String, String>) -> Result<GraphQuery, String>;
//! // Err: a 400 page with the message (it names the parameter).
//! pub fn render_graph_page(query: &GraphQuery, data: &GraphData) -> String;
//! // The body HTML (includes its own <style>; no title: the shell's h1 says "Graph").
//!
//! async fn graph(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
//!     let query = match graph::page::parse_graph_query(&params) {
//!         Ok(q) => q,
//!         Err(message) => return app.respond(Err(PageError::BadRequest(message))),
//!     };
//!     let result = app.backend.graph(&query).await.map(|data| Page {
//!         status: StatusCode::OK,
//!         title: "Graph".into(),
//!         nav: Nav::Graph,
//!         body: graph::page::render_graph_page(&query, &data),
//!     });
//!     app.respond(result.map_err(PageError::from))
//! }
//! ```
//!
//! Find/hide syntax errors are not 400s: the page renders with the message (and a caret under
//! the position) next to the field, and the graph unfiltered by the broken expression.

pub use super::query::{parse_graph_query, parse_graph_query_at};

use super::find::{self, Filter, FindError, Highlight};
use super::layout::Spacing;
use super::layout_graph;
use super::model::{
    Edge, EdgeLabel, Focus, GraphData, GraphQuery, GraphType, Node, NodeKind, Protocol,
};
use super::query::{encode, format_duration, format_end, graph_href};
use super::svg;
use super::svg::{
    SvgOptions, format_bytes, format_ms, format_percent, format_rate, node_name, render_svg,
};
use crate::server::{AppState, Params};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use std::borrow::Cow;
use std::fmt::Write;

/// The windows offered in the select (seconds).
const WINDOWS: [(u64, &str); 5] = [
    (60, "Last 1m"),
    (300, "Last 5m"),
    (600, "Last 10m"),
    (1800, "Last 30m"),
    (3600, "Last 1h"),
];

/// Styles for the graph page (scoped by class names); shipped inside the body so the page is
/// complete on its own.
pub const GRAPH_CSS: &str = include_str!("page.css");

/// Renders the page body for `query` over the backend's `data`.
pub fn render_graph_page(query: &GraphQuery, data: &GraphData) -> String {
    let find = find::parse(&query.find);
    let hide = find::parse(&query.hide);
    let fragment = render_graph_fragment(query, data);
    let mut out = String::with_capacity(fragment.len() + 16_384);
    out.push_str("<style>");
    out.push_str(GRAPH_CSS);
    out.push_str("</style><div class=\"graph-page\">");
    out.push_str(&form(query, find.as_ref().err(), hide.as_ref().err()).to_html());
    // What the live refresh replaces: `graph.js` fetches the same from `/graph/fragment`.
    let _ = write!(
        out,
        "<div id=\"graph-live\" data-fragment=\"{}\">",
        svg::escape(&fragment_href(query))
    );
    out.push_str(&fragment);
    out.push_str("</div>");
    out.push_str(LEGEND);
    out.push_str("</div><script src=\"/static/graph.js\" defer></script>");
    out
}

/// `/graph/fragment?…`: the live parts of the page for `query` (focus included, so the details
/// panel stays on what the user opened).
pub fn fragment_href(query: &GraphQuery) -> String {
    let href = graph_href(query, query.focus.as_ref());
    format!("/graph/fragment{}", &href["/graph".len()..])
}

/// The parts of the page that change with the traffic (summary, drawing, details), without the
/// form, legend and styles: what the live refresh fetches every few seconds.
pub fn render_graph_fragment(query: &GraphQuery, data: &GraphData) -> String {
    let find = find::parse(&query.find);
    let hide = find::parse(&query.hide);
    let shown: Cow<'_, GraphData> = match &hide {
        Ok(Some(filter)) => Cow::Owned(find::hide(data, filter)),
        _ => Cow::Borrowed(data),
    };
    let find_filter: Option<&Filter> = find.as_ref().ok().and_then(Option::as_ref);
    let highlight = Highlight::of(&shown, find_filter);
    let drawing = drawing(query, &shown, &highlight);
    let mut out = String::with_capacity(drawing.len() + 8_192);
    push_live_parts(
        &mut out,
        query,
        data,
        &shown,
        &drawing,
        find_filter.map(|_| highlight.count()),
    );
    out
}

/// `GET /graph/fragment?…`: [`render_graph_fragment`] for the live refresh. Never cached; errors
/// are short plain-text answers with their status, which the script shows beside its Live toggle
/// while it keeps the last drawing.
pub async fn fragment_handler(
    State(app): State<AppState>,
    Query(params): Query<Params>,
) -> Response {
    let (status, content_type, body) = match parse_graph_query(&params) {
        Err(message) => (
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            message,
        ),
        Ok(query) => match app.backend.graph(&query).await {
            Ok(data) => (
                StatusCode::OK,
                "text/html; charset=utf-8",
                render_graph_fragment(&query, &data),
            ),
            Err(e) => (
                StatusCode::BAD_GATEWAY,
                "text/plain; charset=utf-8",
                format!("The graph could not be loaded: {e}"),
            ),
        },
    };
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The SVG for what is shown, or nothing for an empty graph.
fn drawing(query: &GraphQuery, shown: &GraphData, highlight: &Highlight) -> String {
    if shown.nodes.is_empty() {
        return String::new();
    }
    let layout = layout_graph(shown, &Spacing::default());
    // Every node and edge links to its details: the query part is built once, not per link.
    let base = graph_href(query, None);
    let prefix = format!("{base}{}focus=", if base.contains('?') { '&' } else { '?' });
    let href = |f: &Focus| {
        let mut href = String::with_capacity(prefix.len() + 64);
        href.push_str(&prefix);
        encode_focus_into(&mut href, &f.param());
        href
    };
    render_svg(
        shown,
        &layout,
        &SvgOptions {
            edge_label: query.edge_label,
            highlight,
            focus: query.focus.as_ref(),
            show_namespace: query.namespaces.len() != 1,
            href: &href,
        },
    )
}

/// Percent-encodes a focus parameter, leaving `:` and `/` (legal in a query, and in every node
/// id) as they are: ids stay readable and a 3,000-edge page some 200 KB smaller.
fn encode_focus_into(out: &mut String, param: &str) {
    for b in param.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Summary, drawing (or the empty message) and details, in page order.
fn push_live_parts(
    out: &mut String,
    query: &GraphQuery,
    data: &GraphData,
    shown: &GraphData,
    drawing: &str,
    found: Option<usize>,
) {
    out.push_str(&summary(query, data, shown, found).to_html());
    out.push_str("<div class=\"graph-layout\"><div class=\"graph-canvas\">");
    if drawing.is_empty() {
        out.push_str(&empty(query, data).to_html());
    } else {
        out.push_str(drawing);
    }
    out.push_str("</div><aside class=\"panel graph-details\" aria-labelledby=\"details-title\">");
    out.push_str(&details(query, data, shown).to_html());
    out.push_str("</aside></div>");
}

/// An error under a field: the message and the expression with a caret under the position.
fn expression_error(id: &'static str, text: &str, error: &FindError) -> impl IntoView + use<> {
    let caret = format!("{}\n{}^", text, " ".repeat(error.position));
    view! {
        <div class="field-error" id=id role="alert">
            <p>{error.to_string()}</p>
            <pre class="caret" aria-hidden="true">{caret}</pre>
        </div>
    }
}

fn form(
    query: &GraphQuery,
    find_error: Option<&FindError>,
    hide_error: Option<&FindError>,
) -> impl IntoView + use<> {
    let types = GraphType::ALL
        .into_iter()
        .map(|t| view! { <option value=t.as_str() selected=t == query.graph_type>{t.title()}</option> })
        .collect_view();
    let mut windows: Vec<(u64, String)> =
        WINDOWS.iter().map(|(s, l)| (*s, l.to_string())).collect();
    if !windows.iter().any(|(s, _)| *s == query.duration_secs) {
        windows.push((
            query.duration_secs,
            format!("Last {}", format_duration(query.duration_secs)),
        ));
    }
    let windows = windows
        .into_iter()
        .map(|(secs, label)| {
            view! { <option value=format_duration(secs) selected=secs == query.duration_secs>{label}</option> }
        })
        .collect_view();
    let labels = EdgeLabel::ALL
        .into_iter()
        .map(|l| view! { <option value=l.as_str() selected=l == query.edge_label>{l.title()}</option> })
        .collect_view();
    let end = query.query_time_ms.map(format_end).unwrap_or_default();
    let inject = query.inject_service_nodes;
    let find_invalid = find_error.map(|_| "true");
    let hide_invalid = hide_error.map(|_| "true");
    let find_described = find_error.map(|_| "find-error");
    let hide_described = hide_error.map(|_| "hide-error");
    let find_error = find_error.map(|e| expression_error("find-error", &query.find, e));
    let hide_error = hide_error.map(|e| expression_error("hide-error", &query.hide, e));
    let focus = query
        .focus
        .as_ref()
        .map(|f| view! { <input type="hidden" name="focus" value=f.param() /> });
    view! {
        <form class="graph-form filters" method="get" action="/graph" aria-label="Graph options">
            <label>"Graph" <select name="graphType">{types}</select></label>
            <label>
                "Namespaces"
                <input type="text" name="namespaces" value=query.namespaces.join(",") placeholder="all" size="18" />
            </label>
            <label>"Window" <select name="duration">{windows}</select></label>
            <label>
                "Ending (UTC, empty: now)"
                <input type="datetime-local" name="end" step="1" value=end />
            </label>
            <label>"Edge labels" <select name="edges">{labels}</select></label>
            <label>
                "Service nodes"
                <select name="injectServiceNodes">
                    <option value="true" selected=inject>"Shown"</option>
                    <option value="false" selected=!inject>"Hidden"</option>
                </select>
            </label>
            <div class="expression">
                <label>
                    "Find"
                    <input type="text" name="find" value=query.find.clone() placeholder="e.g. %httperr > 1"
                        aria-invalid=find_invalid aria-describedby=find_described size="22" />
                </label>
                {find_error}
            </div>
            <div class="expression">
                <label>
                    "Hide"
                    <input type="text" name="hide" value=query.hide.clone() placeholder="e.g. namespace=istio-system"
                        aria-invalid=hide_invalid aria-describedby=hide_described size="22" />
                </label>
                {hide_error}
            </div>
            {focus}
            <button type="submit" class="primary">"Update graph"</button>
            <a href="/graph">"Reset"</a>
        </form>
        <details class="find-help">
            <summary>"Find and hide syntax"</summary>
            <p>
                "Nodes: " <code>"namespace=shop"</code> ", " <code>"app = reviews"</code> ", "
                <code>"version != v1"</code> ", " <code>"node = service"</code> ", "
                <code>"name = rev*"</code> ", " <code>"httpin > 5"</code> ", " <code>"%errout > 1"</code>
                ", " <code>"!healthy"</code> ", " <code>"degraded"</code> ", " <code>"failure"</code> ", "
                <code>"idle"</code> ", " <code>"outside"</code> ", " <code>"root"</code> ", "
                <code>"vs"</code> ", " <code>"fi"</code> ", " <code>"cb"</code> "."
            </p>
            <p>
                "Edges: " <code>"rt > 100"</code> " (p95 ms), " <code>"http > 10"</code> " (rps), "
                <code>"%httperr > 1"</code> ", " <code>"%grpcerr > 0"</code> ", " <code>"%traffic < 5"</code>
                ", " <code>"tcp > 1000"</code> " (bytes/s), " <code>"protocol = grpc"</code> ", "
                <code>"mtls"</code> ", " <code>"traffic"</code> "."
            </p>
            <p>"Combine with " <code>"AND"</code> " / " <code>"&&"</code> ", " <code>"OR"</code> " / "
                <code>"||"</code> ", " <code>"!"</code> " and parentheses; one expression tests nodes or edges, not both."</p>
        </details>
    }
}

fn summary(
    query: &GraphQuery,
    data: &GraphData,
    shown: &GraphData,
    found: Option<usize>,
) -> impl IntoView + use<> {
    let window = match query.query_time_ms {
        None => format!("last {}", format_duration(query.duration_secs)),
        Some(ms) => format!(
            "{} ending {} UTC",
            format_duration(query.duration_secs),
            format_end(ms).replace('T', " ")
        ),
    };
    let source = data.window.from_history.then_some(" (from stored history)");
    let hidden = (shown.nodes.len() != data.nodes.len() || shown.edges.len() != data.edges.len())
        .then(|| {
            format!(
                " ({} nodes and {} edges hidden)",
                data.nodes.len() - shown.nodes.len(),
                data.edges.len() - shown.edges.len()
            )
        });
    let found = found.map(|n| {
        let text = if n == 1 {
            " · Find: 1 match".to_string()
        } else {
            format!(" · Find: {n} matches")
        };
        view! { <span class="found-count">{text}</span> }
    });
    let counts = format!("{} nodes, {} edges", shown.nodes.len(), shown.edges.len());
    let rest = format!(
        "{} · Window: {window}{}",
        hidden.unwrap_or_default(),
        source.unwrap_or_default()
    );
    view! {
        <p class="graph-summary" role="status">
            <strong>{counts}</strong>
            {rest}
            {found}
        </p>
    }
}

fn empty(query: &GraphQuery, data: &GraphData) -> impl IntoView + use<> {
    let message = if !data.nodes.is_empty() {
        "Every node is hidden by the hide expression.".to_string()
    } else if query.namespaces.is_empty() {
        format!(
            "No traffic in the {} window.",
            format_duration(query.duration_secs)
        )
    } else {
        format!(
            "No traffic in {} in the {} window.",
            query.namespaces.join(", "),
            format_duration(query.duration_secs)
        )
    };
    view! { <p class="empty graph-empty">{message}</p> }
}

/// The service or workload page of a node, when it has one.
fn page_link(n: &Node) -> Option<(String, String)> {
    let ns = n.namespace.as_deref()?;
    match n.kind {
        NodeKind::Service => n.service.as_deref().map(|s| {
            (
                format!("/namespaces/{}/services/{}", encode(ns), encode(s)),
                format!("Service {s}"),
            )
        }),
        NodeKind::Workload => n.workload.as_deref().map(|w| {
            (
                format!("/namespaces/{}/workloads/{}", encode(ns), encode(w)),
                format!("Workload {w}"),
            )
        }),
        NodeKind::App => n.app.as_deref().map(|a| {
            (
                format!("/namespaces/{}/services/{}", encode(ns), encode(a)),
                format!("Service {a}"),
            )
        }),
        NodeKind::Unknown => None,
    }
}

fn details(query: &GraphQuery, data: &GraphData, shown: &GraphData) -> AnyView {
    let is_shown_node = |id: &str| shown.nodes.iter().any(|n| n.id == id);
    match &query.focus {
        Some(Focus::Node(id)) => match data.nodes.iter().find(|n| &n.id == id) {
            Some(n) => node_details(query, data, n, is_shown_node(id)).into_any(),
            None => missing("node", id).into_any(),
        },
        Some(Focus::Edge(id)) => match data.edges.iter().find(|e| &e.id == id) {
            Some(e) => {
                edge_details(query, data, e, shown.edges.iter().any(|s| &s.id == id)).into_any()
            }
            None => missing("edge", id).into_any(),
        },
        None => overview(query, shown).into_any(),
    }
}

fn missing(what: &'static str, id: &str) -> impl IntoView + use<> {
    view! {
        <h2 id="details-title">"Not in this graph"</h2>
        <p>{format!("The {what} ")}<code>{id.to_string()}</code>" had no traffic in this window or is not part of this graph type."</p>
    }
}

/// With nothing focused: how to get details, and the nodes that need attention.
fn overview(query: &GraphQuery, shown: &GraphData) -> impl IntoView + use<> {
    let mut troubled: Vec<&Node> = shown
        .nodes
        .iter()
        .filter(|n| n.health > super::model::Health::Healthy)
        .collect();
    troubled.sort_by(|a, b| b.health.cmp(&a.health).then(a.id.cmp(&b.id)));
    let more = troubled.len().saturating_sub(10);
    let all_healthy = troubled.is_empty();
    let items = troubled
        .into_iter()
        .take(10)
        .map(|n| {
            let href = graph_href(query, Some(&Focus::Node(n.id.clone())));
            let class = format!("health-{}", n.health.class());
            view! { <li class=class><a href=href>{node_name(n)}</a>{format!(" — {}", n.health.as_str())}</li> }
        })
        .collect_view();
    let more = (more > 0).then(|| view! { <p>{format!("and {more} more.")}</p> });
    view! {
        <h2 id="details-title">"Details"</h2>
        <p>"Select a node or an edge in the graph (or Tab to it and press Enter) to see its traffic here."</p>
        <h3>"Needs attention"</h3>
        {all_healthy.then(|| view! { <p class="all-healthy">"Nothing: every node in this graph is healthy."</p> })}
        <ul class="troubled">{items}</ul>
        {more}
    }
}

fn rate_and_errors(e: &Edge) -> String {
    if e.protocol == Protocol::Tcp {
        format_bytes(e.bytes_per_second)
    } else {
        format!(
            "{}, {} errors",
            format_rate(e.requests_per_second),
            format_percent(e.error_percent)
        )
    }
}

/// A table of a node's edges one way: the node at the other end, protocol, rate, errors, p95, mTLS.
fn edge_table(
    query: &GraphQuery,
    data: &GraphData,
    edges: Vec<&Edge>,
    inbound: bool,
) -> impl IntoView + use<> {
    let caption = if inbound { "Inbound" } else { "Outbound" };
    let peer_heading = if inbound { "From" } else { "To" };
    let count = edges.len();
    let rows = edges
        .into_iter()
        .map(|e| {
            let peer_id = if inbound { &e.source } else { &e.target };
            let peer = data
                .nodes
                .iter()
                .find(|n| &n.id == peer_id)
                .map_or(peer_id.clone(), Node::label);
            let peer_href = graph_href(query, Some(&Focus::Node(peer_id.clone())));
            let edge_href = graph_href(query, Some(&Focus::Edge(e.id.clone())));
            let rate = if e.protocol == Protocol::Tcp {
                format_bytes(e.bytes_per_second)
            } else {
                format_rate(e.requests_per_second)
            };
            let errors = (e.protocol != Protocol::Tcp).then(|| format_percent(e.error_percent));
            let p95 = e.latency_ms.map(|l| format_ms(l.p95));
            let class = format!("health-{}", e.health.class());
            view! {
                <tr class=class>
                    <th scope="row"><a href=peer_href>{peer}</a></th>
                    <td>{e.protocol.as_str()}</td>
                    <td><a href=edge_href aria-label=format!("{rate}: edge details")>{rate.clone()}</a></td>
                    <td>{errors.unwrap_or_else(|| "–".to_string())}</td>
                    <td>{p95.unwrap_or_else(|| "–".to_string())}</td>
                    <td>{format_percent(e.mtls_percent)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-wrap">
            <table class="edge-table">
                <caption>{format!("{caption} ({count})")}</caption>
                <thead>
                    <tr>
                        <th scope="col">{peer_heading}</th>
                        <th scope="col">"Protocol"</th>
                        <th scope="col">"Rate"</th>
                        <th scope="col">"Errors"</th>
                        <th scope="col">"p95"</th>
                        <th scope="col">"mTLS"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}

fn node_details(
    query: &GraphQuery,
    data: &GraphData,
    n: &Node,
    shown: bool,
) -> impl IntoView + use<> {
    let fact = |term: &'static str, value: Option<String>| {
        value.map(|v| view! { <dt>{term}</dt><dd>{v}</dd> })
    };
    let rates = |r: &super::model::Rates| {
        let mut s = format!(
            "{}, {} errors",
            format_rate(r.requests_per_second),
            format_percent(r.error_percent())
        );
        if r.tcp_bytes_per_second > 0.0 {
            s.push_str(&format!("; TCP {}", format_bytes(r.tcp_bytes_per_second)));
        }
        s
    };
    let mut flags = Vec::new();
    for (on, what) in [
        (n.badges.virtual_service, "VirtualService"),
        (n.badges.fault_injection, "fault injection"),
        (n.badges.circuit_breaker, "circuit breaker"),
        (n.badges.is_outside, "outside the selected namespaces"),
        (n.badges.is_root, "root (traffic enters here)"),
    ] {
        if on {
            flags.push(what);
        }
    }
    let facts = view! {
        <dl class="facts">
            {fact("Kind", Some(n.kind.as_str().to_string()))}
            {fact("Namespace", n.namespace.clone())}
            {fact("App", n.app.clone())}
            {fact("Version", n.version.clone())}
            {fact("Workload", n.workload.clone())}
            {fact("Service", n.service.clone())}
            {fact("Health", Some(n.health.as_str().to_string()))}
            {fact("Inbound", Some(rates(&n.traffic_in)))}
            {fact("Outbound", Some(rates(&n.traffic_out)))}
            {fact("Flags", (!flags.is_empty()).then(|| flags.join(", ")))}
        </dl>
    };
    let hidden = (!shown)
        .then(|| view! { <p class="empty">"Hidden from the drawing by the hide expression."</p> });
    let link = page_link(n).map(
        |(href, text)| view! { <p class="links"><a href=href>{format!("{text} details")}</a></p> },
    );
    let inbound: Vec<&Edge> = data.edges.iter().filter(|e| e.target == n.id).collect();
    let outbound: Vec<&Edge> = data.edges.iter().filter(|e| e.source == n.id).collect();
    let title_class = format!("health-{}", n.health.class());
    view! {
        <h2 id="details-title" class=title_class>{n.label()}</h2>
        {hidden}
        {facts}
        {link}
        {edge_table(query, data, inbound, true)}
        {edge_table(query, data, outbound, false)}
        <p><a href=graph_href(query, None)>"Close details"</a></p>
    }
}

fn edge_details(
    query: &GraphQuery,
    data: &GraphData,
    e: &Edge,
    shown: bool,
) -> impl IntoView + use<> {
    let label = |id: &str| {
        data.nodes
            .iter()
            .find(|n| n.id == id)
            .map_or(id.to_string(), Node::label)
    };
    let (source, target) = (label(&e.source), label(&e.target));
    let fact = |term: &'static str, value: Option<String>| {
        value.map(|v| view! { <dt>{term}</dt><dd>{v}</dd> })
    };
    let latency = e.latency_ms;
    let hidden = (!shown)
        .then(|| view! { <p class="empty">"Hidden from the drawing by the hide expression."</p> });
    view! {
        <h2 id="details-title" class=format!("health-{}", e.health.class())>{format!("{source} → {target}")}</h2>
        {hidden}
        <dl class="facts">
            {fact("Protocol", Some(e.protocol.as_str().to_string()))}
            {fact("Traffic", Some(rate_and_errors(e)))}
            {fact("Health", Some(e.health.as_str().to_string()))}
            {fact("Share", Some(format!("{} of the source's traffic", format_percent(e.traffic_share_percent))))}
            {fact("p50", latency.map(|l| format_ms(l.p50)))}
            {fact("p95", latency.map(|l| format_ms(l.p95)))}
            {fact("p99", latency.map(|l| format_ms(l.p99)))}
            {fact("Bytes", Some(format_bytes(e.bytes_per_second)))}
            {fact("mTLS", Some(format_percent(e.mtls_percent)))}
        </dl>
        <p class="links">
            <a href=graph_href(query, Some(&Focus::Node(e.source.clone())))>{format!("From {source}")}</a>
            <a href=graph_href(query, Some(&Focus::Node(e.target.clone())))>{format!("To {target}")}</a>
        </p>
        <p><a href=graph_href(query, None)>"Close details"</a></p>
    }
}

/// The legend: shapes, colours, edge styles, badges. Static markup, nothing user-controlled.
const LEGEND: &str = concat!(
    "<section class=\"panel graph-legend\" aria-labelledby=\"legend-title\"><h2 id=\"legend-title\">Legend</h2><ul>",
    "<li><svg width=\"22\" height=\"22\" aria-hidden=\"true\"><circle cx=\"11\" cy=\"11\" r=\"8\" fill=\"#fff\" stroke=\"#393f44\" stroke-width=\"2\"/></svg>Workload</li>",
    "<li><svg width=\"22\" height=\"22\" aria-hidden=\"true\"><rect x=\"3\" y=\"4\" width=\"16\" height=\"14\" rx=\"4\" fill=\"#fff\" stroke=\"#393f44\" stroke-width=\"2\"/></svg>App</li>",
    "<li><svg width=\"22\" height=\"22\" aria-hidden=\"true\"><path d=\"M11,3L19,18L3,18z\" fill=\"#fff\" stroke=\"#393f44\" stroke-width=\"2\"/></svg>Service</li>",
    "<li><svg width=\"22\" height=\"22\" aria-hidden=\"true\"><circle cx=\"11\" cy=\"11\" r=\"8\" fill=\"#fff\" stroke=\"#8a8d90\" stroke-width=\"2\" stroke-dasharray=\"3 2\"/></svg>Unknown (outside the mesh)</li>",
    "<li><svg width=\"30\" height=\"12\" aria-hidden=\"true\"><path d=\"M2,6H28\" stroke=\"#3e8635\" stroke-width=\"2\"/></svg>Healthy</li>",
    "<li><svg width=\"30\" height=\"12\" aria-hidden=\"true\"><path d=\"M2,6H28\" stroke=\"#f0ab00\" stroke-width=\"2\"/></svg>Degraded (errors &gt; 0%)</li>",
    "<li><svg width=\"30\" height=\"12\" aria-hidden=\"true\"><path d=\"M2,6H28\" stroke=\"#c9190b\" stroke-width=\"2\"/></svg>Failure (errors ≥ 10%)</li>",
    "<li><svg width=\"30\" height=\"12\" aria-hidden=\"true\"><path d=\"M2,6H28\" stroke=\"#0066cc\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/></svg>TCP</li>",
    "<li><svg width=\"30\" height=\"12\" aria-hidden=\"true\"><path d=\"M2,6H28\" stroke=\"#8a8d90\" stroke-width=\"1\"/></svg>No traffic</li>",
    "<li><svg width=\"14\" height=\"14\" viewBox=\"-6 -7 12 14\" aria-hidden=\"true\"><path d=\"M-3,-1V-3.2A3,3 0 0 1 3,-3.2V-1\" fill=\"none\" stroke=\"#393f44\" stroke-width=\"1.4\"/><rect x=\"-4.5\" y=\"-1\" width=\"9\" height=\"7\" rx=\"1.2\" fill=\"#393f44\"/></svg>mTLS</li>",
    "<li><span class=\"legend-badge\">VS</span>VirtualService</li>",
    "<li><span class=\"legend-badge\">FI</span>Fault injection</li>",
    "<li><span class=\"legend-badge\">CB</span>Circuit breaker</li>",
    "</ul></section>"
);

#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tests;
