//! `trellis control`: the control plane in one process.
//!
//! Opens the store, starts the registry and the push server, and serves the REST API on the
//! console address. Later issues add the CA, the collector and the console to the same process.

use crate::push::{Debounce, PushServer};
use crate::registry::LocalRegistry;
use crate::rest::{self, AppState};
use crate::store::{Store, redact};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `trellis control`, each with a `TRELLIS_*` environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// Where proxies connect for their config (gRPC, plaintext).
    #[arg(long, env = "TRELLIS_PUSH_ADDR", default_value = trellis_api::push::DEFAULT_ADDRESS)]
    pub push: SocketAddr,
    /// The console and the REST API under /api/v1 (what `trellis` commands talk to).
    #[arg(long, env = "TRELLIS_CONSOLE_ADDR", default_value = "127.0.0.1:20001")]
    pub console: SocketAddr,
    /// Directory for the default SQLite database.
    #[arg(long, env = "TRELLIS_DATA_DIR", default_value = "./.trellis")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`; default: SQLite in --data-dir.
    #[arg(long, env = "TRELLIS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// How long a disconnected proxy's workload stays in the registry.
    #[arg(long, env = "TRELLIS_REGISTRATION_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub registration_grace: Duration,
    /// How long config changes are gathered before proxies are updated.
    #[arg(long, env = "TRELLIS_DEBOUNCE", default_value = "20ms", value_parser = parse_duration)]
    pub debounce: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    trellis_api::duration::parse_ms(text)
        .map(Duration::from_millis)
        .map_err(|e| format!("{text:?} is not a duration like 500ms or 10s: {e}"))
}

/// How long shutting down may wait for open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: ControlArgs) -> Result<(), String> {
    crate::memory::tune();
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => Store::default_url(&args.data_dir).map_err(|e| e.to_string())?,
    };
    let store = Arc::new(
        Store::open(&url)
            .await
            .map_err(|e| format!("cannot open the config store at {}: {e}", redact(&url)))?,
    );
    let registry = LocalRegistry::new(args.registration_grace);
    let debounce = Debounce::new(args.debounce);
    let push = PushServer::start(store.clone(), registry, debounce, args.registration_grace);

    let push_listener = tokio::net::TcpListener::bind(args.push)
        .await
        .map_err(|e| format!("cannot listen on --push {}: {e}", args.push))?;
    let console_listener = tokio::net::TcpListener::bind(args.console)
        .await
        .map_err(|e| format!("cannot listen on --console {}: {e}", args.console))?;
    tracing::info!(
        push = %args.push,
        console = %args.console,
        database = %redact(&url),
        revision = store.revision(),
        resources = store.current().len(),
        "control plane ready"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let app = rest::router(AppState {
        store: store.clone(),
        push: push.clone(),
    });
    let console = tokio::spawn({
        let stopped = stopped();
        async move {
            axum::serve(console_listener, app)
                .with_graceful_shutdown(stopped)
                .await
                .map_err(|e| format!("console server: {e}"))
        }
    });
    let push_task = tokio::spawn(push.serve(push_listener, stopped()));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // Push streams end at once; a REST client that does not go away is not waited for long.
    let Ok((a, b)) =
        tokio::time::timeout(SHUTDOWN_GRACE, async { tokio::join!(console, push_task) }).await
    else {
        store.close().await;
        return Err(format!("servers did not stop within {SHUTDOWN_GRACE:?}"));
    };
    store.close().await;
    a.map_err(|e| e.to_string())??;
    b.map_err(|e| e.to_string())??;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => std::future::pending().await,
    }
}
