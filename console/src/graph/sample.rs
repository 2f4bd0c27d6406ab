//! Sample graphs: Istio's Bookinfo (for tests and the in-memory backend) and a generated mesh of
//! any size (for the benchmark). Deterministic: a fixed-seed generator, no randomness source.

use super::model::{
    Badges, Edge, GraphData, Health, Latency, Node, NodeKind, Protocol, Rates, Window,
};

fn node(id: &str, kind: NodeKind, namespace: &str, app: &str, version: Option<&str>) -> Node {
    let name = id.rsplit('/').next().unwrap_or(id).to_string();
    Node {
        id: id.to_string(),
        kind,
        namespace: (kind != NodeKind::Unknown).then(|| namespace.to_string()),
        app: (!app.is_empty()).then(|| app.to_string()),
        version: version.map(str::to_string),
        workload: (kind == NodeKind::Workload).then(|| name.clone()),
        service: (kind == NodeKind::Service).then_some(name),
        health: Health::NoTraffic,
        traffic_in: Rates::default(),
        traffic_out: Rates::default(),
        badges: Badges::default(),
    }
}

#[allow(clippy::too_many_arguments)]
fn edge(
    source: &str,
    target: &str,
    protocol: Protocol,
    rps: f64,
    err: f64,
    share: f64,
    p95: f64,
    mtls: f64,
) -> Edge {
    Edge {
        id: format!("{source}>{target}:{}", protocol.as_str()),
        source: source.to_string(),
        target: target.to_string(),
        protocol,
        requests_per_second: rps,
        error_percent: err,
        traffic_share_percent: share,
        latency_ms: (protocol != Protocol::Tcp).then_some(Latency {
            p50: p95 / 3.0,
            p95,
            p99: p95 * 1.6,
        }),
        bytes_per_second: rps * 1200.0,
        mtls_percent: mtls,
        health: if protocol == Protocol::Tcp {
            Health::NoTraffic
        } else {
            Health::from_rates(rps, rps * err / 100.0)
        },
    }
}

/// Sums each node's inbound and outbound traffic from the edges, sets health from it (Kiali's
/// default 5xx tolerance) and marks roots (traffic out, none in).
pub fn finish(data: &mut GraphData) {
    let index: std::collections::HashMap<String, usize> = data
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.clone(), i))
        .collect();
    for n in &mut data.nodes {
        n.traffic_in = Rates::default();
        n.traffic_out = Rates::default();
    }
    for e in &data.edges {
        let errors = e.requests_per_second * e.error_percent / 100.0;
        for (id, outbound) in [(&e.source, true), (&e.target, false)] {
            let Some(&i) = index.get(id) else { continue };
            let n = &mut data.nodes[i];
            let rates = if outbound {
                &mut n.traffic_out
            } else {
                &mut n.traffic_in
            };
            if e.protocol == Protocol::Tcp {
                rates.tcp_bytes_per_second += e.bytes_per_second;
            } else {
                rates.requests_per_second += e.requests_per_second;
                rates.errors_per_second += errors;
            }
        }
    }
    for n in &mut data.nodes {
        let inbound = Health::from_rates(
            n.traffic_in.requests_per_second,
            n.traffic_in.errors_per_second,
        );
        let outbound = Health::from_rates(
            n.traffic_out.requests_per_second,
            n.traffic_out.errors_per_second,
        );
        n.health = inbound.max(outbound);
        n.badges.is_root = n.traffic_in == Rates::default() && n.traffic_out != Rates::default();
    }
}

