//! The sidecar's command line: `trellis-proxy` and the demo's `trellis proxy` both run [`main_with`].

use crate::admin::{self, SetLogLevel};
use crate::config::{ConfigStore, Source, control, standalone};
use crate::identity::{self, CertManager, CertManagerSettings, WorkloadIdentity};
use crate::server::Proxy;
use crate::telemetry::export::OtlpProtocol;
use crate::telemetry::{AccessLogTarget, Telemetry, TelemetrySettings};
use crate::{drain, worker};
use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing_subscriber::{EnvFilter, prelude::*, reload};
use trellis_api::model::NodeIdentity;

/// The sidecar's flags, each with a `TRELLIS_*` environment variable.
#[derive(Parser, Debug)]
#[command(name = "trellis-proxy", version, about = "The Trellis sidecar proxy")]
pub struct Args {
    /// Standalone mode: a directory (or file) of Istio-format YAML; endpoints come from
    /// ServiceEntry resources. Reloaded on change and on SIGHUP.
    #[arg(long, env = "TRELLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Control plane mode: take config from the push stream at this `host:port`. Exclusive with
    /// --config. The proxy keeps its last good config while the control plane is away.
    #[arg(long, env = "TRELLIS_CONTROL")]
    control: Option<String>,
    /// `ip:port` other proxies reach this workload at, told to the control plane (default: the
    /// inbound listener, unspecified IP as 127.0.0.1, when there is an --app-port).
    #[arg(long, env = "TRELLIS_ADVERTISE")]
    advertise: Option<SocketAddr>,
    /// Outbound listener: the application's traffic (transparent or explicit proxy).
    #[arg(long, env = "TRELLIS_OUTBOUND", default_value = "127.0.0.1:15001")]
    outbound: SocketAddr,
    /// Inbound listener: mesh traffic for the application.
    #[arg(long, env = "TRELLIS_INBOUND", default_value = "0.0.0.0:15006")]
    inbound: SocketAddr,
    /// Admin endpoints (/ready, /config_dump, /clusters, /logging); keep it on loopback.
    #[arg(long, env = "TRELLIS_ADMIN", default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// Stats and health endpoints (/healthz/ready).
    #[arg(long, env = "TRELLIS_STATS", default_value = "0.0.0.0:15020")]
    stats: SocketAddr,
    /// Name of the workload this proxy runs beside.
    #[arg(long, env = "TRELLIS_WORKLOAD", default_value = "workload")]
    workload: String,
    #[arg(long, env = "TRELLIS_NAMESPACE", default_value = "default")]
    namespace: String,
    #[arg(long, env = "TRELLIS_SERVICE_ACCOUNT", default_value = "default")]
    service_account: String,
    /// Trust domain of this workload's SPIFFE identity,
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    #[arg(long, env = "TRELLIS_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// With --control: the bootstrap credential (`trellis token create`) that lets this proxy
    /// obtain its workload certificate for mutual TLS. Prefer the environment variable or
    /// --join-token-file: command lines are visible to every local user.
    #[arg(long, env = "TRELLIS_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// With --control: a file holding the join token (a mounted secret), read at start.
    #[arg(long, env = "TRELLIS_JOIN_TOKEN_FILE")]
    join_token_file: Option<PathBuf>,
    /// Lifetime to ask the control plane for, in seconds (0: the CA's default, 24 h). The
    /// certificate is renewed at half-life.
    #[arg(long, env = "TRELLIS_CERTIFICATE_TTL_SECONDS", default_value_t = 0)]
    certificate_ttl_seconds: u64,
    /// Static credentials instead of a join token: the workload certificate chain (PEM, leaf
    /// first). Needs --key and --trust-bundle; never renewed.
    #[arg(long, env = "TRELLIS_CERT_CHAIN", requires_all = ["key", "trust_bundle"])]
    cert_chain: Option<PathBuf>,
    /// The private key of --cert-chain (PEM).
    #[arg(long, env = "TRELLIS_KEY", requires_all = ["cert_chain", "trust_bundle"])]
    key: Option<PathBuf>,
    /// The roots peers' certificates must chain to (PEM), with --cert-chain.
    #[arg(long, env = "TRELLIS_TRUST_BUNDLE", requires_all = ["cert_chain", "key"])]
    trust_bundle: Option<PathBuf>,
    /// Workload labels, `k=v,k2=v2` (matched by sourceLabels and workloadSelector).
    #[arg(long, env = "TRELLIS_LABELS", default_value = "")]
    labels: String,
    /// Application port on 127.0.0.1 that inbound traffic goes to.
    #[arg(long, env = "TRELLIS_APP_PORT")]
    app_port: Option<u16>,
    /// The application port's protocol, Istio port naming (http, http2, grpc, tcp, ...); told to
    /// the control plane.
    #[arg(long, env = "TRELLIS_APP_PROTOCOL", default_value = "http")]
    app_protocol: String,
    /// Access log: `stdout`, `off`, or a file path (JSON lines).
    #[arg(long, env = "TRELLIS_ACCESS_LOG", default_value = "stdout")]
    access_log: String,
    /// Send spans, access logs and metrics over OTLP to this endpoint instead of the control
    /// plane's collector (also in standalone mode): `http://host:4317` for gRPC,
    /// `http://host:4318` for --otlp-protocol http/protobuf (the signal paths `/v1/traces`,
    /// `/v1/logs`, `/v1/metrics` are appended). Without it and without --control, nothing is
    /// exported.
    #[arg(long, env = "TRELLIS_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// How --otlp-endpoint is spoken to: `grpc` or `http/protobuf` (as
    /// OTEL_EXPORTER_OTLP_PROTOCOL). The control plane's collector is always reached over gRPC.
    #[arg(long, env = "TRELLIS_OTLP_PROTOCOL", default_value = "grpc")]
    otlp_protocol: String,
    /// How long one OTLP export may take before its items are dropped, in seconds.
    #[arg(long, env = "TRELLIS_OTLP_TIMEOUT_SECONDS", default_value_t = 10.0)]
    otlp_timeout_seconds: f64,
    /// Percentage of new traces to sample (0-100), as Istio's `sampling`.
    #[arg(long, env = "TRELLIS_TRACE_SAMPLING", default_value_t = 1.0)]
    trace_sampling: f64,
    /// How often metrics are pushed over OTLP, in seconds.
    #[arg(long, env = "TRELLIS_METRICS_PUSH_SECONDS", default_value_t = 5.0)]
    metrics_push_seconds: f64,
    /// Also send access log records over OTLP (`true`/`false`). Off by default, as Istio's
    /// access logging is: one log per request costs more than the metrics and sampled spans.
    #[arg(long, env = "TRELLIS_OTLP_ACCESS_LOG", default_value_t = false, action = clap::ArgAction::Set)]
    otlp_access_log: bool,
    /// `off` turns all telemetry off (no metrics, spans, logs or peer metadata): for measuring
    /// what telemetry costs, or a bare proxy.
    #[arg(long, env = "TRELLIS_TELEMETRY", default_value = "on", value_parser = ["on", "off"])]
    telemetry: String,
    /// The cluster this workload runs in: Istio's `source_cluster`/`destination_cluster` label.
    #[arg(long, env = "TRELLIS_CLUSTER_ID", default_value = "Kubernetes")]
    cluster_id: String,
    /// How long to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "TRELLIS_DRAIN_SECONDS", default_value_t = 5.0)]
    drain_seconds: f64,
    /// How long a redirected connection may stay silent before it is treated as opaque TCP.
    #[arg(long, env = "TRELLIS_DETECTION_SECONDS", default_value_t = 5.0)]
    detection_seconds: f64,
    /// Worker threads (default: one per core).
    #[arg(long, env = "TRELLIS_THREADS")]
    threads: Option<usize>,
    /// Log filter for the proxy's own logs (stderr), e.g. `info`, `trellis_proxy=debug`.
    #[arg(long, env = "TRELLIS_LOG", default_value = "info")]
    log: String,
}

