use super::*;
use crate::graph::sample::bookinfo;

fn ids_of_nodes(text: &str) -> Vec<String> {
    let data = bookinfo();
    let f = parse(text).unwrap().unwrap();
    data.nodes
        .iter()
        .filter(|n| f.matches_node(n))
        .map(|n| n.id.clone())
        .collect()
}

fn ids_of_edges(text: &str) -> Vec<String> {
    let data = bookinfo();
    let f = parse(text).unwrap().unwrap();
    data.edges
        .iter()
        .filter(|e| f.matches_edge(e))
        .map(|e| e.id.clone())
        .collect()
}

fn error(text: &str) -> FindError {
    parse(text).expect_err(text)
}

#[test]
fn blank_is_no_filter() {
    assert_eq!(parse("   "), Ok(None));
}

#[test]
fn node_attributes() {
    assert_eq!(
        ids_of_nodes("app = reviews AND version != v1"),
        [
            "workload:bookinfo/reviews-v2",
            "workload:bookinfo/reviews-v3"
        ]
    );
    assert_eq!(
        ids_of_nodes("node=service && vs"),
        ["service:bookinfo/reviews", "service:bookinfo/ratings"]
    );
    assert_eq!(
        ids_of_nodes("name = det*"),
        ["service:bookinfo/details", "workload:bookinfo/details-v1"]
    );
    assert_eq!(
        ids_of_nodes("ns=bookinfo").len(),
        12,
        "unknown has no namespace"
    );
    assert_eq!(ids_of_nodes("namespace=shop"), Vec::<String>::new());
    assert_eq!(ids_of_nodes("fi"), ["service:bookinfo/ratings"]);
    assert_eq!(ids_of_nodes("root"), ["unknown"]);
}

#[test]
fn health_flags_and_not() {
    let unhealthy = ids_of_nodes("!healthy");
    assert!(unhealthy.contains(&"workload:bookinfo/reviews-v2".to_string()));
    assert!(unhealthy.contains(&"workload:bookinfo/ratings-v1".to_string()));
    assert!(!unhealthy.contains(&"workload:bookinfo/details-v1".to_string()));
    assert_eq!(
        ids_of_nodes("failure"),
        ids_of_nodes("NOT (healthy OR degraded OR idle)")
    );
}

#[test]
fn edge_attributes() {
    assert_eq!(
        ids_of_edges("%httperr > 1"),
        [
            "workload:bookinfo/reviews-v2>service:bookinfo/ratings:http",
            "service:bookinfo/ratings>workload:bookinfo/ratings-v1:http"
        ]
    );
    assert_eq!(ids_of_edges("rt >= 45").len(), 2);
    assert_eq!(ids_of_edges("protocol = tcp").len(), 2);
    assert_eq!(ids_of_edges("!mtls").len(), 3);
    assert_eq!(ids_of_edges("http > 10 || tcp > 0").len(), 7);
    // `%httperr` does not apply to TCP edges.
    assert_eq!(
        ids_of_edges("protocol=tcp AND %httperr < 1"),
        Vec::<String>::new()
    );
}

#[test]
fn node_and_edge_expressions_select_their_own_kind() {
    let data = bookinfo();
    let nodes = parse("app = reviews").unwrap().unwrap();
    assert_eq!(nodes.target(), Target::Nodes);
    assert!(data.edges.iter().all(|e| !nodes.matches_edge(e)));
    let edges = parse("mtls").unwrap().unwrap();
    assert_eq!(edges.target(), Target::Edges);
    assert!(data.nodes.iter().all(|n| !edges.matches_node(n)));
}

#[test]
fn errors_point_at_the_problem() {
    let e = error("rt > fast");
    assert_eq!(e.position, 5);
    assert!(e.message.contains("not a number"), "{e}");

    let e = error("app = reviews AND colour = red");
    assert_eq!(e.position, 18);
    assert!(e.message.contains("unknown attribute `colour`"), "{e}");

    let e = error("namespace");
    assert_eq!(e.position, 9);
    assert!(e.message.contains("needs a comparison"), "{e}");

    let e = error("mtls = true");
    assert_eq!(e.position, 5);
    assert!(e.message.contains("takes no comparison"), "{e}");

    let e = error("app > reviews");
    assert_eq!(e.position, 4);
    assert!(e.message.contains("= or !="), "{e}");

    let e = error("app = reviews AND mtls");
    assert_eq!(e.position, 18);
    assert!(e.message.contains("use one kind"), "{e}");

    let e = error("(app = reviews");
    assert_eq!(e.position, 0);
    assert!(e.message.contains("never closed"), "{e}");

    let e = error("app = reviews version = v1");
    assert_eq!(e.position, 14);
    assert!(e.message.contains("AND or OR"), "{e}");

    let e = error("rt >");
    assert_eq!(e.position, 4);
    assert!(e.message.contains("expected a value"), "{e}");

    let e = error("app = reviews AND");
    assert_eq!(e.position, 17);

    let e = error("rt > 1 ; drop");
    assert_eq!(e.position, 7);
    assert!(e.message.contains("unexpected character `;`"), "{e}");
    assert_eq!(e.to_string(), "at column 8: unexpected character `;`");

    let e = error("app = \"reviews");
    assert_eq!(e.position, 6);
}

#[test]
fn positions_count_characters_not_bytes() {
    let e = error("app = é AND ⚠");
    assert_eq!(e.position, 12);
}

#[test]
fn hide_nodes_removes_their_edges_and_orphans() {
    let data = bookinfo();
    let hidden = hide(&data, &parse("app = reviews").unwrap().unwrap());
    assert!(
        hidden
            .nodes
            .iter()
            .all(|n| n.app.as_deref() != Some("reviews"))
    );
    assert!(
        hidden
            .edges
            .iter()
            .all(|e| !e.source.contains("reviews") && !e.target.contains("reviews"))
    );
    // ratings is only reached through reviews: its edges remain (ratings -> mysqldb).
    assert!(
        hidden
            .nodes
            .iter()
            .any(|n| n.id == "service:bookinfo/ratings")
    );
    assert_eq!(hidden.edges.len(), data.edges.len() - 6);
}

#[test]
fn hide_edges_drops_nodes_left_alone() {
    let data = bookinfo();
    let hidden = hide(&data, &parse("protocol = tcp").unwrap().unwrap());
    assert_eq!(hidden.edges.len(), data.edges.len() - 2);
    assert!(!hidden.nodes.iter().any(|n| n.id.contains("mysqldb")));
    assert!(
        hidden
            .nodes
            .iter()
            .any(|n| n.id == "workload:bookinfo/ratings-v1")
    );
}

#[test]
fn highlight_counts_matches() {
    let data = bookinfo();
    let f = parse("%httperr > 1").unwrap();
    let h = Highlight::of(&data, f.as_ref());
    assert_eq!(h.count(), 2);
    assert_eq!(Highlight::of(&data, None).count(), 0);
}
