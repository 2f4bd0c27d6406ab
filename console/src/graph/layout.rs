//! A layered (Sugiyama-style) layout, left to right like Kiali's dagre layout, computed on the
//! server so the page needs no script.
//!
//! Per connected component: cycles are broken by reversing a small set of edges (Eades–Lin–Smyth
//! greedy order); layers are the longest path from the roots (the `first` nodes, e.g. `unknown`
//! and roots, are placed first so they end up leftmost), and other sources are pulled next to
//! their targets; long edges get virtual nodes so they route between real nodes; a bounded number of barycenter sweeps reduce crossings (the best
//! order by crossing count is kept); y coordinates are the least-squares placement nearest the
//! neighbours' average that keeps the spacing (pool-adjacent-violators). Components are packed in
//! shelves, biggest first. Everything is indexed by integers and iterated in index order, so the
//! output is deterministic.

/// A point in layout coordinates (SVG user units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// How an edge is drawn: node centres and virtual-node bends, from source to target.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// From the source node's centre to the target's; a single point for a self loop.
    pub points: Vec<Point>,
    /// Reversed to break a cycle: it runs right to left.
    pub reversed: bool,
}

/// Node centres, edge routes and the drawing's size.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub nodes: Vec<Point>,
    pub routes: Vec<Route>,
    pub width: f64,
    pub height: f64,
}

/// Distances between things, in SVG units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spacing {
    /// Between layers (columns).
    pub layer_gap: f64,
    /// Between two real nodes in a column (room for the label under a node).
    pub node_gap: f64,
    /// Between virtual nodes (edge bends) in a column.
    pub bend_gap: f64,
    /// Around the drawing and between components.
    pub margin: f64,
}

impl Default for Spacing {
    fn default() -> Spacing {
        Spacing {
            layer_gap: 200.0,
            node_gap: 84.0,
            bend_gap: 22.0,
            margin: 48.0,
        }
    }
}

/// At most this many down+up barycenter sweeps per component (the 300 ms budget).
const MAX_SWEEPS: usize = 6;
/// Edge bends allowed per component; a pathological graph (thousands of edges each spanning
/// hundreds of layers) gets its further long edges drawn straight instead of blowing the budget.
const MAX_VIRTUAL_NODES: usize = 60_000;
/// Coordinate refinement passes.
const PLACEMENT_PASSES: usize = 4;

/// Lays out `node_count` nodes joined by `edges` (source, target indices). `first[i]` asks for
/// node `i` to start the flow (leftmost); shorter slices mean `false`.
///
/// # Panics
/// When an edge refers to a node index `>= node_count`.
pub fn layout(
    node_count: usize,
    edges: &[(usize, usize)],
    first: &[bool],
    spacing: &Spacing,
) -> Layout {
    let components = components(node_count, edges);
    let mut local = vec![0u32; node_count];
    let mut subs = Vec::with_capacity(components.len());
    for (nodes, edge_ids) in &components {
        for (i, &v) in nodes.iter().enumerate() {
            local[v] = i as u32;
        }
        let local_edges: Vec<(u32, u32)> = edge_ids
            .iter()
            .map(|&e| (local[edges[e].0], local[edges[e].1]))
            .collect();
        let local_first: Vec<bool> = nodes
            .iter()
            .map(|&v| first.get(v).copied().unwrap_or(false))
            .collect();
        subs.push(layout_connected(
            nodes.len(),
            &local_edges,
            &local_first,
            spacing,
        ));
    }
    pack(node_count, edges.len(), &components, subs, spacing)
}

/// Connected components, each as its nodes and edge indices, ordered by their lowest node.
fn components(n: usize, edges: &[(usize, usize)]) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut v: usize) -> usize {
        while parent[v] != v {
            parent[v] = parent[parent[v]];
            v = parent[v];
        }
        v
    }
    for &(a, b) in edges {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut index_of_root = vec![usize::MAX; n];
    let mut out: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    for v in 0..n {
        let r = find(&mut parent, v);
        if index_of_root[r] == usize::MAX {
            index_of_root[r] = out.len();
            out.push((Vec::new(), Vec::new()));
        }
        out[index_of_root[r]].0.push(v);
    }
    for (e, &(a, _)) in edges.iter().enumerate() {
        let r = find(&mut parent, a);
        out[index_of_root[r]].1.push(e);
    }
    out
}