/// Istio's Bookinfo in namespace `bookinfo` as a versioned workload graph with service nodes:
/// reviews-v2 fails 20% of its calls to ratings, ratings has a VirtualService with fault
/// injection, the productpage → details edge is plain text (no mTLS), and `mysqldb` is TCP.
pub fn bookinfo() -> GraphData {
    use NodeKind::{Service, Unknown, Workload};
    let ns = "bookinfo";
    let mut nodes = vec![
        node("unknown", Unknown, ns, "", None),
        node(
            "workload:bookinfo/productpage-v1",
            Workload,
            ns,
            "productpage",
            Some("v1"),
        ),
        node(
            "service:bookinfo/productpage",
            Service,
            ns,
            "productpage",
            None,
        ),
        node("service:bookinfo/details", Service, ns, "details", None),
        node(
            "workload:bookinfo/details-v1",
            Workload,
            ns,
            "details",
            Some("v1"),
        ),
        node("service:bookinfo/reviews", Service, ns, "reviews", None),
        node(
            "workload:bookinfo/reviews-v1",
            Workload,
            ns,
            "reviews",
            Some("v1"),
        ),
        node(
            "workload:bookinfo/reviews-v2",
            Workload,
            ns,
            "reviews",
            Some("v2"),
        ),
        node(
            "workload:bookinfo/reviews-v3",
            Workload,
            ns,
            "reviews",
            Some("v3"),
        ),
        node("service:bookinfo/ratings", Service, ns, "ratings", None),
        node(
            "workload:bookinfo/ratings-v1",
            Workload,
            ns,
            "ratings",
            Some("v1"),
        ),
        node("service:bookinfo/mysqldb", Service, ns, "mysqldb", None),
        node(
            "workload:bookinfo/mysqldb-v1",
            Workload,
            ns,
            "mysqldb",
            Some("v1"),
        ),
    ];
    for n in &mut nodes {
        match n.id.as_str() {
            "service:bookinfo/reviews" => {
                n.badges.virtual_service = true;
                n.badges.circuit_breaker = true;
            }
            "service:bookinfo/ratings" => {
                n.badges.virtual_service = true;
                n.badges.fault_injection = true;
            }
            _ => {}
        }
    }
    let w = |s: &str| format!("workload:bookinfo/{s}");
    let s = |s: &str| format!("service:bookinfo/{s}");
    let (http, tcp) = (Protocol::Http, Protocol::Tcp);
    let edges = vec![
        edge(
            "unknown",
            &s("productpage"),
            http,
            12.0,
            0.0,
            100.0,
            48.0,
            0.0,
        ),
        edge(
            &s("productpage"),
            &w("productpage-v1"),
            http,
            12.0,
            0.0,
            100.0,
            45.0,
            100.0,
        ),
        edge(
            &w("productpage-v1"),
            &s("details"),
            http,
            12.0,
            0.0,
            50.0,
            6.0,
            0.0,
        ),
        edge(
            &s("details"),
            &w("details-v1"),
            http,
            12.0,
            0.0,
            100.0,
            5.0,
            0.0,
        ),
        edge(
            &w("productpage-v1"),
            &s("reviews"),
            http,
            12.0,
            0.0,
            50.0,
            30.0,
            100.0,
        ),
        edge(
            &s("reviews"),
            &w("reviews-v1"),
            http,
            4.0,
            0.0,
            33.3,
            12.0,
            100.0,
        ),
        edge(
            &s("reviews"),
            &w("reviews-v2"),
            http,
            4.0,
            0.0,
            33.3,
            28.0,
            100.0,
        ),
        edge(
            &s("reviews"),
            &w("reviews-v3"),
            http,
            4.0,
            0.0,
            33.4,
            26.0,
            100.0,
        ),
        edge(
            &w("reviews-v2"),
            &s("ratings"),
            http,
            4.0,
            20.0,
            100.0,
            9.0,
            100.0,
        ),
        edge(
            &w("reviews-v3"),
            &s("ratings"),
            http,
            4.0,
            0.0,
            100.0,
            8.0,
            100.0,
        ),
        edge(
            &s("ratings"),
            &w("ratings-v1"),
            http,
            8.0,
            10.0,
            100.0,
            7.0,
            100.0,
        ),
        edge(
            &w("ratings-v1"),
            &s("mysqldb"),
            tcp,
            0.5,
            0.0,
            100.0,
            0.0,
            100.0,
        ),
        edge(
            &s("mysqldb"),
            &w("mysqldb-v1"),
            tcp,
            0.5,
            0.0,
            100.0,
            0.0,
            100.0,
        ),
    ];
    let mut data = GraphData {
        window: Window {
            start_ms: 1_763_720_000_000,
            end_ms: 1_763_720_060_000,
            from_history: false,
        },
        nodes,
        edges,
    };
    finish(&mut data);
    data
}

