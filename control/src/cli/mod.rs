//! The `trellis` command line: runs the control plane (`trellis control`) and talks to it over
//! the REST API, kubectl-style (`apply`, `get`, `delete`), plus the history commands and the
//! offline `analyze`.
//!
//! Every command writes to the `out`/`err` streams it is given (not to the process's), so tests can
//! call [`run`] and read what a user would see. Failures come back as [`CliError`]; the binary
//! prints them and exits 1.

mod analyze;
mod apply;
mod ca;
mod client;
mod files;
mod get;
mod history;
mod proxy_status;
mod table;
mod token;
mod types;

pub use client::{Client, WriteMeta};

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use trellis_api::Diagnostic;

/// Where the control plane listens unless `--server`/`TRELLIS_SERVER` say otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:20001";

/// Trellis: an Istio-compatible service mesh.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, propagate_version = true)]
pub struct Cli {
    /// Control plane REST API address.
    #[arg(long, global = true, env = "TRELLIS_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Colored output (diffs): auto colors only when stdout is a terminal.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane.
    Control(crate::server::ControlArgs),
    /// Create or update resources from files, directories or stdin.
    Apply(ApplyArgs),
    /// List resources, or show one.
    Get(GetArgs),
    /// Delete resources by kind and name, or those named in files.
    Delete(DeleteArgs),
    /// The revision history, newest first.
    History(HistoryArgs),
    /// What changed between two revisions.
    Diff(DiffArgs),
    /// Restore the configuration of an earlier revision (as a new revision).
    Rollback(RollbackArgs),
    /// Check files offline (no control plane): validation and cross-resource checks.
    Analyze(AnalyzeArgs),
    /// The config each connected proxy has, against what the control plane wants it to have.
    ProxyStatus,
    /// Join tokens: what a proxy presents to get its workload certificate.
    Token(token::TokenArgs),
    /// The certificate authority's roots: show them, rotate the root.
    Ca(ca::CaArgs),
    /// Run the demo: the control plane, the bookinfo sample with a sidecar per service (mutual
    /// TLS on) and a traffic generator, all on loopback, until Ctrl-C.
    Demo(crate::demo::DemoArgs),
    /// The sidecar proxy (what `trellis-proxy` runs), so the demo needs only this binary.
    #[command(hide = true)]
    Proxy(Box<trellis_proxy::cli::Args>),
    /// The sample application's services (what `bookinfo` runs), for the demo.
    #[command(hide = true)]
    Bookinfo(trellis_bookinfo::cli::Cli),
}

/// `-f` inputs as kubectl takes them.
#[derive(Debug, Clone, Args)]
pub struct FileArgs {
    /// File, directory (recursive: *.yaml, *.yml, *.json) or `-` for stdin; repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    pub files: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// Validate and show what would change, without storing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Why: recorded with the revision.
    #[arg(short, long)]
    pub message: Option<String>,
}

/// `-n`/`-A` as kubectl reads them.
#[derive(Debug, Clone, Args)]
pub struct NamespaceArgs {
    /// Namespace (kubectl's default: `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
    /// `kind.group/name` per resource.
    Name,
    /// The table (it has every column already).
    Wide,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Resource kind: `virtualservices`, `vs`, `VirtualService`, `dr`, `se`, `gw`, ...
    pub kind: String,
    /// One resource; all of the namespace when absent.
    pub name: Option<String>,
    #[command(flatten)]
    pub namespace: NamespaceArgs,
    /// Output format; a table when absent.
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Resource kind (when not using `-f`).
    #[arg(required_unless_present = "files", conflicts_with = "files")]
    pub kind: Option<String>,
    /// Resource name (when not using `-f`).
    #[arg(requires = "kind")]
    pub name: Option<String>,
    /// Delete the resources these files name.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub files: Vec<String>,
    /// Namespace of KIND NAME (default `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Treat a resource that does not exist as deleted.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Why: recorded with the revision.
    #[arg(short, long)]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// At most this many revisions (newest first).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older revision (0 is the empty configuration).
    pub from: u64,
    /// The newer revision.
    pub to: u64,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The revision whose configuration to restore.
    pub revision: u64,
    /// Why: recorded with the new revision.
    #[arg(short, long)]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub files: FileArgs,
}