/// Runs the sidecar until SIGINT/SIGTERM, on its own runtimes; returns the exit code.
pub fn main_with(args: Args) -> std::process::ExitCode {
    let workers = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    worker::set_count(workers);
    // This runtime runs config, admin and signals; traffic runs on the workers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trellis-proxy: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, workers)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trellis-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, workers: usize) -> Result<(), String> {
    let set_level = init_logging(&args.log)?;
    let labels = parse_labels(&args.labels)?;
    let app_protocol = control::app_protocol(&args.app_protocol)?;
    let node = NodeIdentity {
        workload: args.workload.clone(),
        namespace: args.namespace.clone(),
        service_account: args.service_account.clone(),
        labels,
    };
    let join_token =
        identity::join_token(args.join_token.as_deref(), args.join_token_file.as_deref())?;
    if join_token.is_some() && args.control.is_none() {
        return Err("--join-token needs --control: the certificate comes from the control plane (standalone proxies take --cert-chain, --key and --trust-bundle)".into());
    }
    if join_token.is_some() && args.cert_chain.is_some() {
        return Err("--join-token and --cert-chain are mutually exclusive: take the certificate from the control plane or from files, not both".into());
    }
    // The identity is checked before anything starts; it is needed only for mutual TLS.
    let spiffe_id = (join_token.is_some() || args.cert_chain.is_some())
        .then(|| identity::spiffe_id(&args.trust_domain, &node.namespace, &node.service_account))
        .transpose()?;
    let store = Arc::new(ConfigStore::default());
    // Standalone config is loaded before listening; the control client starts once the inbound
    // address it advertises is bound.
    let control_address = match (&args.config, &args.control) {
        (Some(dir), None) => {
            let mesh = trellis_api::compile::MeshSettings {
                trust_domain: args.trust_domain.clone(),
            };
            standalone::start(dir.clone(), node.clone(), mesh, store.clone())
                .map_err(|e| format!("config {} rejected:\n{e}", dir.display()))?;
            store.update_source(|s| *s = Source::File { path: dir.clone() });
            None
        }
        (None, Some(address)) => {
            control::endpoint(address)?;
            Some(address.clone())
        }
        (Some(_), Some(_)) => {
            return Err(
                "--config and --control are mutually exclusive: take config from files or from a control plane, not both"
                    .into(),
            );
        }
        (None, None) => return Err("either --config DIR or --control ADDR is required".into()),
    };
    if !(0.0..=100.0).contains(&args.trace_sampling) {
        return Err(format!(
            "--trace-sampling {}: must be a percentage from 0 to 100",
            args.trace_sampling
        ));
    }
    let timeout = args.otlp_timeout_seconds;
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
        return Err(format!(
            "--otlp-timeout-seconds {timeout}: must be more than 0 and at most 3600"
        ));
    }
    let proxy_id = control::proxy_id(&node.workload, &node.namespace);
    let settings = TelemetrySettings {
        node: node.clone(),
        cluster: args.cluster_id.clone(),
        proxy_id: proxy_id.clone(),
        otlp_endpoint: args.otlp_endpoint.clone(),
        otlp_protocol: OtlpProtocol::parse(&args.otlp_protocol)?,
        otlp_timeout: Duration::from_secs_f64(timeout),
        follow_control_collector: control_address.is_some(),
        trace_sampling: args.trace_sampling,
        metrics_push_interval: Duration::from_secs_f64(args.metrics_push_seconds.max(0.1)),
        access_log: match args.access_log.as_str() {
            "off" | "" => AccessLogTarget::Off,
            "stdout" | "/dev/stdout" => AccessLogTarget::Stdout,
            path => AccessLogTarget::File(path.into()),
        },
        otlp_access_log: args.otlp_access_log,
    };
    let telemetry = Arc::new(if args.telemetry == "off" {
        Telemetry::disabled()
    } else {
        Telemetry::start(&settings)?
    });
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
    };
    let (listeners, outbound, inbound) = worker::bind_all(workers, args.outbound, args.inbound)
        .map_err(|e| {
            format!(
                "cannot listen on --outbound {} / --inbound {}: {e}",
                args.outbound, args.inbound
            )
        })?;
    let admin_listener = bind(args.admin, "--admin").await?;
    let stats_listener = bind(args.stats, "--stats").await?;
    let mesh_tls = join_token.is_some();
    let workload_identity = match (&control_address, join_token, spiffe_id) {
        (Some(address), Some(join_token), Some(spiffe_id)) => {
            CertManager::start(CertManagerSettings {
                endpoint: control::endpoint(address)?,
                address: address.clone(),
                identity: spiffe_id,
                join_token,
                proxy_id: proxy_id.clone(),
                ttl: (args.certificate_ttl_seconds > 0)
                    .then(|| Duration::from_secs(args.certificate_ttl_seconds)),
            })
        }
        (_, _, Some(spiffe_id)) => match (&args.cert_chain, &args.key, &args.trust_bundle) {
            (Some(chain), Some(key), Some(bundle)) => {
                identity::load_files(chain, key, bundle, &spiffe_id)?
            }
            _ => return Err("--cert-chain needs --key and --trust-bundle".into()),
        },
        _ => {
            tracing::info!("no join token and no --cert-chain: mutual TLS is unavailable");
            WorkloadIdentity::disabled()
        }
    };
    if let Some(address) = &control_address {
        // The label Istio's injector puts on pods with a sidecar, which auto mTLS reads: a proxy
        // that will never have a certificate says so, so peers reach it in plaintext.
        let mut announced = node.clone();
        let mode = if mesh_tls { "istio" } else { "disabled" };
        announced
            .labels
            .entry(trellis_api::model::TLS_MODE_LABEL.to_string())
            .or_insert_with(|| mode.to_string());
        let identity = control::Identity {
            proxy_id,
            node: announced,
            inbound_address: control::inbound_address(args.advertise, inbound, args.app_port),
            app_port: args.app_port.unwrap_or(0),
            app_protocol,
        };
        control::start(
            address,
            identity,
            store.clone(),
            telemetry.control_collector.clone(),
            Some(workload_identity.clone()),
        )?;
    }
    let (trigger, drain) = drain::channel();
    let mut proxy = Proxy::new(store, telemetry.clone(), args.app_port, drain);
    proxy.detection_timeout = Duration::from_secs_f64(args.detection_seconds.max(0.001));
    proxy.own_addresses = vec![outbound, inbound];
    proxy.identity = workload_identity;
    let proxy = Arc::new(proxy);
    tokio::spawn(admin::serve(
        admin_listener,
        admin::Port::Admin,
        proxy.clone(),
        set_level.clone(),
    ));
    tokio::spawn(admin::serve(
        stats_listener,
        admin::Port::Stats,
        proxy.clone(),
        set_level,
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let threads = worker::spawn(listeners, proxy.clone(), stopped)
        .map_err(|e| format!("cannot start workers: {e}"))?;
    tracing::info!(
        %outbound, %inbound, admin = %args.admin, stats = %args.stats, workers,
        workload = %node.workload, namespace = %node.namespace, "trellis-proxy ready"
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("draining");
    let left = trigger
        .drain(Duration::from_secs_f64(args.drain_seconds.max(0.0)))
        .await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain time over; closing remaining connections"
        );
    }
    let _ = stop.send(true);
    let _ =
        tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join()))).await;
    if !telemetry.flush(Duration::from_secs(2)).await {
        tracing::warn!("telemetry still queued at exit was not exported");
    }
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(filter: &str) -> Result<SetLogLevel, String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("--log {filter:?}: {e}"))?;
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    Ok(Arc::new(move |level: &str| {
        let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    }))
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("--labels: {kv:?} is not key=value"))
        })
        .collect()
}