/// Tiers of the generated mesh (call depth).
const TIERS: usize = 8;

/// A generated mesh of `node_count` nodes (workloads and the services in front of them, in
/// `namespaces` namespaces) and about `edge_count` edges that mostly flow from one tier to the
/// next of eight, with some calls back up (cycles) as real meshes have.
pub fn mesh(node_count: usize, edge_count: usize, namespaces: usize) -> GraphData {
    let mut seed = 0x5eed_u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let namespaces = namespaces.max(1);
    let mut nodes = vec![node("unknown", NodeKind::Unknown, "", "", None)];
    for i in 1..node_count {
        let ns = format!("ns{}", i % namespaces);
        let (kind, prefix) = if i % 3 == 0 {
            (NodeKind::Service, "service")
        } else {
            (NodeKind::Workload, "workload")
        };
        let app = format!("app{}", i / 3);
        let mut n = node(
            &format!("{prefix}:{ns}/{app}-{i}"),
            kind,
            &ns,
            &app,
            Some("v1"),
        );
        n.badges.virtual_service = kind == NodeKind::Service && i % 7 == 0;
        n.badges.circuit_breaker = kind == NodeKind::Service && i % 11 == 0;
        nodes.push(n);
    }
    let n = nodes.len().max(1);
    let mut edges = Vec::with_capacity(edge_count);
    let mut seen = std::collections::HashSet::new();
    let mut attempts = 0;
    while edges.len() < edge_count && attempts < edge_count * 10 && n > 1 {
        attempts += 1;
        // Tiers like a real mesh: the front calls the middle calls the back; mostly the next
        // tier, sometimes one further, one call in fifty goes back up (a cycle).
        let tier_of = |v: usize| (v - 1) * TIERS / (n - 1);
        let tier_start = |t: usize| 1 + (t * (n - 1)).div_ceil(TIERS);
        let (a, b) = if edges.len() < n / 20 {
            (0, 1 + next() % (tier_start(1) - 1).max(1))
        } else {
            let a = 1 + next() % (n - 1);
            let t = tier_of(a);
            let target_tier = match next() % 50 {
                0 => t.saturating_sub(1 + next() % 2),
                1..=7 => (t + 2).min(TIERS - 1),
                _ => (t + 1).min(TIERS - 1),
            };
            let (lo, hi) = (tier_start(target_tier), tier_start(target_tier + 1).min(n));
            (a, (lo + next() % (hi - lo).max(1)).min(n - 1))
        };
        if a == b || !seen.insert((a, b)) {
            continue;
        }
        let protocol = match next() % 10 {
            0 => Protocol::Tcp,
            1 | 2 => Protocol::Grpc,
            _ => Protocol::Http,
        };
        let rps = (next() % 2000) as f64 / 10.0;
        let err = if next() % 15 == 0 {
            (next() % 30) as f64
        } else {
            0.0
        };
        let mtls = if next() % 4 == 0 { 0.0 } else { 100.0 };
        let p95 = 1.0 + (next() % 500) as f64;
        edges.push(edge(
            &nodes[a].id,
            &nodes[b].id,
            protocol,
            rps,
            err,
            0.0,
            p95,
            mtls,
        ));
    }
    let mut out_total = vec![0.0f64; n];
    let index: std::collections::HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    for e in &edges {
        out_total[index[e.source.as_str()]] += e.requests_per_second;
    }
    for e in &mut edges {
        let total = out_total[index[e.source.as_str()]];
        e.traffic_share_percent = if total > 0.0 {
            e.requests_per_second / total * 100.0
        } else {
            0.0
        };
    }
    let mut data = GraphData {
        window: Window {
            start_ms: 1_763_720_000_000,
            end_ms: 1_763_720_060_000,
            from_history: false,
        },
        nodes,
        edges,
    };
    finish(&mut data);
    data
}
