//! What the demo runs and where: the bookinfo workloads, each with its sidecar, and every address
//! the demo will listen on, checked free before anything starts.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The namespace every demo workload runs in.
pub const NAMESPACE: &str = "default";

/// One workload of the sample: a bookinfo service at one version, with its sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The `bookinfo` subcommand: productpage, details, reviews, ratings or ingress.
    pub service: &'static str,
    pub version: &'static str,
    /// Where the application listens (the sidecar's `--app-port`).
    pub app: SocketAddr,
    /// The sidecar's listeners.
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
    pub stats: SocketAddr,
}

impl Workload {
    /// The workload's name, as the graph and `trellis proxy-status` show it: `reviews-v2`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.service, self.version)
    }

    /// The service account of every version of a service, as the sample configs'
    /// AuthorizationPolicy expects (`bookinfo-reviews`).
    pub fn service_account(&self) -> String {
        service_account(self.service)
    }

    /// `app=reviews,version=v2`: what the ServiceEntries and DestinationRule subsets select.
    pub fn labels(&self) -> String {
        format!("app={},version={}", self.service, self.version)
    }
}

/// The service account of a bookinfo service.
pub fn service_account(service: &str) -> String {
    format!("bookinfo-{service}")
}

/// The sample's services and versions: productpage calls details and reviews, reviews v2 and v3
/// call ratings, and the ingress is the mesh's edge in front of productpage.
const WORKLOADS: &[(&str, &str)] = &[
    ("ingress", "v1"),
    ("productpage", "v1"),
    ("details", "v1"),
    ("reviews", "v1"),
    ("reviews", "v2"),
    ("reviews", "v3"),
    ("ratings", "v1"),
];

/// Ports each workload takes from `--ports-from`: app, inbound, outbound, admin, stats.
const PORTS_PER_WORKLOAD: u16 = 5;

/// The control plane's listeners, as `trellis control` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPorts {
    pub console: SocketAddr,
    pub push: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub jaeger: SocketAddr,
    pub metrics: SocketAddr,
}

impl ControlPorts {
    /// Each listener with its flag, as both `trellis control` and `trellis demo` name it.
    pub fn flags(&self) -> [(&'static str, SocketAddr); 6] {
        [
            ("--console", self.console),
            ("--push", self.push),
            ("--otlp-grpc", self.otlp_grpc),
            ("--otlp-http", self.otlp_http),
            ("--jaeger", self.jaeger),
            ("--metrics", self.metrics),
        ]
    }
}

/// Everything the demo listens on.
#[derive(Debug, Clone)]
pub struct Plan {
    pub control: ControlPorts,
    /// The ingress application's address: the product page URL users open.
    pub ingress: SocketAddr,
    pub workloads: Vec<Workload>,
}

impl Plan {
    /// Lays the workloads out on loopback from `ports_from` up (five ports each); the ingress
    /// application listens on `ingress` instead of a port of its block.
    pub fn new(
        control: ControlPorts,
        ingress: SocketAddr,
        ports_from: u16,
    ) -> Result<Plan, String> {
        let needed = WORKLOADS.len() as u32 * u32::from(PORTS_PER_WORKLOAD);
        if u32::from(ports_from) + needed > 65_536 || ports_from == 0 {
            return Err(format!(
                "--ports-from {ports_from}: the demo needs {needed} ports from there, up to 65535"
            ));
        }
        let at = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let workloads = WORKLOADS
            .iter()
            .zip(0u16..)
            .map(|(&(service, version), i)| {
                let base = ports_from + i * PORTS_PER_WORKLOAD;
                Workload {
                    service,
                    version,
                    app: if service == "ingress" {
                        ingress
                    } else {
                        at(base)
                    },
                    inbound: at(base + 1),
                    outbound: at(base + 2),
                    admin: at(base + 3),
                    stats: at(base + 4),
                }
            })
            .collect();
        Ok(Plan {
            control,
            ingress,
            workloads,
        })
    }

