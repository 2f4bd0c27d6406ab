//! The sample application's command line, one subcommand per service: the `bookinfo` binary and
//! the demo's `trellis bookinfo` both run [`main_with`].

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::{Ingress, ProductPage, Reviews, Upstreams, bind, serve};
use clap::{Args, Parser, Subcommand};

/// The sample's services; each runs until SIGINT.
#[derive(Debug, Parser)]
#[command(
    name = "bookinfo",
    about = "Bookinfo-like sample application for Trellis",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    service: Service,
}

#[derive(Debug, Args)]
struct Common {
    /// Address to listen on (port 0 picks a free port; the actual address is printed).
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: SocketAddr,
    /// The version this instance reports (reviews: v1 no stars, v2 black stars, v3 red stars).
    #[arg(long = "version", default_value = "v1")]
    version: String,
    /// Log filter (tracing-subscriber syntax), written to stderr.
    #[arg(long, default_value = "info")]
    log: String,
}

#[derive(Debug, Args)]
struct Outbound {
    /// Send every outbound call to this address (a sidecar's outbound listener, e.g.
    /// 127.0.0.1:15001) with the upstream URL's host:port as the `Host` header. Without it,
    /// calls go straight to the upstream URLs.
    #[arg(long)]
    outbound: Option<String>,
    /// Timeout of each outbound call, in seconds.
    #[arg(long, default_value_t = 3.0)]
    timeout_seconds: f64,
}

impl Outbound {
    fn upstreams(&self) -> Result<Upstreams, String> {
        if !(self.timeout_seconds.is_finite() && self.timeout_seconds > 0.0) {
            return Err(format!(
                "--timeout-seconds must be positive, not {}",
                self.timeout_seconds
            ));
        }
        Ok(Upstreams::new(
            self.outbound.clone(),
            Duration::from_secs_f64(self.timeout_seconds),
        ))
    }
}

/// `--version` is the service's version, so clap's own flag is off on each (`trellis bookinfo`
/// would propagate it).
#[derive(Debug, Subcommand)]
enum Service {
    /// The front end: GET /productpage renders details and reviews (?u=NAME signs in).
    #[command(disable_version_flag = true)]
    Productpage {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        outbound: Outbound,
        /// Base URL of the details service.
        #[arg(long, default_value = "http://details:9080")]
        details: String,
        /// Base URL of the reviews service.
        #[arg(long, default_value = "http://reviews:9080")]
        reviews: String,
    },
    /// Book details as JSON (GET /details/0).
    #[command(disable_version_flag = true)]
    Details {
        #[command(flatten)]
        common: Common,
    },
    /// Book reviews as JSON (GET /reviews/0); v2 and v3 call ratings.
    #[command(disable_version_flag = true)]
    Reviews {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        outbound: Outbound,
        /// Base URL of the ratings service (not called by v1).
        #[arg(long, default_value = "http://ratings:9080")]
        ratings: String,
    },
    /// Book ratings as JSON (GET /ratings/0).
    #[command(disable_version_flag = true)]
    Ratings {
        #[command(flatten)]
        common: Common,
    },
    /// The edge, as Istio's ingress gateway: forwards every request to --backend (through the
    /// sidecar with --outbound), so outside clients enter the mesh here.
    #[command(disable_version_flag = true)]
    Ingress {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        outbound: Outbound,
        /// Base URL of the service requests go to.
        #[arg(long, default_value = "http://productpage:9080")]
        backend: String,
    },
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(service: Service) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    match service {
        Service::Productpage {
            common,
            outbound,
            details,
            reviews,
        } => {
            init_logging(&common.log);
            let page = Arc::new(ProductPage {
                version: common.version.clone(),
                details,
                reviews,
                upstreams: outbound.upstreams()?,
            });
            let listener = bind("productpage", &common.version, common.listen)
                .await
                .map_err(io)?;
            serve(listener, move |req| page.clone().handle(req)).await;
        }
        Service::Details { common } => {
            init_logging(&common.log);
            let version: Arc<str> = common.version.as_str().into();
            let listener = bind("details", &version, common.listen).await.map_err(io)?;
            serve(listener, move |req| crate::details(req, version.clone())).await;
        }
        Service::Reviews {
            common,
            outbound,
            ratings,
        } => {
            init_logging(&common.log);
            let reviews = Arc::new(Reviews {
                version: common.version.clone(),
                ratings,
                upstreams: outbound.upstreams()?,
            });
            let listener = bind("reviews", &common.version, common.listen)
                .await
                .map_err(io)?;
            serve(listener, move |req| reviews.clone().handle(req)).await;
        }
        Service::Ratings { common } => {
            init_logging(&common.log);
            let version: Arc<str> = common.version.as_str().into();
            let listener = bind("ratings", &version, common.listen).await.map_err(io)?;
            serve(listener, move |req| crate::ratings(req, version.clone())).await;
        }
        Service::Ingress {
            common,
            outbound,
            backend,
        } => {
            init_logging(&common.log);
            let ingress = Arc::new(Ingress {
                backend,
                upstreams: outbound.upstreams()?,
            });
            let listener = bind("ingress", &common.version, common.listen)
                .await
                .map_err(io)?;
            serve(listener, move |req| ingress.clone().handle(req)).await;
        }
    }
    Ok(())
}

/// Runs the chosen service until SIGINT; returns the exit code.
pub fn main_with(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bookinfo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(cli.service) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bookinfo: {e}");
            ExitCode::FAILURE
        }
    }
}
