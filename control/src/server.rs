//! `trellis control`: the control plane in one process.
//!
//! Opens the store, starts the registry and the push server, and serves the REST API on the
//! console address; the collector (OTLP receivers, telemetry storage, the live graph, the Jaeger
//! query API and `/metrics`) runs in the same process, and so does the certificate authority,
//! whose `Identity` service shares the push port. The web console (`trellis-console`) is served
//! on the console address too, next to the REST API.

use crate::ca::{Authority, AuthorityOptions, IdentityService, JoinTokens};
use crate::collector::graph::api::GraphApi;
use crate::collector::{self, Collector, CollectorSettings, Listeners, Retention, graph, storage};
use crate::console::ControlConsole;
use crate::push::{Debounce, PushServer};
use crate::registry::LocalRegistry;
use crate::rest::{self, AppState};
use crate::store::{Store, redact};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use trellis_console::ConsoleOptions;

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
    /// An external Jaeger UI (e.g. http://jaeger:16686): the console's traces get an "open in
    /// Jaeger" link to it.
    #[arg(long, env = "TRELLIS_JAEGER_UI_URL", value_parser = parse_ui_url)]
    pub jaeger_ui_url: Option<String>,
    /// How long config changes are gathered before proxies are updated.
    #[arg(long, env = "TRELLIS_DEBOUNCE", default_value = "20ms", value_parser = parse_duration)]
    pub debounce: Duration,
    #[command(flatten)]
    pub ca: CaArgs,
    #[command(flatten)]
    pub collector: Box<CollectorArgs>,
}

/// Flags of the certificate authority that issues workload identities.
#[derive(Debug, Clone, clap::Args)]
pub struct CaArgs {
    /// The CA's directory: a root Trellis creates (root-cert.pem, root-key.pem), a root you give
    /// in those files, or Istio's plug-in files (ca-cert.pem, ca-key.pem, cert-chain.pem,
    /// root-cert.pem); join tokens are stored there too. Default: <data-dir>/ca.
    #[arg(long, env = "TRELLIS_CA_DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Trust domain of the SPIFFE IDs issued: spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
    #[arg(long, env = "TRELLIS_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// Lifetime of workload certificates: what a proxy gets when it asks for none, and the most
    /// it may ask for (at least 1m).
    #[arg(long, env = "TRELLIS_CERT_TTL", default_value = "24h", value_parser = parse_duration)]
    pub cert_ttl: Duration,
    /// How long a new root from `trellis ca rotate` is only trusted before it signs: every
    /// connected proxy receives the new trust bundle meanwhile (the default of the command).
    #[arg(long, env = "TRELLIS_ROOT_PROPAGATION", default_value = "30s", value_parser = parse_duration)]
    pub root_propagation: Duration,
}

/// The CA never issues shorter certificates than this.
const MIN_CERT_TTL: Duration = Duration::from_secs(60);

/// Loads (or creates) the CA and opens its join tokens; a bad CA directory is an error naming
/// the file and what is wrong with it.
fn start_ca(args: &CaArgs, data_dir: &std::path::Path) -> Result<IdentityService, String> {
    if args.cert_ttl < MIN_CERT_TTL {
        return Err(format!(
            "--cert-ttl {:?} is too short: workload certificates live at least 1m",
            args.cert_ttl
        ));
    }
    let dir = args.ca_dir.clone().unwrap_or_else(|| data_dir.join("ca"));
    let options = AuthorityOptions {
        trust_domain: args.trust_domain.clone(),
        leaf_ttl: args.cert_ttl,
        ..AuthorityOptions::default()
    };
    let authority = Authority::load_or_create(&dir, options)
        .map_err(|e| format!("cannot start the certificate authority: {e}"))?;
    let tokens = JoinTokens::open(&dir).map_err(|e| format!("cannot open the join tokens: {e}"))?;
    let bundle = authority.trust_bundle();
    tracing::info!(
        dir = %dir.display(),
        layout = ?authority.layout(),
        trust_domain = authority.trust_domain(),
        cert_ttl = ?args.cert_ttl,
        roots = ?crate::ca::describe_roots(&bundle),
        join_tokens = tokens.list().len(),
        "certificate authority ready"
    );
    Ok(IdentityService::with_propagation(
        authority,
        tokens,
        args.cert_ttl,
        args.root_propagation,
    ))
}