/// A component's layout in its own coordinates (top-left at 0,0).
struct SubLayout {
    nodes: Vec<Point>,
    routes: Vec<Route>,
    width: f64,
    height: f64,
}

/// Shelf packing: components biggest first, side by side while they fit the widest one.
fn pack(
    node_count: usize,
    edge_count: usize,
    components: &[(Vec<usize>, Vec<usize>)],
    subs: Vec<SubLayout>,
    spacing: &Spacing,
) -> Layout {
    let mut order: Vec<usize> = (0..subs.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(components[c].0.len()));
    let shelf_width = subs
        .iter()
        .map(|s| s.width)
        .fold(spacing.layer_gap * 4.0, f64::max);
    let mut nodes = vec![Point { x: 0.0, y: 0.0 }; node_count];
    let mut routes = vec![
        Route {
            points: Vec::new(),
            reversed: false,
        };
        edge_count
    ];
    let (mut x, mut y, mut row_height, mut width) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut subs: Vec<Option<SubLayout>> = subs.into_iter().map(Some).collect();
    for c in order {
        let sub = subs[c].take().expect("each component packed once");
        if x > 0.0 && x + sub.width > shelf_width {
            y += row_height;
            x = 0.0;
            row_height = 0.0;
        }
        let shift = |p: Point| Point {
            x: p.x + x,
            y: p.y + y,
        };
        for (i, &v) in components[c].0.iter().enumerate() {
            nodes[v] = shift(sub.nodes[i]);
        }
        for (route, &e) in sub.routes.into_iter().zip(&components[c].1) {
            routes[e] = Route {
                points: route.points.into_iter().map(shift).collect(),
                reversed: route.reversed,
            };
        }
        width = width.max(x + sub.width);
        // Side by side, components are a column apart so labels do not collide.
        x += sub.width + (spacing.layer_gap - 2.0 * spacing.margin).max(0.0);
        row_height = row_height.max(sub.height);
    }
    Layout {
        nodes,
        routes,
        width: width.max(spacing.margin * 2.0),
        height: (y + row_height).max(spacing.margin * 2.0),
    }
}

/// Adjacency in compressed rows: the neighbours of `v` are `items[start[v]..start[v + 1]]`.
struct Csr {
    start: Vec<u32>,
    items: Vec<u32>,
}

