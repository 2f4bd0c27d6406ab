//! The console over an in-memory backend holding a generated mesh (1,000 nodes and 3,000 edges by
//! default), for `bench/console.sh`: the same router the control plane mounts, with no collector
//! behind it, so the timings are the console's own (query parsing, find/hide, layout, SVG, HTML).
//!
//! `cargo run --release -p trellis-console --example bench_server -- [ADDR] [NODES] [EDGES]`

use std::sync::Arc;
use trellis_console::graph::sample::mesh;
use trellis_console::{ConsoleOptions, MemoryBackend, router};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:28200".to_string());
    let number = |arg: Option<String>, default: usize| match arg {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("bench_server: {text:?} is not a number (usage: [ADDR] [NODES] [EDGES])");
            std::process::exit(2)
        }),
    };
    let nodes = number(args.next(), 1000);
    let edges = number(args.next(), 3000);
    let graph = mesh(nodes, edges, 10);
    println!(
        "bench_server: {} nodes, {} edges",
        graph.nodes.len(),
        graph.edges.len()
    );
    let backend = Arc::new(MemoryBackend::fixture().with_graph(graph));
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench_server: cannot listen on {addr}: {e}");
            std::process::exit(1)
        }
    };
    println!("bench_server: listening on http://{addr}");
    if let Err(e) = axum::serve(listener, router(backend, ConsoleOptions::default())).await {
        eprintln!("bench_server: {e}");
        std::process::exit(1)
    }
}
