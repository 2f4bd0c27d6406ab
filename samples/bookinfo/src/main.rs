//! `bookinfo`: the sample application's services, one subcommand each.

use clap::Parser;

fn main() -> std::process::ExitCode {
    trellis_bookinfo::cli::main_with(trellis_bookinfo::cli::Cli::parse())
}