impl Csr {
    fn build(n: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Csr {
        let mut start = vec![0u32; n + 1];
        for (a, _) in pairs.clone() {
            start[a as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut items = vec![0u32; start[n] as usize];
        for (a, b) in pairs {
            items[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
        }
        Csr { start, items }
    }

    fn of(&self, v: usize) -> &[u32] {
        &self.items[self.start[v] as usize..self.start[v + 1] as usize]
    }
}

/// Edges to reverse so the graph has no cycle, by Eades–Lin–Smyth's greedy heuristic: peel sinks
/// to the end and sources to the front; when only cycles remain, the node with the most
/// outgoing over incoming edges goes to the front. Edges pointing backwards in that order are
/// reversed. The `first` nodes are placed first. Unlike reversing DFS back edges (tried first),
/// this keeps a tiered mesh with a few calls back up at its real depth: on the 1,000-node
/// benchmark mesh, DFS made 120 layers of an 8-tier mesh. Self loops are never reversed.
fn break_cycles(n: usize, edges: &[(u32, u32)], first: &[bool]) -> Vec<bool> {
    let proper = || {
        edges
            .iter()
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, &(a, b))| (i as u32, a, b))
    };
    let out = Csr::build(n, proper().map(|(_, a, b)| (a, b)));
    let inc = Csr::build(n, proper().map(|(_, a, b)| (b, a)));
    let mut indegree = vec![0i64; n];
    let mut outdegree = vec![0i64; n];
    for (_, a, b) in proper() {
        outdegree[a as usize] += 1;
        indegree[b as usize] += 1;
    }
    let mut state = Peel {
        removed: vec![false; n],
        sources: (0..n).rev().filter(|&v| indegree[v] == 0).collect(),
        sinks: (0..n).rev().filter(|&v| outdegree[v] == 0).collect(),
        indegree,
        outdegree,
    };
    let mut front: Vec<usize> = Vec::with_capacity(n);
    let mut back: Vec<usize> = Vec::new();
    for v in (0..n).filter(|&v| first[v]) {
        state.remove(v, &out, &inc);
        front.push(v);
    }
    while front.len() + back.len() < n {
        if let Some(v) = state.sinks.pop() {
            if !state.removed[v] {
                state.remove(v, &out, &inc);
                back.push(v);
            }
        } else if let Some(v) = state.sources.pop() {
            if !state.removed[v] {
                state.remove(v, &out, &inc);
                front.push(v);
            }
        } else {
            let v = (0..n)
                .filter(|&v| !state.removed[v])
                .max_by_key(|&v| (state.outdegree[v] - state.indegree[v], std::cmp::Reverse(v)))
                .expect("a node remains");
            state.remove(v, &out, &inc);
            front.push(v);
        }
    }
    let mut rank = vec![0usize; n];
    for (r, &v) in front.iter().chain(back.iter().rev()).enumerate() {
        rank[v] = r;
    }
    edges
        .iter()
        .map(|&(a, b)| a != b && rank[a as usize] > rank[b as usize])
        .collect()
}

/// The greedy peeling's state: degrees among the nodes not yet placed.
struct Peel {
    removed: Vec<bool>,
    indegree: Vec<i64>,
    outdegree: Vec<i64>,
    sources: Vec<usize>,
    sinks: Vec<usize>,
}

impl Peel {
    fn remove(&mut self, v: usize, out: &Csr, inc: &Csr) {
        self.removed[v] = true;
        for &w in out.of(v) {
            let w = w as usize;
            self.indegree[w] -= 1;
            if !self.removed[w] && self.indegree[w] == 0 {
                self.sources.push(w);
            }
        }
        for &u in inc.of(v) {
            let u = u as usize;
            self.outdegree[u] -= 1;
            if !self.removed[u] && self.outdegree[u] == 0 {
                self.sinks.push(u);
            }
        }
    }
}

/// Longest path from the sources over the acyclic `dag`, then sources that are not `first` are
/// pulled right next to their nearest target (shorter edges).
fn assign_layers(n: usize, dag: &[(u32, u32)], first: &[bool]) -> Vec<u32> {
    let down = Csr::build(n, dag.iter().copied());
    let mut indegree = vec![0u32; n];
    for &(_, b) in dag {
        indegree[b as usize] += 1;
    }
    let mut layer = vec![0u32; n];
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&v| indegree[v] == 0).collect();
    let mut remaining = indegree.clone();
    while let Some(v) = queue.pop_front() {
        for &w in down.of(v) {
            let w = w as usize;
            layer[w] = layer[w].max(layer[v] + 1);
            remaining[w] -= 1;
            if remaining[w] == 0 {
                queue.push_back(w);
            }
        }
    }
    for v in 0..n {
        if indegree[v] == 0
            && !first[v]
            && let Some(nearest) = down.of(v).iter().map(|&w| layer[w as usize]).min()
        {
            layer[v] = nearest - 1;
        }
    }
    layer
}

/// The layered graph: real nodes `0..n`, virtual nodes after them.
struct Layered {
    layer: Vec<u32>,
    up: Vec<Vec<u32>>,
    down: Vec<Vec<u32>>,
    /// Per edge, its nodes from the DAG source to the DAG target.
    chains: Vec<Vec<u32>>,
    real: usize,
}

fn insert_virtual_nodes(
    n: usize,
    edges: &[(u32, u32)],
    reversed: &[bool],
    layer: Vec<u32>,
) -> Layered {
    let mut g = Layered {
        layer,
        up: vec![Vec::new(); n],
        down: vec![Vec::new(); n],
        chains: Vec::with_capacity(edges.len()),
        real: n,
    };
    for (i, &(a, b)) in edges.iter().enumerate() {
        if a == b {
            g.chains.push(vec![a]);
            continue;
        }
        let (u, v) = if reversed[i] { (b, a) } else { (a, b) };
        let span = (g.layer[v as usize] - g.layer[u as usize]) as usize;
        if span > 1 && g.layer.len() - n + span - 1 > MAX_VIRTUAL_NODES {
            // Over budget: drawn straight, and left out of the ordering (it spans layers).
            g.chains.push(vec![u, v]);
            continue;
        }
        let mut chain = vec![u];
        let mut prev = u;
        for l in g.layer[u as usize] + 1..g.layer[v as usize] {
            let d = g.layer.len() as u32;
            g.layer.push(l);
            g.up.push(Vec::new());
            g.down.push(Vec::new());
            g.down[prev as usize].push(d);
            g.up[d as usize].push(prev);
            chain.push(d);
            prev = d;
        }
        g.down[prev as usize].push(v);
        g.up[v as usize].push(prev);
        chain.push(v);
        g.chains.push(chain);
    }
    g
}

/// The first order of each layer: a DFS down from the sources, so related nodes start together.
fn initial_order(g: &Layered) -> Vec<Vec<u32>> {
    let layers = g.layer.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut order: Vec<Vec<u32>> = vec![Vec::new(); layers];
    let mut seen = vec![false; g.layer.len()];
    let mut stack: Vec<u32> = Vec::new();
    let sources = (0..g.real).filter(|&v| g.up[v].is_empty());
    for root in sources.chain(0..g.layer.len()) {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        stack.push(root as u32);
        while let Some(v) = stack.pop() {
            order[g.layer[v as usize] as usize].push(v);
            for &w in g.down[v as usize].iter().rev() {
                if !seen[w as usize] {
                    seen[w as usize] = true;
                    stack.push(w);
                }
            }
        }
    }
    order
}

/// Crossings between layer `l` and `l + 1` (Barth–Jünger–Mutzel accumulator tree).
fn crossings_between(
    upper: &[u32],
    lower_len: usize,
    down: &[Vec<u32>],
    pos: &[u32],
    tree: &mut Vec<u32>,
) -> u64 {
    let mut size = 1;
    while size < lower_len.max(1) {
        size *= 2;
    }
    tree.clear();
    tree.resize(2 * size, 0);
    let mut count = 0u64;
    let mut targets: Vec<u32> = Vec::new();
    for &u in upper {
        targets.clear();
        targets.extend(down[u as usize].iter().map(|&w| pos[w as usize]));
        targets.sort_unstable();
        for &t in &targets {
            let mut i = t as usize + size;
            tree[i] += 1;
            while i > 1 {
                if i.is_multiple_of(2) {
                    count += u64::from(tree[i + 1]);
                }
                i /= 2;
                tree[i] += 1;
            }
        }
    }
    count
}

fn total_crossings(order: &[Vec<u32>], down: &[Vec<u32>], pos: &[u32], tree: &mut Vec<u32>) -> u64 {
    order
        .windows(2)
        .map(|w| crossings_between(&w[0], w[1].len(), down, pos, tree))
        .sum()
}

/// Reorders `layer` by the barycenter of each node's neighbours (in the fixed adjacent layer);
/// nodes without any keep their place.
fn sort_by_barycenter(
    layer: &mut [u32],
    neighbours: &[Vec<u32>],
    pos: &mut [u32],
    keys: &mut Vec<(f64, u32)>,
) {
    keys.clear();
    for &v in layer.iter() {
        let ns = &neighbours[v as usize];
        let key = if ns.is_empty() {
            f64::from(pos[v as usize])
        } else {
            ns.iter().map(|&w| f64::from(pos[w as usize])).sum::<f64>() / ns.len() as f64
        };
        keys.push((key, v));
    }
    keys.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(pos[a.1 as usize].cmp(&pos[b.1 as usize]))
    });
    for (i, &(_, v)) in keys.iter().enumerate() {
        layer[i] = v;
        pos[v as usize] = i as u32;
    }
}