/// Flags of the collector (telemetry in, storage, exports).
#[derive(Debug, Clone, clap::Args)]
pub struct CollectorArgs {
    /// OTLP/gRPC receiver (traces, metrics, logs).
    #[arg(long, env = "TRELLIS_OTLP_GRPC_ADDR", default_value = "127.0.0.1:4317")]
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP receiver: POST /v1/traces, /v1/metrics, /v1/logs, protobuf or JSON.
    #[arg(long, env = "TRELLIS_OTLP_HTTP_ADDR", default_value = "127.0.0.1:4318")]
    pub otlp_http: SocketAddr,
    /// The Jaeger query API (/api/services, /api/traces, ...) for Jaeger UI and Grafana.
    #[arg(long, env = "TRELLIS_JAEGER_ADDR", default_value = "127.0.0.1:16686")]
    pub jaeger: SocketAddr,
    /// Prometheus /metrics: the collector's counters, mesh-wide Istio series, graph edges.
    #[arg(long, env = "TRELLIS_METRICS_ADDR", default_value = "127.0.0.1:15014")]
    pub metrics: SocketAddr,
    /// Where spans and logs are stored; default: the --database-url when it is PostgreSQL,
    /// else SQLite `telemetry.db` in --data-dir (apart from the config, so ingest never delays
    /// a config write).
    #[arg(long, env = "TRELLIS_TELEMETRY_DATABASE_URL")]
    pub telemetry_database_url: Option<String>,
    /// Spans and logs older than this are deleted.
    #[arg(long, env = "TRELLIS_TELEMETRY_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub telemetry_retention: Duration,
    /// Most spans kept; the oldest beyond it are deleted.
    #[arg(
        long,
        env = "TRELLIS_TELEMETRY_MAX_SPANS",
        default_value_t = 10_000_000
    )]
    pub telemetry_max_spans: u64,
    /// Most log records kept; the oldest beyond it are deleted.
    #[arg(long, env = "TRELLIS_TELEMETRY_MAX_LOGS", default_value_t = 10_000_000)]
    pub telemetry_max_logs: u64,
    /// How often retention runs.
    #[arg(long, env = "TRELLIS_TELEMETRY_PRUNE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub telemetry_prune_interval: Duration,
    /// Also send every trace batch received to this OTLP/gRPC endpoint (Jaeger, Tempo, an
    /// OpenTelemetry Collector), e.g. http://tempo:4317. Bounded: dropped and counted when it
    /// cannot keep up.
    #[arg(long, env = "TRELLIS_OTLP_FORWARD")]
    pub otlp_forward: Option<String>,
}

impl CollectorArgs {
    fn settings(&self, database_url: String) -> CollectorSettings {
        let mut settings = CollectorSettings::new(database_url);
        settings.retention = Retention {
            max_age: self.telemetry_retention,
            max_spans: self.telemetry_max_spans,
            max_logs: self.telemetry_max_logs,
        };
        settings.prune_interval = self
            .telemetry_prune_interval
            .max(Duration::from_millis(100));
        settings.otlp_forward = self.otlp_forward.clone();
        settings
    }
}

/// An http(s) URL without a trailing slash (the console appends `/trace/<id>`).
fn parse_ui_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{text:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!(
            "{text:?} is not an http:// or https:// URL with a host"
        ));
    }
    Ok(url.to_string())
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    trellis_api::duration::parse_ms(text)
        .map(Duration::from_millis)
        .map_err(|e| format!("{text:?} is not a duration like 500ms or 10s: {e}"))
}