    /// Every address with the flag (and workload) it comes from, for the port check.
    pub fn addresses(&self) -> Vec<(SocketAddr, String)> {
        let mut all: Vec<(SocketAddr, String)> = self
            .control
            .flags()
            .into_iter()
            .map(|(flag, addr)| (addr, flag.to_string()))
            .collect();
        all.push((self.ingress, "--ingress".to_string()));
        for w in &self.workloads {
            let name = w.name();
            if w.service != "ingress" {
                all.push((w.app, format!("--ports-from: {name}'s application")));
            }
            for (addr, what) in [
                (w.inbound, "inbound"),
                (w.outbound, "outbound"),
                (w.admin, "admin"),
                (w.stats, "stats"),
            ] {
                all.push((addr, format!("--ports-from: {name}'s sidecar {what}")));
            }
        }
        all
    }

    /// Fails, naming every taken address and the flag that moves it, if any is in use or given
    /// twice.
    pub fn check_free(&self) -> Result<(), String> {
        let addresses = self.addresses();
        let mut problems = Vec::new();
        for (i, (addr, what)) in addresses.iter().enumerate() {
            if let Some((_, first)) = addresses[..i].iter().find(|(a, _)| a == addr) {
                problems.push(format!("  {addr} is given twice ({first} and {what})"));
            } else if let Err(e) = TcpListener::bind(addr) {
                problems.push(format!("  {addr} ({what}): {e}"));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "cannot start the demo: {} address{} not free:\n{}\n\
             Is another `trellis demo` or `trellis control` running? Stop it, or move the demo with \
             the flags named (see `trellis demo --help`).",
            problems.len(),
            if problems.len() == 1 { " is" } else { "es are" },
            problems.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(base: u16) -> ControlPorts {
        let at = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, base + p));
        ControlPorts {
            console: at(0),
            push: at(1),
            otlp_grpc: at(2),
            otlp_http: at(3),
            jaeger: at(4),
            metrics: at(5),
        }
    }

    #[test]
    fn workloads_get_consecutive_blocks_and_the_ingress_its_own_address() {
        let ingress: SocketAddr = "127.0.0.1:9080".parse().unwrap();
        let plan = Plan::new(control(20_000), ingress, 21_000).unwrap();
        let names: Vec<String> = plan.workloads.iter().map(Workload::name).collect();
        assert_eq!(
            names,
            [
                "ingress-v1",
                "productpage-v1",
                "details-v1",
                "reviews-v1",
                "reviews-v2",
                "reviews-v3",
                "ratings-v1"
            ]
        );
        assert_eq!(plan.workloads[0].app, ingress);
        assert_eq!(plan.workloads[0].inbound.port(), 21_001);
        let reviews_v2 = &plan.workloads[4];
        assert_eq!(reviews_v2.app.port(), 21_020);
        assert_eq!(reviews_v2.stats.port(), 21_024);
        assert_eq!(reviews_v2.labels(), "app=reviews,version=v2");
        assert_eq!(reviews_v2.service_account(), "bookinfo-reviews");
        // 7 control-plane and ingress addresses, 4 sidecar ports per workload, 6 applications.
        assert_eq!(plan.addresses().len(), 7 + 7 * 4 + 6);
    }

    #[test]
    fn a_range_past_the_last_port_is_refused() {
        let ingress: SocketAddr = "127.0.0.1:9080".parse().unwrap();
        assert!(Plan::new(control(20_000), ingress, 65_501).is_ok());
        let err = Plan::new(control(20_000), ingress, 65_502).unwrap_err();
        assert!(err.contains("--ports-from 65502"), "{err}");
        assert!(Plan::new(control(20_000), ingress, 0).is_err());
    }

    #[test]
    fn a_taken_port_is_named_with_its_flag() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let mut ports = control(0);
        ports.console = taken.local_addr().unwrap();
        // The rest on free ports picked by the OS (released before the check).
        let free = |_: u16| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        };
        ports.push = free(0);
        ports.otlp_grpc = free(0);
        ports.otlp_http = free(0);
        ports.jaeger = free(0);
        ports.metrics = ports.push;
        let plan = Plan::new(ports, free(0), 40_000).unwrap();
        let err = plan.check_free().unwrap_err();
        assert!(
            err.contains(&format!("127.0.0.1:{port} (--console)")),
            "{err}"
        );
        assert!(
            err.contains("is given twice (--push and --metrics)"),
            "{err}"
        );
        assert!(err.contains("trellis demo --help"), "{err}");
    }
}