fn reduce_crossings(g: &Layered, order: &mut Vec<Vec<u32>>) -> Vec<u32> {
    let mut pos = vec![0u32; g.layer.len()];
    for layer in order.iter() {
        for (i, &v) in layer.iter().enumerate() {
            pos[v as usize] = i as u32;
        }
    }
    let mut tree = Vec::new();
    let mut keys = Vec::new();
    let mut best = total_crossings(order, &g.down, &pos, &mut tree);
    let mut best_order = order.clone();
    for _ in 0..MAX_SWEEPS {
        if best == 0 {
            break;
        }
        for layer in order.iter_mut().skip(1) {
            sort_by_barycenter(layer, &g.up, &mut pos, &mut keys);
        }
        for l in (0..order.len().saturating_sub(1)).rev() {
            sort_by_barycenter(&mut order[l], &g.down, &mut pos, &mut keys);
        }
        let crossings = total_crossings(order, &g.down, &pos, &mut tree);
        if crossings < best {
            best = crossings;
            best_order.clone_from(order);
        } else {
            break;
        }
    }
    *order = best_order;
    for layer in order.iter() {
        for (i, &v) in layer.iter().enumerate() {
            pos[v as usize] = i as u32;
        }
    }
    pos
}

/// Least-squares `y` nearest `desired` with `y[i] >= y[i-1] + gap[i]` (pool adjacent violators
/// on `desired - offset`).
fn place_with_gaps(desired: &[f64], gaps: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let mut offset = Vec::with_capacity(desired.len());
    let mut acc = 0.0;
    for &g in gaps {
        acc += g;
        offset.push(acc);
    }
    // Blocks of (sum, count) whose mean is the fitted value.
    let mut blocks: Vec<(f64, usize)> = Vec::new();
    for (i, &d) in desired.iter().enumerate() {
        blocks.push((d - offset[i], 1));
        while blocks.len() > 1 {
            let (s2, c2) = blocks[blocks.len() - 1];
            let (s1, c1) = blocks[blocks.len() - 2];
            if s1 / c1 as f64 > s2 / c2 as f64 {
                blocks.pop();
                *blocks.last_mut().expect("two blocks") = (s1 + s2, c1 + c2);
            } else {
                break;
            }
        }
    }
    for (s, c) in blocks {
        let mean = s / c as f64;
        for _ in 0..c {
            let i = out.len();
            out.push(mean + offset[i]);
        }
    }
}

