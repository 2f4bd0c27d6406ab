//! `trellis demo`: a whole mesh on one machine in one command. It starts the control plane (a
//! `trellis control` child), the bookinfo sample's services each with its own sidecar (mutual TLS
//! from join tokens it creates), an ingress in front of productpage and a traffic generator; it
//! prints where to look, and on Ctrl-C (or after `--duration`) stops everything it started.
//!
//! The children are this same binary (`trellis control`, `trellis proxy`, `trellis bookinfo`), so
//! `cargo run --release -- demo` needs nothing else built.

mod children;
mod plan;
mod traffic;

use crate::cli::{Client, WriteMeta};
use bytes::Bytes;
use children::Process;
use http::Method;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use plan::{ControlPorts, NAMESPACE, Plan, Workload};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{Signal, SignalKind, signal};
use traffic::Counts;

/// Flags of `trellis demo`. The control plane's listeners default to `trellis control`'s.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Product page views per second from the traffic generator (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Stop by itself after this long (e.g. 90s, 10m); default: run until Ctrl-C.
    #[arg(long, value_parser = crate::server::parse_duration)]
    pub duration: Option<Duration>,
    /// Config, telemetry, certificates and logs; kept between runs, so applied configs stay.
    #[arg(long, default_value = "./.trellis-demo")]
    pub data_dir: PathBuf,
    /// Where the product page is served (the sample's ingress).
    #[arg(long, default_value = "127.0.0.1:9080")]
    pub ingress: SocketAddr,
    /// First of 35 consecutive loopback ports for the sample's services and their sidecars.
    #[arg(long, default_value_t = 21000)]
    pub ports_from: u16,
    /// The console and REST API (what `trellis apply` talks to).
    #[arg(long, default_value = "127.0.0.1:20001")]
    pub console: SocketAddr,
    /// Config push to the sidecars.
    #[arg(long, default_value = trellis_api::push::DEFAULT_ADDRESS)]
    pub push: SocketAddr,
    /// OTLP/gRPC receiver.
    #[arg(long, default_value = "127.0.0.1:4317")]
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP receiver.
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub otlp_http: SocketAddr,
    /// Jaeger query API.
    #[arg(long, default_value = "127.0.0.1:16686")]
    pub jaeger: SocketAddr,
    /// Prometheus scrape endpoint (/metrics).
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub metrics: SocketAddr,
}

/// The longest the control plane, the sidecars and the first product pages may take to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long stopped processes get before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often the demo says how the traffic is going.
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// Runs the demo until Ctrl-C, SIGTERM, `--duration`, or a child's unexpected exit (an error).
pub async fn run(args: DemoArgs, out: &mut dyn Write) -> Result<(), String> {
    let started = Instant::now();
    if !(args.rate.is_finite() && (0.0..=1000.0).contains(&args.rate)) {
        return Err(format!(
            "--rate {}: must be from 0 to 1000 views per second",
            args.rate
        ));
    }
    let control = ControlPorts {
        console: args.console,
        push: args.push,
        otlp_grpc: args.otlp_grpc,
        otlp_http: args.otlp_http,
        jaeger: args.jaeger,
        metrics: args.metrics,
    };
    let plan = Plan::new(control, args.ingress, args.ports_from)?;
    plan.check_free()?;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the trellis binary to start: {e}"))?;
    let logs = args.data_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let mut signals = Signals::new()?;
    say(
        out,
        &format!(
            "Starting the Trellis demo (data and logs in {})...",
            args.data_dir.display()
        ),
    );

    let mut mesh = Mesh {
        control: None,
        workloads: Vec::new(),
        tokens: Vec::new(),
        kept: 0,
        client: Client::new(&format!("http://{}", plan.control.console))
            .map_err(|e| e.to_string())?,
    };
    let startup = tokio::select! {
        r = mesh.start(&plan, &exe, &args.data_dir, &logs) => r,
        name = signals.recv() => Err(format!("{name} during startup")),
    };
    if let Err(e) = startup {
        mesh.stop().await;
        return Err(e);
    }
    say(
        out,
        &banner(&plan, &args, &exe, mesh.kept, started.elapsed()),
    );

    let counts = Arc::new(Counts::default());
    let traffic = tokio::spawn(traffic::generate(plan.ingress, args.rate, counts.clone()));
    let outcome = mesh.watch(&mut signals, args.duration, &counts, out).await;
    traffic.abort();
    say(out, "Stopping the demo...");
    let count = mesh.process_count();
    let killed = mesh.stop().await;
    match &outcome {
        Ok(()) if killed == 0 => say(out, &format!("Stopped: all {count} processes exited.")),
        Ok(()) => say(
            out,
            &format!("Stopped: {count} processes ({killed} killed after {STOP_GRACE:?})."),
        ),
        Err(_) => {}
    }
    outcome
}