/// Why a command failed. Displayed as the user should read it (several lines for diagnostics).
#[derive(Debug)]
pub enum CliError {
    /// A plain message (`error: ...`).
    Message(String),
    /// The server answered 404 (shown like a message; `delete --ignore-not-found` skips it).
    NotFound(String),
    /// Rejected configuration: a headline and every problem, one per line.
    Diagnostics {
        error: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// Writing the output failed (a closed pipe is not reported).
    Io(std::io::Error),
}

impl CliError {
    pub fn msg(message: impl Into<String>) -> CliError {
        CliError::Message(message.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Message(m) | CliError::NotFound(m) => write!(f, "error: {m}"),
            CliError::Diagnostics { error, diagnostics } => {
                write!(f, "error: {error}")?;
                if !diagnostics.is_empty() {
                    write!(f, "\n{}", trellis_api::diagnostics::render(diagnostics))?;
                }
                Ok(())
            }
            CliError::Io(e) => write!(f, "error: writing output: {e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::Io(e)
    }
}

/// Runs one command. `Ok` carries the exit code of a command that ran (`analyze` exits 1 when it
/// found errors); `Err` is a failure to report (exit 1).
pub async fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<ExitCode, CliError> {
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stdout().is_terminal(),
    };
    let server = cli.server;
    let client = || Client::new(&server);
    match cli.command {
        Command::Control(args) => {
            crate::server::run(args).await.map_err(CliError::Message)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply(args) => apply::apply(&client()?, &args, out, err).await,
        Command::Delete(args) => apply::delete(&client()?, &args, out, err).await,
        Command::Get(args) => get::get(&client()?, &args, out, err).await,
        Command::History(args) => history::history(&client()?, &args, out).await,
        Command::Diff(args) => history::diff(&client()?, &args, color, out).await,
        Command::Rollback(args) => history::rollback(&client()?, &args, out, err).await,
        Command::Analyze(args) => analyze::analyze(&args, out, err),
        Command::ProxyStatus => proxy_status::proxy_status(&client()?, out, err).await,
        Command::Token(args) => token::token(&client()?, &args, out, err).await,
        Command::Ca(args) => ca::ca(&client()?, &args, out, err).await,
        Command::Demo(args) => crate::demo::run(args, out)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(CliError::Message),
        // They own their runtimes: the binary's `main` runs them before starting one.
        Command::Proxy(_) | Command::Bookinfo(_) => Err(CliError::msg(
            "`trellis proxy` and `trellis bookinfo` run from the binary's main, not inside a runtime",
        )),
    }
}

/// Runs a parsed command against the process's stdout/stderr and prints any failure; returns
/// the process exit code. This is the binary's `main` once the runtime is up.
pub async fn main_with(cli: Cli) -> ExitCode {
    // Not locked: `trellis control` runs here too, and its threads may print.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = match run(cli, &mut out, &mut err).await {
        Ok(code) => code,
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            let _ = writeln!(err, "{e}");
            ExitCode::FAILURE
        }
    };
    let _ = out.flush();
    code
}

/// `user@host` for the history, from the environment with fallbacks (never fails).
pub fn author() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_string());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{}@{host}", user.trim())
}

/// `virtualservice.networking.istio.io` for a kind name as the server spells it (`VirtualService`);
/// unknown kinds are shown lower-cased.
pub(crate) fn kind_resource(kind: &str) -> String {
    match trellis_api::Kind::from_name(kind) {
        Some(k) => format!("{}.{}", kind.to_ascii_lowercase(), k.group()),
        None => kind.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_demo_children_parse_their_own_flags() {
        let cli =
            Cli::try_parse_from(["trellis", "bookinfo", "reviews", "--version", "v2"]).unwrap();
        assert!(matches!(cli.command, Command::Bookinfo(_)));
        let cli =
            Cli::try_parse_from(["trellis", "proxy", "--control", "127.0.0.1:15010"]).unwrap();
        assert!(matches!(cli.command, Command::Proxy(_)));
    }
}