fn assign_y(g: &Layered, order: &[Vec<u32>], spacing: &Spacing) -> Vec<f64> {
    let size = |v: u32| {
        if (v as usize) < g.real {
            spacing.node_gap
        } else {
            spacing.bend_gap
        }
    };
    let gaps: Vec<Vec<f64>> = order
        .iter()
        .map(|layer| {
            let mut gaps = Vec::with_capacity(layer.len());
            for (i, &v) in layer.iter().enumerate() {
                gaps.push(if i == 0 {
                    0.0
                } else {
                    (size(layer[i - 1]) + size(v)) / 2.0
                });
            }
            gaps
        })
        .collect();
    let mut y = vec![0.0f64; g.layer.len()];
    for (layer, gaps) in order.iter().zip(&gaps) {
        let total: f64 = gaps.iter().sum();
        let mut acc = -total / 2.0;
        for (&v, &gap) in layer.iter().zip(gaps) {
            acc += gap;
            y[v as usize] = acc;
        }
    }
    let mut desired = Vec::new();
    let mut placed = Vec::new();
    let mut relax = |l: usize, y: &mut Vec<f64>, use_up: bool, use_down: bool| {
        desired.clear();
        for &v in &order[l] {
            let mut sum = 0.0;
            let mut count = 0usize;
            if use_up {
                for &w in &g.up[v as usize] {
                    sum += y[w as usize];
                    count += 1;
                }
            }
            if use_down {
                for &w in &g.down[v as usize] {
                    sum += y[w as usize];
                    count += 1;
                }
            }
            desired.push(if count == 0 {
                y[v as usize]
            } else {
                sum / count as f64
            });
        }
        place_with_gaps(&desired, &gaps[l], &mut placed);
        for (&v, &p) in order[l].iter().zip(placed.iter()) {
            y[v as usize] = p;
        }
    };
    for pass in 0..PLACEMENT_PASSES {
        let both = pass + 1 == PLACEMENT_PASSES;
        for l in 1..order.len() {
            relax(l, &mut y, true, both);
        }
        for l in (0..order.len().saturating_sub(1)).rev() {
            relax(l, &mut y, both, true);
        }
    }
    snap_to_upstream(g, order, &gaps, spacing, &mut y);
    y
}