/// Writes a line to the demo's output; a closed stdout must not stop the demo.
fn say(out: &mut dyn Write, text: &str) {
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// SIGINT (the terminal's Ctrl-C) and SIGTERM.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> Result<Signals, String> {
        let listen = |kind| signal(kind).map_err(|e| format!("cannot listen for signals: {e}"));
        Ok(Signals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "interrupted",
            _ = self.terminate.recv() => "terminated",
        }
    }
}

/// What the demo started.
struct Mesh {
    control: Option<Process>,
    /// Applications and sidecars.
    workloads: Vec<Process>,
    /// Join token ids, revoked when the demo stops.
    tokens: Vec<String>,
    /// Resources besides the services' that an earlier run left in the data dir.
    kept: usize,
    client: Client,
}

impl Mesh {
    fn process_count(&self) -> usize {
        self.workloads.len() + usize::from(self.control.is_some())
    }

    /// The control plane, then tokens and the services' declarations, then every workload; done
    /// when every sidecar runs the latest config and a product page comes through the mesh (the
    /// routing config of an earlier run may send all of it to one reviews version).
    async fn start(
        &mut self,
        plan: &Plan,
        exe: &Path,
        data_dir: &Path,
        logs: &Path,
    ) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut control_args = vec![
            "control".to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        for (flag, addr) in plan.control.flags() {
            control_args.extend([flag.to_string(), addr.to_string()]);
        }
        self.control = Some(children::spawn(
            "control-plane",
            exe,
            &control_args,
            &[],
            logs,
        )?);
        self.wait_for_control(deadline).await?;

        let accounts: BTreeSet<String> = plan
            .workloads
            .iter()
            .map(Workload::service_account)
            .collect();
        let mut tokens = std::collections::BTreeMap::new();
        for account in accounts {
            let token = self.create_token(&account).await?;
            tokens.insert(account, token);
        }
        let _: serde_json::Value = self
            .client
            .write(
                Method::POST,
                "/apply?dryRun=false",
                Some((
                    "application/yaml",
                    Bytes::from_static(trellis_bookinfo::SERVICES_YAML.as_bytes()),
                )),
                &WriteMeta {
                    message: Some("trellis demo: the bookinfo services"),
                    file: Some("samples/bookinfo/services.yaml"),
                },
            )
            .await
            .map_err(|e| format!("cannot declare the bookinfo services: {e}"))?;
        let stored: serde_json::Value = self
            .client
            .get("/resources")
            .await
            .map_err(|e| format!("cannot list the stored config: {e}"))?;
        self.kept = stored["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| item["kind"] != "ServiceEntry")
            .count();

        for w in &plan.workloads {
            let token = &tokens[&w.service_account()];
            self.workloads.push(children::spawn(
                &format!("{}-sidecar", w.name()),
                exe,
                &sidecar_args(w, plan.control.push),
                &[("TRELLIS_JOIN_TOKEN", token.as_str())],
                logs,
            )?);
            self.workloads
                .push(children::spawn(&w.name(), exe, &app_args(w), &[], logs)?);
        }
        self.wait_for_sync(plan.workloads.len(), deadline).await?;
        self.wait_for_page(plan.ingress, deadline).await
    }

    async fn wait_for_control(&mut self, deadline: Instant) -> Result<(), String> {
        let client = self.client.clone();
        self.wait_until(deadline, "the control plane", || {
            let client = client.clone();
            async move {
                client
                    .get::<serde_json::Value>("/ca")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await
    }

    async fn create_token(&mut self, service_account: &str) -> Result<String, String> {
        let body = serde_json::json!({
            "namespace": NAMESPACE,
            "serviceAccount": service_account,
        });
        let created: serde_json::Value = self
            .client
            .write(
                Method::POST,
                "/tokens",
                Some(("application/json", Bytes::from(body.to_string()))),
                &WriteMeta::default(),
            )
            .await
            .map_err(|e| format!("cannot create a join token for {service_account}: {e}"))?;
        let field = |name: &str| created[name].as_str().map(str::to_string);
        let (Some(token), Some(id)) = (field("token"), field("id")) else {
            return Err(format!(
                "the control plane's new token has no token or id: {created}"
            ));
        };
        self.tokens.push(id);
        Ok(token)
    }

    /// Until `count` sidecars are connected and each runs the latest config (so every endpoint is
    /// known everywhere).
    async fn wait_for_sync(&mut self, count: usize, deadline: Instant) -> Result<(), String> {
        let client = self.client.clone();
        self.wait_until(deadline, "every sidecar's config", || {
            let client = client.clone();
            async move {
                let list: serde_json::Value =
                    client.get("/proxies").await.map_err(|e| e.to_string())?;
                let connected: Vec<&serde_json::Value> = list["proxies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["connected"] == true)
                    .collect();
                let synced = connected.iter().filter(|p| p["status"] == "SYNCED").count();
                if connected.len() == count && synced == count {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {count} sidecars connected, {synced} synced",
                        connected.len()
                    ))
                }
            }
        })
        .await
    }

    /// Until a whole product page (details and reviews shown) comes through the mesh.
    async fn wait_for_page(
        &mut self,
        ingress: SocketAddr,
        deadline: Instant,
    ) -> Result<(), String> {
        let url = format!("http://{ingress}/productpage");
        self.wait_until(deadline, "the product page", || async {
            let (status, page) = get(&url).await?;
            if status != 200 {
                return Err(format!("{url} answers {status}: {}", excerpt(&page)));
            }
            match page.find("unavailable") {
                Some(at) => Err(format!(
                    "{url} shows an error: {}",
                    excerpt(page.get(at.saturating_sub(80)..).unwrap_or(&page[at..]))
                )),
                None => Ok(()),
            }
        })
        .await
    }

    /// Retries `check` until it succeeds, a started process exits, or `deadline` passes; the
    /// error names `what`, the last failure and the log of a process that exited.
    async fn wait_until<F, Fut>(
        &mut self,
        deadline: Instant,
        what: &str,
        mut check: F,
    ) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        loop {
            let last = match check().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if let Some(e) = self.exited() {
                return Err(format!("waiting for {what}: {e}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{what} did not come up within {STARTUP_TIMEOUT:?}: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A message about a started process that has exited, with the end of its log.
    fn exited(&mut self) -> Option<String> {
        let all = self.control.iter_mut().chain(self.workloads.iter_mut());
        for p in all {
            if let Some(status) = p.try_exited() {
                return Some(exit_message(p, status));
            }
        }
        None
    }

    /// Until a signal, the end of `duration`, or a process exiting (an error); says how the
    /// traffic goes every minute.
    async fn watch(
        &mut self,
        signals: &mut Signals,
        duration: Option<Duration>,
        counts: &Counts,
        out: &mut dyn Write,
    ) -> Result<(), String> {
        let end = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(end);
        let mut status = tokio::time::interval(STATUS_EVERY);
        status.tick().await;
        let mut last = counts.totals();
        loop {
            let exits = futures_util::future::select_all(
                self.control
                    .iter_mut()
                    .chain(self.workloads.iter_mut())
                    .map(|p| Box::pin(async move { (p.exited().await, &*p) })),
            );
            tokio::select! {
                _ = signals.recv() => return Ok(()),
                _ = &mut end => return Ok(()),
                ((status, p), _, _) = exits => {
                    let status = status.map_err(|e| format!("waiting for {}: {e}", p.name))?;
                    return Err(exit_message(p, status));
                }
                _ = status.tick() => {
                    let now = counts.totals();
                    say(out, &now.since(&last));
                    last = now;
                }
            }
        }
    }

    /// Workloads first (so no request is cut by a missing control plane), the tokens, then the
    /// control plane. Returns how many processes had to be killed.
    async fn stop(&mut self) -> usize {
        let mut killed = children::stop_all(&mut self.workloads, STOP_GRACE).await;
        for id in std::mem::take(&mut self.tokens) {
            let path = format!("/tokens/{id}");
            let meta = WriteMeta::default();
            let revoke = self
                .client
                .write::<serde_json::Value>(Method::DELETE, &path, None, &meta);
            // Best effort: a control plane that is gone cannot be asked.
            let _ = tokio::time::timeout(Duration::from_secs(2), revoke).await;
        }
        if let Some(control) = self.control.as_mut() {
            killed += children::stop_all(std::slice::from_mut(control), STOP_GRACE).await;
        }
        killed
    }
}

fn exit_message(p: &Process, status: std::process::ExitStatus) -> String {
    format!(
        "{} exited unexpectedly ({status}); the end of {}:\n{}",
        p.name,
        p.log.display(),
        p.log_tail(15)
    )
}

/// `trellis proxy ...` for a workload's sidecar: control-plane config, mutual TLS from its join
/// token (in the environment), every request traced and its access log sent to the collector
/// (for the console's live tap).
fn sidecar_args(w: &Workload, push: SocketAddr) -> Vec<String> {
    let flags: [(&str, String); 15] = [
        ("--control", push.to_string()),
        ("--workload", w.name()),
        ("--namespace", NAMESPACE.into()),
        ("--service-account", w.service_account()),
        ("--labels", w.labels()),
        ("--app-port", w.app.port().to_string()),
        ("--inbound", w.inbound.to_string()),
        ("--outbound", w.outbound.to_string()),
        ("--admin", w.admin.to_string()),
        ("--stats", w.stats.to_string()),
        ("--trace-sampling", "100".into()),
        ("--otlp-access-log", "true".into()),
        ("--access-log", "off".into()),
        ("--threads", "1".into()),
        ("--drain-seconds", "1".into()),
    ];
    let mut args = vec!["proxy".to_string()];
    for (flag, value) in flags {
        args.extend([flag.to_string(), value]);
    }
    args
}

/// `trellis bookinfo SERVICE ...`: the application, calling the other services through its
/// sidecar's outbound listener by their mesh names.
fn app_args(w: &Workload) -> Vec<String> {
    let mut args = vec![
        "bookinfo".to_string(),
        w.service.to_string(),
        "--listen".into(),
        w.app.to_string(),
        "--version".into(),
        w.version.to_string(),
    ];
    if matches!(w.service, "productpage" | "reviews" | "ingress") {
        args.extend(["--outbound".into(), w.outbound.to_string()]);
    }
    if w.service == "ingress" {
        // Longer than productpage's own 3 s per call, so a delay fault behind it shows on the
        // page (as "unavailable") instead of as the ingress's 504.
        args.extend(["--timeout-seconds".into(), "15".into()]);
    }
    args
}

/// A plain GET: (status, body), or the failure as text.
async fn get(url: &str) -> Result<(u16, String), String> {
    let client: HttpClient<_, Empty<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let call = async {
        let resp = client.get(uri).await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| format!("{url}: no answer within 5 s"))?
}

fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(160).collect()
}

/// What the demo prints once the mesh is up.
fn banner(plan: &Plan, args: &DemoArgs, exe: &Path, kept: usize, took: Duration) -> String {
    let c = &plan.control;
    let trellis = display_path(exe);
    let server =
        if c.console.to_string() == crate::cli::DEFAULT_SERVER.trim_start_matches("http://") {
            String::new()
        } else {
            format!(" --server http://{}", c.console)
        };
    let configs = sample_configs();
    let traffic = if args.rate > 0.0 {
        format!(
            "Traffic: {} product page views/s through the ingress (one in five as jason).",
            args.rate
        )
    } else {
        "Traffic: none (--rate 0); open the product page to make some.".to_string()
    };
    let kept = match kept {
        0 => String::new(),
        n => format!(
            "Config kept from an earlier run in {}: {n} resource{} besides the services.\n\
             \x20 {trellis}{server} history   shows how they got there; delete the directory for a fresh start.\n\n",
            args.data_dir.display(),
            if n == 1 { "" } else { "s" },
        ),
    };
    let stop = match args.duration {
        Some(d) => format!("The demo stops by itself after {d:?}, or on Ctrl-C."),
        None => "Press Ctrl-C to stop the demo.".to_string(),
    };
    format!(
        "\nTrellis demo is up in {took:.1?}: {} workloads with sidecars, mutual TLS on.\n\n\
         \x20 Console        http://{console}\n\
         \x20 Product page   http://{ingress}/productpage\n\
         \x20 Prometheus     http://{metrics}/metrics   (scrape config: addons/prometheus/prometheus.yml)\n\
         \x20 Jaeger API     http://{jaeger}/api/services   (Jaeger UI or Grafana's Jaeger data source: http://{jaeger})\n\
         \x20 OTLP           grpc {grpc}, http {http}\n\
         \x20 Logs           {logs}\n\n\
         {traffic}\n\n\
         {kept}\
         Route traffic with the sample configs (from another terminal):\n\
         \x20 {trellis}{server} apply -f {configs}/destination-rule-all.yaml\n\
         \x20 {trellis}{server} apply -f {configs}/virtual-service-reviews-80-20.yaml\n\
         \x20 {trellis}{server} get virtualservices\n\
         \x20 {trellis}{server} proxy-status\n\
         Every sample is described in {configs}/README.md.\n\n\
         {stop}",
        plan.workloads.len(),
        console = c.console,
        ingress = plan.ingress,
        metrics = c.metrics,
        jaeger = c.jaeger,
        grpc = c.otlp_grpc,
        http = c.otlp_http,
        logs = args.data_dir.join("logs").display(),
    )
}

/// `exe` relative to the working directory when it is under it (`target/release/trellis`).
fn display_path(exe: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| exe.to_path_buf())
        .display()
        .to_string()
}

/// The sample configs' directory: `samples/config` when run from the repository, else where the
/// binary was built from.
fn sample_configs() -> String {
    let relative = Path::new("samples/config");
    if relative.is_dir() {
        return relative.display().to_string();
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/config");
    match built.canonicalize() {
        Ok(path) => path.display().to_string(),
        Err(_) => relative.display().to_string(),
    }
}
