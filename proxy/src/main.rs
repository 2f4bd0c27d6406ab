//! `trellis-proxy`: the Trellis sidecar.

use clap::Parser;

fn main() -> std::process::ExitCode {
    trellis_proxy::cli::main_with(trellis_proxy::cli::Args::parse())
}