/// Small leftover drifts between a node and its upstream neighbours read as sloppy lines: move a
/// node onto its upstream neighbours' average when that is near and keeps the spacing.
fn snap_to_upstream(
    g: &Layered,
    order: &[Vec<u32>],
    gaps: &[Vec<f64>],
    spacing: &Spacing,
    y: &mut [f64],
) {
    for (layer, gaps) in order.iter().zip(gaps).skip(1) {
        for (i, &v) in layer.iter().enumerate() {
            let ups = &g.up[v as usize];
            if ups.is_empty() {
                continue;
            }
            let target = ups.iter().map(|&w| y[w as usize]).sum::<f64>() / ups.len() as f64;
            if (target - y[v as usize]).abs() > spacing.bend_gap {
                continue;
            }
            let clear_above = i == 0 || target - y[layer[i - 1] as usize] >= gaps[i] - 1e-9;
            let clear_below =
                i + 1 == layer.len() || y[layer[i + 1] as usize] - target >= gaps[i + 1] - 1e-9;
            if clear_above && clear_below {
                y[v as usize] = target;
            }
        }
    }
}

fn layout_connected(
    n: usize,
    edges: &[(u32, u32)],
    first: &[bool],
    spacing: &Spacing,
) -> SubLayout {
    let reversed = break_cycles(n, edges, first);
    let dag: Vec<(u32, u32)> = edges
        .iter()
        .zip(&reversed)
        .filter(|((a, b), _)| a != b)
        .map(|(&(a, b), &r)| if r { (b, a) } else { (a, b) })
        .collect();
    let layer = assign_layers(n, &dag, first);
    let g = insert_virtual_nodes(n, edges, &reversed, layer);
    let mut order = initial_order(&g);
    reduce_crossings(&g, &mut order);
    let y = assign_y(&g, &order, spacing);

    let top = (0..g.layer.len())
        .map(|v| y[v])
        .fold(f64::INFINITY, f64::min);
    let bottom = (0..g.layer.len())
        .map(|v| y[v])
        .fold(f64::NEG_INFINITY, f64::max);
    let point = |v: u32| Point {
        x: spacing.margin + f64::from(g.layer[v as usize]) * spacing.layer_gap,
        y: spacing.margin + y[v as usize] - top,
    };
    let nodes = (0..n as u32).map(point).collect();
    let routes = g
        .chains
        .iter()
        .zip(&reversed)
        .map(|(chain, &r)| {
            let mut points: Vec<Point> = chain.iter().map(|&v| point(v)).collect();
            if r {
                points.reverse();
            }
            Route {
                points,
                reversed: r,
            }
        })
        .collect();
    SubLayout {
        nodes,
        routes,
        width: spacing.margin * 2.0
            + f64::from(order.len().saturating_sub(1) as u32) * spacing.layer_gap,
        height: spacing.margin * 2.0 + if n == 0 { 0.0 } else { bottom - top },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: usize, edges: &[(usize, usize)]) -> Layout {
        layout(n, edges, &[], &Spacing::default())
    }

    fn assert_no_overlap(l: &Layout, spacing: &Spacing) {
        for i in 0..l.nodes.len() {
            for j in i + 1..l.nodes.len() {
                let (a, b) = (l.nodes[i], l.nodes[j]);
                let apart = (a.x - b.x).abs() >= spacing.layer_gap - 1e-6
                    || (a.y - b.y).abs() >= spacing.node_gap - 1e-6;
                assert!(apart, "nodes {i} {a:?} and {j} {b:?} overlap");
            }
        }
    }

    /// A mesh like the benchmark's: `n` nodes in tiers, each calling a few in later tiers.
    fn mesh(n: usize, per_node: usize) -> Vec<(usize, usize)> {
        let mut seed = 42u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let mut edges = Vec::new();
        for v in 0..n {
            for _ in 0..per_node {
                let w = next() % n;
                edges.push((v, w));
            }
        }
        edges
    }

    #[test]
    fn chain_runs_left_to_right_on_one_row() {
        let l = run(3, &[(0, 1), (1, 2)]);
        assert!(l.nodes[0].x < l.nodes[1].x && l.nodes[1].x < l.nodes[2].x);
        assert_eq!(l.nodes[0].y, l.nodes[2].y);
        assert!(l.routes.iter().all(|r| !r.reversed && r.points.len() == 2));
    }

    #[test]
    fn cycle_edge_is_reversed_and_others_go_right() {
        let edges = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 3)];
        let l = run(4, &edges);
        let reversed: Vec<bool> = l.routes.iter().map(|r| r.reversed).collect();
        assert_eq!(reversed, [false, false, true, false, false]);
        for (&(a, b), r) in edges.iter().zip(&l.routes) {
            if a == b {
                assert_eq!(r.points.len(), 1, "a self loop is one point");
                continue;
            }
            let (s, t) = (l.nodes[a], l.nodes[b]);
            assert_eq!(r.points.first(), Some(&s));
            assert_eq!(r.points.last(), Some(&t));
            assert_eq!(s.x > t.x, r.reversed, "edge {a}->{b}");
        }
    }

    #[test]
    fn first_nodes_start_the_flow() {
        // 1 -> 0 -> 1 is a cycle; with node 1 asked first, the edge into it is the reversed one.
        let edges = [(0, 1), (1, 0)];
        let l = layout(2, &edges, &[false, true], &Spacing::default());
        assert!(l.nodes[1].x < l.nodes[0].x);
        assert!(l.routes[0].reversed && !l.routes[1].reversed);
    }

    #[test]
    fn long_edges_bend_through_virtual_nodes() {
        // 0 -> 1 -> 2 -> 3 and a long 0 -> 3 that must not pass through 1 or 2.
        let l = run(4, &[(0, 1), (1, 2), (2, 3), (0, 3)]);
        let long = &l.routes[3];
        assert_eq!(long.points.len(), 4);
        for (bend, node) in long.points[1..3].iter().zip([1, 2]) {
            assert!(
                (bend.y - l.nodes[node].y).abs() > 1.0,
                "bend crosses node {node}"
            );
        }
    }

    #[test]
    fn components_do_not_overlap_and_size_covers_everything() {
        let spacing = Spacing::default();
        let l = layout(7, &[(0, 1), (2, 3), (3, 4), (5, 5)], &[], &spacing);
        assert_no_overlap(&l, &spacing);
        for p in &l.nodes {
            assert!(p.x >= 0.0 && p.x <= l.width && p.y >= 0.0 && p.y <= l.height);
        }
    }

    #[test]
    fn mesh_has_no_overlaps_and_is_deterministic() {
        let spacing = Spacing::default();
        let edges = mesh(120, 3);
        let a = layout(120, &edges, &[], &spacing);
        assert_no_overlap(&a, &spacing);
        for (&(s, t), r) in edges.iter().zip(&a.routes) {
            if s != t {
                assert_eq!(a.nodes[s].x > a.nodes[t].x, r.reversed);
                for w in r.points.windows(2) {
                    let forward = if r.reversed {
                        w[0].x > w[1].x
                    } else {
                        w[0].x < w[1].x
                    };
                    assert!(forward, "route of {s}->{t} doubles back");
                }
            }
        }
        assert_eq!(a, layout(120, &edges, &[], &spacing));
    }

    #[test]
    fn barycenter_sweeps_remove_avoidable_crossings() {
        // Two parallel pairs given in crossing order: 0->3, 1->2 can be drawn without crossing.
        let edges = [(0, 3), (1, 2), (0, 4), (1, 5)];
        let l = run(6, &edges);
        let order = |v: usize| l.nodes[v].y;
        let crosses = |(a, b): (usize, usize), (c, d): (usize, usize)| {
            (order(a) - order(c)) * (order(b) - order(d)) < 0.0
        };
        for i in 0..edges.len() {
            for j in i + 1..edges.len() {
                assert!(
                    !crosses(edges[i], edges[j]),
                    "{:?} x {:?}",
                    edges[i],
                    edges[j]
                );
            }
        }
    }

    #[test]
    fn many_long_edges_stay_within_budget() {
        // A 400-node chain with every node also calling the far end: ~80,000 bends wanted.
        let n = 400;
        let mut edges: Vec<(usize, usize)> = (0..n - 1).map(|v| (v, v + 1)).collect();
        edges.extend((0..n - 2).map(|v| (v, n - 1)));
        let l = run(n, &edges);
        let bends: usize = l.routes.iter().map(|r| r.points.len() - 2).sum();
        assert!(bends <= MAX_VIRTUAL_NODES, "{bends}");
        for (&(s, t), r) in edges.iter().zip(&l.routes) {
            assert_eq!(r.points.first(), Some(&l.nodes[s]));
            assert_eq!(r.points.last(), Some(&l.nodes[t]));
        }
    }

    #[test]
    fn empty_graph() {
        let l = run(0, &[]);
        assert!(l.nodes.is_empty() && l.width > 0.0 && l.height > 0.0);
    }
}
