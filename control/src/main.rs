//! `trellis`: the control plane (`trellis control`) and the command line that talks to it.
//! Everything lives in `trellis_control::cli`; this only sets up the runtime (and logging for the
//! long-running control plane).

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use trellis_control::cli::{self, Cli, Command};

/// mimalloc rather than glibc's malloc: span ingest allocates a string per attribute, and with
/// glibc a quarter of the collector's CPU went to malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's sidecars and sample services: this binary runs them so the demo needs no other.
    match cli.command {
        Command::Proxy(args) => return trellis_proxy::cli::main_with(*args),
        Command::Bookinfo(args) => return trellis_bookinfo::cli::main_with(args),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(cli.command, Command::Control(_)) {
        init_tracing();
    }
    runtime.block_on(cli::main_with(cli))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colors only on a terminal.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