/// How long shutting down may wait for open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until SIGINT or SIGTERM.
pub async fn run(args: ControlArgs) -> Result<(), String> {
    crate::memory::tune();
    let ca = start_ca(&args.ca, &args.data_dir)?;
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => Store::default_url(&args.data_dir).map_err(|e| e.to_string())?,
    };
    let store = Arc::new(
        Store::open(&url)
            .await
            .map_err(|e| format!("cannot open the config store at {}: {e}", redact(&url)))?,
    );
    let telemetry_url = storage::telemetry_url(
        args.collector.telemetry_database_url.as_deref(),
        args.database_url.as_deref(),
        &args.data_dir,
    )
    .map_err(|e| e.to_string())?;
    let collector =
        Collector::start_with_metrics(&args.collector.settings(telemetry_url), |registry| {
            ca.metrics().register(registry)
        })
        .await?;
    let registry = LocalRegistry::new(args.registration_grace);
    let debounce = Debounce::new(args.debounce);
    let mesh = trellis_api::compile::MeshSettings {
        trust_domain: args.ca.trust_domain.clone(),
    };
    let push = PushServer::start(
        store.clone(),
        registry,
        debounce,
        args.registration_grace,
        mesh,
    )
    .with_otlp_endpoint(Some(advertised_otlp(args.collector.otlp_grpc)));
    push.follow_trust_bundle(ca.subscribe_bundle());
    ca.start_schedule();

    let push_listener = collector::bind("--push", args.push).await?;
    let console_listener = collector::bind("--console", args.console).await?;
    let c = &args.collector;
    let collector_listeners =
        Listeners::bind(c.otlp_grpc, c.otlp_http, c.jaeger, c.metrics).await?;
    tracing::info!(
        push = %args.push,
        console = %args.console,
        database = %redact(&url),
        revision = store.revision(),
        resources = store.current().len(),
        otlp_grpc = %c.otlp_grpc,
        otlp_http = %c.otlp_http,
        jaeger = %c.jaeger,
        metrics = %c.metrics,
        telemetry = %collector.telemetry().shown_url(),
        "control plane ready"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // The console listener: the REST API, the collector's JSON APIs (the graph) and the web
    // console, whose fallback answers every other path.
    let graph_api = GraphApi {
        graph: collector.graph().clone(),
        history: Some(collector.telemetry().pool().clone()),
    };
    let app = console_app(
        AppState {
            store: store.clone(),
            push: push.clone(),
            tokens: ca.tokens(),
            ca: Some(ca.clone()),
        },
        ControlConsole {
            store: store.clone(),
            push: push.clone(),
            graph: graph_api,
            telemetry: collector.telemetry().clone(),
        },
        ConsoleOptions {
            title: CONSOLE_TITLE.to_string(),
            jaeger_ui_url: args.jaeger_ui_url.clone(),
        },
    );
    let graph_history = graph::history::start(
        collector.telemetry().pool().clone(),
        collector.graph().clone(),
        args.collector.telemetry_retention,
    );
    let console = tokio::spawn({
        let stopped = stopped();
        async move {
            axum::serve(console_listener, app)
                .with_graceful_shutdown(stopped)
                .await
                .map_err(|e| format!("console server: {e}"))
        }
    });
    let push_task = tokio::spawn(push.serve(push_listener, Some(ca), stopped()));
    let collector_servers = collector.serve(collector_listeners, stopped);

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // Push streams end at once; a REST client that does not go away is not waited for long.
    let servers = tokio::time::timeout(SHUTDOWN_GRACE, async {
        tokio::join!(console, push_task, collector_servers.join())
    })
    .await;
    // Receivers are closed (or given up on): write what they queued, then close the databases.
    graph_history.abort();
    collector.shutdown(SHUTDOWN_GRACE).await;
    store.close().await;
    let Ok((a, b, c)) = servers else {
        return Err(format!("servers did not stop within {SHUTDOWN_GRACE:?}"));
    };
    a.map_err(|e| e.to_string())??;
    b.map_err(|e| e.to_string())??;
    c?;
    Ok(())
}

/// The name in the console's header and page titles.
const CONSOLE_TITLE: &str = "Trellis";

/// Everything the console listener serves: `/api/v1/*` and `/healthz` (the REST API, whose own
/// fallback answers unknown API paths with JSON), `/api/v1/graph`, and the web console for every
/// other path.
pub fn console_app(
    rest_state: AppState,
    console: ControlConsole,
    options: ConsoleOptions,
) -> axum::Router {
    let graph_api = console.graph.clone();
    rest::router(rest_state)
        .merge(graph::api::router(graph_api))
        .merge(trellis_console::router(Arc::new(console), options))
}

/// The OTLP endpoint proxies are told to export to: the gRPC receiver's address, with loopback
/// for an unspecified listen address (0.0.0.0 is not an address to connect to).
fn advertised_otlp(listen: SocketAddr) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
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

#[cfg(test)]
mod tests {
    use super::parse_ui_url;

    #[test]
    fn jaeger_ui_urls_are_http_without_a_trailing_slash() {
        assert_eq!(
            parse_ui_url("http://jaeger:16686/").unwrap(),
            "http://jaeger:16686"
        );
        assert_eq!(
            parse_ui_url("https://tracing.example/jaeger").unwrap(),
            "https://tracing.example/jaeger"
        );
        for bad in ["jaeger:16686", "ftp://jaeger", "http://", "http://a b"] {
            assert!(parse_ui_url(bad).is_err(), "{bad}");
        }
    }
}
